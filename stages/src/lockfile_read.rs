//! A fast reader for the YAML that pnpm (and [`crate::lockfile_write`]) writes: block maps
//! indented by spaces, `- ` lists, one-line flow maps and lists, plain and quoted scalars.
//!
//! serde-saphyr reads a 1,000-package lockfile (340 KB) in ~20 ms; an install parses it once,
//! and again for the copy in `node_modules` when it changed. This reader takes ~5 ms. It
//! accepts a strict subset and declines everything else (anchors, tags, block scalars,
//! multi-line scalars, comments after values, tabs, duplicate keys, plain scalars that YAML
//! reads as numbers or nulls where a string is wanted, ...): [`parse`] then returns `None`
//! and the caller reads the text with serde-saphyr, whose value or error is authoritative.
//! So this reader may refuse more than serde-saphyr, never accept more or read a value
//! differently; the lockfile fuzz target checks exactly that.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Reads `text` as a `T`, or `None` when the text is outside the subset or does not fit `T`.
pub fn parse<'de, T: Deserialize<'de>>(text: &str) -> Option<T> {
    // Inside serde-saphyr's budgets as [`crate::lockfile::Lockfile::parse_yaml`] sets them:
    // its scalar bytes (64 MiB), depth (64) and key length (64 KiB) are never reached here.
    if text.len() > MAX_TEXT || !plain_characters(text) {
        return None;
    }
    let node = Reader::new(text).document()?;
    T::deserialize(NodeDe(&node)).ok()
}

/// No tab, carriage return or other control character, and none of the characters YAML
/// readers disagree on (NEL and the Unicode line separators, a byte-order mark).
fn plain_characters(text: &str) -> bool {
    let ascii_ok = |b: u8| b == b'\n' || (0x20..0x7f).contains(&b) || b >= 0x80;
    text.bytes().all(ascii_ok)
        && (text.is_ascii()
            || text.chars().all(|c| {
                !matches!(
                    c,
                    '\u{80}'
                        ..='\u{9f}'
                            | '\u{2028}'
                            | '\u{2029}'
                            | '\u{feff}'
                            | '\u{fffe}'
                            | '\u{ffff}'
                )
            }))
}

#[derive(Debug)]
enum Node<'a> {
    /// `key:` with nothing below it.
    Empty,
    Scalar {
        text: Cow<'a, str>,
        plain: bool,
    },
    /// Keys are strings to YAML ([`valid_key`] checked them as they were read).
    Map(Vec<(Cow<'a, str>, Node<'a>)>),
    Seq(Vec<Node<'a>>),
}

/// Larger texts are left to serde-saphyr (and its 64 MiB scalar budget).
const MAX_TEXT: usize = 32 << 20;
/// Maps and lists nested deeper are left to serde-saphyr (its depth budget is 64).
const MAX_DEPTH: usize = 32;
/// Longer keys are left to serde-saphyr (its simple-key lookahead is 64 KiB).
const MAX_KEY: usize = 16 << 10;

/// One non-blank, non-comment line: its indentation and the text after it.
struct Line<'a> {
    indent: usize,
    text: &'a str,
}

