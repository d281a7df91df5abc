//! What an install tells its caller while it runs (a [`Reporter`]) and when it ends
//! ([`InstallReport`]).

use std::time::Duration;

use flowpm_pipeline::StageSnapshot;

/// Progress callbacks, called from stage threads: implementations must be cheap and must not
/// block (update counters; render elsewhere).
pub trait Reporter: Sync {
    /// The plan is known: `packages` snapshots, of which `to_fetch` tarballs must be downloaded.
    fn on_plan(&self, _packages: usize, _to_fetch: usize) {}
    /// Bytes of tarball received (called often, with small deltas).
    fn on_downloaded(&self, _bytes: u64) {}
    /// A tarball is verified and all its files are in the store.
    fn on_fetched(&self, _package: &str) {}
    /// A package's files are imported into one snapshot directory.
    fn on_imported(&self, _package: &str) {}
    /// Something the user should know that does not stop the install.
    fn on_warning(&self, _message: &str) {}
}

/// A reporter that ignores everything.
pub struct SilentReporter;

impl Reporter for SilentReporter {}

/// The result of a successful install.
#[derive(Debug, Default, Clone)]
pub struct InstallReport {
    /// Snapshots in the installed graph.
    pub packages: usize,
    /// Tarballs downloaded.
    pub fetched: usize,
    /// Tarballs whose files were already in the store.
    pub reused: usize,
    /// Optional packages skipped for this platform.
    pub skipped_optional: usize,
    /// Files imported into node_modules.
    pub files_imported: u64,
    /// Files newly written to the store.
    pub files_written: u64,
    pub bytes_downloaded: u64,
    pub bytes_imported: u64,
    pub elapsed: Duration,
    /// True when nothing needed doing.
    pub up_to_date: bool,
    /// Per-stage metrics of the pipeline run (empty for a no-op).
    pub stages: Vec<StageSnapshot>,
    pub warnings: Vec<String>,
}
