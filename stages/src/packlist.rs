//! Which files of a local directory make up its package, as `npm pack` (npm-packlist) picks
//! them: pnpm 12 imports exactly these for a `file:<directory>` dependency.
//!
//! The rules, checked against pnpm 12.21.0 (fixtures/projects/RESOLVE-ORACLE.md §13):
//! - With a `files` list, a file is in when the last entry matching it or one of its parent
//!   directories is not negated. Entries are anchored at the package root (`*.js` is only the
//!   root's), `dir/` takes the whole directory.
//! - Without one, everything is in except what the root `.npmignore` excludes (or `.gitignore`
//!   when there is no `.npmignore`), gitignore-style.
//! - Either way, an `.npmignore` (else `.gitignore`) in a subdirectory excludes below it, and
//!   VCS directories, `.npmrc`, editor and OS litter and the root's lockfiles and
//!   `node_modules` are never in.
//! - `package.json`, the root's README, LICENSE, LICENCE and COPYING (any extension), `main`
//!   and every `bin` file are always in.
//!
//! Symlinked files are read through (their content is packed); symlinked directories are left
//! out, so a link cycle cannot make the walk endless.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One file to pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackFile {
    /// `/`-separated, relative to the package root.
    pub path: String,
    pub absolute: PathBuf,
    pub executable: bool,
    pub size: u64,
    /// A symlink to a file (packed as that file's content).
    pub symlink: bool,
}

/// The files of the package in `dir` (whose parsed package.json is `manifest`), sorted by path.
pub fn pack_files(dir: &Path, manifest: &serde_json::Value) -> io::Result<Vec<PackFile>> {
    let files_list = manifest
        .get("files")
        .and_then(|files| files.as_array())
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| entry.as_str())
                .map(FilesEntry::parse)
                .collect::<Vec<_>>()
        });
    let forced = forced_paths(manifest);
    let mut out = Vec::new();
    let walk = Walk {
        files_list: files_list.as_deref(),
        forced: &forced,
    };
    walk.directory(dir, "", &mut Vec::new(), &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

struct Walk<'a> {
    files_list: Option<&'a [FilesEntry]>,
    forced: &'a [String],
}

impl Walk<'_> {
    /// `relative` is `""` for the root, else `a/b/`. `rules` are the ignore rules in force
    /// above, outermost first: this directory's are pushed for its walk and popped after.
    /// (The caller sorts `out`, so the listing is taken in any order.)
    fn directory(
        &self,
        absolute: &Path,
        relative: &str,
        rules: &mut Vec<Rule>,
        out: &mut Vec<PackFile>,
    ) -> io::Result<()> {
        let entries: Vec<(String, fs::DirEntry)> = fs::read_dir(absolute)?
            .map(|entry| {
                entry.map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry))
            })
            .collect::<io::Result<_>>()?;
        let outer = rules.len();
        // The root's ignore files count only without `files`; nested ones apply either way.
        let has_ignore_file = entries
            .iter()
            .any(|(name, _)| name == ".npmignore" || name == ".gitignore");
        if has_ignore_file && (!relative.is_empty() || self.files_list.is_none()) {
            rules.extend(ignore_file_rules(absolute, relative)?);
        }
        for (name, entry) in entries {
            let path = format!("{relative}{name}");
            // The directory entry's type needs no stat; only files that are packed get one.
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                if never_packed(&path, &name, true)
                    || (relative.is_empty() && name == "node_modules")
                {
                    continue;
                }
                self.directory(&entry.path(), &format!("{path}/"), rules, out)?;
                continue;
            }
            if !(file_type.is_file() || file_type.is_symlink())
                || !self.includes(rules, &path, &name)
            {
                continue;
            }
            let entry_path = entry.path();
            let metadata = if file_type.is_symlink() {
                match fs::metadata(&entry_path) {
                    // A link to a directory is left out; a dangling one too.
                    Ok(metadata) if metadata.is_file() => metadata,
                    _ => continue,
                }
            } else {
                entry.metadata()?
            };
            use std::os::unix::fs::PermissionsExt;
            out.push(PackFile {
                path,
                absolute: entry_path,
                executable: metadata.permissions().mode() & 0o111 != 0,
                size: metadata.len(),
                symlink: file_type.is_symlink(),
            });
        }
        rules.truncate(outer);
        Ok(())
    }

    fn includes(&self, rules: &[Rule], path: &str, name: &str) -> bool {
        if self.forced.iter().any(|forced| forced == path) || is_forced_root_doc(path) {
            return true;
        }
        if never_packed(path, name, false) {
            return false;
        }
        // Matching ignores case (ignore-walk's `nocase`): patterns are lowercase already.
        let path = &path.to_ascii_lowercase();
        if let Some(entries) = self.files_list {
            let mut included = false;
            for entry in entries {
                if entry.matches(path) {
                    included = !entry.negated;
                }
            }
            if !included {
                return false;
            }
        }
        !ignored(rules, path)
    }
}

