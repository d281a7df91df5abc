//! Writes a [`Lockfile`] as pnpm 12 does, byte for byte.
//!
//! pnpm sorts the file (`sortLockfileKeys`) and dumps it with js-yaml 4 (pnpm's fork adds blank
//! lines and flow style). What that amounts to:
//! - a blank line before every top-level key, and before every entry of `importers`,
//!   `packages` and `snapshots`;
//! - entry fields in a fixed order (resolution, name, version, engines, cpu, os, libc,
//!   deprecated, hasBin, peerDependencies, peerDependenciesMeta, dependencies,
//!   optionalDependencies, transitivePeerDependencies, optional); `bundledDependencies` comes
//!   last because pnpm's priority table spells it `bundleDependencies`, so it falls through to
//!   the alphabetical tail;
//! - `resolution`, `engines`, `cpu`, `os` and `libc` in flow style, without padding;
//! - scalars quoted by js-yaml's rules ([`scalar`]).
//!
//! Map keys sort by code point here; pnpm compares UTF-16 units, which differs only between
//! characters above U+FFFF and those in U+E000..=U+FFFF (never seen in npm names).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::lockfile::{
    BundledDependencies, Importer, ImporterDependency, Lockfile, LockfileVersion, PackageEntry,
    Resolution, SnapshotEntry,
};

/// Where a scalar is written: flow collections (`{...}`, `[...]`) also forbid `,[]{}` in
/// plain scalars.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Context {
    Block,
    Flow,
}

pub fn to_yaml(lockfile: &Lockfile) -> String {
    let mut out = String::new();
    let version = match &lockfile.lockfile_version {
        LockfileVersion::Number(number) => number.to_string(),
        other => scalar(&other.as_text(), Context::Block).into_owned(),
    };
    let _ = writeln!(out, "lockfileVersion: {version}");

    if let Some(settings) = &lockfile.settings {
        out.push_str("\nsettings:\n");
        let flags = [
            ("autoInstallPeers", settings.auto_install_peers),
            (
                "excludeLinksFromLockfile",
                settings.exclude_links_from_lockfile,
            ),
            (
                "injectWorkspacePackages",
                settings.inject_workspace_packages,
            ),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                let _ = writeln!(out, "  {key}: {value}");
            }
        }
        if let Some(length) = settings.peers_suffix_max_length {
            let _ = writeln!(out, "  peersSuffixMaxLength: {length}");
        }
    }
    if !lockfile.catalogs.is_empty() {
        out.push_str("\ncatalogs:\n");
        for (catalog, entries) in &lockfile.catalogs {
            let _ = writeln!(out, "  {}:", scalar(catalog, Context::Block));
            write_specified(&mut out, 2, entries);
        }
    }
    if !lockfile.overrides.is_empty() {
        out.push_str("\noverrides:\n");
        let pairs = lockfile
            .overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        write_map(&mut out, 1, pairs);
    }
    if let Some(value) = &lockfile.package_extensions_checksum {
        let _ = writeln!(
            out,
            "\npackageExtensionsChecksum: {}",
            scalar(value, Context::Block)
        );
    }
    if !lockfile.patched_dependencies.is_empty() {
        out.push_str("\npatchedDependencies:\n");
        let pairs = lockfile
            .patched_dependencies
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        write_map(&mut out, 1, pairs);
    }
    if let Some(value) = &lockfile.pnpmfile_checksum {
        let _ = writeln!(out, "\npnpmfileChecksum: {}", scalar(value, Context::Block));
    }
    write_section(&mut out, "importers", &lockfile.importers, write_importer);
    write_section(&mut out, "packages", &lockfile.packages, write_package);
    write_section(&mut out, "snapshots", &lockfile.snapshots, write_snapshot);
    out
}

/// A loose section: each entry is preceded by a blank line; an empty entry is `{}`.
fn write_section<T>(
    out: &mut String,
    name: &str,
    entries: &BTreeMap<String, T>,
    write_entry: fn(&mut String, &T),
) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{name}:");
    for (key, entry) in entries {
        let mut body = String::new();
        write_entry(&mut body, entry);
        let key = scalar(key, Context::Block);
        if body.is_empty() {
            let _ = writeln!(out, "\n  {key}: {{}}");
        } else {
            let _ = write!(out, "\n  {key}:\n{body}");
        }
    }
}

