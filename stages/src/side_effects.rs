//! pnpm's side-effects cache: the files of a package as its build left them, kept in the store
//! so that a later install (after `rm -rf node_modules`, or in another project) copies them in
//! instead of building the package again (`sideEffectsCache`, on by default as in pnpm 12).
//!
//! A build's output depends on more than the package: the entry's key covers the package's
//! files (its store key), the platform, the major version of `node`, and every package its
//! build could see (the depPaths it reaches through its dependencies). Only immutable packages
//! are cached: a registry tarball (by its integrity) or a git commit; a `file:` directory or a
//! tarball URL without integrity can change under the same name. A build that leaves a symlink
//! is not cached (the store holds regular files only).

use std::collections::HashSet;
use std::path::{Component, Path};

use flowpm_store::{FileEntry, IndexBatch, PackageFiles, Store};

use crate::InstallError;
use crate::plan::InstallPlan;

/// Where builds are cached, for one install.
pub(crate) struct SideEffects<'a> {
    store: &'a Store,
    /// `os;arch;node<major>`, as pnpm names the engine a build ran for.
    engine: String,
}

impl<'a> SideEffects<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        SideEffects {
            store,
            engine: format!(
                "{};{};{}",
                std::env::consts::OS,
                std::env::consts::ARCH,
                node_major()
            ),
        }
    }

    /// Where snapshot `index`'s build is cached: the index key of its built files and that
    /// of its files as shipped. `None` if it is not cacheable.
    pub(crate) fn key(&self, plan: &InstallPlan, index: usize) -> Option<CacheKey> {
        let snapshot = &plan.snapshots[index];
        if snapshot.directory.is_some() || (snapshot.integrity.is_none() && snapshot.git.is_none())
        {
            return None;
        }
        let mut seen = HashSet::from([index]);
        let mut stack: Vec<usize> = snapshot.dependencies.iter().map(|d| d.1).collect();
        let mut reached = Vec::new();
        while let Some(next) = stack.pop() {
            if seen.insert(next) {
                reached.push(plan.snapshots[next].dep_path.as_str());
                stack.extend(plan.snapshots[next].dependencies.iter().map(|d| d.1));
            }
        }
        reached.sort_unstable();
        let mut hasher = blake3::Hasher::new();
        for part in [&snapshot.index_key(), &snapshot.dep_path, &self.engine] {
            hasher.update(part.as_bytes());
            hasher.update(b"\0");
        }
        for dep_path in reached {
            hasher.update(dep_path.as_bytes());
            hasher.update(b"\0");
        }
        Some(CacheKey {
            built: format!("side-effects:{}", hasher.finalize().to_hex()),
            shipped: snapshot.index_key(),
        })
    }

    /// Replaces the package in `dir` with its cached built files; whether the cache had them.
    pub(crate) fn restore(&self, key: &CacheKey, dir: &Path) -> Result<bool, InstallError> {
        let Some(built) = self.store.index().get(&key.built)? else {
            return Ok(false);
        };
        if !built.files.iter().all(|file| is_inside(&file.path)) {
            return Ok(false);
        }
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(InstallError::io("remove", dir, error)),
        }
        for file in &built.files {
            let target = dir.join(&file.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| InstallError::io("create directory", parent, e))?;
            }
            // A copy, as for any package that builds: nothing may write into the store.
            let source = self.store.cas().file_path(&file.hash, file.is_executable());
            std::fs::copy(&source, &target).map_err(|e| InstallError::io("copy", &source, e))?;
        }
        Ok(true)
    }

    /// Records the files the build left in `dir` (its own `node_modules`, where the build's
    /// temp directory is, left out), unless they are the files as shipped: as in pnpm, a build
    /// that changed nothing in its package is not cached, and runs again next time.
    pub(crate) fn save(&self, key: &CacheKey, dir: &Path) -> Result<(), InstallError> {
        let mut files = Vec::new();
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((directory, prefix)) = pending.pop() {
            let entries = std::fs::read_dir(&directory)
                .map_err(|e| InstallError::io("read", &directory, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| InstallError::io("read", &directory, e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    return Ok(());
                };
                let path = format!("{prefix}{name}");
                let kind = entry
                    .file_type()
                    .map_err(|e| InstallError::io("read", entry.path(), e))?;
                if kind.is_dir() {
                    if path != "node_modules" {
                        pending.push((entry.path(), format!("{path}/")));
                    }
                } else if kind.is_file() {
                    let data = std::fs::read(entry.path())
                        .map_err(|e| InstallError::io("read", entry.path(), e))?;
                    let mode = std::os::unix::fs::PermissionsExt::mode(
                        &entry
                            .metadata()
                            .map_err(|e| InstallError::io("read", entry.path(), e))?
                            .permissions(),
                    );
                    let executable = mode & 0o111 != 0;
                    let staged = self.store.cas().stage(&data, executable)?;
                    let hash = staged.hash();
                    staged.commit(self.store.cas())?;
                    files.push(FileEntry {
                        path,
                        hash,
                        mode: if executable { 0o755 } else { 0o644 },
                        size: data.len() as u64,
                    });
                } else {
                    // A symlink (or anything else) the store cannot hold: not cached.
                    return Ok(());
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if let Some(shipped) = self.store.index().get(&key.shipped)?
            && shipped.files.len() == files.len()
            && shipped.files.iter().zip(&files).all(|(a, b)| {
                a.path == b.path && a.hash == b.hash && a.is_executable() == b.is_executable()
            })
        {
            return Ok(());
        }
        let mut batch = IndexBatch::default();
        batch.push(
            &key.built,
            &PackageFiles {
                files,
                requires_build: true,
                prepared: false,
            },
        );
        self.store.index().commit(&batch)?;
        Ok(())
    }
}

/// The index keys of one package's build.
pub(crate) struct CacheKey {
    /// Its files as the build left them.
    built: String,
    /// Its files as shipped.
    shipped: String,
}

/// A relative path that stays inside the package.
fn is_inside(path: &str) -> bool {
    Path::new(path)
        .components()
        .all(|part| matches!(part, Component::Normal(_)))
}

/// `node<major>` of the `node` on `PATH` (what native builds are made for), `node` if there is
/// none to ask.
fn node_major() -> String {
    let version = std::process::Command::new("node")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .unwrap_or_default();
    let major = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    format!("node{major}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_paths_must_stay_inside_the_package() {
        assert!(is_inside("lib/a.node"));
        assert!(!is_inside("../a"));
        assert!(!is_inside("/etc/passwd"));
        assert!(!is_inside("a/../../b"));
    }

    #[test]
    fn a_build_is_saved_and_restored_without_its_node_modules() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(&root.path().join("store")).unwrap();
        let cache = SideEffects::new(&store);
        let dir = root.path().join("pkg");
        std::fs::create_dir_all(dir.join("build/Release")).unwrap();
        std::fs::create_dir_all(dir.join("node_modules/.tmp")).unwrap();
        std::fs::write(dir.join("index.js"), "built").unwrap();
        std::fs::write(dir.join("build/Release/addon.node"), "native").unwrap();
        std::fs::write(dir.join("node_modules/.tmp/junk"), "x").unwrap();
        let key = CacheKey {
            built: "side-effects:k".to_owned(),
            shipped: "sha512-shipped".to_owned(),
        };
        assert!(!cache.restore(&key, &dir).unwrap());
        cache.save(&key, &dir).unwrap();
        std::fs::write(dir.join("index.js"), "shipped").unwrap();
        assert!(cache.restore(&key, &dir).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.join("index.js")).unwrap(),
            "built"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("build/Release/addon.node")).unwrap(),
            "native"
        );
        assert!(!dir.join("node_modules").exists());
    }

    #[test]
    fn a_build_that_changed_nothing_is_not_cached() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(&root.path().join("store")).unwrap();
        let cache = SideEffects::new(&store);
        let dir = root.path().join("pkg");
        std::fs::create_dir_all(dir.join("node_modules/.tmp")).unwrap();
        std::fs::write(dir.join("index.js"), "shipped").unwrap();
        let staged = store.cas().stage(b"shipped", false).unwrap();
        let hash = staged.hash();
        staged.commit(store.cas()).unwrap();
        let mut batch = IndexBatch::default();
        let shipped = PackageFiles {
            files: vec![FileEntry {
                path: "index.js".into(),
                hash,
                mode: 0o644,
                size: 7,
            }],
            requires_build: true,
            prepared: false,
        };
        batch.push("sha512-shipped", &shipped);
        store.index().commit(&batch).unwrap();
        let key = CacheKey {
            built: "side-effects:k".to_owned(),
            shipped: "sha512-shipped".to_owned(),
        };
        cache.save(&key, &dir).unwrap();
        assert!(!cache.restore(&key, &dir).unwrap());
        // Made executable by the build: a change.
        std::fs::set_permissions(
            dir.join("index.js"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        cache.save(&key, &dir).unwrap();
        assert!(cache.restore(&key, &dir).unwrap());
    }
}
