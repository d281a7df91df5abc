use std::path::PathBuf;

use flowpm_store::StoreError;

/// Everything that can make an install fail. Each variant names the file, package or URL
/// involved and the cause, so the message alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    #[error("failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not valid: {message}", path.display())]
    InvalidFile { path: PathBuf, message: String },
    /// A setting flowpm does not act on yet, refused rather than ignored.
    #[error("`{}`: {message}", path.display())]
    UnsupportedSetting { path: PathBuf, message: String },
    #[error("`{}` has lockfileVersion {version}; flowpm reads version 9", path.display())]
    UnsupportedLockfileVersion { path: PathBuf, version: String },
    #[error("no pnpm-lock.yaml in `{}`: {reason}", dir.display())]
    NoLockfile { dir: PathBuf, reason: &'static str },
    #[error(
        "pnpm-lock.yaml is not up to date with package.json: {reason} (run `flowpm install` without --frozen-lockfile to update it)"
    )]
    LockfileOutdated { reason: String },
    #[error(
        "pnpm-lock.yaml references `{dep_path}` (needed by {needed_by}) but has no {section} entry for it"
    )]
    LockfileMissingEntry {
        dep_path: String,
        needed_by: String,
        section: &'static str,
    },
    #[error("{package}: the `{event}` script (`{script}`) {outcome}")]
    Script {
        package: String,
        event: String,
        script: String,
        outcome: String,
    },
    #[error(
        "ignored build scripts: {}. Allow them in pnpm-workspace.yaml (`allowBuilds:` with `<name>: true`, or `false` to skip them quietly), or install with --ignore-scripts",
        packages.join(", ")
    )]
    IgnoredBuilds { packages: Vec<String> },
    #[error(
        "the git-hosted package `{package}` needs to execute build scripts but is not in the \
         \"allowBuilds\" allowlist; to allow it, add to pnpm-workspace.yaml:\nallowBuilds:\n  \
         \"{key}\": true"
    )]
    GitBuildNotAllowed { package: String, key: String },
    #[error("{package}: unsupported dependency reference `{reference}` ({why})")]
    UnsupportedReference {
        package: String,
        reference: String,
        why: String,
    },
    #[error("invalid package name `{name}`: {why}")]
    InvalidPackageName { name: String, why: &'static str },
    #[error("{package}: failed to download {url}: {cause}")]
    Fetch {
        package: String,
        url: String,
        cause: String,
    },
    #[error("{package}: integrity check failed for {url}: expected {expected}, got {actual}")]
    IntegrityMismatch {
        package: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{package}: bad tarball from {url}: {cause}")]
    BadTarball {
        package: String,
        url: String,
        cause: String,
    },
    #[error("{package}: the lockfile gives no usable integrity (`{integrity}`)")]
    BadIntegrity { package: String, integrity: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{package}: failed to {action} `{}`", path.display())]
    Link {
        package: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("network unavailable: `{package}` is not in the store and --offline was given")]
    Offline { package: String },
    #[error("failed to resolve dependencies: {0}")]
    Resolve(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the install was cancelled")]
    Cancelled,
    #[error("internal error: {0}")]
    Internal(String),
}

impl InstallError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        InstallError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<flowpm_pipeline::PipelineError<InstallError>> for InstallError {
    fn from(error: flowpm_pipeline::PipelineError<InstallError>) -> Self {
        use flowpm_pipeline::PipelineError;
        match error {
            PipelineError::Stage { error, .. } => error,
            PipelineError::Panicked { stage, message } => {
                InstallError::Internal(format!("the {stage} stage panicked: {message}"))
            }
            PipelineError::Cancelled => InstallError::Cancelled,
        }
    }
}
