//! `member-refresh --drain` on a slow queue (issue 10): moto's SQS answers more slowly the more
//! messages it holds, so gathering a full batch can outlast the visibility timeout. The drain must
//! hand a batch over before its first messages come back, and work every message once.
//!
//! The visibility timeout is shrunk to seconds so that a few hundred messages are enough to make
//! gathering slower than it, as 5,000 were with the two minutes of a real drain; and a slowed
//! Salesforce makes a batch's work outlast it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hlsync_aws::SqsQueue;
use hlsync_cli::commands;
use hlsync_cli::drain::{self, DrainOptions, DrainReport};
use hlsync_cli::local::LocalSystem;
use hlsync_cli::output::Progress;
use hlsync_sim::salesforce::FaultPlan;

use crate::common::system;

/// Enough queued messages that receiving them all, ten at a time, takes moto longer than the
/// visibility timeout below, and several times the window.
const CONTACTS: usize = 200;
const VISIBILITY: Duration = Duration::from_secs(2);
/// A batching window shorter than half the visibility timeout, as the real one is.
const WINDOW: Duration = Duration::from_millis(500);
const BATCH_SIZE: usize = 500;

/// A local system after its initial load, whose queue then holds one message per Contact: every
/// Contact was edited and a Periodic Refresh queued each (a first load queues one range message
/// per page, too few to slow the queue). Higher Logic's counters start from there.
async fn queued(contacts: usize) -> (LocalSystem, u64) {
    let sys = system(contacts).await;
    let rt = sys.runtime();
    commands::periodic_refresh(&rt, &Progress::hidden())
        .await
        .expect("the Periodic Refresh queues the initial load");
    let loaded = drain::drain_with(
        &rt,
        &DrainOptions::new(BATCH_SIZE),
        &Progress::hidden(),
        &AtomicBool::new(true),
    )
    .await
    .expect("the initial load is drained");
    assert_eq!(loaded.dead_lettered, 0, "{loaded:?}");
    sys.edit_first_names(usize::MAX, "x");
    let periodic = commands::periodic_refresh(&rt, &Progress::hidden())
        .await
        .expect("the Periodic Refresh queues the edited Contacts");
    let queued = periodic.messages();
    assert!(queued >= contacts as u64 * 9 / 10, "{periodic:?}");
    sys.higher_logic.reset_counters();
    (sys, queued)
}

/// Every message worked once (none received twice into batches, none failed, none dead-lettered),
/// the queue and the DLQ empty, and each member record pushed once.
async fn assert_each_message_worked_once(sys: &LocalSystem, reports: &[&DrainReport], queued: u64) {
    let sum = |f: fn(&DrainReport) -> u64| reports.iter().map(|r| f(r)).sum::<u64>();
    assert_eq!(sum(|r| r.messages), queued, "{reports:?}");
    assert_eq!(sum(|r| r.failed_deliveries), 0, "{reports:?}");
    assert_eq!(sum(|r| r.dead_lettered), 0, "{reports:?}");
    let queue = SqsQueue::new(sys.clients.sqs.clone(), sys.resources.queue_url.clone());
    let dlq = SqsQueue::new(sys.clients.sqs.clone(), sys.resources.dlq_url.clone());
    let dead = dlq.depth().await.expect("depth");
    assert_eq!(
        dead.visible + dead.in_flight,
        0,
        "nothing on the DLQ: {dead:?}"
    );
    let left = queue.depth().await.expect("depth");
    assert_eq!(left.visible + left.in_flight + left.delayed, 0, "{left:?}");
    let members = sys.higher_logic.members().len() as u64;
    assert!(members > 0);
    assert_eq!(sum(|r| r.pushed), members, "{reports:?}");
    assert_eq!(
        sys.higher_logic.counters().records_received,
        members,
        "no record pushed twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_queue_hands_over_partial_batches_and_works_every_message_once() {
    let (sys, queued) = queued(CONTACTS).await;
    let rt = sys.runtime();
    let opts = DrainOptions {
        visibility: VISIBILITY,
        batching_window: WINDOW,
        ..DrainOptions::new(BATCH_SIZE)
    };
    let started = Instant::now();
    let report = drain::drain_with(&rt, &opts, &Progress::hidden(), &AtomicBool::new(true))
        .await
        .expect("the drain finishes");
    let took = started.elapsed();

    assert_each_message_worked_once(&sys, &[&report], queued).await;

    // Gathering all of them takes longer than the window, so the batches were handed over
    // partial when it ended (moto answers every receive while visible messages remain, so
    // nothing else ends a batch early).
    eprintln!(
        "{queued} messages drained in {took:?}: {} batches, the largest {}",
        report.batches, report.largest_batch
    );
    assert!(
        report.largest_batch < queued,
        "one batch gathered every message, so none was handed over when its window ended: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_worked_longer_than_the_visibility_timeout_stays_hidden_from_other_consumers() {
    let (sys, queued) = queued(20).await;
    // Every Salesforce call of the Member Refresh now takes longer than the visibility timeout.
    sys.salesforce
        .faults(FaultPlan {
            p_slow: 1.0,
            slow: VISIBILITY + Duration::from_secs(1),
            ..FaultPlan::default()
        })
        .expect("faults set");
    let opts = DrainOptions {
        visibility: VISIBILITY,
        ..DrainOptions::new(BATCH_SIZE)
    };
    // Another consumer (a second drain, the deployed function) polls the queue once the drain
    // holds every message: it would receive any whose timeout ran out while the drain worked it.
    let done = AtomicBool::new(false);
    let drain = async {
        let report = drain::drain_with(
            &sys.runtime(),
            &opts,
            &Progress::hidden(),
            &AtomicBool::new(true),
        )
        .await;
        done.store(true, Ordering::SeqCst);
        report
    };
    let other = async {
        let queue = SqsQueue::new(sys.clients.sqs.clone(), sys.resources.queue_url.clone());
        let mut taken = Vec::new();
        let mut polling = false;
        while !done.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            polling = polling || queue.depth().await.expect("depth").visible == 0;
            if !polling {
                continue;
            }
            let got = queue
                .receive(10, Some(Duration::from_mins(1)), Duration::ZERO)
                .await
                .expect("receives");
            taken.extend(got.into_iter().map(|m| m.message_id));
        }
        taken
    };
    let (report, taken) = tokio::join!(drain, other);
    let report = report.expect("the drain finishes");
    assert!(
        taken.is_empty(),
        "the other consumer received {} messages the drain was working",
        taken.len()
    );
    assert_each_message_worked_once(&sys, &[&report], queued).await;
}
