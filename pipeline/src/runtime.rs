use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Instant;

use crate::CancelToken;
use crate::context::{StageContext, StageHandle};
use crate::metrics::{StageMetrics, StageSnapshot};

/// Why a run failed: the first stage failure, in the order they happened.
#[derive(Debug)]
pub enum PipelineError<E> {
    /// A stage returned an error.
    Stage { stage: &'static str, error: E },
    /// A stage panicked; the panic is reported, never swallowed.
    Panicked {
        stage: &'static str,
        message: String,
    },
    /// The run was cancelled from outside and no stage failed.
    Cancelled,
}

impl<E: fmt::Display> fmt::Display for PipelineError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Stage { error, .. } => write!(f, "{error}"),
            PipelineError::Panicked { stage, message } => {
                write!(f, "internal error: the {stage} stage panicked: {message}")
            }
            PipelineError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for PipelineError<E> {}

/// What a successful run returns: the value of the build closure and every stage's metrics.
#[derive(Debug)]
pub struct RunOutcome<R> {
    pub value: R,
    pub stages: Vec<StageSnapshot>,
}

impl<R> RunOutcome<R> {
    pub fn stage(&self, name: &str) -> Option<&StageSnapshot> {
        self.stages.iter().find(|stage| stage.name == name)
    }
}

struct Shared<E> {
    cancel: CancelToken,
    failure: Mutex<Option<PipelineError<E>>>,
    stages: Mutex<Vec<Arc<StageMetrics>>>,
    epoch: Instant,
}

impl<E> Shared<E> {
    /// Keeps the first failure and cancels everything else.
    fn fail(&self, failure: PipelineError<E>) {
        let mut slot = self
            .failure
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if slot.is_none() {
            *slot = Some(failure);
        }
        self.cancel.cancel();
    }
}

/// Spawns the stages of one run. Only this type creates threads in flowpm's engine.
pub struct Pipeline<'scope, 'env, E> {
    scope: &'scope Scope<'scope, 'env>,
    shared: Arc<Shared<E>>,
    handles: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope, 'env, E: Send + 'scope> Pipeline<'scope, 'env, E> {
    /// Starts `workers` threads (at least one) named `flowpm-<name>`, each running `body`.
    /// The stage ends when all its threads return. The handle lets an upstream stage's thread
    /// do this stage's work itself ([`StageHandle::run_here`]).
    pub fn spawn<F>(&mut self, name: &'static str, workers: usize, body: F) -> StageHandle
    where
        F: Fn(&StageContext) -> Result<(), E> + Send + Sync + 'scope,
    {
        let stage = self.declare(name);
        self.spawn_declared(&stage, workers, body);
        stage
    }

    /// Names a stage (its place in the report) before its threads start, so that a stage
    /// spawned earlier can hold its handle. Start it with [`Pipeline::spawn_declared`].
    pub fn declare(&mut self, name: &'static str) -> StageHandle {
        let metrics = Arc::new(StageMetrics::new(name));
        self.shared.stages.lock().unwrap().push(metrics.clone());
        StageHandle { metrics }
    }

    /// [`Pipeline::spawn`] for a stage named by [`Pipeline::declare`].
    pub fn spawn_declared<F>(&mut self, stage: &StageHandle, workers: usize, body: F)
    where
        F: Fn(&StageContext) -> Result<(), E> + Send + Sync + 'scope,
    {
        let body = Arc::new(body);
        for worker in 0..workers.max(1) {
            let body = body.clone();
            let metrics = stage.metrics.clone();
            let shared = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("flowpm-{}", stage.metrics.name))
                .spawn_scoped(self.scope, move || {
                    run_worker(&shared, metrics, worker, &*body)
                })
                .expect("failed to spawn a pipeline thread");
            self.handles.push(handle);
        }
    }

    pub fn cancel_token(&self) -> &CancelToken {
        &self.shared.cancel
    }
}

fn run_worker<E>(
    shared: &Shared<E>,
    metrics: Arc<StageMetrics>,
    worker: usize,
    body: &dyn Fn(&StageContext) -> Result<(), E>,
) {
    let started = Instant::now();
    metrics.threads.fetch_add(1, Ordering::Relaxed);
    let context = StageContext::new(metrics.clone(), shared.cancel.clone(), worker);
    let result = catch_unwind(AssertUnwindSafe(|| body(&context)));
    let elapsed = started.elapsed().as_nanos() as u64;
    metrics.busy_ns.fetch_add(
        elapsed.saturating_sub(context.waited_ns()),
        Ordering::Relaxed,
    );
    let span = (started + started.elapsed())
        .duration_since(shared.epoch)
        .as_nanos() as u64;
    metrics.wall_ns.fetch_max(span, Ordering::Relaxed);
    match result {
        Ok(Ok(())) => {}
        Ok(Err(error)) => shared.fail(PipelineError::Stage {
            stage: metrics.name,
            error,
        }),
        Err(panic) => shared.fail(PipelineError::Panicked {
            stage: metrics.name,
            message: panic_message(panic.as_ref()),
        }),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Runs one pipeline: `build` spawns stages (and may feed them from the calling thread); when it
/// returns, every stage thread is joined. The first stage failure, a panic or an outside
/// cancellation makes the run an error; otherwise the build closure's value is returned with
/// every stage's metrics.
pub fn run<'env, E, R>(
    cancel: &CancelToken,
    build: impl for<'scope> FnOnce(&mut Pipeline<'scope, 'env, E>) -> R,
) -> Result<RunOutcome<R>, PipelineError<E>>
where
    E: Send + 'env,
{
    let shared = Arc::new(Shared {
        cancel: cancel.clone(),
        failure: Mutex::new(None),
        stages: Mutex::new(Vec::new()),
        epoch: Instant::now(),
    });
    let value = std::thread::scope(|scope| {
        let mut pipeline = Pipeline {
            scope,
            shared: shared.clone(),
            handles: Vec::new(),
        };
        // A panic in the build closure must still cancel and join the stages it started.
        let value = catch_unwind(AssertUnwindSafe(|| build(&mut pipeline)));
        if value.is_err() {
            shared.cancel.cancel();
        }
        for handle in pipeline.handles.drain(..) {
            // Workers catch their own panics, so join only fails if catch_unwind itself could not.
            let _ = handle.join();
        }
        value
    });
    let value = match value {
        Ok(value) => value,
        Err(panic) => {
            return Err(PipelineError::Panicked {
                stage: "coordinator",
                message: panic_message(panic.as_ref()),
            });
        }
    };
    if let Some(failure) = shared
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return Err(failure);
    }
    if cancel.is_cancelled() {
        return Err(PipelineError::Cancelled);
    }
    let stages = shared
        .stages
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.snapshot())
        .collect();
    Ok(RunOutcome { value, stages })
}
