//! The metadata stage: packument fetcher threads with a zstd-compressed cache in the store
//! (`v1/metadata/<name>.zst`, full documents in `v1/metadata-full/`), revalidated with ETag /
//! Last-Modified.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flowpm_pipeline::{Receiver, Sender, StageContext};

use crate::InstallError;
use crate::fetch::{Fetcher, backoff};
use crate::http::Document;
use crate::packument::{Packument, ReleaseAge};

/// How the cache is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Revalidate cached documents with the registry (the default).
    Revalidate,
    /// Use a cached document as is; ask the registry only for what is not cached.
    PreferOffline,
    /// Never touch the network.
    Offline,
}

/// A loaded packument, or why it could not be had (becomes a resolution error naming the chain).
pub type PackumentResult = (String, Result<Arc<Packument>, String>);

/// A packument wanted by resolution; `refresh` asks the registry even under `--prefer-offline`
/// (the cached copy had no version for a range).
pub type PackumentRequest = (String, bool);

/// zstd's fast level 3 (-3). The cache holds compact documents ([`Packument::body`]):
/// realworld's 36.7 MB compress 2.8x at ~1 GB/s (level 1: 3.9x at ~0.5 GB/s). A cold resolution
/// is CPU-bound, so the cache takes 13 MB instead of 9.5 for half the compression CPU (PERF.md).
const CACHE_LEVEL: i32 = -3;

/// A packument (or why not), the bytes downloaded for it, and the cache entry to write.
type Loaded = (
    Result<Arc<Packument>, String>,
    u64,
    Option<(PathBuf, CacheEntry)>,
);

/// What a packument request asks for: npm's abbreviated document first, as npm and pnpm ask
/// (a fraction of the full one's size), else the full one.
const ABBREVIATED: &str =
    "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*";
const FULL: &str = "application/json; q=1.0, */*";

/// The two kinds of document, each cached apart (as pnpm keeps `metadata` and `metadata-full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Abbreviated,
    Full,
}

pub struct MetadataFetcher<'a> {
    pub fetcher: &'a Fetcher<'a>,
    /// The store's `v1`: caches in `metadata/` and `metadata-full/`.
    pub cache_dir: PathBuf,
    pub mode: CacheMode,
    /// `minimumReleaseAge`: an abbreviated packument modified after its cutoff is fetched
    /// again in full, for its versions' publish times.
    pub release_age: &'a ReleaseAge,
}

