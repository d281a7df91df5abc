//! `flowpm store path | status | verify [--fix] | prune`.

use std::path::PathBuf;

use anyhow::bail;
use flowpm_stages::config::ConfigOverrides;
use flowpm_stages::store_dir_for;
use flowpm_store::Store;

use crate::args::{StoreArgs, StoreCommand};

pub fn run(project_dir: PathBuf, args: StoreArgs) -> anyhow::Result<()> {
    let dir = store_dir_for(
        &project_dir,
        &ConfigOverrides {
            registry: None,
            store_dir: args.command.store_dir(),
        },
    )?;
    match args.command {
        StoreCommand::Path(_) => println!("{}", dir.display()),
        StoreCommand::Status(_) => {
            let status = Store::open(&dir)?.status()?;
            println!("store: {}", dir.display());
            println!("packages: {}", status.packages);
            println!("cached builds: {}", status.cached_builds);
            println!(
                "files: {} ({:.1} MB)",
                status.referenced_files,
                status.referenced_bytes as f64 / 1e6
            );
            println!("temp files: {}", status.temp_files);
        }
        StoreCommand::Verify(verify) => {
            let report = Store::open(&dir)?.verify(verify.fix)?;
            for bad in &report.bad_files {
                eprintln!("bad file: {}: {}", bad.path.display(), bad.reason);
            }
            let builds = match report.cached_builds {
                0 => String::new(),
                n => format!(" and {n} cached builds"),
            };
            println!(
                "verified {} files of {} packages{builds}: {} bad{}",
                report.files_checked,
                report.packages,
                report.bad_files.len(),
                if verify.fix {
                    format!(
                        ", {} entries removed from the index",
                        report.packages_removed
                    )
                } else {
                    String::new()
                }
            );
            if !report.bad_files.is_empty() && !verify.fix {
                bail!("the store has bad files; `flowpm store verify --fix` removes them");
            }
        }
        StoreCommand::Prune(_) => {
            let report = Store::open_exclusive(&dir)?.prune()?;
            println!(
                "removed {} unreferenced files ({:.1} MB), {} temp files and {} cached plans",
                report.files_removed,
                report.bytes_removed as f64 / 1e6,
                report.temp_files_removed,
                report.plans_removed
            );
        }
    }
    Ok(())
}
