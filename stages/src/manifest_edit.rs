//! Editing `package.json` text for `flowpm add`, `remove` and `update` without reformatting it.
//!
//! Users review these edits in diffs, so, like npm and pnpm, flowpm changes only the dependency
//! entries it must: indentation, line endings, the trailing newline, key order and any unusual
//! spacing elsewhere stay byte for byte. Re-serialising a parsed value cannot promise that, so
//! [`ManifestText`] scans the text for the spans of the top-level members and of the entries of
//! the dependency groups, and splices new text into them.
//!
//! ```
//! use std::path::Path;
//! use flowpm_stages::manifest_edit::ManifestText;
//! use flowpm_stages::plan::DependencyGroup;
//!
//! let mut manifest = ManifestText::parse("{\n    \"name\": \"app\"\n}\n", Path::new("package.json"))?;
//! manifest.set_dependency(DependencyGroup::Production, "react", "^18.2.0");
//! assert_eq!(
//!     manifest.into_text(),
//!     "{\n    \"name\": \"app\",\n    \"dependencies\": {\n        \"react\": \"^18.2.0\"\n    }\n}\n",
//! );
//! # Ok::<(), flowpm_stages::InstallError>(())
//! ```
//!
//! Behaviour:
//! - Setting a dependency in one group removes it from the other two: pnpm moves a dependency
//!   between groups rather than listing it twice.
//! - A changed spec keeps the entry's position. A new entry goes in alphabetical (byte) order if
//!   the group was sorted, else at the end, so hand-ordered groups are left as they were.
//! - A missing group is created after the last dependency group, else at the end of the file.
//! - Removing the last entry of a group leaves the group as `{}`, as pnpm does (npm deletes an
//!   emptied `dependencies`); it is the smaller edit and keeps the user's key order stable.
//! - Duplicate names in a group (readers keep the last) are collapsed: `set_dependency` keeps the
//!   first position, `remove_dependency` removes them all.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use crate::InstallError;
use crate::plan::DependencyGroup;

const GROUPS: [DependencyGroup; 3] = [
    DependencyGroup::Production,
    DependencyGroup::Development,
    DependencyGroup::Optional,
];

/// The text of a `package.json`, edited in place.
///
/// Each edit re-scans the text (a package.json is a few kilobytes) rather than keeping spans up
/// to date across splices: simpler, and impossible to get out of sync.
#[derive(Debug, Clone)]
pub struct ManifestText {
    text: String,
    /// `\r\n` if the file uses it anywhere, else `\n`.
    newline: &'static str,
    /// One level of indentation, as the file's first top-level key is indented.
    indent: String,
    /// The top-level object keeps its first key on the `{` line (minified or hand-packed): new
    /// groups are then written on one line too rather than expanded.
    compact: bool,
}

/// One `"key": value` member of an object, as byte offsets into the text.
#[derive(Debug)]
struct Member {
    key: String,
    /// From the key's opening quote to after its closing quote.
    key_span: Range<usize>,
    value_span: Range<usize>,
}

#[derive(Debug)]
struct Object {
    /// The offsets of `{` and `}`.
    open: usize,
    close: usize,
    members: Vec<Member>,
}

