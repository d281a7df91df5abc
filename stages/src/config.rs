//! Registry, auth and store settings from the command line, the environment and `.npmrc` files,
//! with npm's precedence: command line > `npm_config_*` environment > project `.npmrc` > user
//! `.npmrc` > global `npmrc` > (registry only) `npm config get registry`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::InstallError;

/// Settings merged from every source; keys as in `.npmrc`.
#[derive(Debug, Default)]
pub struct NpmConfig {
    values: HashMap<String, String>,
    /// Where each value came from, for error messages.
    origins: HashMap<String, PathBuf>,
    /// The registry when no source sets one, computed at most once and only when needed.
    fallback_registry: OnceLock<Result<String, String>>,
}

/// What the caller can override (the CLI flags).
#[derive(Debug, Default, Clone)]
pub struct ConfigOverrides {
    pub registry: Option<String>,
    pub store_dir: Option<PathBuf>,
}

impl NpmConfig {
    /// Loads the configuration for a project directory.
    pub fn load(project_dir: &Path, overrides: &ConfigOverrides) -> Result<Self, InstallError> {
        let mut config = NpmConfig::default();
        for path in global_config_paths() {
            config.merge_file(&path)?;
        }
        if let Some(path) = user_config_path() {
            config.merge_file(&path)?;
        }
        config.merge_file(&project_dir.join(".npmrc"))?;
        for (key, value) in std::env::vars() {
            let lower = key.to_ascii_lowercase();
            if let Some(name) = lower.strip_prefix("npm_config_") {
                // npm maps `_` to `-` in env keys, except a leading `_` (as in `_authToken`).
                let name = name.replace('_', "-");
                config.set(&name, value, Path::new("environment"));
            }
        }
        if let Some(registry) = &overrides.registry {
            config.set("registry", registry.clone(), Path::new("--registry"));
        }
        if let Some(store_dir) = &overrides.store_dir {
            config.set(
                "store-dir",
                store_dir.display().to_string(),
                Path::new("--store-dir"),
            );
        }
        Ok(config)
    }

    /// Parses `.npmrc` text (for tests and tools); later calls override earlier values.
    pub fn merge_text(&mut self, text: &str, origin: &Path) -> Result<(), InstallError> {
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(InstallError::InvalidFile {
                    path: origin.to_path_buf(),
                    message: format!("line {}: expected `key=value`, found `{line}`", number + 1),
                });
            };
            let value = unquote(value.trim());
            let value = expand_env(&value).map_err(|name| InstallError::InvalidFile {
                path: origin.to_path_buf(),
                message: format!(
                    "line {}: environment variable `{name}` is not set",
                    number + 1
                ),
            })?;
            self.set(key.trim(), value, origin);
        }
        Ok(())
    }

    fn merge_file(&mut self, path: &Path) -> Result<(), InstallError> {
        match std::fs::read_to_string(path) {
            Ok(text) => self.merge_text(&text, path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
            Err(error) => Err(InstallError::io("read", path, error)),
        }
    }

    fn set(&mut self, key: &str, value: String, origin: &Path) {
        self.values.insert(key.to_owned(), value);
        self.origins.insert(key.to_owned(), origin.to_path_buf());
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A numeric setting (`fetch-timeout=30000`); an unparsable value is an error naming its source.
    pub fn number(&self, key: &str) -> Result<Option<u64>, InstallError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value.trim().parse().map(Some).map_err(|_| {
            let origin = self
                .origins
                .get(key)
                .map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
            InstallError::Config(format!(
                "`{key}` must be a number, not `{value}` (from {origin})"
            ))
        })
    }

    /// The default registry, always ending in `/`.
    pub fn registry(&self) -> Result<String, InstallError> {
        if let Some(registry) = self.get("registry") {
            return Ok(with_trailing_slash(registry));
        }
        self.fallback_registry
            .get_or_init(npm_config_get_registry)
            .clone()
            .map_err(InstallError::Config)
    }

    /// Every registry configured: the default one and the scoped ones (`@scope:registry`).
    pub fn registries(&self) -> Result<Vec<String>, InstallError> {
        let mut registries = vec![self.registry()?];
        for (key, value) in &self.values {
            if key.starts_with('@') && key.ends_with(":registry") {
                registries.push(with_trailing_slash(value));
            }
        }
        Ok(registries)
    }

    /// The registry serving `name` (`@scope:registry` wins for scoped packages).
    pub fn registry_for(&self, name: &str) -> Result<String, InstallError> {
        if let Some((scope, _)) = name.split_once('/')
            && scope.starts_with('@')
            && let Some(registry) = self.get(&format!("{scope}:registry"))
        {
            return Ok(with_trailing_slash(registry));
        }
        self.registry()
    }

    /// The `//<host/path>/:<field>` settings: each registry URL prefix (without scheme or
    /// trailing slash) with its value.
    pub fn per_registry(&self, field: &str) -> Vec<(&str, &str)> {
        self.values
            .iter()
            .filter_map(|(key, value)| {
                let (prefix, name) = key.strip_prefix("//")?.rsplit_once(':')?;
                (name == field).then(|| (prefix.trim_end_matches('/'), value.as_str()))
            })
            .collect()
    }

    /// The `Authorization` header value for `url`, from the most specific `//host/path/:_authToken`
    /// (or `:_auth`, or `:username` + `:_password`) whose prefix matches the URL.
    pub fn authorization_for(&self, url: &str) -> Option<String> {
        let mut best: Option<(usize, String)> = None;
        for (key, value) in &self.values {
            let Some(nerfed) = key.strip_prefix("//") else {
                continue;
            };
            let Some((prefix, field)) = nerfed.rsplit_once(':') else {
                continue;
            };
            if !url_is_under(url, prefix) {
                continue;
            }
            let header = match field {
                "_authToken" => format!("Bearer {value}"),
                "_auth" => format!("Basic {value}"),
                "_password" => {
                    let user = self.values.get(&format!("//{prefix}:username"))?;
                    let password = decode_base64(value)?;
                    format!(
                        "Basic {}",
                        encode_base64(format!("{user}:{password}").as_bytes())
                    )
                }
                _ => continue,
            };
            if best
                .as_ref()
                .is_none_or(|(length, _)| prefix.len() > *length)
            {
                best = Some((prefix.len(), header));
            }
        }
        best.map(|(_, header)| header)
    }

    /// PEM files whose certificates are trusted besides the system bundle: `.npmrc` `cafile`
    /// and `NODE_EXTRA_CA_CERTS`.
    pub fn extra_ca_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(cafile) = self.get("cafile") {
            files.push(PathBuf::from(cafile));
        }
        if let Some(extra) = std::env::var_os("NODE_EXTRA_CA_CERTS").filter(|v| !v.is_empty()) {
            files.push(PathBuf::from(extra));
        }
        files
    }

    /// `store-dir`, else `$XDG_DATA_HOME/flowpm/store`, else `~/.local/share/flowpm/store`.
    pub fn store_dir(&self, project_dir: &Path) -> PathBuf {
        if let Some(dir) = self.get("store-dir") {
            let dir = expand_home(dir);
            return if dir.is_absolute() {
                dir
            } else {
                project_dir.join(dir)
            };
        }
        if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(data).join("flowpm/store");
        }
        home_dir()
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join(".local/share/flowpm/store")
    }
}

