//! `patchedDependencies` (pnpm-workspace.yaml): git-style unified diffs that `pnpm patch-commit`
//! writes, applied to a package's files as it is imported. A patch is named in the lockfile by
//! the sha256 of its text (`(patch_hash=<hex>)` in the package's depPath, and the top-level
//! `patchedDependencies` map), so a changed patch file makes the lockfile outdated.
//!
//! Hunks must apply exactly (context and removed lines as written), at the stated line or,
//! as `patch` does, where they fit nearest to it: a patch that does not fit the package fails
//! the install naming the file and the hunk, as pnpm's does.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::InstallError;
use crate::lockfile::Lockfile;

/// pnpm's hash of a patch file: sha256 of its text with CRLF line ends made LF, in hex.
pub fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.replace("\r\n", "\n").as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Which `patchedDependencies` key applies to `name@version`, as pnpm 12 chooses: the exact
/// `name@version`, else the one version range (`name@^1`) that the version satisfies, else the
/// bare `name`. Two satisfied ranges are an error (pnpm's ERR_PNPM_PATCH_KEY_CONFLICT).
pub fn matching_key<'p, V>(
    patches: &'p BTreeMap<String, V>,
    name: &str,
    version: &str,
) -> Result<Option<(&'p String, &'p V)>, String> {
    if let Some(found) = patches.get_key_value(&format!("{name}@{version}")) {
        return Ok(Some(found));
    }
    let parsed = nodejs_semver::Version::parse(version).ok();
    let prefix = format!("{name}@");
    let mut ranges = patches
        .range(prefix.clone()..)
        .take_while(|(key, _)| key.starts_with(&prefix))
        .filter(|(key, _)| {
            let range = nodejs_semver::Range::parse(&key[prefix.len()..]);
            matches!((&parsed, range), (Some(v), Ok(range)) if range.satisfies(v))
        });
    match (ranges.next(), ranges.next()) {
        (Some(found), None) => Ok(Some(found)),
        (Some((first, _)), Some((second, _))) => Err(format!(
            "cannot choose between the `patchedDependencies` keys `{first}` and `{second}` for \
             `{name}@{version}`; add the exact `{name}@{version}` (pnpm fails too: \
             ERR_PNPM_PATCH_KEY_CONFLICT)"
        )),
        (None, _) => Ok(patches.get_key_value(name)),
    }
}

/// Fails with [`InstallError::LockfileOutdated`] unless the lockfile's `patchedDependencies`
/// are the configured patches, each with the hash of its file as it is now (pnpm's check).
/// `hashes` are the files' hashes (key -> hash, read once by the caller), `paths` the files.
pub(crate) fn check_lockfile(
    lockfile: &Lockfile,
    hashes: &BTreeMap<String, String>,
    paths: &BTreeMap<String, String>,
) -> Result<(), InstallError> {
    let outdated = |reason: String| Err(InstallError::LockfileOutdated { reason });
    for (key, hash) in hashes {
        match lockfile.patched_dependencies.get(key) {
            None => {
                return outdated(format!(
                    "`{key}` is patched but the lockfile has no patch for it"
                ));
            }
            Some(locked) if locked != hash => {
                let path = paths.get(key).map_or("", String::as_str);
                return outdated(format!("the patch of `{key}` ({path}) changed"));
            }
            Some(_) => {}
        }
    }
    if let Some(key) = lockfile
        .patched_dependencies
        .keys()
        .find(|key| !hashes.contains_key(*key))
    {
        return outdated(format!(
            "`{key}` is patched in the lockfile but no longer configured"
        ));
    }
    Ok(())
}

/// A configured patch file's text (`path` from the workspace root).
pub(crate) fn read(root: &Path, path: &str) -> Result<String, InstallError> {
    let file = root.join(path);
    std::fs::read_to_string(&file).map_err(|error| InstallError::InvalidFile {
        path: file,
        message: format!("cannot read this patch (`patchedDependencies`): {error}"),
    })
}

/// What one `diff --git` section does to one file.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// Hunks applied to the package's file.
    Modify(Vec<Hunk>),
    /// A new file with these lines.
    Create(Vec<Hunk>),
    Delete,
}

