use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Live counters of one stage, shared by its worker threads.
#[derive(Debug)]
pub(crate) struct StageMetrics {
    pub(crate) name: &'static str,
    pub(crate) threads: AtomicU64,
    pub(crate) items: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// Sum over threads of time spent neither waiting for input nor blocked on output.
    pub(crate) busy_ns: AtomicU64,
    /// Time blocked because the input queue was empty.
    pub(crate) input_wait_ns: AtomicU64,
    /// Time blocked because the output queue was full (back-pressure from downstream).
    pub(crate) output_wait_ns: AtomicU64,
    /// Longest thread lifetime: the stage's wall-clock span.
    pub(crate) wall_ns: AtomicU64,
}

impl StageMetrics {
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            threads: AtomicU64::new(0),
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            input_wait_ns: AtomicU64::new(0),
            output_wait_ns: AtomicU64::new(0),
            wall_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> StageSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StageSnapshot {
            name: self.name,
            threads: load(&self.threads),
            items: load(&self.items),
            bytes: load(&self.bytes),
            busy: Duration::from_nanos(load(&self.busy_ns)),
            input_wait: Duration::from_nanos(load(&self.input_wait_ns)),
            output_wait: Duration::from_nanos(load(&self.output_wait_ns)),
            wall: Duration::from_nanos(load(&self.wall_ns)),
        }
    }
}

/// What one stage did during a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageSnapshot {
    pub name: &'static str,
    pub threads: u64,
    pub items: u64,
    pub bytes: u64,
    /// Summed over the stage's threads.
    pub busy: Duration,
    /// Summed over the stage's threads: time blocked on an empty input queue.
    pub input_wait: Duration,
    /// Summed over the stage's threads: time blocked on a full output queue.
    pub output_wait: Duration,
    /// From the first thread's start to the last thread's end.
    pub wall: Duration,
}

impl StageSnapshot {
    /// Items per second of wall time.
    pub fn items_per_second(&self) -> f64 {
        per_second(self.items as f64, self.wall)
    }

    /// Megabytes (10^6) per second of wall time.
    pub fn megabytes_per_second(&self) -> f64 {
        per_second(self.bytes as f64 / 1e6, self.wall)
    }
}

fn per_second(amount: f64, span: Duration) -> f64 {
    let seconds = span.as_secs_f64();
    if seconds > 0.0 { amount / seconds } else { 0.0 }
}
