use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flume::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError};

use crate::CancelToken;
use crate::metrics::StageMetrics;

/// How often a blocked send or receive looks at the cancellation flag. Only idle or
/// back-pressured threads poll, so this costs nothing on the hot path.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// A send failed because every receiver is gone or the run was cancelled: the stage should
/// return `Ok(())` and let the stage that failed report why. Carries the undelivered item back,
/// for stages that must release what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped<T>(pub T);

/// Handed to each worker thread of a stage: metered channel operations, counters and the
/// cancellation flag.
pub struct StageContext {
    metrics: Arc<StageMetrics>,
    cancel: CancelToken,
    worker: usize,
    /// This thread's own wait total, from which the runtime derives its busy time at exit.
    /// A `Cell` because the context belongs to one thread and is used through `&self`.
    waited_ns: Cell<u64>,
}

impl StageContext {
    pub(crate) fn new(metrics: Arc<StageMetrics>, cancel: CancelToken, worker: usize) -> Self {
        Self {
            metrics,
            cancel,
            worker,
            waited_ns: Cell::new(0),
        }
    }

    /// Index of this thread within its stage's pool, from 0.
    pub fn worker(&self) -> usize {
        self.worker
    }

    pub fn stage_name(&self) -> &'static str {
        self.metrics.name
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// Counts one finished item of `bytes` bytes.
    pub fn record_item(&self, bytes: u64) {
        self.metrics.items.fetch_add(1, Ordering::Relaxed);
        self.metrics.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts bytes without an item (for example, bytes downloaded so far).
    pub fn record_bytes(&self, bytes: u64) {
        self.metrics.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Receives the next item, or `None` once the input is closed and drained or the run is
    /// cancelled. Time spent waiting on an empty queue is counted as input wait.
    pub fn recv<T>(&self, input: &Receiver<T>) -> Option<T> {
        match input.try_recv() {
            Ok(item) => return Some(item),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        let start = Instant::now();
        let result = loop {
            if self.is_cancelled() {
                break None;
            }
            match input.recv_timeout(CANCEL_POLL) {
                Ok(item) => break Some(item),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break None,
            }
        };
        self.add_wait(&self.metrics.input_wait_ns, start);
        result
    }

    /// Sends an item downstream, blocking while the queue is full (counted as output wait).
    pub fn send<T>(&self, output: &Sender<T>, item: T) -> Result<(), Stopped<T>> {
        let item = match output.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(item)) => return Err(Stopped(item)),
            Err(TrySendError::Full(item)) => item,
        };
        let start = Instant::now();
        let mut item = item;
        let result = loop {
            if self.is_cancelled() {
                break Err(Stopped(item));
            }
            match output.send_timeout(item, CANCEL_POLL) {
                Ok(()) => break Ok(()),
                Err(SendTimeoutError::Timeout(back)) => item = back,
                Err(SendTimeoutError::Disconnected(back)) => break Err(Stopped(back)),
            }
        };
        self.add_wait(&self.metrics.output_wait_ns, start);
        result
    }

    fn add_wait(&self, counter: &std::sync::atomic::AtomicU64, start: Instant) {
        let waited = start.elapsed().as_nanos() as u64;
        counter.fetch_add(waited, Ordering::Relaxed);
        self.waited_ns.set(self.waited_ns.get() + waited);
    }

    pub(crate) fn waited_ns(&self) -> u64 {
        self.waited_ns.get()
    }
}

/// A stage of a running pipeline, as seen from another stage's thread.
#[derive(Clone)]
pub struct StageHandle {
    pub(crate) metrics: Arc<StageMetrics>,
}

impl StageHandle {
    /// Runs `work` on the calling thread on this stage's behalf: the back-pressure policy
    /// "caller runs", for a producer that finds this stage's queue full and would otherwise
    /// sleep until a worker wakes it (two context switches per item when the workers are the
    /// bottleneck). The items, waits and busy time of `work` count as this stage's; for the
    /// caller's stage that time is neither busy nor a wait on its channels.
    pub fn run_here<R>(&self, caller: &StageContext, work: impl FnOnce(&StageContext) -> R) -> R {
        let context = StageContext::new(self.metrics.clone(), caller.cancel.clone(), caller.worker);
        let start = Instant::now();
        let result = work(&context);
        let elapsed = start.elapsed().as_nanos() as u64;
        self.metrics.busy_ns.fetch_add(
            elapsed.saturating_sub(context.waited_ns()),
            Ordering::Relaxed,
        );
        caller.waited_ns.set(caller.waited_ns.get() + elapsed);
        result
    }
}