/// Root files npm always packs: `package.json`, `main` and the `bin` targets.
fn forced_paths(manifest: &serde_json::Value) -> Vec<String> {
    let mut forced = vec!["package.json".to_owned()];
    if let Some(main) = manifest.get("main").and_then(|main| main.as_str()) {
        forced.push(normalize(main));
    }
    match manifest.get("bin") {
        Some(serde_json::Value::String(bin)) => forced.push(normalize(bin)),
        Some(serde_json::Value::Object(bins)) => {
            forced.extend(bins.values().filter_map(|bin| bin.as_str()).map(normalize))
        }
        _ => {}
    }
    forced
}

fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_owned()
}

/// `readme`, `license`, `licence`, `copying`, bare or with an extension not ending in `~`/`$`
/// (npm-packlist's `/readme{,.*[^~$]}`, case-insensitive), at the root only.
fn is_forced_root_doc(path: &str) -> bool {
    if path.contains('/') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    ["readme", "license", "licence", "copying"]
        .iter()
        .any(|stem| match lower.strip_prefix(stem) {
            Some("") => true,
            Some(rest) => {
                rest.starts_with('.')
                    && rest.len() > 1
                    && !rest.ends_with('~')
                    && !rest.ends_with('$')
            }
            None => false,
        })
}

/// npm-packlist's default rules: never in a package, whatever the package says.
fn never_packed(path: &str, name: &str, is_dir: bool) -> bool {
    const ANY_DEPTH: &[&str] = &[
        ".git",
        ".svn",
        ".hg",
        "CVS",
        ".npmignore",
        ".gitignore",
        ".npmrc",
        "npm-debug.log",
        ".DS_Store",
    ];
    const ROOT: &[&str] = &[
        ".lock-wscript",
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "archived-packages",
    ];
    if ANY_DEPTH.contains(&name)
        || name.starts_with("._")
        || name.ends_with(".orig")
        || (name.starts_with('.') && name.ends_with(".swp"))
    {
        return true;
    }
    let at_root = !path.contains('/');
    (at_root && (ROOT.contains(&name) || name.starts_with(".wafpickle-")))
        || (!is_dir && path == "build/config.gypi")
}

/// One entry of package.json `files`.
struct FilesEntry {
    negated: bool,
    pattern: String,
}

impl FilesEntry {
    fn parse(entry: &str) -> Self {
        let (negated, pattern) = match entry.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        let mut pattern = normalize(pattern).to_ascii_lowercase();
        // npm-packlist: `dir/*` takes the whole directory.
        if pattern.ends_with("/*") {
            pattern.push('*');
        }
        FilesEntry { negated, pattern }
    }

    /// The entry names this file or one of its parent directories.
    /// `path` is lowercase.
    fn matches(&self, path: &str) -> bool {
        if glob_matches(self.pattern.as_bytes(), path.as_bytes()) {
            return true;
        }
        path.match_indices('/')
            .any(|(slash, _)| glob_matches(self.pattern.as_bytes(), &path.as_bytes()[..slash]))
    }
}

