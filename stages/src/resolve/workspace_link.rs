//! `workspace:` dependencies: links from one workspace project to another, never resolved
//! against the registry. pnpm's forms: `workspace:*`, `workspace:^`, `workspace:~` (any
//! version), `workspace:<range>` (the project's version must satisfy it),
//! `workspace:<name>@<range>` (another name) and `workspace:<relative path>`.

use std::path::{Component, Path, PathBuf};

use nodejs_semver::{Range, Version};

use super::Project;

/// The project a `workspace:` specifier of `projects[from]` links to; `Ok(None)` for any other
/// specifier.
pub fn link_target(
    projects: &[Project<'_>],
    from: usize,
    alias: &str,
    specifier: &str,
) -> Result<Option<usize>, String> {
    let Some(wanted) = specifier.strip_prefix("workspace:") else {
        return Ok(None);
    };
    if wanted.starts_with("./") || wanted.starts_with("../") || wanted == "." || wanted == ".." {
        let target = normalize(&Path::new(&projects[from].id).join(wanted));
        return projects
            .iter()
            .position(|project| normalize(Path::new(&project.id)) == target)
            .map(Some)
            .ok_or_else(|| format!("no workspace project at `{}`", target.display()));
    }
    // `workspace:name@range`: an alias of another project.
    let (name, range) = match wanted.get(1..).and_then(|rest| rest.find('@')) {
        Some(at) => (&wanted[..=at], &wanted[at + 2..]),
        None => (alias, wanted),
    };
    let candidates: Vec<usize> = projects
        .iter()
        .enumerate()
        .filter(|(_, project)| project.manifest.name.as_deref() == Some(name))
        .map(|(index, _)| index)
        .collect();
    if candidates.is_empty() {
        return Err(format!("no workspace project is named `{name}`"));
    }
    if matches!(range, "*" | "^" | "~" | "") {
        return Ok(Some(candidates[0]));
    }
    let parsed = Range::parse(range).map_err(|_| format!("`{range}` is not a version range"))?;
    candidates
        .iter()
        .copied()
        .find(|&index| {
            projects[index]
                .manifest
                .version
                .as_deref()
                .and_then(|v| Version::parse(v).ok())
                .is_some_and(|version| parsed.satisfies(&version))
        })
        .map(Some)
        .ok_or_else(|| {
            let versions: Vec<&str> = candidates
                .iter()
                .map(|&index| {
                    projects[index]
                        .manifest
                        .version
                        .as_deref()
                        .unwrap_or("no version")
                })
                .collect();
            format!(
                "no version of workspace project `{name}` matches `{range}` (it is {})",
                versions.join(", ")
            )
        })
}

/// The lockfile's `link:` path from importer `from` to importer `to` (`packages/a` to
/// `packages/b` is `../b`; the root is `.`).
pub fn relative_link(from: &str, to: &str) -> String {
    let components = |id: &str| -> Vec<String> {
        normalize(Path::new(id))
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    };
    let (from, to) = (components(from), components(to));
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(to[common..].iter().map(String::as_str));
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// `a/./b/../c` as `a/c`, without touching the filesystem; `.` is the empty path.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn manifest(name: &str, version: &str) -> Manifest {
        Manifest {
            name: Some(name.to_owned()),
            version: Some(version.to_owned()),
            ..Manifest::default()
        }
    }

    #[test]
    fn workspace_specifiers_find_their_project() {
        let (root, a, b) = (
            manifest("root", "0.0.0"),
            manifest("a", "1.2.0"),
            manifest("@s/b", "2.0.0"),
        );
        let projects = [
            Project {
                id: ".".to_owned(),
                manifest: &root,
            },
            Project {
                id: "packages/a".to_owned(),
                manifest: &a,
            },
            Project {
                id: "libs/b".to_owned(),
                manifest: &b,
            },
        ];
        let target = |from, alias, spec| link_target(&projects, from, alias, spec);
        assert_eq!(target(0, "a", "workspace:*"), Ok(Some(1)));
        assert_eq!(target(0, "a", "workspace:^1.0.0"), Ok(Some(1)));
        assert_eq!(target(1, "x", "workspace:@s/b@^2"), Ok(Some(2)));
        assert_eq!(target(1, "x", "workspace:../../libs/b"), Ok(Some(2)));
        assert_eq!(target(2, "root", "workspace:../.."), Ok(Some(0)));
        assert_eq!(target(0, "a", "^1.0.0"), Ok(None));
        let error = target(0, "a", "workspace:^2.0.0").unwrap_err();
        assert!(error.contains("matches `^2.0.0` (it is 1.2.0)"), "{error}");
        assert!(target(0, "c", "workspace:*").unwrap_err().contains("`c`"));
        assert!(target(0, "a", "workspace:./nope").is_err());
    }

    #[test]
    fn links_are_relative_to_the_importer() {
        assert_eq!(relative_link("packages/a", "packages/b"), "../b");
        assert_eq!(
            relative_link("tools/cli", "packages/app"),
            "../../packages/app"
        );
        assert_eq!(relative_link(".", "packages/b"), "packages/b");
        assert_eq!(relative_link("packages/a", "."), "../..");
    }
}
