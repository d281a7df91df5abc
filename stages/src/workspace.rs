//! pnpm workspaces: `pnpm-workspace.yaml` and the projects its `packages` globs select.
//!
//! As pnpm does, an install run anywhere inside a workspace installs the whole workspace from its
//! root (the nearest ancestor holding `pnpm-workspace.yaml`). A `pnpm-workspace.yaml` without
//! `packages` only carries settings; such a directory is an ordinary single project.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use std::collections::BTreeMap;

use crate::InstallError;
use crate::catalogs::Catalogs;
use crate::hoist::HoistPatterns;
use crate::lifecycle::BuildSettings;
use crate::manifest::Manifest;
use crate::package_extensions::{Extension, PackageExtensions};

pub const WORKSPACE_FILE: &str = "pnpm-workspace.yaml";

#[derive(Debug)]
pub struct Workspace {
    pub root: PathBuf,
    /// The projects besides the root, as lockfile importer ids (`packages/a`), sorted.
    pub members: Vec<String>,
}

/// A key left empty (`overrides:` with every entry deleted) is null in YAML; pnpm reads it as
/// absent, hence `null_is_empty` on every collection.
#[derive(Deserialize, Default)]
struct WorkspaceFile {
    #[serde(default, deserialize_with = "null_is_empty")]
    packages: Vec<String>,
    /// In the file's order (the lockfile records them so).
    #[serde(default, deserialize_with = "ordered_pairs_or_null")]
    overrides: Vec<(String, String)>,
    /// In the file's order (the first matching extension wins).
    #[serde(
        default,
        rename = "packageExtensions",
        deserialize_with = "ordered_pairs_or_null"
    )]
    package_extensions: Vec<(String, Extension)>,
    #[serde(default, rename = "ignoreCompatibilityDb")]
    ignore_compatibility_db: Option<bool>,
    #[serde(default, deserialize_with = "null_is_empty")]
    catalog: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_is_empty")]
    catalogs: BTreeMap<String, BTreeMap<String, String>>,
    /// `name` or `name@version` to true or false (other values count as not listed).
    #[serde(default, rename = "allowBuilds", deserialize_with = "null_is_empty")]
    allow_builds: BTreeMap<String, serde_json::Value>,
    #[serde(default, rename = "dangerouslyAllowAllBuilds")]
    dangerously_allow_all_builds: bool,
    #[serde(default, rename = "strictDepBuilds")]
    strict_dep_builds: Option<bool>,
    #[serde(default, rename = "childConcurrency")]
    child_concurrency: Option<i64>,
    #[serde(default, rename = "sideEffectsCache")]
    side_effects_cache: Option<bool>,
    #[serde(default, rename = "minimumReleaseAge")]
    minimum_release_age: Option<u64>,
    #[serde(
        default,
        rename = "minimumReleaseAgeExclude",
        deserialize_with = "null_is_empty"
    )]
    minimum_release_age_exclude: Vec<String>,
    #[serde(default, rename = "blockExoticSubdeps")]
    block_exotic_subdeps: Option<bool>,
    #[serde(
        default,
        rename = "patchedDependencies",
        deserialize_with = "null_is_empty"
    )]
    patched_dependencies: std::collections::BTreeMap<String, String>,
    #[serde(default, rename = "allowUnusedPatches")]
    allow_unused_patches: bool,
    /// Any linker but `isolated` is refused; the hoisting settings are read by `hoisting`.
    #[serde(default, rename = "nodeLinker")]
    node_linker: Option<String>,
    #[serde(default, rename = "shamefullyHoist")]
    shamefully_hoist: Option<bool>,
    #[serde(default, rename = "publicHoistPattern")]
    public_hoist_pattern: Option<Vec<String>>,
    #[serde(default)]
    hoist: Option<bool>,
    #[serde(default, rename = "hoistPattern")]
    hoist_pattern: Option<Vec<String>>,
}

fn null_is_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

