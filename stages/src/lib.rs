//! flowpm's install engine: resolution (package.json -> pnpm-lock.yaml, [`resolve`]), the
//! stages of an install, and the synchronous API that runs them ([`install`]; `add`, `remove`
//! and `update` in [`commands`]). Without a current lockfile, `install` resolves first.
//!
//! ```no_run
//! use flowpm_stages::{InstallOptions, SilentReporter, install};
//!
//! let options = InstallOptions { project_dir: "path/to/project".into(), frozen_lockfile: true, ..Default::default() };
//! let report = install(&options, &SilentReporter)?;
//! println!("{} packages, {} downloaded", report.packages, report.fetched);
//! # Ok::<(), flowpm_stages::InstallError>(())
//! ```
//!
//! Stages never spawn threads: `flowpm-pipeline` does. Each stage module has a `run_*` loop
//! that a pipeline thread calls; they exchange the types in [`messages`].

pub mod bench;
mod bins;
pub mod capacity;
pub mod catalogs;
mod client_cert;
pub mod commands;
pub mod config;
pub mod decode;
pub mod dep_path;
mod error;
mod fast_hash;
pub mod fetch;
pub mod git;
mod git_prepare;
mod gunzip;
pub mod hoist;
mod http;
mod index;
mod install;
pub mod integrity;
pub mod lifecycle;
pub mod link;
mod local_outdated;
pub mod lockfile;
pub mod lockfile_read;
pub mod lockfile_write;
pub mod manifest;
pub mod manifest_edit;
pub mod messages;
mod metadata;
mod name_glob;
pub mod overrides;
pub mod package_extensions;
pub mod packlist;
pub mod packument;
pub mod patch;
pub mod plan;
mod plan_cache;
pub mod platform;
mod proxy;
mod release_age;
mod replace;
mod report;
pub mod resolve;
mod sha512_lanes;
#[cfg(target_arch = "x86_64")]
mod sha512_x8;
mod side_effects;
pub mod stream_write;
pub mod workspace;
pub mod write;

pub use error::InstallError;
pub use flowpm_pipeline::{CancelToken, StageSnapshot};
pub use install::{InstallOptions, install, store_dir_for};
pub use link::ImportMethod;
pub use report::{InstallReport, Reporter, SilentReporter};
