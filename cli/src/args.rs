//! Command-line arguments (argh).

use std::path::PathBuf;

use argh::FromArgs;

/// flowpm: a fast JavaScript package manager with pnpm's node_modules layout.
#[derive(FromArgs, Debug)]
pub struct Cli {
    /// print the version and exit
    #[argh(switch, short = 'v')]
    pub version: bool,

    /// run as if started in this directory
    #[argh(option, short = 'C')]
    pub dir: Option<PathBuf>,

    #[argh(subcommand)]
    pub command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Install(InstallArgs),
    Add(AddArgs),
    Remove(RemoveArgs),
    Update(UpdateArgs),
    Bench(BenchArgs),
    Store(StoreArgs),
}

/// inspect and maintain the package store
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "store")]
pub struct StoreArgs {
    #[argh(subcommand)]
    pub command: StoreCommand,
}

impl StoreCommand {
    /// `--store-dir`, given after the subcommand as with pnpm (`flowpm store path --store-dir D`).
    pub fn store_dir(&self) -> Option<PathBuf> {
        match self {
            StoreCommand::Path(args) => args.store_dir.clone(),
            StoreCommand::Status(args) => args.store_dir.clone(),
            StoreCommand::Verify(args) => args.store_dir.clone(),
            StoreCommand::Prune(args) => args.store_dir.clone(),
        }
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum StoreCommand {
    Path(StorePath),
    Status(StoreStatusArgs),
    Verify(StoreVerify),
    Prune(StorePrune),
}

/// print the store directory
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "path")]
pub struct StorePath {
    /// the store directory (default: as `install` would use it)
    #[argh(option)]
    pub store_dir: Option<PathBuf>,
}

/// count packages, files and bytes in the store
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
pub struct StoreStatusArgs {
    /// the store directory (default: as `install` would use it)
    #[argh(option)]
    pub store_dir: Option<PathBuf>,
}

/// re-hash every file the store index references and report bad ones
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "verify")]
pub struct StoreVerify {
    /// the store directory (default: as `install` would use it)
    #[argh(option)]
    pub store_dir: Option<PathBuf>,
    /// delete bad files and the index entries that list them (they are downloaded again)
    #[argh(switch)]
    pub fix: bool,
}

/// remove files no package references and leftover temp files (not while an install runs)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "prune")]
pub struct StorePrune {
    /// the store directory (default: as `install` would use it)
    #[argh(option)]
    pub store_dir: Option<PathBuf>,
}

/// run one stage of the engine alone and report its throughput
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "bench")]
pub struct BenchArgs {
    #[argh(subcommand)]
    pub stage: BenchStage,
    /// print the result as one JSON line per stage instead of a table
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum BenchStage {
    Fetch(BenchFetch),
    Decode(BenchDecode),
    Write(BenchWrite),
    Index(BenchIndex),
    Link(BenchLink),
}

/// download every tarball of the project's lockfile (bodies dropped, no decoding)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "fetch")]
pub struct BenchFetch {
    /// the registry URL
    #[argh(option)]
    pub registry: Option<String>,
    /// concurrent downloads
    #[argh(option)]
    pub threads: Option<usize>,
}

/// gunzip + untar + verify every .tgz under a directory, writing nothing
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "decode")]
pub struct BenchDecode {
    /// directory searched for .tgz files
    #[argh(positional)]
    pub tarballs: PathBuf,
    /// decoder threads
    #[argh(option)]
    pub threads: Option<usize>,
}

/// hash + write the files of every .tgz under a directory into an empty store
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "write")]
pub struct BenchWrite {
    /// directory searched for .tgz files (decoded into memory first, untimed)
    #[argh(positional)]
    pub tarballs: PathBuf,
    /// an empty or missing directory for the store (default: a temp dir, removed afterwards)
    #[argh(option)]
    pub store_dir: Option<PathBuf>,
    /// writer threads
    #[argh(option)]
    pub threads: Option<usize>,
}

/// commit synthetic package file lists to the LMDB index
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "index")]
pub struct BenchIndex {
    /// number of packages
    #[argh(option, default = "10_000")]
    pub packages: usize,
    /// files per package
    #[argh(option, default = "30")]
    pub files: usize,
    /// store directory (default: a temp dir, removed afterwards)
    #[argh(option)]
    pub store_dir: Option<PathBuf>,
}

/// lay out node_modules and import every package from a warm store
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "link")]
pub struct BenchLink {
    /// the registry URL (used only to warm the store)
    #[argh(option)]
    pub registry: Option<String>,
    /// the store directory
    #[argh(option)]
    pub store_dir: Option<PathBuf>,
    /// auto, clone, hardlink or copy
    #[argh(option, default = "String::from(\"auto\")")]
    pub package_import_method: String,
}

/// add packages to package.json (dependencies unless -D or -O), then install
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "add")]
pub struct AddArgs {
    /// packages: name, name@range, name@tag, alias@npm:name@range
    #[argh(positional)]
    pub packages: Vec<String>,
    /// add to devDependencies
    #[argh(switch, short = 'D')]
    pub save_dev: bool,
    /// add to optionalDependencies
    #[argh(switch, short = 'O')]
    pub save_optional: bool,
    /// save the exact version instead of a ^range
    #[argh(switch, short = 'E')]
    pub save_exact: bool,
    /// resolve and write pnpm-lock.yaml without installing
    #[argh(switch)]
    pub lockfile_only: bool,
    /// use only the store and cached metadata
    #[argh(switch)]
    pub offline: bool,
    /// use cached metadata without revalidating it
    #[argh(switch)]
    pub prefer_offline: bool,
    /// run no lifecycle scripts: neither the projects' nor dependencies' builds
    #[argh(switch)]
    pub ignore_scripts: bool,
    /// the npm registry URL
    #[argh(option)]
    pub registry: Option<String>,
    /// the store directory
    #[argh(option)]
    pub store_dir: Option<PathBuf>,
    /// output: default, silent, or ndjson
    #[argh(option, default = "String::from(\"default\")")]
    pub reporter: String,
}