impl ManifestText {
    /// Checks that `text` is a JSON object whose dependency groups, if present, are objects;
    /// `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, InstallError> {
        let invalid = |message: String| InstallError::InvalidFile {
            path: path.to_path_buf(),
            message,
        };
        // serde_json rejects a byte order mark, which some Windows editors write.
        let json = text.strip_prefix('\u{feff}').unwrap_or(text);
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|error| invalid(error.to_string()))?;
        let Some(object) = value.as_object() else {
            return Err(invalid("the top level is not an object".into()));
        };
        for group in GROUPS {
            let key = group.lockfile_key();
            if object.get(key).is_some_and(|value| !value.is_object()) {
                return Err(invalid(format!("`{key}` is not an object")));
            }
        }
        let mut manifest = ManifestText {
            text: text.to_owned(),
            newline: if text.contains("\r\n") { "\r\n" } else { "\n" },
            indent: String::new(),
            compact: false,
        };
        let top = manifest.top();
        // The scanner keeps every occurrence of a key; serde_json kept only the last, so a
        // duplicated group would be ambiguous to edit.
        for group in GROUPS {
            let key = group.lockfile_key();
            if top.members.iter().filter(|m| m.key == key).count() > 1 {
                return Err(invalid(format!("`{key}` appears more than once")));
            }
        }
        manifest.compact = top
            .members
            .first()
            .is_some_and(|first| !manifest.text[top.open..first.key_span.start].contains('\n'));
        manifest.indent = match top.members.first() {
            Some(first) if !manifest.compact => {
                let outer = line_indent(&manifest.text, top.open);
                let inner = line_indent(&manifest.text, first.key_span.start);
                inner.strip_prefix(outer).unwrap_or(inner).to_owned()
            }
            _ => String::new(),
        };
        if manifest.indent.is_empty() {
            manifest.indent = "  ".to_owned();
        }
        Ok(manifest)
    }

    /// Sets `name` to `spec` in `group`, removing it from the other dependency groups.
    pub fn set_dependency(&mut self, group: DependencyGroup, name: &str, spec: &str) {
        for other in GROUPS.into_iter().filter(|&other| other != group) {
            while self.remove_from(other, name) {}
        }
        let spec = json_string(spec);
        loop {
            let Some((_, object)) = self.group(group) else {
                return self.insert_group(group, name, &spec);
            };
            let hits: Vec<&Member> = object.members.iter().filter(|m| m.key == name).collect();
            match hits[..] {
                [] => {
                    let keys: Vec<&str> = object.members.iter().map(|m| m.key.as_str()).collect();
                    let index = if keys.is_sorted() {
                        keys.partition_point(|key| *key < name)
                    } else {
                        keys.len()
                    };
                    let member = format!("{}{}{spec}", json_string(name), self.colon(&object));
                    return self.insert_member(&object, index, &member);
                }
                [only] => return self.splice(only.value_span.clone(), &spec),
                // Collapse duplicates from the back, then set the first one.
                [.., _] => {
                    let last = object.members.iter().rposition(|m| m.key == name);
                    self.remove_member(&object, last.unwrap_or_default());
                }
            }
        }
    }

    /// Removes `name` from the three dependency groups (not `peerDependencies`); returns whether
    /// it was in any of them.
    pub fn remove_dependency(&mut self, name: &str) -> bool {
        let mut removed = false;
        for group in GROUPS {
            while self.remove_from(group, name) {
                removed = true;
            }
        }
        removed
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }

    fn remove_from(&mut self, group: DependencyGroup, name: &str) -> bool {
        let Some((_, object)) = self.group(group) else {
            return false;
        };
        match object.members.iter().position(|m| m.key == name) {
            Some(index) => {
                self.remove_member(&object, index);
                true
            }
            None => false,
        }
    }

    /// Adds `group` with one entry, after the last existing dependency group.
    fn insert_group(&mut self, group: DependencyGroup, name: &str, spec: &str) {
        let top = self.top();
        let index = top
            .members
            .iter()
            .rposition(|m| GROUPS.iter().any(|g| g.lockfile_key() == m.key))
            .map_or(top.members.len(), |last| last + 1);
        let colon = self.colon(&top);
        let entry = format!("{}{colon}{spec}", json_string(name));
        let value = if self.compact {
            format!("{{{entry}}}")
        } else {
            let outer = self.member_indent(&top);
            let nl = self.newline;
            format!("{{{nl}{outer}{}{entry}{nl}{outer}}}", self.indent)
        };
        let key = json_string(group.lockfile_key());
        self.insert_member(&top, index, &format!("{key}{colon}{value}"));
    }

    /// Inserts `member` (`"key": value`) so that it becomes `object.members[index]`, reusing
    /// the separator the object already has between members.
    fn insert_member(&mut self, object: &Object, index: usize, member: &str) {
        let members = &object.members;
        let Some(first) = members.first() else {
            let content = if self.compact {
                member.to_owned()
            } else {
                let nl = self.newline;
                let inner = self.member_indent(object);
                let outer = line_indent(&self.text, object.open);
                format!("{nl}{inner}{member}{nl}{outer}")
            };
            return self.splice(object.open + 1..object.close, &content);
        };
        let separator = match members.get(1) {
            Some(second) => self.text[first.value_span.end..second.key_span.start].to_owned(),
            None if self.is_multiline(object) => {
                format!(",{}{}", self.newline, self.member_indent(object))
            }
            None if self.compact => ",".to_owned(),
            None => ", ".to_owned(),
        };
        match members.get(index) {
            Some(next) => {
                let at = next.key_span.start;
                self.splice(at..at, &format!("{member}{separator}"));
            }
            None => {
                let at = members[members.len() - 1].value_span.end;
                self.splice(at..at, &format!("{separator}{member}"));
            }
        }
    }

    fn remove_member(&mut self, object: &Object, index: usize) {
        let members = &object.members;
        let range = if members.len() == 1 {
            // Also drop the whitespace that laid out the entry: the group becomes `{}`.
            object.open + 1..object.close
        } else if let Some(next) = members.get(index + 1) {
            // The entry, its comma and the whitespace before the next key, whose own
            // indentation is the removed entry's.
            members[index].key_span.start..next.key_span.start
        } else {
            // The last entry: from the end of the previous value, taking the comma.
            members[index - 1].value_span.end..members[index].value_span.end
        };
        self.splice(range, "");
    }

    fn splice(&mut self, range: Range<usize>, with: &str) {
        self.text.replace_range(range, with);
        debug_assert!(
            serde_json::from_str::<serde_json::Value>(
                self.text.strip_prefix('\u{feff}').unwrap_or(&self.text)
            )
            .is_ok(),
            "edit produced invalid JSON: {}",
            self.text
        );
    }

    fn top(&self) -> Object {
        let bytes = self.text.as_bytes();
        let start = if self.text.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        };
        scan_object(&self.text, skip_whitespace(bytes, start))
    }

    /// The group's index among the top-level members and its object.
    fn group(&self, group: DependencyGroup) -> Option<(usize, Object)> {
        let top = self.top();
        let index = top
            .members
            .iter()
            .position(|m| m.key == group.lockfile_key())?;
        let object = scan_object(&self.text, top.members[index].value_span.start);
        Some((index, object))
    }

    /// The text between a key and its value (`": "`), as the object or else the file writes it.
    fn colon(&self, object: &Object) -> String {
        let top;
        let sample = match object.members.first() {
            Some(first) => first,
            None => {
                top = self.top();
                match top.members.first() {
                    Some(first) => first,
                    None => return if self.compact { ":" } else { ": " }.to_owned(),
                }
            }
        };
        self.text[sample.key_span.end..sample.value_span.start].to_owned()
    }

    /// The indentation of the object's members' lines (existing, or one level in).
    fn member_indent(&self, object: &Object) -> String {
        match object.members.first() {
            Some(first) if self.is_multiline(object) => {
                line_indent(&self.text, first.key_span.start).to_owned()
            }
            _ => format!("{}{}", line_indent(&self.text, object.open), self.indent),
        }
    }

    /// Whether the first member is on a line of its own (not `{"a": "1"}`).
    fn is_multiline(&self, object: &Object) -> bool {
        object
            .members
            .first()
            .is_some_and(|first| self.text[object.open..first.key_span.start].contains('\n'))
    }
}