fn with_trailing_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    }
}

fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0]
    {
        value[1..value.len() - 1].to_owned()
    } else {
        value.to_owned()
    }
}

/// Replaces `${NAME}` with the environment variable (npm fails on unset ones too).
fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + end];
        out.push_str(&rest[..start]);
        out.push_str(&std::env::var(name).map_err(|_| name.to_owned())?);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn user_config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NPM_CONFIG_USERCONFIG")
        .or_else(|| std::env::var_os("npm_config_userconfig"))
    {
        return Some(PathBuf::from(path));
    }
    home_dir().map(|home| home.join(".npmrc"))
}

fn global_config_paths() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("NPM_CONFIG_GLOBALCONFIG")
        .or_else(|| std::env::var_os("npm_config_globalconfig"))
    {
        return vec![PathBuf::from(path)];
    }
    let mut paths = vec![PathBuf::from("/etc/npmrc")];
    if let Some(prefix) =
        std::env::var_os("PREFIX").or_else(|| std::env::var_os("npm_config_prefix"))
    {
        paths.push(PathBuf::from(prefix).join("etc/npmrc"));
    }
    paths
}

/// The last resort: ask npm itself, so a machine configured only through npm still works.
fn npm_config_get_registry() -> Result<String, String> {
    let output = std::process::Command::new("npm")
        .args(["config", "get", "registry"])
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|error| {
            format!("no registry is configured (--registry, npm_config_registry, .npmrc) and `npm config get registry` could not run: {error}")
        })?;
    let registry = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success()
        || !(registry.starts_with("http://") || registry.starts_with("https://"))
    {
        return Err(
            "no registry is configured: pass --registry or set `registry=` in .npmrc".to_owned(),
        );
    }
    Ok(with_trailing_slash(&registry))
}

fn encode_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Whether `url` lies under the registry prefix of a `//host[:port]/path/:field` key: the same
/// host and port, then the same path segments. (Plain `starts_with` let `//r.example/` match
/// `r.example.evil.com`, sending that host the registry's token.)
pub fn url_is_under(url: &str, prefix: &str) -> bool {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let prefix = prefix.trim_end_matches('/');
    without_scheme
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?', '#']))
}

fn decode_base64(text: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_registries_and_most_specific_auth() {
        let mut config = NpmConfig::default();
        let npmrc = "registry=http://127.0.0.1:1/\n@corp:registry=http://127.0.0.1:2/npm\n\
                     //127.0.0.1:2/:_authToken=broad\n//127.0.0.1:2/npm/:_authToken=specific\n; comment\n";
        config.merge_text(npmrc, Path::new(".npmrc")).unwrap();
        assert_eq!(
            config.registry_for("lodash").unwrap(),
            "http://127.0.0.1:1/"
        );
        assert_eq!(
            config.registry_for("@corp/x").unwrap(),
            "http://127.0.0.1:2/npm/"
        );
        assert_eq!(
            config
                .authorization_for("http://127.0.0.1:2/npm/@corp/x/-/x-1.0.0.tgz")
                .as_deref(),
            Some("Bearer specific")
        );
        assert_eq!(
            config
                .authorization_for("http://127.0.0.1:2/other")
                .as_deref(),
            Some("Bearer broad")
        );
        assert_eq!(config.authorization_for("http://127.0.0.1:1/lodash"), None);
        // A longer port or host name, or a longer path segment, is another registry.
        assert_eq!(config.authorization_for("http://127.0.0.1:22/x"), None);
        assert_eq!(
            config.authorization_for("http://127.0.0.1:2.evil.test/x"),
            None
        );
        assert_eq!(
            config
                .authorization_for("http://127.0.0.1:2/npm-other/x")
                .as_deref(),
            Some("Bearer broad")
        );
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let mut config = NpmConfig::default();
        let error = config
            .merge_text("registry=x\nnot a setting\n", Path::new("/p/.npmrc"))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "`/p/.npmrc` is not valid: line 2: expected `key=value`, found `not a setting`"
        );
    }
}