pub(crate) fn ordered_pairs_or_null<'de, D: serde::Deserializer<'de>, V: Deserialize<'de>>(
    deserializer: D,
) -> Result<Vec<(String, V)>, D::Error> {
    #[derive(Deserialize)]
    #[serde(bound = "V: Deserialize<'de>")]
    struct Pairs<V>(#[serde(deserialize_with = "crate::lockfile::ordered_pairs")] Vec<(String, V)>);
    Ok(Option::<Pairs<V>>::deserialize(deserializer)?
        .map(|pairs| pairs.0)
        .unwrap_or_default())
}

/// The settings of a pnpm-workspace.yaml that shape resolution.
#[derive(Debug, Default)]
pub struct Settings {
    /// `overrides`, in the file's order.
    pub overrides: Vec<(String, String)>,
    pub package_extensions: PackageExtensions,
    pub catalogs: Catalogs,
    /// Which dependencies may run build scripts.
    pub builds: BuildSettings,
    /// `childConcurrency`: how many builds run at once ([`crate::lifecycle::child_concurrency`]).
    pub child_concurrency: Option<i64>,
    /// `sideEffectsCache` (default true): builds are kept in the store and reused.
    pub side_effects_cache: bool,
    /// `minimumReleaseAge` in minutes, and `minimumReleaseAgeExclude`
    /// ([`crate::packument::ReleaseAge`]).
    pub minimum_release_age: Option<u64>,
    pub minimum_release_age_exclude: Vec<String>,
    /// `blockExoticSubdeps: false` (pnpm 12 blocks them by default).
    pub allow_exotic_subdeps: bool,
    /// `publicHoistPattern`, `shamefullyHoist`, `hoistPattern` and `hoist`.
    pub hoisting: HoistPatterns,
    /// `patchedDependencies`: `name@version` (or `name`) -> patch file, from the root.
    pub patched_dependencies: std::collections::BTreeMap<String, String>,
    /// `allowUnusedPatches`: a patch that matches no package is not an error.
    pub allow_unused_patches: bool,
}

impl WorkspaceFile {
    /// Hoisting as pnpm 12 reads it (from pnpm-workspace.yaml only: an .npmrc
    /// `shamefully-hoist` it ignores, observed): `shamefullyHoist: true` hoists everything
    /// publicly, `hoist: false` nothing privately.
    fn hoisting(&self) -> HoistPatterns {
        let mut patterns = HoistPatterns::default();
        if let Some(public) = &self.public_hoist_pattern {
            patterns.public.clone_from(public);
        }
        if self.shamefully_hoist == Some(true) {
            patterns.public = vec!["*".to_owned()];
        }
        if let Some(private) = &self.hoist_pattern {
            patterns.private = Some(private.clone());
        }
        if self.hoist == Some(false) {
            patterns.private = None;
        }
        patterns
    }

    fn settings(&mut self, path: &Path) -> Result<Settings, InstallError> {
        if let Some(linker) = self.node_linker.as_deref().filter(|&l| l != "isolated") {
            return Err(InstallError::UnsupportedSetting {
                path: path.to_path_buf(),
                message: format!(
                    "`nodeLinker: {linker}` is not supported by flowpm yet: pnpm would lay \
                     node_modules out differently (flowpm makes pnpm's isolated layout); \
                     remove the setting to install that layout"
                ),
            });
        }
        let catalogs = Catalogs::new(
            std::mem::take(&mut self.catalog),
            std::mem::take(&mut self.catalogs),
        )
        .map_err(|message| InstallError::InvalidFile {
            path: path.to_path_buf(),
            message,
        })?;
        let mut package_extensions = PackageExtensions::new(std::mem::take(
            &mut self.package_extensions,
        ))
        .map_err(|message| InstallError::InvalidFile {
            path: path.to_path_buf(),
            message,
        })?;
        package_extensions.compatibility_db = !self.ignore_compatibility_db.unwrap_or(false);
        let allow = std::mem::take(&mut self.allow_builds)
            .into_iter()
            .filter_map(|(key, value)| Some((key, value.as_bool()?)))
            .collect();
        Ok(Settings {
            overrides: std::mem::take(&mut self.overrides),
            package_extensions,
            catalogs,
            builds: BuildSettings::new(
                allow,
                self.dangerously_allow_all_builds,
                self.strict_dep_builds,
            ),
            child_concurrency: self.child_concurrency,
            side_effects_cache: self.side_effects_cache.unwrap_or(true),
            minimum_release_age: self.minimum_release_age,
            minimum_release_age_exclude: std::mem::take(&mut self.minimum_release_age_exclude),
            allow_exotic_subdeps: self.block_exotic_subdeps == Some(false),
            hoisting: self.hoisting(),
            patched_dependencies: std::mem::take(&mut self.patched_dependencies),
            allow_unused_patches: self.allow_unused_patches,
        })
    }
}

fn read_file(path: &Path) -> Result<Option<WorkspaceFile>, InstallError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(InstallError::io("read", path, error)),
    };
    if text.trim().is_empty() {
        return Ok(Some(WorkspaceFile::default()));
    }
    serde_saphyr::from_str(&text)
        .map(Some)
        .map_err(|error| InstallError::InvalidFile {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
}

/// A workspace project's package.json, read for the frozen check, the plan cache key and
/// resolution.
pub struct Member {
    /// Its importer id.
    pub id: String,
    pub bytes: Vec<u8>,
    pub manifest: Manifest,
}

impl Workspace {
    pub fn read_members(&self) -> Result<Vec<Member>, InstallError> {
        self.members
            .iter()
            .map(|id| {
                let path = self.root.join(id).join("package.json");
                let bytes = std::fs::read(&path).map_err(|e| InstallError::io("read", &path, e))?;
                let manifest = Manifest::parse(&bytes, &path)?;
                Ok(Member {
                    id: id.clone(),
                    bytes,
                    manifest,
                })
            })
            .collect()
    }

    /// The importer id of the project `dir` is in (`.` for the root).
    pub fn project_of(&self, dir: &Path) -> String {
        let relative = dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
        self.members
            .iter()
            .filter(|id| relative.starts_with(id.as_str()))
            .max_by_key(|id| id.len())
            .cloned()
            .unwrap_or_else(|| ".".to_owned())
    }
}

/// What the nearest `pnpm-workspace.yaml` says for an install in `dir` (read once).
#[derive(Debug, Default)]
pub struct Found {
    /// The workspace `dir` belongs to, when the file lists `packages`.
    pub workspace: Option<Workspace>,
    /// The file's `overrides` and catalogs, when they apply: the workspace root's file, or a
    /// settings-only file in `dir` itself.
    pub settings: Settings,
}

/// Finds the workspace `dir` belongs to, if any, and the settings that apply to it.
pub fn find(dir: &Path) -> Result<Found, InstallError> {
    for root in dir.ancestors() {
        let path = root.join(WORKSPACE_FILE);
        let Some(mut file) = read_file(&path)? else {
            continue;
        };
        if file.packages.is_empty() {
            let settings = if root == dir {
                file.settings(&path)?
            } else {
                Settings::default()
            };
            return Ok(Found {
                workspace: None,
                settings,
            });
        }
        let members = members(root, &file.packages)?;
        return Ok(Found {
            workspace: Some(Workspace {
                root: root.to_path_buf(),
                members,
            }),
            settings: file.settings(&path)?,
        });
    }
    Ok(Found::default())
}

/// Directories under `root` with a `package.json` that the globs select (`!` excludes;
/// `node_modules` is never searched), as `/`-separated relative paths.
fn members(root: &Path, patterns: &[String]) -> Result<Vec<String>, InstallError> {
    let (exclude, include): (Vec<&str>, Vec<&str>) = patterns
        .iter()
        .map(|p| p.trim().trim_start_matches("./").trim_end_matches('/'))
        .partition(|p| p.starts_with('!'));
    let exclude: Vec<&str> = exclude
        .iter()
        .map(|p| p[1..].trim_start_matches("./"))
        .collect();
    let mut found = Vec::new();
    // Only directories some pattern can still reach are listed: an install (a no-op one too)
    // must not walk the projects' source trees.
    let descend = |relative: &str| include.iter().any(|p| glob_may_match_below(p, relative));
    walk(root, "", &descend, &mut |relative| {
        if !relative.is_empty()
            && include.iter().any(|p| glob_match(p, relative))
            && !exclude.iter().any(|p| glob_match(p, relative))
            && root.join(relative).join("package.json").is_file()
        {
            found.push(relative.to_owned());
        }
    })?;
    found.sort();
    Ok(found)
}

/// Visits `relative` and the directories below it for which `descend` holds of their parent,
/// except `node_modules` and hidden ones.
fn walk(
    root: &Path,
    relative: &str,
    descend: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    visit(relative);
    if !descend(relative) {
        return Ok(());
    }
    let dir = root.join(relative);
    let entries = std::fs::read_dir(&dir).map_err(|e| InstallError::io("read", &dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| InstallError::io("read", &dir, e))?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name != "node_modules" && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    for name in names {
        let child = if relative.is_empty() {
            name
        } else {
            format!("{relative}/{name}")
        };
        walk(root, &child, descend, visit)?;
    }
    Ok(())
}

/// `*` matches within one path segment, `**` any number of segments.
fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let path: Vec<&str> = path.split('/').collect();
    match_segments(&pattern, &path)
}

/// Whether `pattern` can match a directory strictly below `dir` (`""`: the root).
fn glob_may_match_below(pattern: &str, dir: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let dir: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    may_match_below(&pattern, &dir)
}

fn may_match_below(pattern: &[&str], dir: &[&str]) -> bool {
    match (pattern.split_first(), dir.split_first()) {
        (Some((&"**", _)), _) => true,
        (Some(_), None) => true,
        (None, _) => false,
        (Some((segment, rest)), Some((name, tail))) => {
            match_segment(segment, name) && may_match_below(rest, tail)
        }
    }
}

fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((segment, rest)) => path
            .split_first()
            .is_some_and(|(name, tail)| match_segment(segment, name) && match_segments(rest, tail)),
    }
}