#[derive(Debug, PartialEq)]
pub struct FilePatch {
    /// The path inside the package (`b/` stripped).
    pub path: String,
    pub change: Change,
    /// `new mode` / `new file mode` when executable (`100755`).
    pub executable: Option<bool>,
}

#[derive(Debug, PartialEq)]
pub struct Hunk {
    /// 1-based line where the old text starts (0 for an empty file).
    old_start: usize,
    /// Lines as written: ' ' context, '-' removed, '+' added, each without its prefix, and
    /// whether the line had no newline at its end (`\ No newline at end of file`).
    lines: Vec<(u8, String, bool)>,
}

/// The files a patch changes, in its order.
pub fn parse(text: &str) -> Result<Vec<FilePatch>, String> {
    let text = text.replace("\r\n", "\n");
    let mut files = Vec::new();
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        let Some(header) = line.strip_prefix("diff --git ") else {
            continue;
        };
        let mut path = header
            .trim_end()
            .rsplit_once(" b/")
            .map(|(_, b)| b.to_owned())
            .ok_or_else(|| format!("cannot read the paths of `{}`", line.trim_end()))?;
        let (mut created, mut deleted, mut executable) = (false, false, None);
        let mut hunks = Vec::new();
        while let Some(&next) = lines.peek() {
            if next.starts_with("diff --git ") {
                break;
            }
            lines.next();
            if let Some(mode) = next.strip_prefix("new file mode ") {
                created = true;
                executable = Some(mode.trim_end().ends_with("755"));
            } else if next.starts_with("deleted file mode ") {
                deleted = true;
            } else if let Some(mode) = next.strip_prefix("new mode ") {
                executable = Some(mode.trim_end().ends_with("755"));
            } else if let Some(new) = next.strip_prefix("+++ ") {
                if let Some(b) = new.trim_end().strip_prefix("b/") {
                    path = b.to_owned();
                }
            } else if let Some(range) = next.strip_prefix("@@ -") {
                hunks.push(read_hunk(range, &mut lines)?);
            }
        }
        check_path(&path)?;
        let change = if deleted {
            Change::Delete
        } else if created {
            Change::Create(hunks)
        } else {
            Change::Modify(hunks)
        };
        files.push(FilePatch {
            path,
            change,
            executable,
        });
    }
    if files.is_empty() {
        return Err("it holds no `diff --git` section".to_owned());
    }
    Ok(files)
}

/// A patch names files inside the package only.
fn check_path(path: &str) -> Result<(), String> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(format!("`{path}` is not a path inside the package"));
    }
    Ok(())
}

fn read_hunk<'t>(
    range: &str,
    lines: &mut std::iter::Peekable<impl Iterator<Item = &'t str>>,
) -> Result<Hunk, String> {
    let bad = || format!("bad hunk header `@@ -{}`", range.trim_end());
    let (old, new) = range.split_once(" +").ok_or_else(bad)?;
    let (new, _) = new.split_once(" @@").ok_or_else(bad)?;
    let count = |spec: &str| -> Result<(usize, usize), String> {
        let (start, count) = spec.split_once(',').unwrap_or((spec, "1"));
        Ok((
            start.parse().map_err(|_| bad())?,
            count.parse().map_err(|_| bad())?,
        ))
    };
    let (old_start, mut old_left) = count(old)?;
    let (_, mut new_left) = count(new)?;
    let mut hunk = Hunk {
        old_start,
        lines: Vec::new(),
    };
    while old_left > 0 || new_left > 0 {
        let line = lines
            .next()
            .ok_or_else(|| format!("the hunk at line {old_start} ends early"))?;
        let (kind, content) = match line.as_bytes().first() {
            Some(b' ') | Some(b'-') | Some(b'+') => (line.as_bytes()[0], &line[1..]),
            // Some tools drop the space of an empty context line.
            Some(b'\n') => (b' ', line),
            _ => return Err(format!("unexpected line in the hunk at line {old_start}")),
        };
        match kind {
            b' ' => {
                old_left = old_left.checked_sub(1).ok_or_else(bad)?;
                new_left = new_left.checked_sub(1).ok_or_else(bad)?;
            }
            b'-' => old_left = old_left.checked_sub(1).ok_or_else(bad)?,
            _ => new_left = new_left.checked_sub(1).ok_or_else(bad)?,
        }
        let content = content.strip_suffix('\n').unwrap_or(content).to_owned();
        hunk.lines.push((kind, content, false));
        if lines
            .peek()
            .is_some_and(|next| next.starts_with("\\ No newline"))
        {
            lines.next();
            if let Some(last) = hunk.lines.last_mut() {
                last.2 = true;
            }
        }
    }
    Ok(hunk)
}

