//! Client certificates for registries that require them (mutual TLS), read as npm and pnpm
//! read them: `cert` and `key` (the PEM text itself, newlines written `\n`) for every registry,
//! and `//<registry>/:certfile` with `//<registry>/:keyfile` (PEM files) for the registry under
//! that URL, which win over `cert` and `key` there.

use std::path::Path;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey};

use crate::InstallError;
use crate::config::NpmConfig;

pub struct ClientCerts {
    /// From `cert` and `key`.
    pub default: Option<ClientCert>,
    /// From `:certfile` and `:keyfile`, by URL prefix (scheme and trailing slash removed).
    scoped: Vec<(String, ClientCert)>,
}

impl ClientCerts {
    /// Reads every configured client certificate; one that cannot be used is an error naming
    /// the setting (a registry that wants it would only refuse the handshake later).
    pub fn from_config(config: &NpmConfig) -> Result<Self, InstallError> {
        let default = match (config.get("cert"), config.get("key")) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(client_cert(
                &cert.replace("\\n", "\n"),
                &key.replace("\\n", "\n"),
                Path::new("the `cert` and `key` settings"),
            )?),
            _ => return Err(config_error("`cert` and `key` go together: one is missing")),
        };
        let keyfiles = config.per_registry("keyfile");
        let mut scoped = Vec::new();
        for (prefix, certfile) in config.per_registry("certfile") {
            let Some(&(_, keyfile)) = keyfiles.iter().find(|(other, _)| *other == prefix) else {
                return Err(config_error(&format!(
                    "`//{prefix}/:certfile` has no `//{prefix}/:keyfile` beside it"
                )));
            };
            let read = |path: &str| {
                std::fs::read_to_string(path).map_err(|error| {
                    InstallError::io("read the client certificate", Path::new(path), error)
                })
            };
            let origin = format!("{certfile} and {keyfile}");
            let cert = client_cert(&read(certfile)?, &read(keyfile)?, Path::new(&origin))?;
            scoped.push((prefix.to_owned(), cert));
        }
        Ok(ClientCerts { default, scoped })
    }

    /// Registry URL prefixes with a certificate of their own, each with it.
    pub fn scoped(&self) -> &[(String, ClientCert)] {
        &self.scoped
    }

    /// The most specific scoped certificate for `url`, if any.
    pub fn scoped_for(&self, url: &str) -> Option<usize> {
        self.scoped
            .iter()
            .enumerate()
            .filter(|(_, (prefix, _))| crate::config::url_is_under(url, prefix))
            .max_by_key(|(_, (prefix, _))| prefix.len())
            .map(|(index, _)| index)
    }
}

fn config_error(message: &str) -> InstallError {
    InstallError::Config(format!("client certificate: {message}"))
}

/// The certificate chain of `cert` and the private key of `key` (PEM); `origin` names them.
fn client_cert(cert: &str, key: &str, origin: &Path) -> Result<ClientCert, InstallError> {
    let invalid = |message: String| InstallError::InvalidFile {
        path: origin.to_path_buf(),
        message,
    };
    let mut chain: Vec<Certificate<'static>> = Vec::new();
    crate::http::add_pem(cert.as_bytes(), origin, &mut chain)?;
    let mut private_key: Option<PrivateKey<'static>> = None;
    for item in ureq::tls::parse_pem(key.as_bytes()) {
        if let PemItem::PrivateKey(found) = item.map_err(|e| invalid(e.to_string()))? {
            private_key = Some(found.to_owned());
            break;
        }
    }
    if chain.is_empty() {
        return Err(invalid(
            "no PEM certificate in the client certificate".to_owned(),
        ));
    }
    let key = private_key
        .ok_or_else(|| invalid("no PEM private key for the client certificate".to_owned()))?;
    Ok(ClientCert::new_with_certs(&chain, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> NpmConfig {
        let mut config = NpmConfig::default();
        config.merge_text(text, Path::new(".npmrc")).unwrap();
        config
    }

    #[test]
    fn the_most_specific_registry_url_wins_and_bad_files_are_named() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tls");
        let (cert, key) = (fixtures.join("client.pem"), fixtures.join("client.key"));
        let text = |prefix: &str| {
            format!(
                "//{prefix}:certfile={}\n//{prefix}:keyfile={}\n",
                cert.display(),
                key.display()
            )
        };
        let certs = ClientCerts::from_config(&config(
            &[text("r.example/"), text("r.example/npm/")].concat(),
        ))
        .unwrap();
        let prefix = |url| certs.scoped_for(url).map(|i| certs.scoped()[i].0.as_str());
        assert_eq!(prefix("https://r.example/npm/a"), Some("r.example/npm"));
        assert_eq!(prefix("https://r.example/other/a"), Some("r.example"));
        assert_eq!(prefix("https://elsewhere.example/a"), None);
        // Whole host names and path segments only.
        assert_eq!(prefix("https://r.example.evil.test/a"), None);
        assert_eq!(prefix("https://r.example:8443/a"), None);
        assert_eq!(prefix("https://r.example/npm-x/a"), Some("r.example"));
        assert!(certs.default.is_none());

        // A key file that holds no key names both files.
        let wrong = format!(
            "//r.example/:certfile={0}\n//r.example/:keyfile={0}\n",
            cert.display()
        );
        let error = ClientCerts::from_config(&config(&wrong)).err().unwrap();
        assert!(error.to_string().contains("no PEM private key"), "{error}");
        assert!(error.to_string().contains("client.pem"), "{error}");
    }
}
