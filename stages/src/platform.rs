//! Host platform matching for `os`, `cpu` and `libc` package fields, with npm's semantics:
//! a list of allowed values, where `!value` entries exclude.

/// The platform packages are matched against, in Node's spelling (`process.platform`,
/// `process.arch`, and `glibc`/`musl`).
#[derive(Clone, Debug)]
pub struct Platform {
    pub os: String,
    pub cpu: String,
    pub libc: Option<String>,
}

impl Platform {
    pub fn host() -> Self {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            "windows" => "win32",
            other => other,
        };
        let cpu = match std::env::consts::ARCH {
            "x86_64" => "x64",
            "x86" => "ia32",
            "aarch64" => "arm64",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        let libc = (os == "linux").then(|| {
            if cfg!(target_env = "musl") {
                "musl"
            } else {
                "glibc"
            }
            .to_owned()
        });
        Platform {
            os: os.to_owned(),
            cpu: cpu.to_owned(),
            libc,
        }
    }

    /// Whether a package with these fields can run here.
    pub fn supports(
        &self,
        os: Option<&[String]>,
        cpu: Option<&[String]>,
        libc: Option<&[String]>,
    ) -> bool {
        matches_list(os, Some(&self.os))
            && matches_list(cpu, Some(&self.cpu))
            && matches_list(libc, self.libc.as_deref())
    }
}

fn matches_list(list: Option<&[String]>, value: Option<&str>) -> bool {
    let Some(list) = list else { return true };
    let Some(value) = value else { return true };
    if list.is_empty() || list.iter().any(|entry| entry == "any") {
        return true;
    }
    if list
        .iter()
        .any(|entry| entry.strip_prefix('!') == Some(value))
    {
        return false;
    }
    let allows = list.iter().filter(|entry| !entry.starts_with('!'));
    let mut allows = allows.peekable();
    if allows.peek().is_none() {
        return true;
    }
    allows.any(|entry| entry == value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn follows_npm_allow_and_deny_lists() {
        let linux = Platform {
            os: "linux".into(),
            cpu: "x64".into(),
            libc: Some("glibc".into()),
        };
        assert!(linux.supports(Some(&list(&["linux"])), Some(&list(&["x64"])), None));
        assert!(!linux.supports(Some(&list(&["darwin"])), None, None));
        assert!(!linux.supports(Some(&list(&["!linux"])), None, None));
        assert!(linux.supports(Some(&list(&["!win32"])), None, None));
        assert!(!linux.supports(None, None, Some(&list(&["musl"]))));
        assert!(linux.supports(None, Some(&list(&["any"])), None));
    }
}
