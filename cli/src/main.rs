//! The `flowpm` command line: a thin front end over `flowpm-stages`.

mod args;
mod bench;
mod progress;
mod store;

use std::process::ExitCode;

use anyhow::{Context, bail};
use flowpm_stages::{ImportMethod, InstallOptions, install};

use crate::args::{Cli, Command, InstallArgs, normalize_args};
use crate::progress::{Mode, Progress};

fn main() -> ExitCode {
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
    let Some(mode) = Mode::parse(&args.reporter) else {
        bail!(
            "--reporter must be default, silent or ndjson, not `{}`",
            args.reporter
        );
    };
    let options = InstallOptions {
        project_dir,
        frozen_lockfile: args.frozen_lockfile,
        offline: args.offline,
        production_only: args.prod,
        registry: args.registry,
        store_dir: args.store_dir,
        import_method,
        ..InstallOptions::default()
    };
    let progress = Progress::new(mode);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| progress.render_until_done());
        let result = install(&options, &progress);
        progress.finish();
        result
    });
    let report = result.context("install failed")?;
    progress.summary(&report);
    Ok(())
}
