//! The shared HTTP client: one ureq agent (keep-alive pool) for every fetch thread, trusting the
//! system CA bundle plus `.npmrc` `cafile` and `ca` and `NODE_EXTRA_CA_CERTS` (or, with
//! `strict-ssl=false`, any certificate, as npm and pnpm do), through the proxy that `.npmrc` or
//! the environment gives for each URL ([`Proxies`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::InstallError;
use crate::client_cert::ClientCerts;
use crate::config::NpmConfig;
use crate::proxy::Proxies;

/// Connections kept alive per registry host: at least the number of fetch threads.
const IDLE_CONNECTIONS_PER_HOST: usize = 64;

pub struct HttpClient {
    agent: ureq::Agent,
    config: Arc<NpmConfig>,
    proxies: Proxies,
    /// Registries with a client certificate of their own, and an agent for each: ureq pools
    /// connections by host and proxy only, so one made with another certificate (or none)
    /// must never be reused for them.
    client_certs: ClientCerts,
    scoped_agents: Vec<ureq::Agent>,
}

/// A failed request, and whether trying again may help.
#[derive(Debug)]
pub struct HttpFailure {
    pub message: String,
    pub retryable: bool,
    /// From a `Retry-After` header (429 and 503).
    pub retry_after: Option<Duration>,
}

impl HttpClient {
    pub fn new(config: Arc<NpmConfig>) -> Result<Self, InstallError> {
        let roots = load_root_certificates(&config.extra_ca_files(), config.get("ca"))?;
        let strict = config.get("strict-ssl").map(str::trim) != Some("false");
        // npm's `fetch-timeout` (milliseconds): the longest wait for a response or for the next
        // bytes of a body. A slow but moving download is never cut.
        let timeout = Duration::from_millis(config.number("fetch-timeout")?.unwrap_or(60_000));
        let client_certs = ClientCerts::from_config(&config)?;
        let agent = |client_cert: Option<&ClientCert>| {
            let tls = TlsConfig::builder()
                .root_certs(roots.clone())
                .disable_verification(!strict)
                .client_cert(client_cert.cloned())
                .build();
            let config_for_agent = ureq::Agent::config_builder()
                .tls_config(tls)
                .http_status_as_error(false)
                .max_idle_connections(IDLE_CONNECTIONS_PER_HOST * 4)
                .max_idle_connections_per_host(IDLE_CONNECTIONS_PER_HOST)
                .timeout_connect(Some(Duration::from_secs(15)))
                .timeout_recv_response(Some(timeout))
                .timeout_per_read(Some(timeout))
                .user_agent(concat!("flowpm/", env!("CARGO_PKG_VERSION")))
                // Chosen per request instead (ureq's default reads one proxy for every scheme).
                .proxy(None)
                .build();
            ureq::Agent::with_parts(
                config_for_agent,
                DefaultConnector::default(),
                CachingResolver::default(),
            )
        };
        let scoped_agents = client_certs
            .scoped()
            .iter()
            .map(|(_, cert)| agent(Some(cert)))
            .collect();
        let proxies = Proxies::from_config(&config)?;
        Ok(HttpClient {
            agent: agent(client_certs.default.as_ref()),
            config,
            proxies,
            client_certs,
            scoped_agents,
        })
    }

    /// A GET of `url`, through its proxy if it has one, with the registry's credentials.
    fn request(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let agent = match self.client_certs.scoped_for(url) {
            Some(index) => &self.scoped_agents[index],
            None => &self.agent,
        };
        let mut request = agent.get(url);
        if let Some(via) = self.proxies.for_url(url) {
            request = request.config().proxy(Some(via.proxy.clone())).build();
        }
        if let Some(authorization) = self.config.authorization_for(url) {
            request = request.header("authorization", authorization);
        }
        request
    }