/// `original` (a file's bytes, `None` for a file the patch creates) with the hunks applied.
pub fn apply(original: Option<&[u8]>, hunks: &[Hunk]) -> Result<Vec<u8>, String> {
    let text = match original {
        Some(bytes) => std::str::from_utf8(bytes).map_err(|_| "the file is not text")?,
        None => "",
    };
    // Lines without their ends, and whether the file ended with one.
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let mut final_newline = text.is_empty() || text.ends_with('\n');
    if text.ends_with('\n') || text.is_empty() {
        lines.pop();
    }
    // Applied from the last hunk up, so earlier line numbers stay valid.
    for (number, hunk) in hunks.iter().enumerate().rev() {
        let old: Vec<&str> = hunk
            .lines
            .iter()
            .filter(|(kind, ..)| *kind != b'+')
            .map(|(_, line, _)| line.as_str())
            .collect();
        let new: Vec<String> = hunk
            .lines
            .iter()
            .filter(|(kind, ..)| *kind != b'-')
            .map(|(_, line, _)| line.clone())
            .collect();
        let stated = hunk.old_start.saturating_sub(1);
        let fits = |at: usize| {
            at + old.len() <= lines.len() && lines[at..at + old.len()].iter().eq(old.iter())
        };
        // Where the hunk says, else where its lines are nearest to that (as `patch` does).
        let at = if fits(stated) {
            stated
        } else {
            (0..=lines.len().saturating_sub(old.len()))
                .filter(|&at| fits(at))
                .min_by_key(|&at| at.abs_diff(stated))
                .ok_or_else(|| {
                    format!(
                        "hunk {} (at line {}) does not match the file",
                        number + 1,
                        hunk.old_start
                    )
                })?
        };
        let ends_file = at + old.len() == lines.len();
        lines.splice(at..at + old.len(), new);
        if ends_file {
            // The hunk's last new line says whether the file ends with a newline now.
            if let Some((_, _, no_newline)) = hunk.lines.iter().rev().find(|(k, ..)| *k != b'-') {
                final_newline = !no_newline;
            }
        }
    }
    let mut out = lines.join("\n");
    if final_newline && !lines.is_empty() {
        out.push('\n');
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `pnpm patch-commit` (pnpm 12.26) wrote for an edited `index.js` and a new file.
    const PNPM_PATCH: &str = "diff --git a/added.txt b/added.txt
new file mode 100644
index 0000000000000000000000000000000000000000..fa49b077972391ad58037050f2a75f74e3671e92
--- /dev/null
+++ b/added.txt
@@ -0,0 +1 @@
+new file
diff --git a/index.js b/index.js
index 3234fe11816d0061383047829cc25cb07d019394..5025f5562f7f6feeaef843eb2abb3ce71c4765aa 100644
--- a/index.js
+++ b/index.js
@@ -1 +1,2 @@
-module.exports = (s) => '  ' + s;
+module.exports = (s) => '    ' + s;
+// patched
";

    #[test]
    fn pnpms_patch_applies_and_hashes_as_pnpm_hashes_it() {
        assert_eq!(
            hash(PNPM_PATCH),
            "e924ccc8cc85201d02dd8ee549bc3447f88df8e299040a2f4d4106aa38a8676a"
        );
        assert_eq!(hash(&PNPM_PATCH.replace('\n', "\r\n")), hash(PNPM_PATCH));
        let files = parse(PNPM_PATCH).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "added.txt");
        assert_eq!(files[0].executable, Some(false));
        let Change::Create(hunks) = &files[0].change else {
            panic!("{:?}", files[0]);
        };
        assert_eq!(apply(None, hunks).unwrap(), b"new file\n");
        let Change::Modify(hunks) = &files[1].change else {
            panic!("{:?}", files[1]);
        };
        assert_eq!(
            apply(Some(b"module.exports = (s) => '  ' + s;\n"), hunks).unwrap(),
            b"module.exports = (s) => '    ' + s;\n// patched\n"
        );
        let error = apply(Some(b"module.exports = 1;\n"), hunks).unwrap_err();
        assert!(error.contains("hunk 1 (at line 1)"), "{error}");
    }

    #[test]
    fn hunks_apply_where_they_fit_keeping_the_rest() {
        let patch = "diff --git a/f b/f
--- a/f
+++ b/f
@@ -2,3 +2,3 @@
 b
-c
+C
 d
@@ -8,2 +8,3 @@
 h
 i
+j
\\ No newline at end of file
";
        let files = parse(patch).unwrap();
        let Change::Modify(hunks) = &files[0].change else {
            panic!()
        };
        // Shifted by one line (a line added above): found by its context.
        let original = "0\na\nb\nc\nd\ne\nf\ng\nh\ni\n";
        assert_eq!(
            String::from_utf8(apply(Some(original.as_bytes()), hunks).unwrap()).unwrap(),
            "0\na\nb\nC\nd\ne\nf\ng\nh\ni\nj"
        );
        // The same context twice: the place nearest the stated line (6) is patched.
        let near = "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -6,3 +6,3 @@\n b\n-c\n+C\n d\n";
        let Change::Modify(hunks) = &parse(near).unwrap().remove(0).change else {
            panic!()
        };
        let twice = "b\nc\nd\nx\ny\nz\nb\nc\nd\n";
        assert_eq!(
            String::from_utf8(apply(Some(twice.as_bytes()), hunks).unwrap()).unwrap(),
            "b\nc\nd\nx\ny\nz\nb\nC\nd\n"
        );
    }

    /// pnpm 12.26, observed: `left-pad-lite@^2` patches 2.0.0 and wins over a bare
    /// `left-pad-lite` (then unused); `^2` and `2.x` together are a conflict.
    #[test]
    fn keys_match_exact_then_range_then_name() {
        let patches: BTreeMap<String, u8> = [
            ("lp@2.0.0", 1),
            ("lp@^2", 2),
            ("lp", 3),
            ("@s/p@~1.2", 4),
            ("@s/p@>=1", 5),
            ("lpx@^2", 6),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let value =
            |name, version| matching_key(&patches, name, version).map(|m| m.map(|(_, v)| *v));
        assert_eq!(value("lp", "2.0.0"), Ok(Some(1)));
        assert_eq!(value("lp", "2.1.0"), Ok(Some(2)));
        assert_eq!(value("lp", "3.0.0"), Ok(Some(3)));
        assert_eq!(value("lpx", "1.0.0"), Ok(None));
        assert_eq!(value("@s/p", "2.0.0"), Ok(Some(5)));
        let conflict = value("@s/p", "1.2.3").unwrap_err();
        assert!(
            conflict.contains("ERR_PNPM_PATCH_KEY_CONFLICT"),
            "{conflict}"
        );
    }

    #[test]
    fn deletions_modes_and_bad_paths() {
        let patch = "diff --git a/old.js b/old.js
deleted file mode 100644
--- a/old.js
+++ /dev/null
@@ -1 +0,0 @@
-x
diff --git a/bin.js b/bin.js
old mode 100644
new mode 100755
";
        let files = parse(patch).unwrap();
        assert_eq!(files[0].change, Change::Delete);
        assert_eq!(files[1].executable, Some(true));
        assert_eq!(files[1].change, Change::Modify(Vec::new()));
        for path in ["../x", "a/../../x", "/etc/passwd"] {
            let bad = format!("diff --git a/{path} b/{path}\n");
            assert!(parse(&bad).is_err(), "{path}");
        }
        assert!(parse("not a patch").is_err());
    }
}
