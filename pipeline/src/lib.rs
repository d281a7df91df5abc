//! The generic runtime under flowpm's install engine.
//!
//! An engine is a set of *stages*. Each stage is one or more dedicated OS threads running the
//! same closure; stages talk through bounded [flume] channels so that a slow stage pushes back on
//! the ones feeding it and memory stays flat whatever the input size. There is no async runtime.
//!
//! ```
//! use flowpm_pipeline::{bounded, run, CancelToken};
//!
//! let cancel = CancelToken::new();
//! let outcome = run::<std::convert::Infallible, _>(&cancel, |pipeline| {
//!     let (tx, rx) = bounded::<u64>(16);
//!     pipeline.spawn("square", 2, move |ctx| {
//!         while let Some(n) = ctx.recv(&rx) {
//!             ctx.record_item(n * n);
//!         }
//!         Ok(())
//!     });
//!     for n in 0..100 {
//!         tx.send(n).unwrap();
//!     }
//! })
//! .unwrap();
//! assert_eq!(outcome.stage("square").unwrap().items, 100);
//! ```
//!
//! Rules every stage follows (the runtime relies on them to finish without deadlock):
//! - a stage's loop ends when its input closes ([`StageContext::recv`] returns `None`);
//! - a failed send ([`Stopped`]) means downstream is gone: return `Ok(())`, the cause is reported
//!   by the stage that failed;
//! - cancellation is a flag checked between items, and blocked sends and receives poll it;
//! - a stage that returns an error or panics cancels the whole run; the first failure is the one
//!   reported, and every thread is joined before [`run`] returns.

mod cancel;
mod context;
mod metrics;
mod runtime;

pub use cancel::CancelToken;
pub use context::{StageContext, StageHandle, Stopped};
pub use metrics::StageSnapshot;
pub use runtime::{Pipeline, PipelineError, RunOutcome, run};

/// Channel endpoints used between stages. Data channels are bounded ([`bounded`]); only
/// control and progress traffic may be unbounded ([`unbounded`]) so reporting never deadlocks.
pub use flume::{Receiver, Sender, TrySendError};

/// A bounded channel for data flowing between stages.
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    flume::bounded(capacity)
}

/// An unbounded channel, for control and progress messages only.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    flume::unbounded()
}
