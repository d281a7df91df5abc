//! `add`, `remove` and `update`: change package.json's dependencies, resolve, then install.
//!
//! package.json and pnpm-lock.yaml are written only after resolution succeeds, each through a
//! temp file and a rename, so a failure leaves both as they were. package.json keeps its
//! formatting ([`ManifestText`]).

use std::path::Path;

use crate::InstallError;
use crate::install::{InstallOptions, install, load_config, resolve_project};
use crate::lockfile::{Lockfile, package_key, reference_to_dep_path, split_dep_path};
use crate::lockfile_write::to_yaml;
use crate::manifest::Manifest;
use crate::manifest_edit::ManifestText;
use crate::plan::DependencyGroup;
use crate::replace::{temp_path, write_atomically};
use crate::report::{InstallReport, Reporter};

/// How `add` writes the range of a package added without one (or with a dist-tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavePrefix {
    Caret,
    Tilde,
    Exact,
}

impl SavePrefix {
    fn apply(self, version: &str) -> String {
        match self {
            SavePrefix::Caret => format!("^{version}"),
            SavePrefix::Tilde => format!("~{version}"),
            SavePrefix::Exact => version.to_owned(),
        }
    }

    /// The prefix style of an existing specifier (`update --latest` keeps it).
    fn of(specifier: &str) -> SavePrefix {
        SavePrefix::pinned_by(specifier).unwrap_or(SavePrefix::Caret)
    }

    /// How `update` (within ranges) rewrites a specifier, as pnpm 12.21.0 did
    /// (RESOLVE-ORACLE.md §7): what it pins, and `*` as `^`; `None` keeps it as written
    /// (`>=1`, `^1 <2`, `a || b`, tags, other protocols).
    fn updated_from(specifier: &str) -> Option<SavePrefix> {
        match range_of(specifier)? {
            "*" | "x" | "X" | "" => Some(SavePrefix::Caret),
            _ => SavePrefix::pinned_by(specifier),
        }
    }

    /// What a specifier pins, as pnpm 12 reads it to save the version it resolved
    /// (fixtures/projects/RESOLVE-ORACLE.md §6): `~1.1.0`, `1.1` and `1.x` pin the minor
    /// (`~`), `^1.0.0` and `1` the major (`^`), `1.2.0` and `1.1.x` the patch (exact).
    /// `None` for anything else (`*`, `>=1`, `1 - 2`, `a || b`, tags): the save prefix applies.
    fn pinned_by(specifier: &str) -> Option<SavePrefix> {
        let range = range_of(specifier)?;
        if range.contains(' ') || range.contains("||") {
            return None;
        }
        if let Some(rest) = range.strip_prefix('~') {
            return is_partial_version(rest.trim_start_matches('>')).then_some(SavePrefix::Tilde);
        }
        if let Some(rest) = range.strip_prefix('^') {
            return is_partial_version(rest).then_some(SavePrefix::Caret);
        }
        if !is_partial_version(range) {
            return None;
        }
        let core = range.split(['-', '+']).next().unwrap_or(range);
        match core.split('.').count() {
            1 if core != "*" && core != "x" && core != "X" => Some(SavePrefix::Caret),
            2 => Some(SavePrefix::Tilde),
            3 => Some(SavePrefix::Exact),
            _ => None,
        }
    }
}

/// The range of a specifier: itself, or what follows `npm:name@` (`None` for an alias
/// without one).
fn range_of(specifier: &str) -> Option<&str> {
    let range = match specifier.strip_prefix("npm:") {
        Some(target) => target.get(1..)?.split_once('@')?.1,
        None => specifier,
    };
    Some(range.trim())
}