struct Reader<'a> {
    lines: Vec<Line<'a>>,
    next: usize,
    /// Maps and lists open around the current line.
    depth: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        let lines = text
            .split('\n')
            .filter_map(|line| {
                let text = line.trim_start_matches(' ');
                (!text.is_empty() && !text.starts_with('#')).then(|| Line {
                    indent: line.len() - text.len(),
                    text,
                })
            })
            .collect();
        Reader {
            lines,
            next: 0,
            depth: 0,
        }
    }

    fn document(mut self) -> Option<Node<'a>> {
        // Document markers and directives are left to serde-saphyr.
        if self.lines.iter().any(|line| {
            line.indent == 0 && (line.text.starts_with("---") || line.text.starts_with("..."))
        }) {
            return None;
        }
        let first = self.lines.first()?;
        if first.indent != 0 || first.text.starts_with("- ") || first.text == "-" {
            return None;
        }
        let node = self.map(0)?;
        (self.next == self.lines.len()).then_some(node)
    }

    fn peek(&self) -> Option<&Line<'a>> {
        self.lines.get(self.next)
    }

    /// The block below a `key:` line indented `parent`: a map or list, or nothing.
    fn block_value(&mut self, parent: usize) -> Option<Node<'a>> {
        let Some(line) = self.peek() else {
            return Some(Node::Empty);
        };
        let is_item = line.text.starts_with("- ") || line.text == "-";
        if self.depth >= MAX_DEPTH {
            return None;
        }
        if line.indent > parent {
            let indent = line.indent;
            if is_item {
                self.seq(indent)
            } else {
                self.map(indent)
            }
        } else if line.indent == parent && is_item {
            // A list may sit at its key's own indentation.
            self.seq(parent)
        } else {
            Some(Node::Empty)
        }
    }

    fn map(&mut self, indent: usize) -> Option<Node<'a>> {
        self.depth += 1;
        let mut entries = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || line.text.starts_with("- ") || line.text == "-" {
                return None;
            }
            let text = line.text;
            self.next += 1;
            let (key, rest) = key(text)?;
            let value = match rest {
                "" => self.block_value(indent)?,
                rest => {
                    let value = inline_value(rest, self.depth)?;
                    // A plain scalar continued on the next lines.
                    if self.peek().is_some_and(|next| next.indent > indent) {
                        return None;
                    }
                    value
                }
            };
            entries.push((key, value));
        }
        self.depth -= 1;
        no_duplicates(&entries).then_some(Node::Map(entries))
    }

    fn seq(&mut self, indent: usize) -> Option<Node<'a>> {
        self.depth += 1;
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent {
                return None;
            }
            // A key after a list at its key's own indentation ends it.
            let Some(item) = line.text.strip_prefix("- ") else {
                break;
            };
            self.next += 1;
            let item = item.trim_start_matches(' ');
            // `- key: value` (a map in a list) is left to serde-saphyr.
            if item.starts_with(['{', '[', '\'', '"']) {
                items.push(inline_value(item, self.depth)?);
            } else {
                items.push(Node::Scalar {
                    text: Cow::Borrowed(plain_scalar(item, false)?),
                    plain: true,
                });
            }
            if self.peek().is_some_and(|next| next.indent > indent) {
                return None;
            }
        }
        self.depth -= 1;
        Some(Node::Seq(items))
    }
}

/// Keys compared by text: `'1'` and `1` count as the same (declined, never misread).
fn no_duplicates(entries: &[(Cow<'_, str>, Node<'_>)]) -> bool {
    if entries.len() <= 8 {
        return entries
            .iter()
            .enumerate()
            .all(|(i, (key, _))| entries[..i].iter().all(|(other, _)| other != key));
    }
    let mut seen = HashSet::with_capacity(entries.len());
    entries.iter().all(|(key, _)| seen.insert(key.as_ref()))
}

/// Splits `key: rest` (or `key:`), the key plain or quoted.
fn key(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let (key, plain, rest) = any_key(text)?;
    valid_key(&key, plain).then_some((key, rest))
}

/// A key serde-saphyr reads as the same string: not too long, not `<<` (a merge, YAML 1.1),
/// and, when plain, not something YAML reads as a number, bool or null (keys of ignored
/// fields are never deserialized, so they are checked here).
fn valid_key(key: &str, plain: bool) -> bool {
    key.len() <= MAX_KEY && key != "<<" && (!plain || classify(key) == Plain::Text)
}

/// The key (and whether it was plain) and the rest of the line after `: `.
fn any_key(text: &str) -> Option<(Cow<'_, str>, bool, &str)> {
    let plain = !text.starts_with(['\'', '"']);
    let (key, after) = if !plain {
        let (key, after) = quoted(text)?;
        (key, after.strip_prefix(':')?)
    } else {
        let end = match text.find(": ") {
            Some(end) => end,
            None => text.strip_suffix(':').map(str::len)?,
        };
        let key = plain_scalar(&text[..end], false)?;
        (Cow::Borrowed(key), &text[end + 1..])
    };
    match after {
        "" => Some((key, plain, "")),
        after => {
            let rest = after.strip_prefix(' ')?.trim_start_matches(' ');
            Some((key, plain, rest))
        }
    }
}