impl fmt::Display for ManifestText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn json_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// The spaces and tabs that start the line holding `at`.
fn line_indent(text: &str, at: usize) -> &str {
    let start = text[..at].rfind('\n').map_or(0, |newline| newline + 1);
    let line = &text[start..at];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

// The scanner below only runs on text serde_json has accepted (checked in `parse`, kept valid
// by every splice), so it skips error handling: it only has to find where things end.

/// Scans the object whose `{` is at `open`.
fn scan_object(text: &str, open: usize) -> Object {
    let bytes = text.as_bytes();
    let mut members = Vec::new();
    let mut at = skip_whitespace(bytes, open + 1);
    while bytes[at] != b'}' {
        let key_span = at..skip_string(bytes, at);
        // Decoding handles escapes in keys (`"\u0061"` is `a`).
        let key = serde_json::from_str(&text[key_span.clone()]).unwrap_or_default();
        // Past the `:`.
        let value_start = skip_whitespace(bytes, skip_whitespace(bytes, key_span.end) + 1);
        let value_span = value_start..skip_value(bytes, value_start);
        members.push(Member {
            key,
            key_span,
            value_span: value_span.clone(),
        });
        at = skip_whitespace(bytes, value_span.end);
        if bytes[at] == b',' {
            at = skip_whitespace(bytes, at + 1);
        }
    }
    Object {
        open,
        close: at,
        members,
    }
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// From an opening quote to after the closing one. Multi-byte UTF-8 never contains `"` or `\`
/// bytes, so scanning bytes is safe.
fn skip_string(bytes: &[u8], mut at: usize) -> usize {
    at += 1;
    loop {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            _ => at += 1,
        }
    }
}

fn skip_value(bytes: &[u8], mut at: usize) -> usize {
    match bytes[at] {
        b'"' => skip_string(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match bytes[at] {
                    b'"' => at = skip_string(bytes, at),
                    b'{' | b'[' => {
                        depth += 1;
                        at += 1;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        at += 1;
                        if depth == 0 {
                            return at;
                        }
                    }
                    _ => at += 1,
                }
            }
        }
        // Numbers, `true`, `false`, `null`.
        _ => {
            while !matches!(
                bytes.get(at),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                at += 1;
            }
            at
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use DependencyGroup::{Development, Optional, Production};

    /// Applies `edit` to `input` and checks the result is still JSON.
    fn edit(input: &str, edit: impl FnOnce(&mut ManifestText)) -> String {
        let mut manifest = ManifestText::parse(input, Path::new("package.json")).unwrap();
        edit(&mut manifest);
        let text = manifest.into_text();
        serde_json::from_str::<serde_json::Value>(text.trim_start_matches('\u{feff}'))
            .unwrap_or_else(|error| panic!("{error} in:\n{text}"));
        text
    }

    const TWO_SPACES: &str = r#"{
  "name": "app",
  "dependencies": {
    "lodash": "^4.17.21",
    "react": "^18.2.0"
  },
  "scripts": {
    "build": "tsc"
  }
}
"#;

    #[test]
    fn two_spaces_sorted_insert_and_replace() {
        let out = edit(TWO_SPACES, |m| {
            m.set_dependency(Production, "next", "14.0.0");
            m.set_dependency(Production, "react", "^18.3.0");
            m.set_dependency(Production, "axios", "1");
        });
        assert_eq!(
            out,
            r#"{
  "name": "app",
  "dependencies": {
    "axios": "1",
    "lodash": "^4.17.21",
    "next": "14.0.0",
    "react": "^18.3.0"
  },
  "scripts": {
    "build": "tsc"
  }
}
"#
        );
    }

    #[test]
    fn four_spaces_new_group_after_last_group() {
        let input = TWO_SPACES.replace("  ", "    ");
        let out = edit(&input, |m| {
            m.set_dependency(Development, "vitest", "^1.0.0")
        });
        let expected = r#"{
  "name": "app",
  "dependencies": {
    "lodash": "^4.17.21",
    "react": "^18.2.0"
  },
  "devDependencies": {
    "vitest": "^1.0.0"
  },
  "scripts": {
    "build": "tsc"
  }
}
"#;
        assert_eq!(out, expected.replace("  ", "    "));
    }

    #[test]
    fn tabs_and_crlf() {
        let input = TWO_SPACES.replace("  ", "\t").replace('\n', "\r\n");
        let out = edit(&input, |m| {
            m.set_dependency(Production, "zod", "3");
            m.set_dependency(Optional, "fsevents", "2");
        });
        let expected = r#"{
  "name": "app",
  "dependencies": {
    "lodash": "^4.17.21",
    "react": "^18.2.0",
    "zod": "3"
  },
  "optionalDependencies": {
    "fsevents": "2"
  },
  "scripts": {
    "build": "tsc"
  }
}
"#;
        assert_eq!(out, expected.replace("  ", "\t").replace('\n', "\r\n"));
    }

    #[test]
    fn no_trailing_newline_and_group_at_end() {
        let out = edit("{\n  \"name\": \"app\"\n}", |m| {
            m.set_dependency(Production, "a", "1")
        });
        assert_eq!(
            out,
            "{\n  \"name\": \"app\",\n  \"dependencies\": {\n    \"a\": \"1\"\n  }\n}"
        );
    }

    #[test]
    fn empty_manifest() {
        let out = edit("{}\n", |m| m.set_dependency(Development, "a", "1"));
        assert_eq!(
            out,
            "{\n  \"devDependencies\": {\n    \"a\": \"1\"\n  }\n}\n"
        );
    }

    #[test]
    fn empty_group_expands() {
        let input =
            "{\n    \"name\": \"app\",\n    \"dependencies\": {},\n    \"private\": true\n}\n";
        let out = edit(input, |m| m.set_dependency(Production, "a", "1"));
        assert_eq!(
            out,
            "{\n    \"name\": \"app\",\n    \"dependencies\": {\n        \"a\": \"1\"\n    },\n    \"private\": true\n}\n"
        );
    }

    #[test]
    fn single_line_group_stays_on_one_line() {
        let input = "{\n  \"dependencies\": {\"b\": \"1\"},\n  \"x\": 1\n}\n";
        let out = edit(input, |m| {
            m.set_dependency(Production, "c", "2");
            m.set_dependency(Production, "a", "3");
        });
        assert_eq!(
            out,
            "{\n  \"dependencies\": {\"a\": \"3\", \"b\": \"1\", \"c\": \"2\"},\n  \"x\": 1\n}\n"
        );
    }

    #[test]
    fn minified_manifest_stays_minified() {
        let out = edit(r#"{"name":"app","dependencies":{"a":"1"}}"#, |m| {
            m.set_dependency(Production, "b", "2");
            m.set_dependency(Development, "c", "3");
        });
        assert_eq!(
            out,
            r#"{"name":"app","dependencies":{"a":"1","b":"2"},"devDependencies":{"c":"3"}}"#
        );
    }

    #[test]
    fn moving_between_groups() {
        let input = r#"{
  "dependencies": {
    "a": "1",
    "typescript": "5"
  },
  "devDependencies": {
    "b": "1"
  }
}
"#;
        let out = edit(input, |m| {
            m.set_dependency(Development, "typescript", "^5.4.0")
        });
        assert_eq!(
            out,
            r#"{
  "dependencies": {
    "a": "1"
  },
  "devDependencies": {
    "b": "1",
    "typescript": "^5.4.0"
  }
}
"#
        );
    }

    #[test]
    fn escapes_in_values_and_tricky_strings() {
        // Braces, quotes and escapes in other strings must not confuse the scanner.
        let input = r#"{
  "description": "a \"quoted\" {brace} [bracket], \\",
  "config": {"x": ["}", {"y": "\"{"}], "dependencies": {}},
  "dependencies": {
    "\u0061": "1"
  }
}
"#;
        let out = edit(input, |m| {
            m.set_dependency(Production, "a", "file:\"odd\\path\"\n");
            m.set_dependency(Production, "b", "é✓");
        });
        assert_eq!(
            out,
            r#"{
  "description": "a \"quoted\" {brace} [bracket], \\",
  "config": {"x": ["}", {"y": "\"{"}], "dependencies": {}},
  "dependencies": {
    "\u0061": "file:\"odd\\path\"\n",
    "b": "é✓"
  }
}
"#
        );
    }

    #[test]
    fn unsorted_group_appends() {
        let input = "{\n  \"dependencies\": {\n    \"z\": \"1\",\n    \"b\": \"1\"\n  }\n}\n";
        let out = edit(input, |m| m.set_dependency(Production, "a", "1"));
        assert_eq!(
            out,
            "{\n  \"dependencies\": {\n    \"z\": \"1\",\n    \"b\": \"1\",\n    \"a\": \"1\"\n  }\n}\n"
        );
    }

    #[test]
    fn remove_first_middle_last_and_only() {
        let input = r#"{
  "dependencies": {
    "a": "1",
    "b": "2",
    "c": "3",
    "d": "4"
  },
  "devDependencies": {
    "e": "5"
  },
  "peerDependencies": {
    "a": "1"
  }
}
"#;
        let mut removed = Vec::new();
        let out = edit(input, |m| {
            for name in ["a", "c", "d", "e", "missing"] {
                removed.push(m.remove_dependency(name));
            }
        });
        assert_eq!(removed, [true, true, true, true, false]);
        assert_eq!(
            out,
            r#"{
  "dependencies": {
    "b": "2"
  },
  "devDependencies": {},
  "peerDependencies": {
    "a": "1"
  }
}
"#
        );
    }

    #[test]
    fn remove_from_single_line_group() {
        let input = "{\"dependencies\": {\"a\": \"1\", \"b\": \"2\"}}";
        let out = edit(input, |m| {
            m.remove_dependency("b");
        });
        assert_eq!(out, "{\"dependencies\": {\"a\": \"1\"}}");
    }

    #[test]
    fn duplicates_collapse() {
        let input = "{\n  \"dependencies\": {\n    \"a\": \"1\",\n    \"b\": \"2\",\n    \"a\": \"3\"\n  }\n}\n";
        let out = edit(input, |m| m.set_dependency(Production, "a", "4"));
        assert_eq!(
            out,
            "{\n  \"dependencies\": {\n    \"a\": \"4\",\n    \"b\": \"2\"\n  }\n}\n"
        );
    }

    #[test]
    fn byte_order_mark_is_kept() {
        let out = edit("\u{feff}{}", |m| m.set_dependency(Production, "a", "1"));
        assert_eq!(
            out,
            "\u{feff}{\n  \"dependencies\": {\n    \"a\": \"1\"\n  }\n}"
        );
    }

    #[test]
    fn invalid_files_name_the_path() {
        for (input, message) in [
            ("{\"a\": ", "EOF while parsing"),
            ("[]", "the top level is not an object"),
            ("{\"dependencies\": []}", "`dependencies` is not an object"),
            (
                "{\"dependencies\": {}, \"dependencies\": {}}",
                "`dependencies` appears more than once",
            ),
        ] {
            let error = ManifestText::parse(input, Path::new("app/package.json")).unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains("app/package.json") && text.contains(message),
                "{text}"
            );
        }
    }
}