/// `1`, `1.2`, `1.x`, `1.2.3`, `1.2.3-beta.1`: a version with parts possibly left out or
/// wildcards (not a tag, not a comparison).
fn is_partial_version(text: &str) -> bool {
    let text = text.strip_prefix('v').unwrap_or(text);
    let core = text.split(['-', '+']).next().unwrap_or(text);
    !core.is_empty()
        && core.split('.').count() <= 3
        && core.split('.').all(|part| {
            matches!(part, "x" | "X" | "*")
                || (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// One argument of `flowpm add`: `name`, `name@range`, `@scope/name@tag`,
/// `alias@npm:real@range`, a local path (`../dir`, `file:../dir`, `link:../dir`,
/// `./pkg.tgz`) or a git URL, optionally as `alias@<path or URL>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddSpec {
    /// Empty for a local path or git URL given alone: the package's own name is used.
    pub alias: String,
    /// The specifier as given (`None`: the `latest` tag).
    pub specifier: Option<String>,
}

impl AddSpec {
    pub fn parse(argument: &str) -> Result<Self, InstallError> {
        if saved_as_given(argument) {
            return Ok(AddSpec {
                alias: String::new(),
                specifier: Some(argument.to_owned()),
            });
        }
        let at = argument
            .get(1..)
            .and_then(|rest| rest.find('@'))
            .map(|at| at + 1);
        let (alias, specifier) = match at {
            Some(at) => (&argument[..at], Some(argument[at + 1..].to_owned())),
            None => (argument, None),
        };
        crate::plan::validate_package_name(alias)?;
        Ok(AddSpec {
            alias: alias.to_owned(),
            specifier: specifier.filter(|s| !s.is_empty()),
        })
    }
}

/// `flowpm add`: adds (or moves) dependencies in `group`, then installs.
pub fn add(
    options: &InstallOptions,
    specs: &[AddSpec],
    group: DependencyGroup,
    prefix: SavePrefix,
    reporter: &dyn Reporter,
) -> Result<InstallReport, InstallError> {
    let mut edits = Vec::new();
    for spec in specs {
        // As pnpm 12: the version resolved is saved, with the prefix the given specifier
        // pins (`~1.1.0` -> `~1.1.2`), else the save prefix (`>=1` -> `^2.1.0`, or `2.1.0`
        // with -E).
        let given = spec
            .specifier
            .clone()
            .unwrap_or_else(|| "latest".to_owned());
        // A path given alone is saved under the package's name, as `link:` (a directory) or
        // `file:` (a tarball, or a directory given as `file:`); a git URL as given.
        let (alias, given) = if spec.alias.is_empty() {
            let project_dir = locate(options)?.project_dir;
            let (name, saved) = crate::resolve::local::named(&given, &project_dir)
                .map_err(|why| InstallError::Resolve(format!("`{given}`: {why}")))?;
            crate::plan::validate_package_name(&name)?;
            (name, saved)
        } else {
            (spec.alias.clone(), given)
        };
        edits.push(Edit::Set {
            group,
            alias,
            prefix: SavePrefix::pinned_by(&given).unwrap_or(prefix),
            resolve_as: given,
        });
    }
    change_and_install(options, edits, reporter)
}

/// A local path or git URL: `add` saves it as written, under the package's own name when
/// given without an alias.
fn saved_as_given(specifier: &str) -> bool {
    crate::resolve::local::is_local(specifier) || crate::git::parse(specifier).is_some()
}

/// `flowpm remove`: removes dependencies from every group, then installs.
pub fn remove(
    options: &InstallOptions,
    names: &[String],
    reporter: &dyn Reporter,
) -> Result<InstallReport, InstallError> {
    let edits = names
        .iter()
        .map(|name| Edit::Remove(name.clone()))
        .collect();
    change_and_install(options, edits, reporter)
}

/// `flowpm update`: re-resolves `names` (all when empty) ignoring their locked versions, in
/// every project of a workspace, and saves the versions picked into the current project's
/// package.json in each range's own style, as pnpm 12 does (`^1.0.0` -> `^1.2.0`, `1.x` ->
/// `~1.2.0`, `*` -> `^1.2.0`; tags and compound ranges stay as written). With `latest`,
/// ranges are moved to the `latest` tag, keeping each one's prefix style.
pub fn update(
    options: &InstallOptions,
    names: &[String],
    latest: bool,
    reporter: &dyn Reporter,
) -> Result<InstallReport, InstallError> {
    let mut options = options.clone();
    options.update = Some(names.to_vec());
    let manifest = read_manifest(&locate(&options)?.project_dir)?;
    let mut edits = Vec::new();
    // Names given that matched a dependency, by its alias or by its `npm:` target.
    let mut matched = Vec::new();
    for (group, alias, specifier) in
        crate::resolve::project_dependencies(&manifest, &Default::default())
    {
        // A project's own peer is resolved as a dependency but is not one in package.json.
        if !declared(&manifest, &alias) {
            continue;
        }
        let target = specifier
            .strip_prefix("npm:")
            .and_then(|target| split_dep_path(target).map(|(name, _)| name));
        let given: Vec<&String> = names
            .iter()
            .filter(|name| **name == alias || target == Some(name.as_str()))
            .collect();
        if !names.is_empty() && given.is_empty() {
            continue;
        }
        matched.extend(given.into_iter().cloned());
        if !latest {
            // Within the range: only a range that pins a version the same way is rewritten.
            if let Some(prefix) = SavePrefix::updated_from(&specifier) {
                edits.push(Edit::Set {
                    group,
                    alias,
                    prefix,
                    resolve_as: specifier,
                });
            }
            continue;
        }
        let resolve_as = match specifier.strip_prefix("npm:") {
            Some(target) => match target.get(1..).and_then(|rest| rest.find('@')) {
                Some(at) => format!("npm:{}@latest", &target[..at + 1]),
                None => format!("npm:{target}@latest"),
            },
            None if is_range_or_version(&specifier) => "latest".to_owned(),
            // A tag (`next`) already follows its tag; other protocols are left as they are.
            None => continue,
        };
        edits.push(Edit::Set {
            group,
            alias,
            prefix: SavePrefix::of(&specifier),
            resolve_as,
        });
    }
    if latest && let Some(name) = names.iter().find(|name| !matched.contains(name)) {
        return Err(not_a_dependency(name));
    }
    change_and_install(&options, edits, reporter)
}

/// Whether `name` is in one of package.json's dependency groups (not only a peer).
fn declared(manifest: &Manifest, name: &str) -> bool {
    [
        &manifest.dependencies,
        &manifest.dev_dependencies,
        &manifest.optional_dependencies,
    ]
    .iter()
    .any(|group| group.contains_key(name))
}

enum Edit {
    Set {
        group: DependencyGroup,
        alias: String,
        /// What resolution uses (`latest`, a tag, or the range itself).
        resolve_as: String,
        /// package.json gets `<prefix><resolved version>`.
        prefix: SavePrefix,
    },
    Remove(String),
}

fn change_and_install(
    options: &InstallOptions,
    edits: Vec<Edit>,
    reporter: &dyn Reporter,
) -> Result<InstallReport, InstallError> {
    let Located {
        workspace,
        mut settings,
        root_dir,
        edited,
        project_dir,
    } = locate(options)?;
    let mut members = match &workspace {
        Some(workspace) => workspace.read_members()?,
        None => Vec::new(),
    };
    let manifest_path = project_dir.join("package.json");
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| InstallError::io("read", &manifest_path, e))?;
    let mut document = ManifestText::parse(&text, &manifest_path)?;
    let mut manifest = Manifest::parse(text.as_bytes(), &manifest_path)?;
    for edit in &edits {
        match edit {
            Edit::Set {
                group,
                alias,
                resolve_as,
                ..
            } => {
                remove_everywhere(&mut manifest, alias);
                group_of(&mut manifest, *group).insert(alias.clone(), resolve_as.clone());
            }
            Edit::Remove(name) => {
                if !remove_everywhere(&mut manifest, name) {
                    return Err(not_a_dependency(name));
                }
                document.remove_dependency(name);
            }
        }
    }

    let root_manifest = if edited == "." {
        manifest
    } else {
        let member = members
            .iter_mut()
            .find(|member| member.id == edited)
            .expect("the edited project is a member");
        member.manifest = manifest;
        read_manifest(&root_dir)?
    };
    let projects = crate::resolve::Project::all(
        &root_manifest,
        members.iter().map(|m| (m.id.clone(), &m.manifest)),
    );

    let lockfile_path = root_dir.join("pnpm-lock.yaml");
    let old_lock_text = match std::fs::read_to_string(&lockfile_path) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(InstallError::io("read", &lockfile_path, error)),
    };
    let old = match &old_lock_text {
        Some(text) => Some(Lockfile::parse(text, &lockfile_path)?),
        None => None,
    };
    let builds = std::mem::take(&mut settings.builds);
    let rules = crate::install::parse_rules(settings, &root_manifest, &root_dir)?;
    let (config, store_dir) = load_config(&root_dir, options)?;
    let (mut lockfile, resolution, _) = resolve_project(
        options,
        &config,
        &store_dir,
        &projects,
        &rules,
        old.as_ref(),
        &builds,
        reporter,
        None,
    )?;

    // Now that versions are known, write what package.json and the lockfile will say.
    for edit in &edits {
        let Edit::Set {
            group,
            alias,
            resolve_as,
            prefix,
        } = edit
        else {
            continue;
        };
        // A local path or git URL is saved as given (it pins no version).
        if saved_as_given(resolve_as) {
            document.set_dependency(*group, alias, resolve_as);
            continue;
        }
        let version = locked_version(&lockfile, &edited, *group, alias).ok_or_else(|| {
            InstallError::Internal(format!("`{alias}` is missing from the new lockfile"))
        })?;
        // pnpm saves a prerelease exactly, whatever the specifier pinned.
        let prerelease = nodejs_semver::Version::parse(&version).is_ok_and(|v| v.is_prerelease());
        let prefix = if prerelease {
            SavePrefix::Exact
        } else {
            *prefix
        };
        let saved = match resolve_as.strip_prefix("npm:") {
            // A catalog reference is saved as given: the catalog holds the range.
            _ if resolve_as.starts_with("catalog:") => resolve_as.clone(),
            Some(target) => {
                let name = split_dep_path(target).map_or(target, |(name, _)| name);
                format!("npm:{name}@{}", prefix.apply(&version))
            }
            None => prefix.apply(&version),
        };
        if let Some(entry) = lockfile
            .importers
            .get_mut(&edited)
            .and_then(|importer| importer.group_mut(*group).get_mut(alias))
        {
            entry.specifier = saved.clone();
        }
        document.set_dependency(*group, alias, &saved);
    }
    write_both(
        (&manifest_path, document.as_str().as_bytes()),
        (&lockfile_path, to_yaml(&lockfile).as_bytes()),
    )?;
    if options.lockfile_only {
        return Ok(resolution);
    }
    let mut install_options = options.clone();
    install_options.update = None;
    install_options.project_dir = root_dir;
    let mut report = match install(&install_options, reporter) {
        Ok(report) => report,
        // Ignored builds fail only once the tree is complete: the edit stands (as in pnpm).
        Err(error @ InstallError::IgnoredBuilds { .. }) => return Err(error),
        Err(error) => {
            // As pnpm: a failed install (a build script, a download) leaves package.json and
            // the lockfile as they were before the command.
            let _ = write_atomically(&manifest_path, text.as_bytes());
            let _ = match &old_lock_text {
                Some(old) => write_atomically(&lockfile_path, old.as_bytes()),
                None => std::fs::remove_file(&lockfile_path)
                    .map_err(|e| InstallError::io("remove", &lockfile_path, e)),
            };
            return Err(error);
        }
    };
    let mut stages = resolution.stages;
    stages.append(&mut report.stages);
    report.stages = stages;
    let mut warnings = resolution.warnings;
    warnings.append(&mut report.warnings);
    report.warnings = warnings;
    Ok(report)
}

/// Writes both files to temp files first and renames them only when both are written, so a
/// full disk or a permission error leaves package.json and the lockfile as they were.
fn write_both(first: (&Path, &[u8]), second: (&Path, &[u8])) -> Result<(), InstallError> {
    let (first_temp, second_temp) = (temp_path(first.0), temp_path(second.0));
    let written = std::fs::write(&first_temp, first.1)
        .map_err(|e| InstallError::io("write", &first_temp, e))
        .and_then(|()| {
            std::fs::write(&second_temp, second.1)
                .map_err(|e| InstallError::io("write", &second_temp, e))
        });
    if let Err(error) = written {
        let _ = std::fs::remove_file(&first_temp);
        let _ = std::fs::remove_file(&second_temp);
        return Err(error);
    }
    std::fs::rename(&first_temp, first.0).map_err(|e| InstallError::io("replace", first.0, e))?;
    std::fs::rename(&second_temp, second.0).map_err(|e| InstallError::io("replace", second.0, e))
}

/// Where a command run in `options.project_dir` works.
struct Located {
    workspace: Option<crate::workspace::Workspace>,
    /// The overrides and catalogs of pnpm-workspace.yaml, as written.
    settings: crate::workspace::Settings,
    /// The workspace root (the project itself outside a workspace).
    root_dir: std::path::PathBuf,
    /// The importer id of the project whose package.json changes.
    edited: String,
    project_dir: std::path::PathBuf,
}

/// Inside a workspace, the project edited is the one the directory is in, and the whole
/// workspace is resolved, as pnpm does.
fn locate(options: &InstallOptions) -> Result<Located, InstallError> {
    let dir = std::path::absolute(&options.project_dir)
        .map_err(|e| InstallError::io("resolve", &options.project_dir, e))?;
    let crate::workspace::Found {
        workspace,
        settings,
    } = crate::workspace::find(&dir)?;
    let Some(found) = &workspace else {
        return Ok(Located {
            workspace,
            settings,
            root_dir: dir.clone(),
            edited: ".".to_owned(),
            project_dir: dir,
        });
    };
    let edited = found.project_of(&dir);
    let root_dir = found.root.clone();
    let project_dir = if edited == "." {
        root_dir.clone()
    } else {
        root_dir.join(&edited)
    };
    Ok(Located {
        workspace,
        settings,
        root_dir,
        edited,
        project_dir,
    })
}

fn read_manifest(project_dir: &Path) -> Result<Manifest, InstallError> {
    Manifest::read(&project_dir.join("package.json"))
}

fn not_a_dependency(name: &str) -> InstallError {
    InstallError::Config(format!(
        "`{name}` is not in dependencies, devDependencies or optionalDependencies of package.json"
    ))
}

fn group_of(
    manifest: &mut Manifest,
    group: DependencyGroup,
) -> &mut std::collections::BTreeMap<String, String> {
    match group {
        DependencyGroup::Production => &mut manifest.dependencies,
        DependencyGroup::Development => &mut manifest.dev_dependencies,
        DependencyGroup::Optional => &mut manifest.optional_dependencies,
    }
}

fn remove_everywhere(manifest: &mut Manifest, name: &str) -> bool {
    let a = manifest.dependencies.remove(name).is_some();
    let b = manifest.dev_dependencies.remove(name).is_some();
    let c = manifest.optional_dependencies.remove(name).is_some();
    a || b || c
}

/// The version the new lockfile gives a direct dependency of `project` (without peer suffix).
fn locked_version(
    lockfile: &Lockfile,
    project: &str,
    group: DependencyGroup,
    alias: &str,
) -> Option<String> {
    let importer = lockfile.importers.get(project)?;
    let dep_path = reference_to_dep_path(alias, &importer.group(group).get(alias)?.version)?;
    split_dep_path(package_key(&dep_path)).map(|(_, version)| version.to_owned())
}

/// True for `^1.2.0`, `1.2.3`, `>=1 <2`, `npm:x@^1`; false for tags (`latest`, `next`) and
/// `npm:x` / `npm:x@latest`.
fn is_range_or_version(specifier: &str) -> bool {
    let range = match specifier.strip_prefix("npm:") {
        Some(target) => match target.get(1..).and_then(|rest| rest.find('@')) {
            Some(at) => &target[at + 2..],
            None => return false,
        },
        None => specifier,
    };
    !range.is_empty()
        && matches!(
            crate::packument::parse_version_spec(range),
            Some(crate::packument::VersionSpec::Range(_) | crate::packument::VersionSpec::Exact(_))
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_add_arguments() {
        let spec = |s: &str| AddSpec::parse(s).unwrap();
        assert_eq!(spec("lodash").specifier, None);
        assert_eq!(spec("lodash@^4").specifier.as_deref(), Some("^4"));
        assert_eq!(spec("@types/node").alias, "@types/node");
        assert_eq!(spec("@types/node@20").specifier.as_deref(), Some("20"));
        assert_eq!(spec("x@npm:y@^1").specifier.as_deref(), Some("npm:y@^1"));
        // A path is local: the alias comes from the package's own (validated) name.
        assert_eq!(spec("../dir").alias, "");
        assert_eq!(
            spec("file:../dir").specifier.as_deref(),
            Some("file:../dir")
        );
        assert_eq!(spec("x@../dir").alias, "x");
        assert!(AddSpec::parse("x/../../evil@1").is_err());
        // A git URL alone takes the package's name; `@` inside the URL is not an alias.
        let git = spec("git+ssh://git@git.example:team/r.git#v1");
        assert_eq!(git.alias, "");
        assert_eq!(
            git.specifier.as_deref(),
            Some("git+ssh://git@git.example:team/r.git#v1")
        );
        assert_eq!(spec("x@git://git.example/r.git").alias, "x");
        assert!(is_range_or_version("^1.0.0"));
        assert!(is_range_or_version("1.2.3"));
        assert!(is_range_or_version("*"));
        assert!(!is_range_or_version("latest"));
        assert!(!is_range_or_version("npm:y"));
        assert!(is_range_or_version("npm:y@^1"));
        assert_eq!(SavePrefix::of("~1.2.0"), SavePrefix::Tilde);
        assert_eq!(SavePrefix::of("1.2.0"), SavePrefix::Exact);
        assert_eq!(SavePrefix::of("npm:y@^1"), SavePrefix::Caret);
    }

    /// pnpm 12 on the fixture registry (RESOLVE-ORACLE.md §6).
    #[test]
    fn the_saved_prefix_is_what_the_specifier_pins() {
        use SavePrefix::{Caret, Exact, Tilde};
        let cases = [
            ("^1.0.0", Some(Caret)),
            ("1", Some(Caret)),
            ("~1.1.0", Some(Tilde)),
            ("1.1", Some(Tilde)),
            ("1.x", Some(Tilde)),
            ("1.2.0", Some(Exact)),
            ("1.1.x", Some(Exact)),
            ("2.0.0-beta.1", Some(Exact)),
            ("npm:y@~1.0.0", Some(Tilde)),
            ("*", None),
            (">=1.1.0", None),
            ("<1.1.0", None),
            ("1.0.0 - 1.1.0", None),
            ("1.0.5 || 1.1.x", None),
            ("next", None),
            ("latest", None),
        ];
        for (specifier, pinned) in cases {
            assert_eq!(SavePrefix::pinned_by(specifier), pinned, "{specifier}");
        }
        // `update` rewrites `*` as `^` too, and keeps what pins nothing.
        for (specifier, updated) in [
            ("*", Some(SavePrefix::Caret)),
            ("npm:@s/x@*", Some(SavePrefix::Caret)),
            ("npm:@s/x@~1.0.0", Some(SavePrefix::Tilde)),
            (">=1.0.0", None),
            ("latest", None),
            ("workspace:^1.0.0", None),
            ("npm:x", None),
        ] {
            assert_eq!(SavePrefix::updated_from(specifier), updated, "{specifier}");
        }
    }
}