    /// A request that failed before any response, said with the proxy it went through. A TLS
    /// failure (a certificate refused, a handshake the server rejects) is not retried: it
    /// would fail the same way; a broken connection shows as an I/O error instead.
    fn failure(&self, url: &str, error: ureq::Error) -> HttpFailure {
        let tls = match &error {
            ureq::Error::Rustls(_) => true,
            ureq::Error::Io(io) => io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()),
            _ => false,
        };
        let retryable =
            !tls && !matches!(error, ureq::Error::BadUri(_) | ureq::Error::HostNotFound);
        let mut message = match self.proxies.for_url(url) {
            Some(via) => format!("{error} (through the proxy {})", via.label),
            None => error.to_string(),
        };
        if tls && message.contains("CertificateRequired") {
            message.push_str(
                " (the registry wants a client certificate: `//<registry>/:certfile` and \
                 `:keyfile`, or `cert` and `key`, in .npmrc)",
            );
        }
        HttpFailure {
            message,
            retryable,
            retry_after: None,
        }
    }

    /// Starts a GET and returns the body as a stream once the status is 200.
    pub fn get(&self, url: &str) -> Result<(impl Read + Send + 'static, Option<u64>), HttpFailure> {
        let response = self
            .request(url)
            .call()
            .map_err(|error| self.failure(url, error))?;
        let status = response.status().as_u16();
        if status != 200 {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let reason = response.status().canonical_reason().unwrap_or("");
            return Err(HttpFailure {
                message: format!("HTTP {status} {reason}").trim_end().to_owned(),
                retryable: status >= 500 || status == 429 || status == 408,
                retry_after,
            });
        }
        let length = response
            .headers()
            .get("content-length")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let body = response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader();
        Ok((body, length))
    }
}

/// The answer to a conditional GET of a registry document.
pub enum Document {
    NotModified,
    /// The body is in the caller's buffer.
    Body {
        etag: Option<String>,
        last_modified: Option<String>,
        /// Served as an abbreviated packument (`application/vnd.npm.install-v1+json`).
        abbreviated: bool,
    },
}

/// Packuments of 20+ MB exist (`next`); anything far beyond is refused rather than buffered.
const MAX_DOCUMENT_BYTES: u64 = 512 << 20;

impl HttpClient {
    /// GETs a JSON document of the kind `accept` asks for, revalidating a cached copy with
    /// `If-None-Match` / `If-Modified-Since` when given.
    pub fn get_document(
        &self,
        url: &str,
        accept: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
        body: &mut Vec<u8>,
    ) -> Result<Document, HttpFailure> {
        // Packuments are JSON that gzip shrinks ~8x (next's 20 MB document to ~2 MB), and the
        // npm registry compresses when asked, as npm and pnpm ask.
        let mut request = self
            .request(url)
            .header("accept", accept)
            .header("accept-encoding", "gzip");
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        if let Some(last_modified) = last_modified {
            request = request.header("if-modified-since", last_modified);
        }
        let response = request.call().map_err(|error| self.failure(url, error))?;
        let status = response.status().as_u16();
        if status == 304 {
            return Ok(Document::NotModified);
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        if status != 200 {
            let reason = response.status().canonical_reason().unwrap_or("");
            return Err(HttpFailure {
                message: format!("HTTP {status} {reason}").trim_end().to_owned(),
                retryable: status >= 500 || status == 429 || status == 408,
                retry_after: header("retry-after")
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            });
        }
        let (etag, last_modified) = (header("etag"), header("last-modified"));
        let abbreviated = header("content-type").is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/vnd.npm.install-v1+json")
        });
        let encoding = header("content-encoding").map(|value| value.trim().to_ascii_lowercase());
        let gzip = match encoding.as_deref() {
            None | Some("" | "identity") => false,
            Some("gzip" | "x-gzip") => true,
            Some(encoding) => {
                return Err(HttpFailure {
                    message: format!("unsupported Content-Encoding `{encoding}`"),
                    retryable: false,
                    retry_after: None,
                });
            }
        };
        // Sized from Content-Length up front: growing a 20 MB buffer by doubling cost ~10% of
        // the metadata threads' time in copies and page faults (PERF.md). Compressed, the
        // length is a guess at a tenth.
        let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
        let expected = length
            .unwrap_or(0)
            .saturating_mul(if gzip { 10 } else { 1 });
        // The caller's buffer, reused from document to document, so its pages fault once per
        // thread rather than once per document (page faults were ~6% of p0's CPU). Ordinary
        // pages, not transparent huge ones: measured here, a huge page's first touch took ~6 ms
        // and they cost p0 3% of its CPU (PERF.md, session 21).
        body.clear();
        body.reserve(expected.min(MAX_DOCUMENT_BYTES) as usize);
        let mut reader = response
            .into_body()
            .into_with_config()
            .limit(MAX_DOCUMENT_BYTES)
            .reader();
        let read = match gzip {
            // The same cap on what it inflates to: a gzip bomb is refused, not buffered.
            true => flate2::read::MultiGzDecoder::new(reader)
                .take(MAX_DOCUMENT_BYTES + 1)
                .read_to_end(body),
            false => reader.read_to_end(body),
        };
        let failure = |message: String| HttpFailure {
            message,
            retryable: true,
            retry_after: None,
        };
        read.map_err(|error| failure(error.to_string()))?;
        if body.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(HttpFailure {
                retryable: false,
                ..failure(format!("inflates to over {MAX_DOCUMENT_BYTES} bytes"))
            });
        }
        Ok(Document::Body {
            etag,
            last_modified,
            abbreviated,
        })
    }
}