/// A value on its key's line: quoted, flow, or plain to the end of the line.
fn inline_value(text: &str, depth: usize) -> Option<Node<'_>> {
    let text = text.trim_end_matches(' ');
    match text.as_bytes().first()? {
        b'\'' | b'"' => {
            let (value, rest) = quoted(text)?;
            rest.is_empty().then_some(Node::Scalar {
                text: value,
                plain: false,
            })
        }
        b'{' | b'[' => {
            let mut flow = Flow { text, at: 0, depth };
            let node = flow.value()?;
            (flow.at == text.len()).then_some(node)
        }
        _ => Some(Node::Scalar {
            text: Cow::Borrowed(plain_scalar(text, false)?),
            plain: true,
        }),
    }
}

/// Checks a plain scalar: none of what would make YAML read it otherwise (indicators first,
/// comments, `: ` inside; in flow context also `,[]{}`).
fn plain_scalar(text: &str, flow: bool) -> Option<&str> {
    let first = *text.as_bytes().first()?;
    if matches!(
        first,
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
            | b' '
    ) {
        // `-x` is a valid plain scalar, but rare enough in lockfiles to leave to serde-saphyr.
        return None;
    }
    if text.contains(" #") || text.contains(": ") || text.ends_with([':', ' ']) {
        return None;
    }
    if flow && text.contains([',', '[', ']', '{', '}']) {
        return None;
    }
    Some(text)
}

/// A quoted scalar at the start of `text`: its value and what follows the closing quote.
fn quoted(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let quote = text.as_bytes()[0];
    let body = &text[1..];
    if quote == b'\'' {
        let mut value: Option<String> = None;
        let mut start = 0;
        let mut at = 0;
        let bytes = body.as_bytes();
        while at < bytes.len() {
            if bytes[at] == b'\'' {
                if bytes.get(at + 1) == Some(&b'\'') {
                    value
                        .get_or_insert_with(String::new)
                        .push_str(&body[start..=at]);
                    at += 2;
                    start = at;
                    continue;
                }
                let rest = &body[at + 1..];
                return Some(match value {
                    None => (Cow::Borrowed(&body[..at]), rest),
                    Some(mut value) => {
                        value.push_str(&body[start..at]);
                        (Cow::Owned(value), rest)
                    }
                });
            }
            at += 1;
        }
        return None;
    }
    let end = body.find(['"', '\\'])?;
    if body.as_bytes()[end] == b'"' {
        return Some((Cow::Borrowed(&body[..end]), &body[end + 1..]));
    }
    let mut value = String::from(&body[..end]);
    let mut chars = body[end..].char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((Cow::Owned(value), &body[end + at + 1..])),
            '\\' => {
                let escaped = match chars.next()?.1 {
                    '\\' => '\\',
                    '"' => '"',
                    '/' => '/',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'u' => {
                        let hex: String = (0..4)
                            .map(|_| chars.next().map(|(_, c)| c))
                            .collect::<Option<_>>()?;
                        // `from_str_radix` would take a sign.
                        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return None;
                        }
                        char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                    }
                    _ => return None,
                };
                value.push(escaped);
            }
            c => value.push(c),
        }
    }
    None
}

/// A one-line flow map or list.
struct Flow<'a> {
    text: &'a str,
    at: usize,
    /// Maps and lists open around the current position, block ones included.
    depth: usize,
}

