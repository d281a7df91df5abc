//! Names of the virtual store directories (`node_modules/.pnpm/<name>`), as pnpm derives them
//! from a depPath (its `depPathToFilename`).

use sha2::{Digest, Sha256};

/// pnpm's default `virtual-store-dir-max-length` on Linux and macOS.
pub const VIRTUAL_STORE_DIR_MAX_LENGTH: usize = 120;

/// `react-dom@18.2.0(react@18.2.0)` -> `react-dom@18.2.0_react@18.2.0`;
/// `@babel/core@7.0.0` -> `@babel+core@7.0.0`; names longer than the limit, or with uppercase
/// letters (case-insensitive filesystems), are cut and suffixed with a hash of the full name.
pub fn dep_path_to_filename(dep_path: &str, max_length: usize) -> String {
    let mut filename: String = unescaped(dep_path)
        .chars()
        .map(|c| {
            if matches!(
                c,
                '\\' | '/' | ':' | '*' | '?' | '"' | '<' | '>' | '|' | '#'
            ) {
                '+'
            } else {
                c
            }
        })
        .collect();
    if filename.contains('(') {
        if filename.ends_with(')') {
            filename.pop();
        }
        filename = filename.replace(")(", "_").replace(['(', ')'], "_");
    }
    // Trailing dots and spaces (which Windows drops) become `+` and the name gets a hash.
    let kept = filename.trim_end_matches(['.', ' ']).len();
    let ambiguous = escapes_ambiguously(dep_path);
    if kept < filename.len() {
        let trailing = filename.len() - kept;
        filename.truncate(kept);
        filename.extend(std::iter::repeat_n('+', trailing));
        let input = if ambiguous {
            dep_path.to_owned()
        } else {
            filename.clone()
        };
        return with_hash(&filename, &input, max_length);
    }
    // A URL or path whose escaping could make two depPaths one name (a port's `:`, a query's
    // `?`...) is told apart by a hash of the depPath itself, long or not (pnpm 12).
    if ambiguous {
        return with_hash(&filename, dep_path, max_length);
    }
    // Uppercase names are hashed too, so two names differing only in case cannot collide on
    // case-insensitive filesystems.
    let has_uppercase = filename != filename.to_lowercase();
    if filename.len() > max_length || has_uppercase {
        return with_hash(&filename, &filename, max_length);
    }
    filename
}

/// `name` (cut to fit `max_length` with the suffix) + `_` + the short hash of `input`.
fn with_hash(name: &str, input: &str, max_length: usize) -> String {
    let hash = short_hash(input);
    let keep = max_length.saturating_sub(hash.len() + 1);
    let mut cut = keep.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}", &name[..cut])
}

/// Whether the depPath's version is a location (a tarball URL, a path) with characters that
/// escape to `+` other than `/`: `http://host:8080/a.tgz` yes, `https://host/a.tgz` no.
fn escapes_ambiguously(dep_path: &str) -> bool {
    let id = dep_path.split('(').next().unwrap_or_default();
    let id = id.strip_prefix('/').unwrap_or(id);
    let version = if id.starts_with("file:") {
        id
    } else {
        match id.get(1..).and_then(|rest| rest.find('@')) {
            Some(at) => &id[at + 2..],
            None => return false,
        }
    };
    let Some((_, location)) = version.split_once(':') else {
        return false;
    };
    let location = location.strip_prefix("//").unwrap_or(location);
    location.contains(['+', '\\', ':', '*', '?', '"', '<', '>', '|', '#'])
}

fn unescaped(dep_path: &str) -> std::borrow::Cow<'_, str> {
    if let Some(rest) = dep_path.strip_prefix("file:") {
        return format!("file+{rest}").into();
    }
    dep_path.strip_prefix('/').unwrap_or(dep_path).into()
}