impl MetadataFetcher<'_> {
    pub fn new<'a>(
        fetcher: &'a Fetcher<'a>,
        store_dir: &Path,
        mode: CacheMode,
        release_age: &'a ReleaseAge,
    ) -> MetadataFetcher<'a> {
        MetadataFetcher {
            fetcher,
            cache_dir: store_dir.join("v1"),
            mode,
            release_age,
        }
    }

    fn url(&self, name: &str) -> Result<String, String> {
        let registry = self
            .fetcher
            .config
            .registry_for(name)
            .map_err(|error| error.to_string())?;
        Ok(format!("{registry}{}", name.replace('/', "%2f")))
    }

    fn cache_path(&self, name: &str, kind: Kind) -> PathBuf {
        // `metadata` held full documents before abbreviated ones were asked for: either
        // answers a request for the abbreviated one.
        let dir = match kind {
            Kind::Abbreviated => "metadata",
            Kind::Full => "metadata-full",
        };
        self.cache_dir
            .join(dir)
            .join(format!("{}.zst", name.replace('/', "%2f")))
    }

    /// The packument of `name` from the cache or the registry, the bytes downloaded, and the
    /// cache entry to write (where, and its validators) once the packument has been handed on
    /// (`None`: the cache is current).
    ///
    /// As pnpm 12 does it: the abbreviated document, then, when `minimumReleaseAge` applies and
    /// it was modified since the cutoff, the full one, whose `time` says which versions are old
    /// enough. A registry that answers with the full document is asked once.
    ///
    /// `buffer` holds each document while it is parsed (the caller's, reused).
    pub fn load(
        &self,
        context: &StageContext,
        request: &PackumentRequest,
        buffer: &mut Vec<u8>,
    ) -> Loaded {
        let (result, bytes, entry) = self.load_kind(context, request, Kind::Abbreviated, buffer);
        let abbreviated = match &result {
            Ok(packument)
                if packument.needs_publish_times(self.release_age.cutoff_for(&request.0)) =>
            {
                packument
            }
            _ => return (result, bytes, entry),
        };
        // Kept: the next run revalidates it before deciding again.
        if let Some((path, entry)) = &entry {
            let compressor = zstd::bulk::Compressor::new(CACHE_LEVEL);
            if let Ok(mut compressor) = compressor {
                let _ = write_cache(path, entry, abbreviated.body(), &mut compressor);
            }
        }
        let (full, full_bytes, full_entry) = self.load_kind(context, request, Kind::Full, buffer);
        match full {
            // Offline without a full copy: the versions' ages are unknown, all count as old.
            Err(_) if self.mode == CacheMode::Offline => {
                self.fetcher.reporter.on_warning(&format!(
                    "{}: its publish times are not in the metadata cache; minimumReleaseAge \
                     is not applied to it (--offline)",
                    request.0
                ));
                (result, bytes, None)
            }
            full => (full, bytes + full_bytes, full_entry),
        }
    }

    fn load_kind(
        &self,
        context: &StageContext,
        (name, refresh): &PackumentRequest,
        kind: Kind,
        buffer: &mut Vec<u8>,
    ) -> Loaded {
        let mode = match self.mode {
            CacheMode::PreferOffline if *refresh => CacheMode::Revalidate,
            mode => mode,
        };
        let path = self.cache_path(name, kind);
        let cached = read_cache(&path, buffer);
        let url = match self.url(name) {
            Ok(url) => url,
            Err(error) => return (Err(error), 0, None),
        };
        // `unrevalidated`: served from the cache without asking the registry.
        // A cached document was compacted when it was written: read as it is.
        let parse = |body: &[u8], compacted: bool, abbreviated: bool, unrevalidated: bool| {
            let parsed = match compacted {
                true => Packument::parse_compacted(body),
                false => Packument::parse(body),
            };
            parsed
                .map(|mut packument| {
                    packument.unrevalidated = unrevalidated;
                    packument.abbreviated |= abbreviated;
                    Arc::new(packument)
                })
                .map_err(|error| format!("malformed packument from {url}: {}", error.0))
        };
        let (etag, last_modified) = match cached {
            Some(entry) if mode != CacheMode::Revalidate => {
                let unrevalidated = mode == CacheMode::PreferOffline;
                let body = &buffer[entry.body_start..];
                let parsed = parse(body, entry.compacted, entry.abbreviated, unrevalidated);
                return (parsed, 0, None);
            }
            None if mode == CacheMode::Offline => {
                return (
                    Err("not in the metadata cache, and --offline was given".to_owned()),
                    0,
                    None,
                );
            }
            Some(ref entry) => (entry.etag.clone(), entry.last_modified.clone()),
            None => (None, None),
        };
        let client = match self.fetcher.client() {
            Ok(client) => client,
            Err(error) => return (Err(error.to_string()), 0, None),
        };
        let accept = match kind {
            Kind::Abbreviated => ABBREVIATED,
            Kind::Full => FULL,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A 304 needs the cached body: the response goes to a buffer of its own then.
            let mut own = Vec::new();
            let target = match cached {
                Some(_) => &mut own,
                None => &mut *buffer,
            };
            let answer = client.get_document(
                &url,
                accept,
                etag.as_deref(),
                last_modified.as_deref(),
                target,
            );
            match answer {
                Ok(Document::NotModified) => {
                    return match cached {
                        Some(entry) => {
                            let body = &buffer[entry.body_start..];
                            (
                                parse(body, entry.compacted, entry.abbreviated, false),
                                0,
                                None,
                            )
                        }
                        None => (
                            Err(format!(
                                "{url} answered 304 Not Modified to a plain request"
                            )),
                            0,
                            None,
                        ),
                    };
                }
                Ok(Document::Body {
                    etag,
                    last_modified,
                    abbreviated,
                }) => {
                    let body = if cached.is_some() { &own } else { &*buffer };
                    let bytes = body.len() as u64;
                    let parsed = parse(body, false, abbreviated, false);
                    let entry = parsed.is_ok().then_some(CacheEntry {
                        etag,
                        last_modified,
                        abbreviated,
                        compacted: true,
                        body_start: 0,
                    });
                    return (parsed, bytes, entry.map(|entry| (path, entry)));
                }
                Err(failure) => {
                    if !failure.retryable || attempt >= self.fetcher.max_attempts {
                        let hint = match failure.message.as_str() {
                            m if m.starts_with("HTTP 404") => " (no such package in the registry)",
                            m if m.starts_with("HTTP 401") || m.starts_with("HTTP 403") => {
                                " (check the registry's auth token in .npmrc)"
                            }
                            _ => "",
                        };
                        return (
                            Err(format!("{} from {url}{hint}", failure.message)),
                            0,
                            None,
                        );
                    }
                    self.fetcher
                        .reporter
                        .on_warning(&format!("{name}: {} from {url}; retrying", failure.message));
                    backoff(context, attempt, failure.retry_after);
                    if context.is_cancelled() {
                        return (Err("cancelled".to_owned()), 0, None);
                    }
                }
            }
        }
    }
}

