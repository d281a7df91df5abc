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
use std::sync::OnceLock;

use flowpm_store::{FileEntry, FileHash, IndexBatch, PackageFiles, SIDE_EFFECTS_PREFIX, Store};

use crate::InstallError;
use crate::plan::InstallPlan;

/// Where builds are cached, for one install.
pub(crate) struct SideEffects<'a> {
    store: &'a Store,
    /// `os;arch;node<major>`: what a build's output is for (Rust's names for the platform).
    /// Asked of `node` only once a package is cacheable.
    engine: OnceLock<String>,
}

impl<'a> SideEffects<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        SideEffects {
            store,
            engine: OnceLock::new(),
        }
    }

    fn engine(&self) -> &str {
        self.engine.get_or_init(|| {
            format!(
                "{};{};{}",
                std::env::consts::OS,
                std::env::consts::ARCH,
                node_major()
            )
        })
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
        let shipped = snapshot.index_key();
        let mut hasher = blake3::Hasher::new();
        for part in [shipped.as_str(), &snapshot.dep_path, self.engine()] {
            hasher.update(part.as_bytes());
            hasher.update(b"\0");
        }
        for dep_path in reached {
            hasher.update(dep_path.as_bytes());
            hasher.update(b"\0");
        }
        Some(CacheKey {
            built: format!("{SIDE_EFFECTS_PREFIX}{}", hasher.finalize().to_hex()),
            shipped,
        })
    }

    /// Replaces the package in `dir` with its cached built files; whether the cache had them.
    /// They are copied beside the package first: if that fails (a file gone from the store),
    /// the package is left as imported and the build runs instead.
    pub(crate) fn restore(&self, key: &CacheKey, dir: &Path) -> Result<bool, InstallError> {
        let Some(built) = self.store.index().get(&key.built)? else {
            return Ok(false);
        };
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            return Ok(false);
        };
        if !built.files.iter().all(|file| is_inside(&file.path)) {
            return Ok(false);
        }
        let staging = parent.join(format!(".{}.flowpm-built", name.to_string_lossy()));
        // One a killed install left.
        if crate::link::remove_any(&staging).is_err() {
            return Ok(false);
        }
        let copied = self.copy_files(&built, &staging).and_then(|()| {
            // The shims of its dependencies' bins are the install's, not the build's.
            let bins = dir.join(INSTALLER_DIRS[0]);
            if !bins.is_dir() {
                return Ok(());
            }
            std::fs::create_dir_all(staging.join("node_modules"))?;
            std::fs::rename(bins, staging.join(INSTALLER_DIRS[0]))
        });
        if copied.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
            return Ok(false);
        }
        std::fs::remove_dir_all(dir).map_err(|e| InstallError::io("remove", dir, e))?;
        std::fs::rename(&staging, dir).map_err(|e| InstallError::io("rename", &staging, e))?;
        Ok(true)
    }

    /// Copies `files` from the store into a new directory `to` (a copy, as for any package
    /// that builds: nothing may write into the store through it).
    fn copy_files(&self, files: &PackageFiles, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        // Files are sorted by path: a directory's files mostly follow one another.
        let mut made = to.to_path_buf();
        for file in &files.files {
            let target = to.join(&file.path);
            if let Some(parent) = target.parent()
                && parent != made
            {
                std::fs::create_dir_all(parent)?;
                made = parent.to_path_buf();
            }
            let source = self.store.cas().file_path(&file.hash, file.is_executable());
            std::fs::copy(&source, &target)?;
        }
        Ok(())
    }

    /// Records the files the build left in `dir` (but what the install put there,
    /// [`INSTALLER_DIRS`]), unless they are the files as shipped: as in pnpm, a build that
    /// changed nothing in its package is not cached, and runs again next time. The cache is
    /// only a shortcut: a package it cannot record (a symlink, an unreadable file, a full
    /// disk) is built again by the next install, and the build that just succeeded stands.
    pub(crate) fn save(&self, key: &CacheKey, dir: &Path) {
        let _ = self.try_save(key, dir);
    }

    fn try_save(&self, key: &CacheKey, dir: &Path) -> Result<(), InstallError> {
        // Walked whole before anything is written, so a package that cannot be cached leaves
        // nothing behind in the store.
        let mut found = Vec::new();
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((directory, prefix)) = pending.pop() {
            let entries = std::fs::read_dir(&directory)
                .map_err(|e| InstallError::io("read", &directory, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| InstallError::io("read", &directory, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    return Ok(());
                };
                let path = format!("{prefix}{name}");
                let read_error = |e| InstallError::io("read", entry.path(), e);
                // The entry's type without a stat (symlinks not followed); a file's mode needs one.
                let file_type = entry.file_type().map_err(read_error)?;
                if file_type.is_dir() {
                    if !INSTALLER_DIRS.contains(&path.as_str()) {
                        pending.push((entry.path(), format!("{path}/")));
                    }
                } else if file_type.is_file() {
                    let metadata = entry.metadata().map_err(read_error)?;
                    let mode = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions());
                    found.push((path, entry.path(), mode & 0o111 != 0));
                } else {
                    return Ok(());
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        // Each file is read once and hashed; only one the shipped package lacks (most builds
        // change few files, many none) is written, from the same bytes.
        let shipped = self.store.index().get(&key.shipped)?;
        let in_store: HashSet<(&FileHash, bool)> = shipped
            .iter()
            .flat_map(|shipped| &shipped.files)
            .map(|file| (&file.hash, file.is_executable()))
            .collect();
        let mut files = Vec::with_capacity(found.len());
        for (path, absolute, executable) in &found {
            let data =
                std::fs::read(absolute).map_err(|e| InstallError::io("read", absolute, e))?;
            let hash = FileHash::of(&data);
            if !in_store.contains(&(&hash, *executable)) {
                self.store
                    .cas()
                    .stage(&data, *executable)?
                    .commit(self.store.cas())?;
            }
            files.push(FileEntry {
                path: path.clone(),
                hash,
                mode: if *executable { 0o755 } else { 0o644 },
                size: data.len() as u64,
            });
        }
        let same = |a: &FileEntry, b: &FileEntry| {
            a.path == b.path && a.hash == b.hash && a.is_executable() == b.is_executable()
        };
        // The files as shipped (all in the store already, so nothing was written above).
        if let Some(shipped) = &shipped
            && shipped.files.len() == files.len()
            && shipped.files.iter().zip(&files).all(|(a, b)| same(a, b))
        {
            return Ok(());
        }
        let mut batch = IndexBatch::default();
        batch.push(
            &key.built,
            &PackageFiles {
                files,
                requires_build: true,
                git: None,
            },
        );
        self.store.index().commit(&batch)?;
        Ok(())
    }
}

/// Directories in a package that the install makes, not the package or its build: the shims
/// of its dependencies' bins and the scripts' temp directory.
const INSTALLER_DIRS: [&str; 2] = ["node_modules/.bin", "node_modules/.tmp"];

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
        std::fs::create_dir_all(dir.join("node_modules/bundled")).unwrap();
        std::fs::write(dir.join("index.js"), "built").unwrap();
        std::fs::write(dir.join("build/Release/addon.node"), "native").unwrap();
        std::fs::write(dir.join("node_modules/.tmp/junk"), "x").unwrap();
        std::fs::write(dir.join("node_modules/bundled/index.js"), "bundled").unwrap();
        std::fs::create_dir_all(dir.join("node_modules/.bin")).unwrap();
        std::fs::write(dir.join("node_modules/.bin/tool"), "shim").unwrap();
        let key = CacheKey {
            built: "side-effects:k".to_owned(),
            shipped: "sha512-shipped".to_owned(),
        };
        assert!(!cache.restore(&key, &dir).unwrap());
        cache.save(&key, &dir);
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
        // A bundled dependency is part of the package; the build's temp directory is not.
        assert_eq!(
            std::fs::read_to_string(dir.join("node_modules/bundled/index.js")).unwrap(),
            "bundled"
        );
        assert!(!dir.join("node_modules/.tmp").exists());
        assert!(!root.path().join(".pkg.flowpm-built").exists());
        // Not cached, but kept: the shims the install made.
        let cached = store.index().get("side-effects:k").unwrap().unwrap();
        assert!(
            cached
                .files
                .iter()
                .all(|file| !file.path.starts_with("node_modules/."))
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("node_modules/.bin/tool")).unwrap(),
            "shim"
        );

        // A cached file gone from the store: the package stays as it is, to be built again.
        let built = store.index().get("side-effects:k").unwrap().unwrap();
        let first = &built.files[0];
        std::fs::remove_file(store.cas().file_path(&first.hash, first.is_executable())).unwrap();
        std::fs::write(dir.join("index.js"), "shipped").unwrap();
        assert!(!cache.restore(&key, &dir).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.join("index.js")).unwrap(),
            "shipped"
        );
        assert!(!root.path().join(".pkg.flowpm-built").exists());
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
            git: None,
        };
        batch.push("sha512-shipped", &shipped);
        store.index().commit(&batch).unwrap();
        let key = CacheKey {
            built: "side-effects:k".to_owned(),
            shipped: "sha512-shipped".to_owned(),
        };
        cache.save(&key, &dir);
        assert!(!cache.restore(&key, &dir).unwrap());
        // Made executable by the build: a change.
        std::fs::set_permissions(
            dir.join("index.js"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        cache.save(&key, &dir);
        assert!(cache.restore(&key, &dir).unwrap());
    }
}