/// A gitignore line, with the directory of the file it came from.
#[derive(Clone, Debug)]
struct Rule {
    /// `""` or `sub/dir/`, lowercase.
    base: String,
    negated: bool,
    dir_only: bool,
    /// Has a slash before its end: matched against the path from `base`, not the name.
    anchored: bool,
    pattern: String,
}

/// The rules of `dir`'s `.npmignore`, else its `.gitignore` (none when neither exists).
fn ignore_file_rules(dir: &Path, base: &str) -> io::Result<Vec<Rule>> {
    for name in [".npmignore", ".gitignore"] {
        match fs::read(dir.join(name)) {
            // Not UTF-8: its rules still apply (packing everything could publish secrets).
            Ok(bytes) => return Ok(parse_rules(&String::from_utf8_lossy(&bytes), base)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(Vec::new())
}

fn parse_rules(text: &str, base: &str) -> Vec<Rule> {
    let base = base.to_ascii_lowercase();
    let mut rules = Vec::new();
    for line in text.lines() {
        // ignore-walk trims every line (no gitignore escaped trailing space).
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (negated, line) = match line.strip_prefix('!') {
            Some(rest) => (true, rest),
            // `\#` and `\!` start a name with that character.
            None if line.starts_with("\\#") || line.starts_with("\\!") => (false, &line[1..]),
            None => (false, line),
        };
        let dir_only = line.ends_with('/');
        let line = line.trim_end_matches('/');
        if line.is_empty() {
            continue;
        }
        let anchored = line.contains('/');
        rules.push(Rule {
            base: base.clone(),
            negated,
            dir_only,
            anchored,
            pattern: line.trim_start_matches('/').to_ascii_lowercase(),
        });
    }
    rules
}

/// Whether the file at `path` is ignored: the last rule that matches it or a directory above
/// it decides, so (as in ignore-walk, unlike git) a negation can bring back a file of an
/// ignored directory. Rules of a directory below the path's own never apply. `path` is
/// lowercase, as the rules are (ignore-walk matches with `nocase`).
fn ignored(rules: &[Rule], path: &str) -> bool {
    let mut ignored = false;
    for rule in rules {
        let Some(relative) = path.strip_prefix(rule.base.as_str()) else {
            continue;
        };
        let directories = relative
            .match_indices('/')
            .map(|(slash, _)| &relative[..slash]);
        if rule.matches(relative, false)
            || directories.into_iter().any(|dir| rule.matches(dir, true))
        {
            ignored = !rule.negated;
        }
    }
    ignored
}

impl Rule {
    /// `path` is relative to the rule's base and lowercase.
    fn matches(&self, path: &str, is_dir: bool) -> bool {
        if self.dir_only && !is_dir {
            return false;
        }
        let subject = if self.anchored {
            path
        } else {
            path.rsplit('/').next().unwrap_or(path)
        };
        glob_matches(self.pattern.as_bytes(), subject.as_bytes())
    }
}

/// Glob match of a whole `/`-separated path: `*` and `?` stay within a segment, a `**`
/// segment spans any number of them, `[...]` is a class (`!` or `^` negates), `\` escapes.
pub(crate) fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    if let Some(rest) = pattern.strip_prefix(b"**") {
        if rest.is_empty() {
            return true;
        }
        if let Some(rest) = rest.strip_prefix(b"/") {
            // `**/` matches zero or more leading segments.
            if glob_matches(rest, text) {
                return true;
            }
            return text
                .iter()
                .enumerate()
                .any(|(index, &byte)| byte == b'/' && glob_matches(rest, &text[index + 1..]));
        }
    }
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') => {
            let rest = &pattern[1..];
            let mut index = 0;
            loop {
                if glob_matches(rest, &text[index..]) {
                    return true;
                }
                if index == text.len() || text[index] == b'/' {
                    return false;
                }
                index += 1;
            }
        }
        Some(b'?') => {
            matches!(text.first(), Some(&byte) if byte != b'/')
                && glob_matches(&pattern[1..], &text[1..])
        }
        Some(b'[') => match (class_end(pattern), text.first()) {
            (Some(end), Some(&byte)) if byte != b'/' => {
                class_matches(&pattern[1..end], byte)
                    && glob_matches(&pattern[end + 1..], &text[1..])
            }
            (Some(_), _) => false,
            // An unclosed `[` is a literal.
            (None, first) => first == Some(&b'[') && glob_matches(&pattern[1..], &text[1..]),
        },
        Some(b'\\') if pattern.len() > 1 => {
            text.first() == Some(&pattern[1]) && glob_matches(&pattern[2..], &text[1..])
        }
        Some(&literal) => text.first() == Some(&literal) && glob_matches(&pattern[1..], &text[1..]),
    }
}