/// One metadata thread: loads packuments until the request queue closes.
pub fn run_metadata_worker(
    context: &StageContext,
    input: &Receiver<PackumentRequest>,
    output: &Sender<PackumentResult>,
    metadata: &MetadataFetcher<'_>,
) -> Result<(), InstallError> {
    // One compression context per thread: creating one per packument costs more than
    // compressing a small one.
    let mut compressor = zstd::bulk::Compressor::new(CACHE_LEVEL).ok();
    let mut buffer = Vec::new();
    while let Some(request) = context.recv(input) {
        let (result, bytes, cache) = metadata.load(context, &request, &mut buffer);
        let name = request.0;
        context.record_item(bytes);
        let packument = result.as_ref().ok().cloned();
        if context.send(output, (name, result)).is_err() {
            break;
        }
        // Compressed after resolution has the packument. A cache that cannot be written only
        // costs the next run a download.
        if let (Some((path, entry)), Some(packument), Some(compressor)) =
            (cache, packument, compressor.as_mut())
        {
            let _ = write_cache(&path, &entry, packument.body(), compressor);
        }
    }
    Ok(())
}

pub struct CacheEntry {
    etag: Option<String>,
    last_modified: Option<String>,
    /// The body is an abbreviated packument.
    abbreviated: bool,
    /// The body is [`Packument::body`], compacted (caches written before that hold the
    /// document as it came).
    compacted: bool,
    /// Where the body starts in the buffer it was read into.
    body_start: usize,
}

/// Format: zstd of `{"etag":..,"last_modified":..,"abbreviated":..,"compacted":..}\n<packument
/// JSON>` (one or more frames; no `abbreviated`: a full document; no `compacted`: as it came).
/// Decompressed into `data`.
fn read_cache(path: &Path, data: &mut Vec<u8>) -> Option<CacheEntry> {
    let file = std::fs::File::open(path).ok()?;
    data.clear();
    zstd::stream::read::Decoder::new(file)
        .ok()?
        .read_to_end(data)
        .ok()?;
    let newline = data.iter().position(|&b| b == b'\n')?;
    let header: serde_json::Value = serde_json::from_slice(&data[..newline]).ok()?;
    let text = |key: &str| header.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let (etag, last_modified) = (text("etag"), text("last_modified"));
    let flag = |key: &str| header.get(key) == Some(&serde_json::Value::Bool(true));
    let (abbreviated, compacted) = (flag("abbreviated"), flag("compacted"));
    Some(CacheEntry {
        etag,
        last_modified,
        abbreviated,
        compacted,
        body_start: newline + 1,
    })
}

/// Written to a temp file and renamed, so readers never see half a document.
/// Two frames, the header line and the body, each compressed in one call (zstd sizes its
/// tables to the input; the body is not copied behind the header first) and written with one
/// syscall; the reader's decoder runs on across frames.
fn write_cache(
    path: &Path,
    entry: &CacheEntry,
    body: &[u8],
    compressor: &mut zstd::bulk::Compressor<'_>,
) -> std::io::Result<()> {
    let header = serde_json::json!({
        "etag": entry.etag,
        "last_modified": entry.last_modified,
        "abbreviated": entry.abbreviated,
        "compacted": entry.compacted,
    });
    let mut compressed = compressor.compress(format!("{header}\n").as_bytes())?;
    compressed.extend_from_slice(&compressor.compress(body)?);
    let dir = path.parent().expect("cache paths have a parent");
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile_in(dir)?;
    temp.1.write_all(&compressed)?;
    std::fs::rename(&temp.0, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp.0);
    })
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trips_validators_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m").join("@s%2fx.zst");
        let entry = CacheEntry {
            etag: Some("\"abc\"".into()),
            last_modified: None,
            abbreviated: true,
            compacted: true,
            body_start: 0,
        };
        let mut compressor = zstd::bulk::Compressor::new(CACHE_LEVEL).unwrap();
        write_cache(&path, &entry, b"{\"name\":\"@s/x\"}", &mut compressor).unwrap();
        let mut data = Vec::new();
        let read = read_cache(&path, &mut data).unwrap();
        assert_eq!(read.etag.as_deref(), Some("\"abc\""));
        assert_eq!(read.last_modified, None);
        assert!(read.abbreviated && read.compacted);
        assert_eq!(&data[read.body_start..], b"{\"name\":\"@s/x\"}");
        // A torn or foreign file is a miss, not an error.
        std::fs::write(&path, b"garbage").unwrap();
        assert!(read_cache(&path, &mut data).is_none());
    }
}