/// remove packages from package.json, then install
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "remove")]
pub struct RemoveArgs {
    /// package names
    #[argh(positional)]
    pub packages: Vec<String>,
    /// update the lockfile only
    #[argh(switch)]
    pub lockfile_only: bool,
    /// use only the store and cached metadata
    #[argh(switch)]
    pub offline: bool,
    /// use cached metadata without revalidating it
    #[argh(switch)]
    pub prefer_offline: bool,
    /// run no lifecycle scripts: neither the projects' nor dependencies' builds
    #[argh(switch)]
    pub ignore_scripts: bool,
    /// the npm registry URL
    #[argh(option)]
    pub registry: Option<String>,
    /// the store directory
    #[argh(option)]
    pub store_dir: Option<PathBuf>,
    /// output: default, silent, or ndjson
    #[argh(option, default = "String::from(\"default\")")]
    pub reporter: String,
}

/// update packages (all when none named) to the newest versions their ranges allow
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "update")]
pub struct UpdateArgs {
    /// package names (default: every dependency)
    #[argh(positional)]
    pub packages: Vec<String>,
    /// move ranges to the latest version (keeping ^, ~ or exact style)
    #[argh(switch, short = 'L')]
    pub latest: bool,
    /// update the lockfile only
    #[argh(switch)]
    pub lockfile_only: bool,
    /// use cached metadata without revalidating it
    #[argh(switch)]
    pub prefer_offline: bool,
    /// run no lifecycle scripts: neither the projects' nor dependencies' builds
    #[argh(switch)]
    pub ignore_scripts: bool,
    /// the npm registry URL
    #[argh(option)]
    pub registry: Option<String>,
    /// the store directory
    #[argh(option)]
    pub store_dir: Option<PathBuf>,
    /// output: default, silent, or ndjson
    #[argh(option, default = "String::from(\"default\")")]
    pub reporter: String,
}

/// install the dependencies of package.json (resolving and writing pnpm-lock.yaml if it is
/// missing or out of date)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "install")]
pub struct InstallArgs {
    /// fail if pnpm-lock.yaml does not match package.json instead of updating it
    #[argh(switch)]
    pub frozen_lockfile: bool,
    /// resolve and write pnpm-lock.yaml without installing
    #[argh(switch)]
    pub lockfile_only: bool,
    /// use cached metadata without revalidating it
    #[argh(switch)]
    pub prefer_offline: bool,
    /// run no lifecycle scripts: neither the projects' nor dependencies' builds
    #[argh(switch)]
    pub ignore_scripts: bool,
    /// use only the store; fail if a package would need downloading
    #[argh(switch)]
    pub offline: bool,
    /// install only dependencies and optionalDependencies (no devDependencies)
    #[argh(switch, short = 'P')]
    pub prod: bool,
    /// the npm registry URL (default: npm_config_registry, .npmrc, npm's setting)
    #[argh(option)]
    pub registry: Option<String>,
    /// the store directory (default: .npmrc store-dir, else $XDG_DATA_HOME/flowpm/store)
    #[argh(option)]
    pub store_dir: Option<PathBuf>,
    /// how files get into node_modules: auto (clone, else hardlink), clone, hardlink or copy
    #[argh(option, default = "String::from(\"auto\")")]
    pub package_import_method: String,
    /// output: default (progress on a terminal, one summary line), silent, or ndjson
    #[argh(option, default = "String::from(\"default\")")]
    pub reporter: String,
}

/// Rewrites arguments into what argh accepts: `--flag=value` becomes `--flag value` (argh only
/// takes the latter; scripts written for pnpm use both), and the alias `i` becomes `install`.
/// A lone `--` ends option processing.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut options_done = false;
    let mut command_seen = false;
    let mut takes_value = false;
    for arg in args {
        let is_value = std::mem::replace(&mut takes_value, arg == "-C" || arg == "--dir");
        if !command_seen && !is_value && !arg.starts_with('-') {
            command_seen = true;
            let canonical = match arg.as_str() {
                "i" => Some("install"),
                "rm" | "uninstall" | "un" => Some("remove"),
                "up" | "upgrade" => Some("update"),
                _ => None,
            };
            if let Some(canonical) = canonical {
                out.push(canonical.to_owned());
                continue;
            }
        }
        if !options_done && arg == "--" {
            options_done = true;
        }
        match arg.split_once('=') {
            Some((flag, value)) if !options_done && flag.starts_with("--") && flag.len() > 2 => {
                out.push(flag.to_owned());
                out.push(value.to_owned());
            }
            _ => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_flag_equals_value_and_expands_aliases() {
        let args = [
            "-C",
            "i",
            "i",
            "--registry=http://127.0.0.1:1/?a=b",
            "--prod",
            "--",
            "--x=y",
        ]
        .map(String::from);
        assert_eq!(
            normalize_args(args),
            [
                "-C",
                "i",
                "install",
                "--registry",
                "http://127.0.0.1:1/?a=b",
                "--prod",
                "--",
                "--x=y"
            ]
        );
    }
}