/// Index of the `]` closing the class that starts at `pattern[0]`.
fn class_end(pattern: &[u8]) -> Option<usize> {
    let mut index = 1;
    if matches!(pattern.get(index), Some(b'!' | b'^')) {
        index += 1;
    }
    // A `]` right after the opening is part of the class.
    if pattern.get(index) == Some(&b']') {
        index += 1;
    }
    pattern[index..]
        .iter()
        .position(|&byte| byte == b']')
        .map(|offset| index + offset)
}

fn class_matches(class: &[u8], byte: u8) -> bool {
    let (negated, class) = match class.first() {
        Some(b'!' | b'^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut index = 0;
    let mut found = false;
    while index < class.len() {
        if index + 2 < class.len() && class[index + 1] == b'-' {
            found |= (class[index]..=class[index + 2]).contains(&byte);
            index += 3;
        } else {
            found |= class[index] == byte;
            index += 1;
        }
    }
    found != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, file).unwrap();
        }
        dir
    }

    fn packed(dir: &Path, manifest: serde_json::Value) -> Vec<String> {
        pack_files(dir, &manifest)
            .unwrap()
            .into_iter()
            .map(|file| file.path)
            .collect()
    }

    #[test]
    fn globs_follow_gitignore_segments() {
        assert!(glob_matches(b"*.js", b"a.js"));
        assert!(!glob_matches(b"*.js", b"deep/a.js"));
        assert!(glob_matches(b"**/*.js", b"deep/x/a.js"));
        assert!(glob_matches(b"**/*.js", b"a.js"));
        assert!(glob_matches(b"lib/**", b"lib/a/b"));
        assert!(glob_matches(b"a/**/b", b"a/b"));
        assert!(glob_matches(b"a/**/b", b"a/x/y/b"));
        assert!(glob_matches(b"file-[0-9].txt", b"file-7.txt"));
        assert!(!glob_matches(b"file-[!0-9].txt", b"file-7.txt"));
        assert!(glob_matches(b"\\*lit", b"*lit"));
        assert!(glob_matches(b"a?c", b"abc") && !glob_matches(b"a?c", b"a/c"));
    }

    /// pnpm 12.21.0 installed `file:` directories laid out as these (RESOLVE-ORACLE.md §13).
    #[test]
    fn without_files_the_npmignore_wins_over_the_gitignore() {
        let dir = tree(&[
            "main.js",
            "README.md",
            "LICENSE",
            "CHANGELOG.md",
            ".npmignore",
            ".gitignore",
            ".npmrc",
            "package-lock.json",
            "yarn.lock",
            "pnpm-lock.yaml",
            "x.orig",
            ".DS_Store",
            "npm-debug.log",
            "src/a.js",
            "src/b.test.js",
            "dist/sub/c.js",
            "dist/d.map",
            ".env",
            "secret.key",
            "node_modules/x/i.js",
            "Makefile",
            "package.json",
            ".git/HEAD",
        ]);
        fs::write(dir.path().join(".npmignore"), "src/*.test.js\n*.map\n").unwrap();
        fs::write(dir.path().join(".gitignore"), "dist\nsecret.key\n").unwrap();
        assert_eq!(
            packed(dir.path(), serde_json::json!({"main": "main.js"})),
            [
                ".env",
                "CHANGELOG.md",
                "LICENSE",
                "Makefile",
                "README.md",
                "dist/sub/c.js",
                "main.js",
                "package.json",
                "secret.key",
                "src/a.js",
            ]
        );
    }

    #[test]
    fn a_files_list_is_anchored_and_keeps_forced_files() {
        let dir = tree(&[
            "idx.js",
            "b/run.js",
            "lib/a.js",
            "lib/skip.js",
            "lib/x.ts",
            "other/deep/o.txt",
            "other/keep.md",
            "LICENSE.txt",
            "README",
            "CHANGELOG.md",
            "notes.txt",
            "package.json",
            "deep/b.js",
            "readme~",
            "COPYING",
            "docs/node_modules/m/i.js",
        ]);
        fs::write(dir.path().join("other/.npmignore"), "*.txt\n").unwrap();
        let manifest = serde_json::json!({
            "main": "idx.js",
            "bin": "./b/run.js",
            "files": ["lib/*.js", "!lib/skip.js", "other", "*.js", "docs/"],
        });
        assert_eq!(
            packed(dir.path(), manifest),
            [
                "COPYING",
                "LICENSE.txt",
                "README",
                "b/run.js",
                "docs/node_modules/m/i.js",
                "idx.js",
                "lib/a.js",
                "other/keep.md",
                "package.json",
            ]
        );
    }

    #[test]
    fn nested_ignore_files_and_defaults_apply_below_the_root() {
        let dir = tree(&[
            "package.json",
            "sub/node_modules/q/i.js",
            "sub/.git/HEAD",
            "sub/y.log",
            "sub/z.js",
            "sub/.npmrc",
            ".wafpickle-7",
            "build/config.gypi",
            "build/keep.gypi",
            "sub/.gitignore",
        ]);
        fs::write(dir.path().join("sub/.gitignore"), "*.log\n").unwrap();
        std::os::unix::fs::symlink("sub/z.js", dir.path().join("link.js")).unwrap();
        std::os::unix::fs::symlink("sub", dir.path().join("linkdir")).unwrap();
        assert_eq!(
            packed(dir.path(), serde_json::json!({})),
            [
                "build/keep.gypi",
                "link.js",
                "package.json",
                "sub/node_modules/q/i.js",
                "sub/z.js"
            ]
        );
    }

    #[test]
    fn main_and_bins_are_packed_from_an_ignored_directory() {
        let dir = tree(&["package.json", "lib/index.js", "lib/other.js", "bin/cli.js"]);
        fs::write(dir.path().join(".npmignore"), "lib/\nbin\n").unwrap();
        let manifest = serde_json::json!({"main": "./lib/index.js", "bin": {"x": "bin/cli.js"}});
        assert_eq!(
            packed(dir.path(), manifest),
            ["bin/cli.js", "lib/index.js", "package.json"]
        );
    }

    #[test]
    fn negations_and_directory_rules() {
        let rules = parse_rules(
            "logs/\n*.tmp\n!keep.tmp\n/only-root\n# comment\n\nDist\nlib/\n!lib/keep.js\nend\\\n\\#hash\n",
            "",
        );
        assert!(ignored(&rules, "logs/today"));
        assert!(
            !ignored(&rules, "logs"),
            "a file named like a directory rule"
        );
        assert!(ignored(&rules, "a/b.tmp"));
        assert!(!ignored(&rules, "a/keep.tmp"));
        assert!(ignored(&rules, "only-root"));
        assert!(!ignored(&rules, "a/only-root"));
        assert!(ignored(&rules, "dist/x.js"), "case does not matter");
        assert!(ignored(&rules, "lib/a.js"));
        assert!(
            !ignored(&rules, "lib/keep.js"),
            "a negation reaches into an ignored directory"
        );
        assert!(
            ignored(&rules, "end\\"),
            "a trailing backslash is kept, never a panic"
        );
        assert!(ignored(&rules, "#hash"));
    }
}