impl<'a> Flow<'a> {
    fn skip_spaces(&mut self) {
        while self.text.as_bytes().get(self.at) == Some(&b' ') {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.text.as_bytes().get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    fn value(&mut self) -> Option<Node<'a>> {
        self.skip_spaces();
        let opens = matches!(self.text.as_bytes().get(self.at), Some(b'{' | b'['));
        if opens {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return None;
            }
        }
        let node = match *self.text.as_bytes().get(self.at)? {
            b'{' => {
                self.at += 1;
                let mut entries = Vec::new();
                self.skip_spaces();
                if !self.eat(b'}') {
                    loop {
                        self.skip_spaces();
                        let plain = !self.text[self.at..].starts_with(['\'', '"']);
                        let key = self.scalar()?;
                        if !valid_key(&key, plain) {
                            return None;
                        }
                        if !self.eat(b':') || !self.eat(b' ') {
                            return None;
                        }
                        entries.push((key, self.value()?));
                        self.skip_spaces();
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                if !no_duplicates(&entries) {
                    return None;
                }
                Node::Map(entries)
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.skip_spaces();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value()?);
                        self.skip_spaces();
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                Node::Seq(items)
            }
            b'\'' | b'"' => Node::Scalar {
                text: self.scalar()?,
                plain: false,
            },
            _ => Node::Scalar {
                text: self.scalar()?,
                plain: true,
            },
        };
        self.depth -= usize::from(opens);
        self.skip_spaces();
        Some(node)
    }

    /// A quoted scalar, or a plain one up to `: `, `,`, `]` or `}`.
    fn scalar(&mut self) -> Option<Cow<'a, str>> {
        let rest = &self.text[self.at..];
        if rest.starts_with(['\'', '"']) {
            let (value, after) = quoted(rest)?;
            self.at = self.text.len() - after.len();
            return Some(value);
        }
        let bytes = rest.as_bytes();
        let mut end = 0;
        while end < bytes.len() {
            match bytes[end] {
                b',' | b']' | b'}' => break,
                b':' if matches!(bytes.get(end + 1), None | Some(b' ' | b',' | b']' | b'}')) => {
                    break;
                }
                _ => end += 1,
            }
        }
        let text = plain_scalar(rest[..end].trim_end_matches(' '), true)?;
        self.at += end;
        Some(Cow::Borrowed(text))
    }
}

/// Why a value did not fit: the caller falls back to serde-saphyr, so no detail is kept.
#[derive(Debug)]
struct Declined;

impl fmt::Display for Declined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("outside the fast YAML subset")
    }
}

impl std::error::Error for Declined {}

impl de::Error for Declined {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Declined
    }
}

/// What a plain scalar means to YAML beyond its text.
#[derive(PartialEq)]
enum Plain {
    Null,
    Bool(bool),
    /// A number, or any spelling a YAML 1.1 or 1.2 reader might take for one (declined).
    NumberLike,
    Text,
}

fn classify(text: &str) -> Plain {
    match text {
        "null" | "Null" | "NULL" | "~" => return Plain::Null,
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        _ => {}
    }
    if text.len() <= 5
        && [
            "y", "yes", "n", "no", "on", "off", ".inf", "+.inf", "-.inf", ".nan",
            // Spelled otherwise than the exact forms above.
            "true", "false", "null",
        ]
        .iter()
        .any(|word| text.eq_ignore_ascii_case(word))
    {
        return Plain::NumberLike;
    }
    let digits = text.trim_start_matches(['+', '-']);
    // `0x1F`, `0o17`, `0b101`, the prefix in either case.
    if let [b'0', prefix, rest @ ..] = digits.as_bytes()
        && !rest.is_empty()
    {
        let digit: fn(&u8) -> bool = match prefix.to_ascii_lowercase() {
            b'x' => u8::is_ascii_hexdigit,
            b'o' => |b| (b'0'..=b'7').contains(b),
            b'b' => |b| matches!(b, b'0' | b'1'),
            _ => |_| false,
        };
        if rest.iter().all(|b| *b == b'_' || digit(b)) {
            return Plain::NumberLike;
        }
    }
    // Decimal integers and floats, with YAML 1.1's `_` separators and base-60 `1:30` (a
    // commit hash or `1.2.3` is not one; a date like `2020-01-01` is taken as one).
    if digits.bytes().any(|b| b.is_ascii_digit())
        && digits.matches('.').count() <= 1
        && digits.bytes().all(|b| {
            b.is_ascii_digit() || matches!(b, b'.' | b'_' | b':' | b'e' | b'E' | b'+' | b'-')
        })
    {
        return Plain::NumberLike;
    }
    Plain::Text
}

struct NodeDe<'n, 'a>(&'n Node<'a>);