fn write_importer(out: &mut String, importer: &Importer) {
    // Alphabetical: pnpm no longer gives these keys a priority.
    for (key, dependencies) in [
        ("dependencies", &importer.dependencies),
        ("devDependencies", &importer.dev_dependencies),
        ("optionalDependencies", &importer.optional_dependencies),
    ] {
        if dependencies.is_empty() {
            continue;
        }
        let _ = writeln!(out, "    {key}:");
        write_specified(out, 3, dependencies);
    }
}

/// `name:` then its `specifier` and `version`, at `depth` levels of indentation (importers
/// and catalogs).
fn write_specified(
    out: &mut String,
    depth: usize,
    dependencies: &BTreeMap<String, ImporterDependency>,
) {
    let indent = "  ".repeat(depth);
    for (name, ImporterDependency { specifier, version }) in dependencies {
        let _ = writeln!(out, "{indent}{}:", scalar(name, Context::Block));
        let _ = writeln!(
            out,
            "{indent}  specifier: {}",
            scalar(specifier, Context::Block)
        );
        let _ = writeln!(
            out,
            "{indent}  version: {}",
            scalar(version, Context::Block)
        );
    }
}

fn write_package(out: &mut String, package: &PackageEntry) {
    let resolution = resolution_pairs(&package.resolution);
    if !resolution.is_empty() {
        let _ = writeln!(out, "    resolution: {}", flow_map(resolution));
    }
    for (key, value) in [("name", &package.name), ("version", &package.version)] {
        if let Some(value) = value {
            let _ = writeln!(out, "    {key}: {}", scalar(value, Context::Block));
        }
    }
    if !package.engines.is_empty() {
        let engines = package
            .engines
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let _ = writeln!(out, "    engines: {}", flow_map(engines));
    }
    for (key, list) in [
        ("cpu", &package.cpu),
        ("os", &package.os),
        ("libc", &package.libc),
    ] {
        if let Some(list) = list {
            let _ = writeln!(out, "    {key}: {}", flow_list(list));
        }
    }
    if let Some(deprecated) = &package.deprecated {
        let _ = writeln!(
            out,
            "    deprecated: {}",
            scalar(deprecated, Context::Block)
        );
    }
    if package.has_bin {
        out.push_str("    hasBin: true\n");
    }
    write_dependencies(out, "peerDependencies", &package.peer_dependencies);
    if !package.peer_dependencies_meta.is_empty() {
        out.push_str("    peerDependenciesMeta:\n");
        for (name, meta) in &package.peer_dependencies_meta {
            let _ = writeln!(out, "      {}:", scalar(name, Context::Block));
            let _ = writeln!(out, "        optional: {}", meta.optional);
        }
    }
    match &package.bundled_dependencies {
        Some(BundledDependencies::Names(names)) if !names.is_empty() => {
            out.push_str("    bundledDependencies:\n");
            for name in names {
                let _ = writeln!(out, "      - {}", scalar(name, Context::Block));
            }
        }
        Some(BundledDependencies::Names(_)) => out.push_str("    bundledDependencies: []\n"),
        Some(BundledDependencies::All(all)) => {
            let _ = writeln!(out, "    bundledDependencies: {all}");
        }
        None => {}
    }
}

fn write_snapshot(out: &mut String, snapshot: &SnapshotEntry) {
    write_dependencies(out, "dependencies", &snapshot.dependencies);
    write_dependencies(out, "optionalDependencies", &snapshot.optional_dependencies);
    if !snapshot.transitive_peer_dependencies.is_empty() {
        out.push_str("    transitivePeerDependencies:\n");
        for name in &snapshot.transitive_peer_dependencies {
            let _ = writeln!(out, "      - {}", scalar(name, Context::Block));
        }
    }
    if snapshot.optional {
        out.push_str("    optional: true\n");
    }
}

fn write_dependencies(out: &mut String, key: &str, map: &BTreeMap<String, String>) {
    if !map.is_empty() {
        let _ = writeln!(out, "    {key}:");
        write_map(out, 3, map.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
}

fn write_map<'a>(out: &mut String, level: usize, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    for (key, value) in pairs {
        let key = scalar(key, Context::Block);
        let value = scalar(value, Context::Block);
        let _ = writeln!(out, "{:indent$}{key}: {value}", "", indent = level * 2);
    }
}