/// Resolves each host once per client and shares the answer between threads.
///
/// Measured here (PERF.md): with 24 threads each resolving on its own connection, glibc's stub
/// resolver stalled 5 s (its timeout) on some concurrent lookups, and a 1,000-package install
/// took 66 s instead of ~15 s. One lookup per host, single-flight, removes the stalls.
#[derive(Debug, Default)]
struct CachingResolver {
    inner: DefaultResolver,
    hosts: Mutex<HashMap<String, Arc<OnceLock<Result<ResolvedSocketAddrs, String>>>>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str())
        );
        let slot = self
            .hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        // Concurrent callers for the same host wait here for the first lookup.
        let result = slot.get_or_init(|| {
            self.inner
                .resolve(uri, config, timeout)
                .map_err(|e| e.to_string())
        });
        match result {
            Ok(addresses) => Ok(addresses.clone()),
            Err(message) => {
                // Do not cache failures: the next attempt (a retry) looks up again.
                self.hosts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                Err(ureq::Error::Io(std::io::Error::other(format!(
                    "failed to resolve {key}: {message}"
                ))))
            }
        }
    }
}

/// The system bundle (`SSL_CERT_FILE`, else the Debian/Fedora/Alpine bundle paths, else every
/// PEM in `SSL_CERT_DIR` or `/etc/ssl/certs`) plus the extra files. With nothing found, the
/// compiled-in Mozilla roots.
/// The system bundle, then `extra` PEM files, then `inline` PEM text (npm's `ca`, its newlines
/// written `\n`).
fn load_root_certificates(
    extra: &[PathBuf],
    inline: Option<&str>,
) -> Result<RootCerts, InstallError> {
    let mut certificates: Vec<Certificate<'static>> = Vec::new();
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .into_iter()
            .map(PathBuf::from),
        );
    if let Some(path) = bundle.into_iter().find(|path| path.is_file()) {
        add_pem_file(&path, &mut certificates)?;
    } else {
        let dir = std::env::var_os("SSL_CERT_DIR")
            .map_or_else(|| PathBuf::from("/etc/ssl/certs"), PathBuf::from);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path
                    .extension()
                    .is_some_and(|ext| ext == "pem" || ext == "crt")
                {
                    add_pem_file(&path, &mut certificates)?;
                }
            }
        }
    }
    for path in extra {
        add_pem_file(path, &mut certificates)?;
    }
    if let Some(inline) = inline.filter(|pem| !pem.trim().is_empty()) {
        let pem = inline.replace("\\n", "\n");
        add_pem(
            pem.as_bytes(),
            Path::new("the `ca` setting"),
            &mut certificates,
        )?;
    }
    if certificates.is_empty() {
        return Ok(RootCerts::WebPki);
    }
    Ok(RootCerts::Specific(Arc::new(certificates)))
}

fn add_pem_file(
    path: &Path,
    certificates: &mut Vec<Certificate<'static>>,
) -> Result<(), InstallError> {
    let pem = std::fs::read(path)
        .map_err(|error| InstallError::io("read CA certificates from", path, error))?;
    add_pem(&pem, path, certificates)
}

/// The certificates of PEM text (other items skipped); `origin` names it in errors.
pub(crate) fn add_pem(
    pem: &[u8],
    origin: &Path,
    certificates: &mut Vec<Certificate<'static>>,
) -> Result<(), InstallError> {
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(certificate)) => certificates.push(certificate.to_owned()),
            Ok(_) => {}
            Err(error) => {
                return Err(InstallError::InvalidFile {
                    path: origin.to_path_buf(),
                    message: error.to_string(),
                });
            }
        }
    }
    Ok(())
}