impl NodeDe<'_, '_> {
    /// The text of a scalar YAML reads as a string.
    fn text(&self) -> Result<&str, Declined> {
        match self.0 {
            Node::Scalar { text, plain: false } => Ok(text),
            Node::Scalar { text, plain: true } if classify(text) == Plain::Text => Ok(text),
            _ => Err(Declined),
        }
    }
}

impl<'de> Deserializer<'de> for NodeDe<'_, '_> {
    type Error = Declined;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        match self.0 {
            // Nulls: nothing in a lockfile wants one but `Option`s (`deserialize_option`).
            Node::Empty => Err(Declined),
            Node::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
            }),
            Node::Seq(items) => visitor.visit_seq(SeqDe(items.iter())),
            Node::Scalar { text, plain: false } => visitor.visit_str(text),
            Node::Scalar { text, plain: true } => match classify(text) {
                Plain::Null | Plain::NumberLike => Err(Declined),
                Plain::Bool(value) => visitor.visit_bool(value),
                Plain::Text => visitor.visit_str(text),
            },
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        match self.0 {
            Node::Scalar { text, plain: true } if text == "true" => visitor.visit_bool(true),
            Node::Scalar { text, plain: true } if text == "false" => visitor.visit_bool(false),
            _ => Err(Declined),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        visitor.visit_str(self.text()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        visitor.visit_str(self.text()?)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        visitor.visit_str(self.text()?)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        match self.0 {
            Node::Empty => visitor.visit_none(),
            Node::Scalar { text, plain: true } if text == "null" => visitor.visit_none(),
            Node::Scalar { text, plain: true } if classify(text) == Plain::Null => Err(Declined),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        match self.0 {
            Node::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
            }),
            _ => Err(Declined),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Declined> {
        self.deserialize_map(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        match self.0 {
            Node::Seq(items) => visitor.visit_seq(SeqDe(items.iter())),
            _ => Err(Declined),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Declined> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Declined> {
        visitor.visit_unit()
    }

    // Numbers, chars, bytes, units, tuples and enums: nothing in a lockfile; declined.
    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit unit_struct
        tuple tuple_struct enum
    }
}

struct MapDe<'n, 'a> {
    entries: std::slice::Iter<'n, (Cow<'a, str>, Node<'a>)>,
    value: Option<&'n Node<'a>>,
}

impl<'de> MapAccess<'de> for MapDe<'_, '_> {
    type Error = Declined;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Declined> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        // Already checked to be a string to YAML ([`valid_key`]).
        seed.deserialize(StrDeserializer::<Declined>::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Declined> {
        seed.deserialize(NodeDe(self.value.take().ok_or(Declined)?))
    }
}

struct SeqDe<'n, 'a>(std::slice::Iter<'n, Node<'a>>);

impl<'de> SeqAccess<'de> for SeqDe<'_, '_> {
    type Error = Declined;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Declined> {
        self.0
            .next()
            .map(|node| seed.deserialize(NodeDe(node)))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::lockfile::Lockfile;

    fn both(text: &str) -> (Option<Lockfile>, Result<Lockfile, crate::InstallError>) {
        (
            super::parse::<Lockfile>(text),
            Lockfile::parse_yaml(text, Path::new("pnpm-lock.yaml")),
        )
    }

    fn lockfiles(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // An install of a fixture (the README's main job installs `example`) leaves
            // `node_modules/.modules.yaml` and a lockfile copy: not recorded lockfiles.
            if path.is_dir() && !path.ends_with("node_modules") {
                lockfiles(&path, found);
            } else if path.extension().is_some_and(|e| e == "yaml")
                && !path.ends_with("pnpm-workspace.yaml")
            {
                found.push(path);
            }
        }
    }

    #[test]
    fn reads_every_recorded_lockfile_as_serde_saphyr_does() {
        let projects = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/projects");
        let mut found = Vec::new();
        lockfiles(&projects, &mut found);
        assert!(found.len() >= 15, "{found:?}");
        for path in found {
            let text = std::fs::read_to_string(&path).unwrap();
            let (fast, yaml) = both(&text);
            let fast = fast.unwrap_or_else(|| panic!("{}: declined", path.display()));
            assert_eq!(
                format!("{fast:?}"),
                format!("{:?}", yaml.unwrap()),
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn reads_scalars_keys_and_flows_as_serde_saphyr_does() {
        let text = "lockfileVersion: \"9.0\"\n\n# a comment\nimporters:\n\n  .:\n    dependencies:\n      'a''b':\n        specifier: \"^1.0.0\\u0041\"\n        version: 1.0.0(c@2.0.0)\n\
            packages:\n  x@https://h.invalid/x.tgz:\n    resolution: {integrity: sha512-AB+/==, tarball: 'https://h.invalid/x.tgz'}\n    os: [linux, 'darwin']\n    cpu:\n    - x64\n    engines: {}\n    hasBin: true\n    deprecated: null\n    unknownField: {a: [1, {b: c}]}\n    peerDependenciesMeta:\n      p:\n        optional: false\n";
        let (fast, yaml) = both(text);
        let fast = fast.expect("accepted");
        assert_eq!(format!("{fast:?}"), format!("{:?}", yaml.unwrap()));
        let dependency = &fast.importers["."].dependencies["a'b"];
        assert_eq!(dependency.specifier, "^1.0.0A");
        let package = &fast.packages["x@https://h.invalid/x.tgz"];
        assert_eq!(
            package.os.as_deref(),
            Some(&["linux".to_owned(), "darwin".to_owned()][..])
        );
        assert_eq!(package.cpu.as_deref(), Some(&["x64".to_owned()][..]));
        assert!(package.has_bin);
    }

    #[test]
    fn declines_what_is_outside_the_subset() {
        let base = "lockfileVersion: '9.0'\n";
        for tail in [
            "settings: &s {autoInstallPeers: true}\n",    // anchor
            "packages: !!map {}\n",                       // tag
            "pnpmfileChecksum: |\n  abc\n",               // block scalar
            "pnpmfileChecksum: abc\n  def\n",             // plain scalar on two lines
            "pnpmfileChecksum: abc # why\n",              // comment after a value
            "pnpmfileChecksum: 1.5\n",                    // a number where a string is wanted
            "pnpmfileChecksum: ~\n",                      // a null spelled otherwise
            "pnpmfileChecksum: yes\n",                    // a YAML 1.1 boolean
            "pnpmfileChecksum: a\npnpmfileChecksum: b\n", // duplicate key
            "packages: {a: 1,\n  b: 2}\n",                // flow over two lines
            "\tpackages: {}\n",                           // tab
            "packages:\n  '@a/b@1.0.0':\n    resolution: {integrity: \"x\\e\"}\n", // rare escape
            "importers:\n  .:\n    dependencies:\n",      // null where a map is wanted
            "? complex\n: key\n",
            "---\npackages: {}\n",
            "packages:\n  a@1.0.0:\n    resolution: {<<: {integrity: x}}\n", // merge key
            "pnpmfileChecksum: 0X9\n", // a number, prefix in upper case
            "settings: {autoInstallPeers: tRue}\n", // a YAML 1.1 boolean
            "packages:\n  a@1.0.0:\n    x: {0X1: a, 0B1: b}\n", // keys equal as numbers
            "pnpmfileChecksum: \"\\u+041\"\n", // a sign in a \\u escape
        ] {
            let text = format!("{base}{tail}");
            assert!(super::parse::<Lockfile>(&text).is_none(), "{text}");
        }
        // Deep nesting is left to serde-saphyr's depth budget, never a stack overflow here.
        let deep_flow = format!("{base}x: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert!(super::parse::<Lockfile>(&deep_flow).is_none());
        let mut deep_block = base.to_owned();
        for level in 0..100 {
            deep_block.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
        }
        assert!(super::parse::<Lockfile>(&deep_block).is_none());
        let long_key = format!("{base}packages:\n  {}@1.0.0: {{}}\n", "a".repeat(20_000));
        assert!(super::parse::<Lockfile>(&long_key).is_none());
        // The whole reader still reads them (or names the error) through serde-saphyr.
        assert!(
            Lockfile::parse(
                &format!("{base}pnpmfileChecksum: abc\n  def\n"),
                Path::new("l")
            )
            .is_ok()
        );
    }
}