/// The first 32 hex digits of the SHA-256 of `text` (pnpm's `createShortHash`).
pub(crate) fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(32);
    for byte in &digest[..16] {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_scopes_and_peer_suffixes() {
        let name = |dep_path| dep_path_to_filename(dep_path, VIRTUAL_STORE_DIR_MAX_LENGTH);
        assert_eq!(name("lodash@4.17.21"), "lodash@4.17.21");
        assert_eq!(name("@babel/core@7.24.0"), "@babel+core@7.24.0");
        assert_eq!(
            name("react-dom@18.2.0(react@18.2.0)"),
            "react-dom@18.2.0_react@18.2.0"
        );
        assert_eq!(
            name("@testing-library/react@14.0.0(react-dom@18.2.0(react@18.2.0))(react@18.2.0)"),
            "@testing-library+react@14.0.0_react-dom@18.2.0_react@18.2.0__react@18.2.0"
        );
    }

    #[test]
    fn hashes_urls_that_escape_ambiguously_by_their_dep_path() {
        // Both observed from pnpm 12.21.0 (remote tarballs on a loopback port).
        assert_eq!(
            dep_path_to_filename(
                "@fixture/scoped@http://127.0.0.1:36083/@fixture/scoped/-/scoped-1.0.0.tgz",
                VIRTUAL_STORE_DIR_MAX_LENGTH
            ),
            "@fixture+scoped@http+++127.0.0.1+36083+@fixture+scoped+-+scoped-1.0.0.tgz_8f92f4b708ca5153dba4b04043a6021f"
        );
        let long = format!(
            "left-pad-lite@http://127.0.0.1:36083/left-pad-lite/-/left-pad-lite-1.0.0.tgz?{}=1",
            "q".repeat(100)
        );
        assert_eq!(
            dep_path_to_filename(&long, VIRTUAL_STORE_DIR_MAX_LENGTH),
            "left-pad-lite@http+++127.0.0.1+36083+left-pad-lite+-+left-pad-lite-1.0.0.tgz+qqqqqqqqqq_094c1115aa40a68b6f26c8603e85500f"
        );
        // Without a port or query, `/` alone escapes unambiguously.
        assert_eq!(
            dep_path_to_filename("a@https://host.example/a-1.0.0.tgz", 120),
            "a@https+++host.example+a-1.0.0.tgz"
        );
        assert!(!escapes_ambiguously("react-dom@18.2.0(react@18.2.0)"));
    }

    #[test]
    fn hashes_long_and_uppercase_names() {
        let long = format!("a@1.0.0({}@1.0.0)", "b".repeat(200));
        let name = dep_path_to_filename(&long, VIRTUAL_STORE_DIR_MAX_LENGTH);
        assert_eq!(name.len(), VIRTUAL_STORE_DIR_MAX_LENGTH);
        assert!(name.starts_with("a@1.0.0_bbbb"));
        // Both observed from pnpm 12 (sha256 of the escaped name, first 32 hex digits).
        assert_eq!(
            dep_path_to_filename("JSONStream@1.3.5", VIRTUAL_STORE_DIR_MAX_LENGTH),
            "JSONStream@1.3.5_fb8f73c374dcf7070ffed90b688edabd"
        );
        let key = "@typescript-eslint/eslint-plugin@7.18.0(@typescript-eslint/parser@7.18.0(eslint@8.57.0(supports-color@7.2.0))(supports-color@7.2.0)(typescript@5.5.4))(eslint@8.57.0(supports-color@7.2.0))(supports-color@7.2.0)(typescript@5.5.4)";
        assert_eq!(
            dep_path_to_filename(key, VIRTUAL_STORE_DIR_MAX_LENGTH),
            "@typescript-eslint+eslint-plugin@7.18.0_@typescript-eslint+parser@7.18.0_eslint@8.57.0__185493ac542f00d06fb312518a484c74"
        );
        assert_eq!(
            dep_path_to_filename(
                "@eslint-community/eslint-utils@4.10.1(eslint@8.57.0(supports-color@7.2.0))",
                120
            ),
            "@eslint-community+eslint-utils@4.10.1_eslint@8.57.0_supports-color@7.2.0_"
        );
    }
}
