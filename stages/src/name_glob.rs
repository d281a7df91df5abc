//! pnpm's patterns over package names (hoisting's and `minimumReleaseAgeExclude`'s, as pnpm 12
//! matches them, observed): `*` stands for any run of characters and `?` for any one, over
//! the whole name. No allocation: release-age checks run once per candidate version.

/// Whether `pattern` matches the whole of `name`.
pub fn matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let (mut p, mut n) = (0, 0); // byte offsets, always on character boundaries
    // After the last `*` seen: where the pattern resumes, and where in `name` the `*` stops.
    let mut star: Option<(usize, usize)> = None;
    while let Some(next) = name[n..].chars().next() {
        match pattern[p..].chars().next() {
            Some('*') => {
                star = Some((p + 1, n));
                p += 1;
            }
            Some(c) if c == '?' || c == next => {
                p += c.len_utf8();
                n += next.len_utf8();
            }
            _ => match star {
                // Let the `*` take one more character and try again after it.
                Some((resume, stop)) => {
                    let stop = stop + name[stop..].chars().next().map_or(1, char::len_utf8);
                    star = Some((resume, stop));
                    (p, n) = (resume, stop);
                }
                None => return false,
            },
        }
    }
    pattern[p..].chars().all(|c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names() {
        assert!(matches("@eslint/*", "@eslint/js"));
        assert!(!matches("@eslint/*", "eslint"));
        assert!(matches("r-l*", "r-lib"));
        assert!(matches("*lib*", "r-lib2"));
        assert!(matches("a*b*c", "abbc"));
        assert!(!matches("a*b*c", "acb"));
        assert!(matches("react", "react"));
        assert!(!matches("react", "react-dom"));
        assert!(matches("*", "anything"));
    }

    #[test]
    fn a_question_mark_is_one_character() {
        assert!(matches("deep-?", "deep-1") && !matches("deep-?", "deep-10"));
        assert!(matches("a?c*", "abcdef") && !matches("a?c", "ac"));
        assert!(matches("?é*", "xéz") && !matches("??", "é"));
        assert!(!matches("a*a", "a") && matches("**", "x") && !matches("", "x"));
        assert!(matches("", "") && matches("*", ""));
    }
}
