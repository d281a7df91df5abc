//! Which proxy a request goes through, by pnpm's rules (its config reader, as npm's): for an
//! https URL, `https-proxy`, else `proxy`, else `HTTPS_PROXY`; for an http URL, `http-proxy`,
//! else the https one, else `HTTP_PROXY`, else `PROXY`; none for a host that `no-proxy` (else
//! `noproxy`, else `NO_PROXY`) names or is under. `proxy=false` turns both off. Settings come
//! from `.npmrc` files and `npm_config_*` variables ([`NpmConfig`]); the variables named in
//! capitals are also read in lower case.
//!
//! ureq tunnels through an `http://` (or `https://`) proxy with `CONNECT` whatever the
//! target's scheme, where npm sends an http request to the proxy as is; registries are https.

use ureq::Proxy;

use crate::InstallError;
use crate::config::NpmConfig;

#[derive(Debug, Default)]
pub struct Proxies {
    https: Option<Via>,
    http: Option<Via>,
    /// `no-proxy` entries, each as its labels from the last (`registry.example.com` ->
    /// `com`, `example`, `registry`).
    bypass: Vec<Vec<String>>,
}

/// A proxy, and its URL for messages (password hidden).
#[derive(Clone, Debug)]
pub struct Via {
    pub proxy: Proxy,
    pub label: String,
}

/// A setting that may turn proxying off rather than leave it to what comes next.
enum Setting {
    Unset,
    Off,
    Url(String),
}

impl Proxies {
    pub fn from_config(config: &NpmConfig) -> Result<Self, InstallError> {
        let setting = |key: &str| match config.get(key).map(str::trim) {
            None | Some("") => Setting::Unset,
            Some("false") => Setting::Off,
            Some(url) => Setting::Url(url.to_owned()),
        };
        let https = match setting("https-proxy") {
            Setting::Url(url) => Some(url),
            _ => match setting("proxy") {
                Setting::Url(url) => Some(url),
                Setting::Off => None,
                Setting::Unset => environment("https_proxy"),
            },
        };
        let proxy_off = matches!(setting("proxy"), Setting::Off);
        let http = match setting("http-proxy") {
            Setting::Url(url) => Some(url),
            _ if https.is_some() || proxy_off => https.clone(),
            _ => environment("http_proxy").or_else(|| environment("proxy")),
        };
        let no_proxy = config
            .get("no-proxy")
            .filter(|value| !value.trim().is_empty())
            .or_else(|| config.get("noproxy"))
            .map(str::to_owned)
            .or_else(|| environment("no_proxy"))
            .unwrap_or_default();
        let parse = |url: Option<String>, key: &str| -> Result<Option<Via>, InstallError> {
            url.map(|url| {
                let label = redact(&url);
                match Proxy::new(&url) {
                    Ok(proxy) => Ok(Via { proxy, label }),
                    Err(error) => Err(InstallError::Config(format!(
                        "the {key} setting `{label}` is not a proxy URL: {error}"
                    ))),
                }
            })
            .transpose()
        };
        Ok(Proxies {
            https: parse(https, "https-proxy")?,
            http: parse(http, "http-proxy")?,
            bypass: no_proxy
                .split(',')
                .map(labels)
                .filter(|labels| !labels.is_empty())
                .collect(),
        })
    }

    /// The proxy for `url`, if it goes through one.
    pub fn for_url(&self, url: &str) -> Option<&Via> {
        let (scheme, rest) = url.split_once("://")?;
        let proxy = match scheme.to_ascii_lowercase().as_str() {
            "https" => self.https.as_ref()?,
            "http" => self.http.as_ref()?,
            _ => return None,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host_port = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let host = match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => host_port.split(':').next().unwrap_or(host_port),
        };
        let host = labels(host);
        let bypassed = self
            .bypass
            .iter()
            .any(|entry| host.len() >= entry.len() && host[..entry.len()] == entry[..]);
        (!bypassed).then_some(proxy)
    }
}