/// The resolution's fields in sorted key order (pnpm sorts nested maps too).
fn resolution_pairs(resolution: &Resolution) -> Vec<(&str, &str)> {
    [
        ("commit", &resolution.commit),
        ("directory", &resolution.directory),
        ("integrity", &resolution.integrity),
        ("path", &resolution.path),
        ("repo", &resolution.repo),
        ("tarball", &resolution.tarball),
        ("type", &resolution.kind),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some((key, value.as_deref()?)))
    .collect()
}

fn flow_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let items: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{}: {}", scalar(k, Context::Flow), scalar(v, Context::Flow)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn flow_list(items: &[String]) -> String {
    let items: Vec<Cow<str>> = items
        .iter()
        .map(|item| scalar(item, Context::Flow))
        .collect();
    format!("[{}]", items.join(", "))
}

/// A string as js-yaml 4 dumps it with pnpm's options (no line folding, no YAML 1.1 compat,
/// single quotes preferred): plain when that reads back as the same string, single-quoted when
/// only printable characters are involved, double-quoted with escapes otherwise.
pub fn scalar(value: &str, context: Context) -> Cow<'_, str> {
    if value.is_empty() {
        return Cow::Borrowed("''");
    }
    if !value.chars().all(is_printable) {
        return Cow::Owned(double_quoted(value));
    }
    let first = value.chars().next().is_some_and(is_plain_first);
    let last = value
        .chars()
        .next_back()
        .is_some_and(|c| !is_white(c) && c != ':');
    let mut previous = None;
    let middle = value.chars().all(|c| {
        let safe = is_plain(c, previous, context);
        previous = Some(c);
        safe
    });
    if first && last && middle && !resolves_to_other_type(value) {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("'{}'", value.replace('\'', "''")))
    }
}

/// js-yaml's `isPrintable`: the YAML printable set minus U+2028/9 and the BOM (C0, DEL,
/// C1 including U+0085 and U+00A0 are not).
fn is_printable(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7e}' | '\u{a1}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

fn is_white(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// YAML's c-indicator characters (and whitespace) cannot start a plain scalar.
fn is_plain_first(c: char) -> bool {
    !is_white(c) && !"-?:,[]{}#&*!|=>'\"%@`".contains(c)
}

/// js-yaml's `isPlainSafe`: `#` only right after a non-space, `:` only before a non-space.
fn is_plain(c: char, previous: Option<char>, context: Context) -> bool {
    let non_space = |c: char| !is_white(c);
    let ns = non_space(c);
    let allowed = context == Context::Block || !",[]{}".contains(c);
    (allowed && c != '#' && (ns || previous != Some(':')))
        || (previous.is_some_and(non_space) && c == '#')
        || (previous == Some(':') && ns)
}

fn double_quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        let escape = match c {
            '\0' => "\\0",
            '\u{7}' => "\\a",
            '\u{8}' => "\\b",
            '\t' => "\\t",
            '\n' => "\\n",
            '\u{b}' => "\\v",
            '\u{c}' => "\\f",
            '\r' => "\\r",
            '\u{1b}' => "\\e",
            '"' => "\\\"",
            '\\' => "\\\\",
            '\u{85}' => "\\N",
            '\u{a0}' => "\\_",
            '\u{2028}' => "\\L",
            '\u{2029}' => "\\P",
            c if is_printable(c) => {
                out.push(c);
                continue;
            }
            c => {
                let code = u32::from(c);
                let _ = match code {
                    ..=0xff => write!(out, "\\x{code:02X}"),
                    0x100..=0xffff => write!(out, "\\u{code:04X}"),
                    _ => write!(out, "\\U{code:08X}"),
                };
                continue;
            }
        };
        out.push_str(escape);
    }
    out.push('"');
    out
}

/// Whether js-yaml's default schema would read the plain scalar as something other than a
/// string: null, bool, int, float, timestamp or the merge key.
fn resolves_to_other_type(value: &str) -> bool {
    matches!(
        value,
        "~" | "null"
            | "Null"
            | "NULL"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "<<"
    ) || is_int(value)
        || is_float(value)
        || is_timestamp(value)
}

