//! The `flowpm` command line: a thin front end over `flowpm-stages`.

mod args;
mod bench;
mod progress;
mod store;

use std::process::ExitCode;

use anyhow::{Context, bail};
use flowpm_stages::{ImportMethod, InstallOptions, install};

use crate::args::{AddArgs, Cli, Command, InstallArgs, RemoveArgs, UpdateArgs, normalize_args};
use crate::progress::{Mode, Progress};

fn main() -> ExitCode {
    // Before any thread shares the descriptor table (see the function).
    flowpm_stages::capacity::reserve_descriptors();
    let raw: Vec<String> = std::env::args().collect();
    let program = raw
        .first()
        .map(String::as_str)
        .unwrap_or("flowpm")
        .to_owned();
    let args = normalize_args(raw.into_iter().skip(1));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cli = match <Cli as argh::FromArgs>::from_args(&[&program], &arg_refs) {
        Ok(cli) => cli,
        Err(exit) => {
            if exit.status.is_ok() {
                println!("{}", exit.output);
                return ExitCode::SUCCESS;
            }
            eprintln!("{}", exit.output);
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.version {
        println!("flowpm {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let project_dir = cli.dir.unwrap_or_else(|| ".".into());
    match cli.command {
        Some(Command::Install(args)) => run_install(project_dir, args),
        Some(Command::Add(args)) => run_add(project_dir, args),
        Some(Command::Remove(args)) => run_remove(project_dir, args),
        Some(Command::Update(args)) => run_update(project_dir, args),
        Some(Command::Bench(args)) => bench::run(project_dir, args),
        Some(Command::Store(args)) => store::run(project_dir, args),
        None => bail!("no command given; run `flowpm help` for the list"),
    }
}

pub(crate) fn parse_import_method(text: &str) -> anyhow::Result<ImportMethod> {
    Ok(match text {
        "auto" => ImportMethod::Auto,
        "clone" => ImportMethod::Clone,
        "hardlink" => ImportMethod::Hardlink,
        "copy" => ImportMethod::Copy,
        other => {
            bail!("--package-import-method must be auto, clone, hardlink or copy, not `{other}`")
        }
    })
}

fn run_install(project_dir: std::path::PathBuf, args: InstallArgs) -> anyhow::Result<()> {
    let import_method = parse_import_method(&args.package_import_method)?;
    let options = InstallOptions {
        project_dir,
        frozen_lockfile: args.frozen_lockfile,
        offline: args.offline,
        production_only: args.prod,
        registry: args.registry,
        store_dir: args.store_dir,
        import_method,
        lockfile_only: args.lockfile_only,
        prefer_offline: args.prefer_offline,
        ignore_scripts: args.ignore_scripts,
        own_command: std::env::current_exe().ok(),
        ..InstallOptions::default()
    };
    with_progress(&args.reporter, "install failed", |reporter| {
        install(&options, reporter)
    })
}

/// Runs one command with the progress line (or ndjson / silence) and prints the summary.
fn with_progress(
    reporter: &str,
    failure: &'static str,
    command: impl FnOnce(&Progress) -> Result<flowpm_stages::InstallReport, flowpm_stages::InstallError>,
) -> anyhow::Result<()> {
    let Some(mode) = Mode::parse(reporter) else {
        bail!("--reporter must be default, silent or ndjson, not `{reporter}`");
    };
    let progress = Progress::new(mode);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| progress.render_until_done());
        let result = command(&progress);
        progress.finish();
        result
    });
    let report = result.context(failure)?;
    progress.summary(&report);
    Ok(())
}

fn run_add(project_dir: std::path::PathBuf, args: AddArgs) -> anyhow::Result<()> {
    use flowpm_stages::commands::{AddSpec, SavePrefix, add};
    use flowpm_stages::plan::DependencyGroup;
    if args.packages.is_empty() {
        bail!("`flowpm add` needs at least one package");
    }
    let specs = args
        .packages
        .iter()
        .map(|p| AddSpec::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let group = match (args.save_dev, args.save_optional) {
        (true, true) => bail!("-D and -O cannot be combined"),
        (true, false) => DependencyGroup::Development,
        (false, true) => DependencyGroup::Optional,
        (false, false) => DependencyGroup::Production,
    };
    let prefix = if args.save_exact {
        SavePrefix::Exact
    } else {
        SavePrefix::Caret
    };
    let options = resolving(
        project_dir,
        args.registry,
        args.store_dir,
        (args.offline, args.prefer_offline),
        args.lockfile_only,
        args.ignore_scripts,
    );
    with_progress(&args.reporter, "add failed", |reporter| {
        add(&options, &specs, group, prefix, reporter)
    })
}

/// The options `add`, `remove` and `update` share.
fn resolving(
    project_dir: std::path::PathBuf,
    registry: Option<String>,
    store_dir: Option<std::path::PathBuf>,
    (offline, prefer_offline): (bool, bool),
    lockfile_only: bool,
    ignore_scripts: bool,
) -> InstallOptions {
    InstallOptions {
        project_dir,
        registry,
        store_dir,
        offline,
        prefer_offline,
        lockfile_only,
        ignore_scripts,
        own_command: std::env::current_exe().ok(),
        ..InstallOptions::default()
    }
}

fn run_remove(project_dir: std::path::PathBuf, args: RemoveArgs) -> anyhow::Result<()> {
    if args.packages.is_empty() {
        bail!("`flowpm remove` needs at least one package name");
    }
    let options = resolving(
        project_dir,
        args.registry,
        args.store_dir,
        (args.offline, args.prefer_offline),
        args.lockfile_only,
        args.ignore_scripts,
    );
    with_progress(&args.reporter, "remove failed", |reporter| {
        flowpm_stages::commands::remove(&options, &args.packages, reporter)
    })
}

fn run_update(project_dir: std::path::PathBuf, args: UpdateArgs) -> anyhow::Result<()> {
    let options = resolving(
        project_dir,
        args.registry,
        args.store_dir,
        (false, args.prefer_offline),
        args.lockfile_only,
        args.ignore_scripts,
    );
    with_progress(&args.reporter, "update failed", |reporter| {
        flowpm_stages::commands::update(&options, &args.packages, args.latest, reporter)
    })
}
