//! `flowpm bench <stage>`: prints what one stage did when run alone.

use std::path::PathBuf;

use anyhow::Context;
use flowpm_stages::bench::{
    self, DEFAULT_DECODE_THREADS, DEFAULT_FETCH_THREADS, DEFAULT_WRITE_THREADS,
};
use flowpm_stages::{InstallOptions, StageSnapshot};

use crate::args::{BenchArgs, BenchStage};

pub fn run(project_dir: PathBuf, args: BenchArgs) -> anyhow::Result<()> {
    let mut scratch = None;
    let mut scratch_store = |given: Option<PathBuf>| -> anyhow::Result<PathBuf> {
        if let Some(dir) = given {
            return Ok(dir);
        }
        let dir = std::env::temp_dir().join(format!("flowpm-bench-{}", std::process::id()));
        scratch = Some(dir.clone());
        Ok(dir)
    };
    let stages = match args.stage {
        BenchStage::Fetch(fetch) => {
            let options = InstallOptions {
                project_dir,
                registry: fetch.registry,
                ..InstallOptions::default()
            };
            bench::bench_fetch(&options, fetch.threads.unwrap_or(DEFAULT_FETCH_THREADS))?
        }
        BenchStage::Decode(decode) => {
            let tarballs = bench::find_tarballs(&decode.tarballs)?;
            anyhow::ensure!(
                !tarballs.is_empty(),
                "no .tgz files under {}",
                decode.tarballs.display()
            );
            bench::bench_decode(&tarballs, decode.threads.unwrap_or(DEFAULT_DECODE_THREADS))?
        }
        BenchStage::Write(write) => {
            let tarballs = bench::find_tarballs(&write.tarballs)?;
            anyhow::ensure!(
                !tarballs.is_empty(),
                "no .tgz files under {}",
                write.tarballs.display()
            );
            let store = scratch_store(write.store_dir)?;
            let existing = std::fs::read_dir(store.join("v1/files/00"))
                .map(|mut entries| entries.next().is_some());
            anyhow::ensure!(
                !existing.unwrap_or(false),
                "{} is not an empty store",
                store.display()
            );
            bench::bench_write(
                &tarballs,
                &store,
                write.threads.unwrap_or(DEFAULT_WRITE_THREADS),
            )?
        }
        BenchStage::Index(index) => {
            let store = scratch_store(index.store_dir)?;
            bench::bench_index(&store, index.packages, index.files)?
        }
        BenchStage::Link(link) => {
            let options = InstallOptions {
                project_dir,
                registry: link.registry,
                store_dir: link.store_dir,
                import_method: crate::parse_import_method(&link.package_import_method)?,
                // Layout and import alone: builds are not the stage being measured, and a
                // project with unapproved ones would fail the install.
                ignore_scripts: true,
                ..InstallOptions::default()
            };
            bench::bench_link(&options).context("bench link")?
        }
    };
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    print(&stages, args.json);
    Ok(())
}

fn print(stages: &[StageSnapshot], json: bool) {
    if json {
        for stage in stages {
            println!(
                "{}",
                serde_json::json!({
                    "stage": stage.name, "threads": stage.threads, "items": stage.items, "bytes": stage.bytes,
                    "wall_ms": ms(stage.wall), "busy_ms": ms(stage.busy),
                    "input_wait_ms": ms(stage.input_wait), "output_wait_ms": ms(stage.output_wait),
                    "items_per_second": stage.items_per_second(), "megabytes_per_second": stage.megabytes_per_second(),
                })
            );
        }
        return;
    }
    println!(
        "{:<8} {:>7} {:>9} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "stage",
        "threads",
        "items",
        "items/s",
        "MB",
        "MB/s",
        "wall ms",
        "busy ms",
        "in-wait",
        "out-wait"
    );
    for stage in stages {
        println!(
            "{:<8} {:>7} {:>9} {:>10.0} {:>10.1} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>10.1}",
            stage.name,
            stage.threads,
            stage.items,
            stage.items_per_second(),
            stage.bytes as f64 / 1e6,
            stage.megabytes_per_second(),
            ms(stage.wall),
            ms(stage.busy),
            ms(stage.input_wait),
            ms(stage.output_wait),
        );
    }
}

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