/// js-yaml's int: optional sign, then `0`, `0b…`, `0x…`, `0o…` or decimal digits, with `_`
/// allowed between digits (but not first or last).
fn is_int(value: &str) -> bool {
    let unsigned = value.strip_prefix(['-', '+']).unwrap_or(value);
    if unsigned == "0" {
        return true;
    }
    let digits_of = |rest: &str, radix: u32| {
        rest.chars().any(|c| c.is_digit(radix))
            && rest.chars().all(|c| c == '_' || c.is_digit(radix))
            && !rest.ends_with('_')
    };
    for (prefix, radix) in [("0b", 2), ("0x", 16), ("0o", 8)] {
        if let Some(rest) = unsigned.strip_prefix(prefix) {
            return digits_of(rest, radix);
        }
    }
    !unsigned.starts_with('_') && digits_of(unsigned, 10)
}

/// js-yaml's float: `[-+]?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?`, `\.[0-9_]+` with the
/// same exponent, `[-+]?.inf` and `.nan` (three spellings each), not ending in `_`.
fn is_float(value: &str) -> bool {
    if value.ends_with('_') {
        return false;
    }
    let unsigned = value.strip_prefix(['-', '+']).unwrap_or(value);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(value, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let mut cursor = Cursor(unsigned.as_bytes());
    if unsigned.starts_with('.') {
        // The `.5` form takes no sign.
        if unsigned.len() != value.len() {
            return false;
        }
        cursor.eat(b'.');
        if cursor.run(|b| b.is_ascii_digit() || b == b'_') == 0 {
            return false;
        }
    } else {
        if !cursor.exactly(1, |b| b.is_ascii_digit()) {
            return false;
        }
        cursor.run(|b| b.is_ascii_digit() || b == b'_');
        if cursor.eat(b'.') {
            cursor.run(|b| b.is_ascii_digit() || b == b'_');
        }
    }
    if cursor.eat(b'e') || cursor.eat(b'E') {
        let _ = cursor.eat(b'-') || cursor.eat(b'+');
        if cursor.run(|b| b.is_ascii_digit()) == 0 {
            return false;
        }
    }
    cursor.0.is_empty()
}

/// js-yaml's timestamp: `YYYY-MM-DD`, or `YYYY-M-D` followed by `T`/`t`/blanks, `H:MM:SS`,
/// optional fraction and optional `Z` / `±H[:MM]` zone.
fn is_timestamp(value: &str) -> bool {
    let mut cursor = Cursor(value.as_bytes());
    let digit = |b: u8| b.is_ascii_digit();
    if !(cursor.exactly(4, digit) && cursor.eat(b'-')) {
        return false;
    }
    let month = cursor.run(digit);
    if !(matches!(month, 1 | 2) && cursor.eat(b'-')) {
        return false;
    }
    let day = cursor.run(digit);
    if cursor.0.is_empty() {
        return month == 2 && day == 2;
    }
    if !matches!(day, 1 | 2) || !(cursor.eat(b'T') || cursor.eat(b't') || cursor.run(is_blank) > 0)
    {
        return false;
    }
    if !(matches!(cursor.run(digit), 1 | 2) && cursor.eat(b':') && cursor.exactly(2, digit)) {
        return false;
    }
    if !(cursor.eat(b':') && cursor.exactly(2, digit)) {
        return false;
    }
    if cursor.eat(b'.') {
        cursor.run(digit);
    }
    cursor.run(is_blank);
    if cursor.eat(b'Z') {
        return cursor.0.is_empty();
    }
    if cursor.eat(b'-') || cursor.eat(b'+') {
        if !matches!(cursor.run(digit), 1 | 2) {
            return false;
        }
        if cursor.eat(b':') && !cursor.exactly(2, digit) {
            return false;
        }
    }
    cursor.0.is_empty()
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The unread rest of a scalar, for the hand-written matchers above.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.0.first() == Some(&byte);
        if matched {
            self.0 = &self.0[1..];
        }
        matched
    }

    /// Consumes the longest prefix of matching bytes and returns its length.
    fn run(&mut self, matches: impl Fn(u8) -> bool) -> usize {
        let length = self.0.iter().take_while(|&&b| matches(b)).count();
        self.0 = &self.0[length..];
        length
    }

    fn exactly(&mut self, count: usize, matches: impl Fn(u8) -> bool) -> bool {
        let ok = self.0.len() >= count && self.0[..count].iter().all(|&b| matches(b));
        if ok {
            self.0 = &self.0[count..];
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn fixture(project: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../fixtures/projects/{project}/pnpm-lock.yaml"))
    }

    fn assert_round_trip(path: &Path) {
        let text = std::fs::read_to_string(path).unwrap();
        let written = to_yaml(&Lockfile::parse(&text, path).unwrap());
        if written != text {
            let line = written.lines().zip(text.lines()).position(|(a, b)| a != b);
            panic!(
                "{} differs from line {:?}",
                path.display(),
                line.map(|l| l + 1)
            );
        }
    }

    #[test]
    fn writes_the_fixture_lockfiles_back_byte_for_byte() {
        for project in ["graph", "realworld", "example"] {
            assert_round_trip(&fixture(project));
        }
    }

    /// Fields the fixtures lack. pnpm 12.21.0 wrote this file (a `file:` tarball whose manifest
    /// has them, workspace settings, overrides) except `deprecated`, `transitivePeerDependencies`
    /// and `optional`, added by hand where pnpm's key order puts them.
    #[test]
    fn writes_rarer_fields_as_pnpm_does() {
        let text = r#"lockfileVersion: '9.0'

settings:
  autoInstallPeers: false
  excludeLinksFromLockfile: false
  injectWorkspacePackages: true
  peersSuffixMaxLength: 500

overrides:
  foo: npm:bar@^1
  '@x/y>z': 1.0.0

importers:

  .:
    dependencies:
      tricky:
        specifier: file:src/tricky-1.0.0.tgz
        version: file:src/tricky-1.0.0.tgz
    devDependencies:
      b:
        specifier: workspace:^
        version: link:b
    optionalDependencies:
      c:
        specifier: link:c
        version: link:c

  b: {}

packages:

  tricky@file:src/tricky-1.0.0.tgz:
    resolution: {integrity: sha512-yiqT==, tarball: file:src/tricky-1.0.0.tgz}
    version: 1.0.0
    engines: {'a,b': '[x]', node: '>=12', npm: 1.2.8000 || >= 1.4.16}
    cpu: [x64, arm64]
    os: [linux]
    libc: [glibc]
    deprecated: 'Use foo: instead, see #12'
    hasBin: true
    peerDependencies:
      apeer: '>=1'
      zpeer: '*'
    peerDependenciesMeta:
      zpeer:
        optional: true
    bundledDependencies:
      - zz
      - aa

snapshots:

  tricky@file:src/tricky-1.0.0.tgz:
    dependencies:
      dep2: file:src2/dep2-1.0.0.tgz
    transitivePeerDependencies:
      - supports-color
    optional: true
"#;
        let lockfile = Lockfile::parse(text, Path::new("pnpm-lock.yaml")).unwrap();
        assert_eq!(to_yaml(&lockfile), text);
    }

    /// Importer keys as pnpm 12.21.0 wrote them for workspace folders with these names.
    #[test]
    fn quotes_scalars_as_pnpm_does() {
        let cases = [
            ("'q'", "'''q'''"),
            ("+.5", "+.5"),
            ("0b101", "'0b101'"),
            ("1.0", "'1.0'"),
            ("2001-01-01", "'2001-01-01'"),
            ("<<", "'<<'"),
            ("=1.0.0", "'=1.0.0'"),
            ("?x", "'?x'"),
            ("@at", "'@at'"),
            ("[x", "'[x'"),
            ("a#b", "a#b"),
            ("a'b", "a'b"),
            ("a: b", "'a: b'"),
            ("tab\u{9}x", "\"tab\\tx\""),
            ("x y", "x y"),
            ("yes", "yes"),
            ("~", "'~'"),
            ("é", "é"),
            ("\u{7}b", "\"\\ab\""),
            ("!x", "'!x'"),
            ("\"x", "'\"x'"),
            ("#x", "'#x'"),
            ("%", "'%'"),
            ("%x", "'%x'"),
            ("&x", "'&x'"),
            ("*x", "'*x'"),
            ("+1", "'+1'"),
            ("- a", "'- a'"),
            ("---", "'---'"),
            ("-.inf", "'-.inf'"),
            ("-1", "'-1'"),
            ("-a", "'-a'"),
            ("0.", "'0.'"),
            ("012", "'012'"),
            ("0b1", "'0b1'"),
            ("0o17", "'0o17'"),
            ("0x1F", "'0x1F'"),
            ("1.", "'1.'"),
            ("1.0.0", "1.0.0"),
            ("1.2.3-beta.1+build", "1.2.3-beta.1+build"),
            ("1.x || >=2.5.0", "1.x || >=2.5.0"),
            ("12:30", "12:30"),
            ("190:20:30", "190:20:30"),
            ("1E+3", "'1E+3'"),
            ("1_000", "'1_000'"),
            ("1e3", "'1e3'"),
            ("6.8523015e+5", "'6.8523015e+5'"),
            ("<<", "'<<'"),
            ("=", "'='"),
            ("===", "'==='"),
            (">x", "'>x'"),
            ("?", "'?'"),
            ("@", "'@'"),
            ("NULL", "'NULL'"),
            ("Null", "'Null'"),
            ("True", "'True'"),
            ("]x", "']x'"),
            ("`x", "'`x'"),
            ("a [b]", "a [b]"),
            ("a\"b", "a\"b"),
            ("a,b", "a,b"),
            ("a/b", "a/b"),
            ("a\u{85}b", "\"a\\Nb\""),
            ("a\u{2028}b", "\"a\\Lb\""),
            ("n", "n"),
            ("nULL", "nULL"),
            ("null", "'null'"),
            ("off", "off"),
            ("on", "on"),
            ("true", "'true'"),
            ("x ", "'x '"),
            ("x #y", "'x #y'"),
            ("x:", "'x:'"),
            ("x?", "x?"),
            ("x~", "x~"),
            ("x\u{a0}", "\"x\\_\""),
            ("y", "y"),
            ("{x", "'{x'"),
            ("|x", "'|x'"),
            ("~x", "~x"),
            ("\u{a0}x", "\"\\_x\""),
            ("ü:x", "ü:x"),
            ("\u{feff}bom", "\"\\uFEFFbom\""),
            ("%x", "'%x'"),
            ("+0x1", "'+0x1'"),
            ("- a", "'- a'"),
            ("-0b1", "'-0b1'"),
            ("-a", "'-a'"),
            ("0b", "0b"),
            ("0o", "0o"),
            ("0x", "0x"),
            ("1.5_", "1.5_"),
            ("1_", "1_"),
            ("1__0", "'1__0'"),
            ("1e", "1e"),
            ("2001-01-01t01:02:03Z", "'2001-01-01t01:02:03Z'"),
            ("2001-1-1 1:02:03", "'2001-1-1 1:02:03'"),
            (":x", "':x'"),
            ("FALSE", "'FALSE'"),
            ("Falsy", "Falsy"),
            ("_1", "_1"),
            ("nl\u{a}x", "\"nl\\nx\""),
            ("x\u{1}", "\"x\\x01\""),
            ("x\"y", "x\"y"),
            ("x%", "x%"),
            ("x/y", "x/y"),
            ("x:y", "x:y"),
            ("x@y", "x@y"),
            ("x\u{7f}", "\"x\\x7F\""),
            ("x¡", "x¡"),
            ("x😀", "x😀"),
            ("😀x", "😀x"),
        ];
        for (value, expected) in cases {
            assert_eq!(scalar(value, Context::Block), expected, "{value:?}");
        }
        // Inside `{...}` and `[...]`, flow indicators force quotes too.
        assert_eq!(scalar("a,b", Context::Flow), "'a,b'");
        assert_eq!(
            scalar("1.2.8000 || >= 1.4.16", Context::Flow),
            "1.2.8000 || >= 1.4.16"
        );
        assert_eq!(
            scalar("https://r.invalid/a/-/a-1.0.0.tgz", Context::Flow),
            "https://r.invalid/a/-/a-1.0.0.tgz"
        );
        assert_eq!(scalar("", Context::Block), "''");
        assert_eq!(
            scalar("it's \"quoted\" — ünïcode ✓", Context::Block),
            "it's \"quoted\" — ünïcode ✓"
        );
        assert_eq!(scalar("see: x", Context::Block), "'see: x'");
        assert_eq!(
            scalar("a\\b\u{1F600}\n", Context::Block),
            "\"a\\\\b\u{1F600}\\n\""
        );
    }
}