/// A host name's labels, last first, lower case (empty labels dropped: `.example.com` is
/// `example.com`, as pnpm reads it).
fn labels(host: &str) -> Vec<String> {
    host.trim()
        .split('.')
        .filter(|label| !label.is_empty())
        .rev()
        .map(str::to_ascii_lowercase)
        .collect()
}

/// `name`, else its upper-case form, as pnpm reads proxy variables.
fn environment(name: &str) -> Option<String> {
    [name.to_owned(), name.to_ascii_uppercase()]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|value| !value.is_empty()))
}

/// A proxy URL with its password hidden, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| {
        let (userinfo, host) = rest.split_once('@')?;
        let user = userinfo.split(':').next().unwrap_or("");
        Some(format!("{scheme}://{user}:***@{host}"))
    }) {
        Some(redacted) => redacted,
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn proxies(npmrc: &str) -> Proxies {
        let mut config = NpmConfig::default();
        config.merge_text(npmrc, Path::new(".npmrc")).unwrap();
        Proxies::from_config(&config).unwrap()
    }

    fn via(proxies: &Proxies, url: &str) -> Option<String> {
        proxies
            .for_url(url)
            .map(|via| format!("{}:{}", via.proxy.host(), via.proxy.port()))
    }

    // The environment is not set in these tests (no proxy variables are read when the
    // settings decide); `environment` is exercised by the integration test.
    #[test]
    fn settings_pick_a_proxy_per_scheme_as_pnpm_does() {
        let both = proxies("https-proxy=http://secure:3128\nhttp-proxy=http://plain:8080\n");
        assert_eq!(
            via(&both, "https://registry.example/a").as_deref(),
            Some("secure:3128")
        );
        assert_eq!(
            via(&both, "http://registry.example/a").as_deref(),
            Some("plain:8080")
        );
        // `proxy` is the https proxy, and the http one falls back to the https one.
        let legacy = proxies("proxy=http://corp:3128\n");
        assert_eq!(
            via(&legacy, "https://r.example/").as_deref(),
            Some("corp:3128")
        );
        assert_eq!(
            via(&legacy, "http://r.example/").as_deref(),
            Some("corp:3128")
        );
        let https_only = proxies("https-proxy=http://corp:3128\n");
        assert_eq!(
            via(&https_only, "http://r.example/").as_deref(),
            Some("corp:3128")
        );
        // `proxy=false` turns proxying off.
        let off = proxies("proxy=false\n");
        assert_eq!(via(&off, "https://r.example/"), None);
        assert_eq!(via(&off, "http://r.example/"), None);
        assert!(via(&both, "file:///x.tgz").is_none());
    }

    #[test]
    fn no_proxy_names_hosts_and_everything_under_them() {
        let p = proxies(
            "https-proxy=http://corp:3128\nnoproxy=internal.example, .corp.example,10.0.0.1\n",
        );
        for direct in [
            "https://internal.example/a",
            "https://npm.internal.example/a",
            "https://INTERNAL.example:8443/a",
            "https://user:pw@a.b.corp.example/x",
            "https://10.0.0.1/a",
        ] {
            assert_eq!(via(&p, direct), None, "{direct}");
        }
        for proxied in [
            "https://example/a",
            "https://notinternal.example/a",
            "https://registry.example/?q=internal.example",
            "https://10.0.0.10/a",
        ] {
            assert!(via(&p, proxied).is_some(), "{proxied}");
        }
        // `no-proxy` wins over `noproxy`.
        let q = proxies("https-proxy=http://corp:3128\nnoproxy=a.example\nno-proxy=b.example\n");
        assert!(via(&q, "https://a.example/").is_some());
        assert!(via(&q, "https://b.example/").is_none());
    }

    #[test]
    fn a_bad_proxy_url_names_the_setting_and_hides_the_password() {
        let mut config = NpmConfig::default();
        config
            .merge_text("https-proxy=ftp://me:secret@corp:21\n", Path::new(".npmrc"))
            .unwrap();
        let error = Proxies::from_config(&config).unwrap_err().to_string();
        assert!(error.contains("https-proxy"), "{error}");
        assert!(error.contains("me:***@corp"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }
}