fn match_segment(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => {
            let Some(tail) = name.strip_prefix(prefix) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| match_segment(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_left_empty_read_as_absent() {
        let file: WorkspaceFile =
            serde_saphyr::from_str("packages:\noverrides:\ncatalog:\ncatalogs:\nallowBuilds:\n")
                .unwrap();
        assert!(file.packages.is_empty() && file.overrides.is_empty() && file.catalog.is_empty());
        let file: WorkspaceFile =
            serde_saphyr::from_str("overrides:\n  b: 1.0.0\n  a: '-'\n").unwrap();
        assert_eq!(
            file.overrides,
            [
                ("b".to_owned(), "1.0.0".to_owned()),
                ("a".to_owned(), "-".to_owned())
            ]
        );
    }

    /// Exotic subdependencies stay blocked unless the file says `false` (pnpm 12's default).
    #[test]
    fn block_exotic_subdeps_is_on_unless_turned_off() {
        let allowed = |text: &str| {
            let mut file: WorkspaceFile = serde_saphyr::from_str(text).unwrap();
            file.settings(Path::new("pnpm-workspace.yaml"))
                .unwrap()
                .allow_exotic_subdeps
        };
        assert!(!allowed("packages: []\n"));
        assert!(!allowed("blockExoticSubdeps: true\n"));
        assert!(allowed("blockExoticSubdeps: false\n"));
        assert!(!Settings::default().allow_exotic_subdeps);
    }

    /// Hoisting settings read as pnpm 12 reads them; any linker but `isolated` is refused.
    #[test]
    fn hoisting_settings_and_the_linker() {
        let settings = |text: &str| {
            let mut file: WorkspaceFile = serde_saphyr::from_str(text).unwrap();
            file.settings(Path::new("pnpm-workspace.yaml"))
        };
        let hoisting = |text: &str| settings(text).unwrap().hoisting;
        let list = |items: &[&str]| items.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        assert_eq!(hoisting("packages: []\n"), HoistPatterns::default());
        assert_eq!(hoisting("shamefullyHoist: true\n").public, list(&["*"]));
        assert_eq!(
            hoisting("shamefullyHoist: true\npublicHoistPattern: ['*a*']\n").public,
            list(&["*"])
        );
        assert_eq!(
            hoisting("publicHoistPattern: ['*eslint*']\n").public,
            list(&["*eslint*"])
        );
        assert_eq!(
            hoisting("hoistPattern: ['*types*']\n").private,
            Some(list(&["*types*"]))
        );
        assert_eq!(
            hoisting("hoist: false\nhoistPattern: ['*']\n").private,
            None
        );
        settings("nodeLinker: isolated\n").unwrap();
        let error = settings("nodeLinker: hoisted\n").err().unwrap().to_string();
        assert!(
            error.contains("pnpm-workspace.yaml") && error.contains("`nodeLinker: hoisted`"),
            "{error}"
        );
    }

    #[test]
    fn globs_select_members_and_exclusions_win() {
        assert!(glob_match("packages/*", "packages/a"));
        assert!(!glob_match("packages/*", "packages/a/b"));
        assert!(glob_match("apps/**", "apps/web/site"));
        assert!(glob_match("**/tools", "a/b/tools"));
        assert!(glob_match("pkg-*", "pkg-one"));
        assert!(!glob_match("pkg-*", "lib-one"));
        assert!(glob_may_match_below("packages/*", ""));
        assert!(glob_may_match_below("packages/*", "packages"));
        assert!(!glob_may_match_below("packages/*", "packages/a"));
        assert!(!glob_may_match_below("packages/*", "src"));
        assert!(glob_may_match_below("apps/**", "apps/web/site"));

        let dir = tempfile::tempdir().unwrap();
        for member in [
            "packages/a",
            "packages/b",
            "packages/test-x",
            "apps/web",
            "other",
        ] {
            std::fs::create_dir_all(dir.path().join(member)).unwrap();
            std::fs::write(dir.path().join(member).join("package.json"), "{}").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("packages/no-manifest")).unwrap();
        std::fs::create_dir_all(dir.path().join("packages/a/node_modules/x")).unwrap();
        std::fs::write(
            dir.path().join("packages/a/node_modules/x/package.json"),
            "{}",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(WORKSPACE_FILE),
            "packages:\n  - 'packages/**'\n  - apps/*\n  - '!packages/test-*'\n",
        )
        .unwrap();
        let workspace = find(&dir.path().join("packages/a"))
            .unwrap()
            .workspace
            .unwrap();
        assert_eq!(workspace.root, dir.path());
        assert_eq!(workspace.members, ["apps/web", "packages/a", "packages/b"]);
    }

    #[test]
    fn a_settings_only_workspace_file_is_a_single_project() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(WORKSPACE_FILE),
            "onlyBuiltDependencies: []\n",
        )
        .unwrap();
        assert!(find(dir.path()).unwrap().workspace.is_none());
    }
}
