//! Terminal output: a live progress line on a TTY, ndjson events, and the final summary.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use flowpm_stages::{InstallReport, Reporter};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Default,
    Silent,
    Ndjson,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "default" => Some(Mode::Default),
            "silent" => Some(Mode::Silent),
            "ndjson" => Some(Mode::Ndjson),
            _ => None,
        }
    }
}

/// Counters updated from stage threads; a separate render thread reads them.
pub struct Progress {
    mode: Mode,
    live: bool,
    packages: AtomicU64,
    to_fetch: AtomicU64,
    fetched: AtomicU64,
    imported: AtomicU64,
    downloaded: AtomicU64,
    done: AtomicBool,
    /// Serialises writes to stderr between the render thread and warnings.
    output: Mutex<()>,
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        Progress {
            mode,
            live: mode == Mode::Default && std::io::stderr().is_terminal(),
            packages: AtomicU64::new(0),
            to_fetch: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            imported: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            done: AtomicBool::new(false),
            output: Mutex::new(()),
        }
    }

    /// Redraws the progress line until [`Progress::finish`]; call on its own thread.
    pub fn render_until_done(&self) {
        if !self.live {
            return;
        }
        loop {
            std::thread::sleep(Duration::from_millis(80));
            // Checked under the lock `finish` takes, so no line is drawn after it cleared one.
            let _guard = self.output.lock();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            let line = format!(
                "\r\x1b[2KPackages: {} · fetched {}/{} · imported {} · {:.1} MB downloaded",
                self.packages.load(Ordering::Relaxed),
                self.fetched.load(Ordering::Relaxed),
                self.to_fetch.load(Ordering::Relaxed),
                self.imported.load(Ordering::Relaxed),
                self.downloaded.load(Ordering::Relaxed) as f64 / 1e6,
            );
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(line.as_bytes());
            let _ = stderr.flush();
        }
    }

    pub fn finish(&self) {
        let _guard = self.output.lock();
        self.done.store(true, Ordering::Release);
        if self.live {
            let _ = std::io::stderr().write_all(b"\r\x1b[2K");
        }
    }

    fn event(&self, value: serde_json::Value) {
        let _guard = self.output.lock();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{value}");
    }

    /// The final line (or ndjson record) after a successful install.
    pub fn summary(&self, report: &InstallReport) {
        match self.mode {
            Mode::Silent => {}
            Mode::Ndjson => self.event(summary_json(report)),
            Mode::Default => {
                if report.up_to_date {
                    println!(
                        "Already up to date ({} packages) in {:.2}s",
                        report.packages,
                        report.elapsed.as_secs_f64()
                    );
                } else {
                    println!(
                        "Installed {} packages ({} downloaded, {} from the store) · {} files · {:.1} MB · {:.2}s",
                        report.packages,
                        report.fetched,
                        report.reused,
                        report.files_imported,
                        report.bytes_imported as f64 / 1e6,
                        report.elapsed.as_secs_f64()
                    );
                }
            }
        }
    }
}

fn summary_json(report: &InstallReport) -> serde_json::Value {
    let stages: Vec<serde_json::Value> = report
        .stages
        .iter()
        .map(|stage| {
            serde_json::json!({
                "stage": stage.name,
                "threads": stage.threads,
                "items": stage.items,
                "bytes": stage.bytes,
                "wall_ms": stage.wall.as_secs_f64() * 1e3,
                "busy_ms": stage.busy.as_secs_f64() * 1e3,
                "input_wait_ms": stage.input_wait.as_secs_f64() * 1e3,
                "output_wait_ms": stage.output_wait.as_secs_f64() * 1e3,
                "items_per_second": stage.items_per_second(),
                "megabytes_per_second": stage.megabytes_per_second(),
            })
        })
        .collect();
    serde_json::json!({
        "event": "summary",
        "up_to_date": report.up_to_date,
        "packages": report.packages,
        "fetched": report.fetched,
        "reused": report.reused,
        "skipped_optional": report.skipped_optional,
        "files_imported": report.files_imported,
        "files_written": report.files_written,
        "bytes_downloaded": report.bytes_downloaded,
        "bytes_imported": report.bytes_imported,
        "seconds": report.elapsed.as_secs_f64(),
        "warnings": report.warnings,
        "stages": stages,
    })
}

impl Reporter for Progress {
    fn on_plan(&self, packages: usize, to_fetch: usize) {
        self.packages.store(packages as u64, Ordering::Relaxed);
        self.to_fetch.store(to_fetch as u64, Ordering::Relaxed);
        if self.mode == Mode::Ndjson {
            self.event(
                serde_json::json!({"event": "plan", "packages": packages, "to_fetch": to_fetch}),
            );
        }
    }

    fn on_downloaded(&self, bytes: u64) {
        self.downloaded.fetch_add(bytes, Ordering::Relaxed);
    }

    fn on_fetched(&self, _package: &str) {
        self.fetched.fetch_add(1, Ordering::Relaxed);
    }

    fn on_imported(&self, _package: &str) {
        self.imported.fetch_add(1, Ordering::Relaxed);
    }

    fn on_warning(&self, message: &str) {
        match self.mode {
            Mode::Silent => {}
            Mode::Ndjson => self.event(serde_json::json!({"event": "warning", "message": message})),
            Mode::Default => {
                let _guard = self.output.lock();
                eprintln!(
                    "{}warning: {message}",
                    if self.live { "\r\x1b[2K" } else { "" }
                );
            }
        }
    }
}
