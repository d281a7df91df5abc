//! The runtime's contract: failures stop everything, are reported once, and every thread joins.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flowpm_pipeline::{CancelToken, PipelineError, bounded, run};

/// Counts live stage threads, so a test can check that all of them ended.
#[derive(Clone, Default)]
struct Live(Arc<AtomicUsize>);

impl Live {
    fn enter(&self) -> LiveGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        LiveGuard(self.0.clone())
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn a_downstream_stage_that_stops_early_ends_the_run_without_deadlock() {
    let live = Live::default();
    let outcome = run::<String, _>(&CancelToken::new(), |pipeline| {
        let (numbers, numbers_in) = bounded::<u64>(4);
        let (squares, squares_in) = bounded::<u64>(4);
        let producer_live = live.clone();
        pipeline.spawn("produce", 1, move |context| {
            let _guard = producer_live.enter();
            for n in 0.. {
                if context.send(&numbers, n).is_err() {
                    return Ok(()); // downstream gone: stop quietly
                }
            }
            Ok(())
        });
        let middle_live = live.clone();
        pipeline.spawn("square", 2, move |context| {
            let _guard = middle_live.enter();
            while let Some(n) = context.recv(&numbers_in) {
                if context.send(&squares, n * n).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
        let consumer_live = live.clone();
        pipeline.spawn("take-ten", 1, move |context| {
            let _guard = consumer_live.enter();
            // Receives ten items, then drops its receiver mid-stream.
            for _ in 0..10 {
                context.recv(&squares_in).unwrap();
                context.record_item(8);
            }
            Ok(())
        });
    })
    .unwrap();
    assert_eq!(live.count(), 0, "every stage thread has ended");
    assert_eq!(outcome.stage("take-ten").unwrap().items, 10);
    assert_eq!(outcome.stage("square").unwrap().threads, 2);
}

#[test]
fn the_first_failure_is_reported_and_cancels_the_rest() {
    let live = Live::default();
    let cancel = CancelToken::new();
    let result = run::<String, _>(&cancel, |pipeline| {
        let (items, items_in) = bounded::<u32>(2);
        let producer_live = live.clone();
        pipeline.spawn("produce", 1, move |context| {
            let _guard = producer_live.enter();
            let mut n = 0;
            while context.send(&items, n).is_ok() {
                n += 1;
            }
            Ok(())
        });
        let failing_live = live.clone();
        pipeline.spawn("fail-first", 1, move |context| {
            let _guard = failing_live.enter();
            let first = context.recv(&items_in).unwrap();
            Err(format!("item {first} is bad"))
        });
        // An unrelated, idle stage must also notice the cancellation and end.
        let (_keep_open, never) = bounded::<u32>(1);
        let idle_live = live.clone();
        pipeline.spawn("idle", 1, move |context| {
            let _guard = idle_live.enter();
            assert!(context.recv(&never).is_none());
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(_keep_open);
    });
    match result {
        Err(PipelineError::Stage { stage, error }) => {
            assert_eq!(stage, "fail-first");
            assert_eq!(error, "item 0 is bad");
        }
        other => panic!("expected the stage error, got {other:?}"),
    }
    assert!(cancel.is_cancelled());
    assert_eq!(live.count(), 0);
}

#[test]
fn a_panicking_stage_is_reported_not_swallowed() {
    let live = Live::default();
    let result = run::<String, _>(&CancelToken::new(), |pipeline| {
        let (items, items_in) = bounded::<u32>(1);
        let producer_live = live.clone();
        pipeline.spawn("produce", 1, move |context| {
            let _guard = producer_live.enter();
            while context.send(&items, 7).is_ok() {}
            Ok(())
        });
        let panicking_live = live.clone();
        pipeline.spawn("explode", 3, move |context| {
            let _guard = panicking_live.enter();
            let item = context.recv(&items_in);
            panic!("boom on {item:?}");
        });
    });
    match result {
        Err(PipelineError::Panicked { stage, message }) => {
            assert_eq!(stage, "explode");
            assert!(message.starts_with("boom on"), "{message}");
        }
        other => panic!("expected a panic report, got {other:?}"),
    }
    assert_eq!(live.count(), 0);
}

#[test]
fn outside_cancellation_stops_blocked_stages() {
    let cancel = CancelToken::new();
    let canceller = cancel.clone();
    let started = std::time::Instant::now();
    let result = run::<String, _>(&cancel, |pipeline| {
        let (items, items_in) = bounded::<u32>(1);
        pipeline.spawn("blocked-sender", 1, move |context| {
            while context.send(&items, 1).is_ok() {}
            Ok(())
        });
        // Never receives: the sender blocks on a full queue until cancelled.
        pipeline.spawn("holder", 1, move |context| {
            let _holding = &items_in;
            while !context.is_cancelled() {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            canceller.cancel();
        });
    });
    assert!(
        matches!(result, Err(PipelineError::Cancelled)),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_producer_can_do_a_full_stages_work_itself_counted_as_that_stages() {
    let handled_here = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let outcome = run::<String, _>(&CancelToken::new(), |pipeline| {
        let (jobs, jobs_in) = bounded::<usize>(1);
        let consumer_total = total.clone();
        let consume = pipeline.spawn("consume", 1, move |context| {
            while let Some(n) = context.recv(&jobs_in) {
                std::thread::sleep(Duration::from_millis(1));
                consumer_total.fetch_add(n, Ordering::SeqCst);
                context.record_item(1);
            }
            Ok(())
        });
        let (producer_total, here) = (total.clone(), handled_here.clone());
        pipeline.spawn("produce", 1, move |context| {
            for n in 1..=200 {
                match jobs.try_send(n) {
                    Ok(()) => {}
                    Err(flowpm_pipeline::TrySendError::Full(n)) => {
                        consume.run_here(context, |consume_context| {
                            producer_total.fetch_add(n, Ordering::SeqCst);
                            here.fetch_add(1, Ordering::SeqCst);
                            consume_context.record_item(1);
                        });
                    }
                    Err(flowpm_pipeline::TrySendError::Disconnected(_)) => return Ok(()),
                }
            }
            Ok(())
        });
    })
    .unwrap();
    // Every job was done exactly once, some of them by the producer (the queue holds one and
    // the consumer takes a millisecond each), and all count as the consumer's items.
    assert_eq!(total.load(Ordering::SeqCst), 200 * 201 / 2);
    assert!(handled_here.load(Ordering::SeqCst) > 0);
    assert_eq!(outcome.stage("consume").unwrap().items, 200);
    assert_eq!(outcome.stage("produce").unwrap().items, 0);
}
