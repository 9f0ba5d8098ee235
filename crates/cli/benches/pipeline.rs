//! `make bench`: figures for speed, memory and API calls, Salesforce's above all (the scarcest
//! resource). Figures are printed, never asserted: timings belong here, not in tests.
//!
//! 1. mapping: the pure Contact -> member mapping and hash, per Contact.
//! 2. changed Contacts: the calls of an incremental sync per 1,000 changed Contacts (registrations
//!    read too), and of a sync with nothing changed.
//! 3. first load: 200,000 Contacts through the simulators (real HTTP) with the AWS ports in
//!    memory, hlsync beside a naive baseline (one message, one Salesforce read and one push per
//!    Contact), each projected to 1,000,000 Contacts at 180 Higher Logic calls a minute.
//! 4. shared budget: several Member Refreshes working a backfill under one Higher Logic pace:
//!    the share of the budget they use, idle seconds, the busiest minute.
//! 5. full system: a sync through moto's SQS and DynamoDB (the emulator's cost included).
//!
//! Where the Member Refresh runs here, batches are handed to it as Lambda's SQS event source
//! would: up to `BATCH` messages, each ReceiveMessage and DeleteMessageBatch taking ten; those
//! two are counted from the messages handed over, SendMessageBatch calls from what hlsync sends.
//! `--quick` runs every part at a small size.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hlsync_cli::commands;
use hlsync_cli::local::{LocalOptions, LocalSystem};
use hlsync_cli::output::Progress;
use hlsync_core::mapping::{ContactInput, map_contact};
use hlsync_core::schema::ContactSchema;
use hlsync_higher_logic::{RateLimiter, Unlimited};
use hlsync_salesforce::ClientOptions;
use hlsync_sim::higher_logic::HlSimOptions;
use hlsync_sync::adapters::higher_logic::{HigherLogicCommunity, SharedPace};
use hlsync_sync::adapters::salesforce::SalesforceCrm;
use hlsync_sync::member::{IncomingMessage, MemberDeps, member_refresh};
use hlsync_sync::memory::{MemoryQueue, MemoryState};
use hlsync_sync::periodic::{PeriodicOptions, periodic_refresh};
use hlsync_sync::ports::{Community as _, Crm as _, StateStore, WorkQueue};
use hlsync_sync::{Deadline, SyncError};
use serde_json::Value;

/// Messages per Member Refresh invocation: the template's default `MemberRefreshBatchSize`.
const BATCH: usize = 500;
/// Messages per invocation in the shared-budget run: small, so that every function has ranges to
/// work at once (with 500, the first would take the whole backlog).
const SHARED_BATCH: usize = 4;
/// Messages per SQS call (SendMessageBatch, ReceiveMessage, DeleteMessageBatch).
const PER_SQS_CALL: u64 = 10;
/// Higher Logic's documented rate, for the projections.
const HL_PER_MINUTE: f64 = 180.0;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn per_second(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn per_thousand(calls: u64, contacts: u64) -> f64 {
    calls as f64 * 1000.0 / contacts.max(1) as f64
}

fn sqs_calls(messages: u64) -> u64 {
    messages.div_ceil(PER_SQS_CALL)
}

/// A duration as hours and minutes (or minutes and seconds when short).
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// The in-memory queue, counting the SQS calls the real adapter would make for what is sent.
#[derive(Default)]
struct CountingQueue {
    inner: MemoryQueue,
    send_calls: AtomicU64,
    sent: AtomicU64,
}

impl CountingQueue {
    fn count(&self, n: usize) {
        self.send_calls
            .fetch_add(sqs_calls(n as u64), Ordering::Relaxed);
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[async_trait]
impl WorkQueue for CountingQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<Vec<usize>, SyncError> {
        self.count(bodies.len());
        self.inner.send(bodies).await
    }

    async fn send_later(
        &self,
        bodies: Vec<String>,
        delay: Duration,
    ) -> Result<Vec<usize>, SyncError> {
        self.count(bodies.len());
        self.inner.send_later(bodies, delay).await
    }

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), SyncError> {
        self.send_calls.fetch_add(1, Ordering::Relaxed);
        self.inner.dead_letter(body, reason).await
    }
}

/// What Member Refresh invocations did with a queue's messages.
#[derive(Debug, Default, Clone, Copy)]
struct Worked {
    invocations: u64,
    messages: u64,
    pushed: u64,
    dead_lettered: u64,
    /// ReceiveMessage + DeleteMessageBatch calls of the event source for the messages handed over.
    receive_delete_calls: u64,
}

impl Worked {
    fn add(&mut self, other: Worked) {
        self.invocations += other.invocations;
        self.messages += other.messages;
        self.pushed += other.pushed;
        self.dead_lettered += other.dead_lettered;
        self.receive_delete_calls += other.receive_delete_calls;
    }
}

/// Messages waiting for a Member Refresh, shared by the functions of a run.
type Backlog = Mutex<VecDeque<IncomingMessage>>;

fn take_batch(backlog: &Backlog, queue: &CountingQueue, size: usize) -> Vec<IncomingMessage> {
    let mut backlog = backlog
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    backlog.extend(queue.inner.take());
    let n = backlog.len().min(size);
    backlog.drain(..n).collect()
}

/// One function: invocations of up to `size` messages until the backlog is empty, each with
/// `time_limit` to run (none: unlimited). Messages it hands back or fails return to the backlog.
async fn work_backlog(
    deps: &MemberDeps<'_>,
    queue: &CountingQueue,
    backlog: &Backlog,
    size: usize,
    time_limit: Option<Duration>,
) -> Worked {
    let mut worked = Worked::default();
    loop {
        let batch = take_batch(backlog, queue, size);
        if batch.is_empty() {
            return worked;
        }
        let n = batch.len() as u64;
        let kept: Vec<IncomingMessage> = batch.clone();
        let deadline = time_limit.map_or_else(Deadline::none, Deadline::after);
        let report = match member_refresh(deps, batch, &deadline).await {
            Ok(report) => report,
            Err(failure) => failure.report,
        };
        let failed: Vec<IncomingMessage> = kept
            .into_iter()
            .filter(|m| report.failed_message_ids.contains(&m.message_id))
            .collect();
        backlog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(failed);
        worked.add(Worked {
            invocations: 1,
            messages: n,
            pushed: report.pushed,
            dead_lettered: report.dead_lettered,
            receive_delete_calls: 2 * sqs_calls(n),
        });
    }
}

/// A Member Refresh's clients, as one Lambda instance holds them: its own Salesforce session,
/// its own Higher Logic client paced by `limiter`.
struct Function {
    crm: SalesforceCrm,
    community: HigherLogicCommunity,
}

impl Function {
    fn new(sys: &LocalSystem, limiter: Arc<dyn RateLimiter>) -> Self {
        let rt = sys.runtime();
        Function {
            crm: SalesforceCrm::new(Arc::clone(&rt.credentials), ClientOptions::default()),
            community: HigherLogicCommunity::new(Arc::clone(&rt.credentials), limiter),
        }
    }

    fn deps<'a>(
        &'a self,
        sys_cfg: &'a hlsync_core::config::Config,
        state: &'a dyn StateStore,
        queue: &'a CountingQueue,
    ) -> MemberDeps<'a> {
        MemberDeps {
            cfg: sys_cfg,
            crm: &self.crm,
            community: &self.community,
            state,
            queue,
        }
    }
}

fn periodic_options() -> PeriodicOptions {
    PeriodicOptions {
        run_id: "bench".into(),
        deadline: Deadline::none(),
        lease_ttl: Duration::from_mins(10),
    }
}

async fn bench_mapping(n: usize) {
    let sys = LocalSystem::start(LocalOptions {
        contacts: 2_000,
        ..LocalOptions::default()
    })
    .await
    .expect("local system");
    let rt = sys.runtime();
    let describe = rt.crm.describe_contact(false).await.expect("describe");
    let cfg = sys.config();
    let schema =
        ContactSchema::build(&describe.fields, &describe.record_types, &cfg).expect("schema");
    let contacts: Vec<serde_json::Map<String, Value>> = sys.salesforce.all("Contact");
    let start = Instant::now();
    let mut mapped = 0u64;
    for _ in 0..(n / contacts.len().max(1)).max(1) {
        for c in &contacts {
            let input = ContactInput {
                fields: c,
                account_name: Some("Example Association"),
                registrations: &[],
            };
            if let Ok(member) = map_contact(&input, &schema, &cfg) {
                std::hint::black_box(member.content_hash());
                mapped += 1;
            }
        }
    }
    let took = start.elapsed();
    println!(
        "mapping         {mapped} Contacts mapped and hashed in {:.1} ms: {:.0} Contacts/s ({:.2} µs each)",
        took.as_secs_f64() * 1e3,
        per_second(mapped, took),
        took.as_secs_f64() * 1e6 / mapped.max(1) as f64
    );
}

/// A local system whose Higher Logic takes calls as fast as they come (hlsync's own cost).
async fn unthrottled_system(contacts: usize) -> LocalSystem {
    LocalSystem::start(LocalOptions {
        contacts,
        // Events on: every read also takes the Contacts' registrations.
        extra_config: "\n[events]\nenabled = true\n".into(),
        higher_logic: HlSimOptions {
            max_calls_per_minute: u32::MAX,
            ..HlSimOptions::default()
        },
        ..LocalOptions::default()
    })
    .await
    .expect("local system")
}

/// Calls of one sync (Periodic Refresh, then Member Refreshes until the queue is empty).
#[derive(Debug, Default, Clone, Copy)]
struct SyncCalls {
    salesforce: u64,
    higher_logic: u64,
    sqs: u64,
    queued_contacts: u64,
    messages: u64,
    pushed: u64,
    took: Duration,
}

async fn one_sync(
    sys: &LocalSystem,
    function: &Function,
    state: &MemoryState,
    queue: &CountingQueue,
    batch: usize,
) -> SyncCalls {
    let cfg = sys.config();
    let sf_before = sys.salesforce.counters().api_calls;
    let hl_before = sys.higher_logic.counters().total_calls();
    let sqs_before = queue.send_calls.load(Ordering::Relaxed);
    let start = Instant::now();
    let p = periodic_refresh(&cfg, &function.crm, state, queue, &periodic_options())
        .await
        .expect("periodic refresh");
    let backlog = Backlog::default();
    let worked = work_backlog(
        &function.deps(&cfg, state, queue),
        queue,
        &backlog,
        batch,
        None,
    )
    .await;
    assert_eq!(worked.dead_lettered, 0, "nothing dead-lettered in a bench");
    SyncCalls {
        salesforce: sys.salesforce.counters().api_calls - sf_before,
        higher_logic: sys.higher_logic.counters().total_calls() - hl_before,
        sqs: queue.send_calls.load(Ordering::Relaxed) - sqs_before + worked.receive_delete_calls,
        queued_contacts: p.sent(),
        messages: worked.messages,
        pushed: worked.pushed,
        took: start.elapsed(),
    }
}

async fn bench_changed(contacts: usize, small: usize, large: usize) {
    let sys = unthrottled_system(contacts).await;
    let function = Function::new(&sys, Arc::new(Unlimited));
    let state = MemoryState::default();
    let queue = CountingQueue::default();
    let load = one_sync(&sys, &function, &state, &queue, BATCH).await;
    println!(
        "initial load    {contacts} Contacts: {} Salesforce calls, {} Higher Logic calls, {} SQS calls, {} range messages",
        load.salesforce, load.higher_logic, load.sqs, load.messages
    );
    sys.salesforce.advance(Duration::from_mins(2));
    let quiet = one_sync(&sys, &function, &state, &queue, BATCH).await;
    println!(
        "no change       a sync with nothing changed: {} Salesforce calls, {} Higher Logic calls, {} SQS calls",
        quiet.salesforce, quiet.higher_logic, quiet.sqs
    );
    let mut runs = Vec::new();
    for (i, (n, batch)) in [(small, BATCH), (large, BATCH), (large, 2 * BATCH)]
        .into_iter()
        .enumerate()
    {
        let edited = sys.edit_first_names(n, &format!("~{i}")).len() as u64;
        let run = one_sync(&sys, &function, &state, &queue, batch).await;
        println!(
            "changed         {edited} Contacts changed, batches of {batch}: {} Salesforce calls ({:.1} per 1,000 changed), {} Higher Logic calls ({:.1} per 1,000), \
             {} SQS calls, {} pushed, in {:.0} ms",
            run.salesforce,
            per_thousand(run.salesforce, edited),
            run.higher_logic,
            per_thousand(run.higher_logic, edited),
            run.sqs,
            run.pushed,
            run.took.as_secs_f64() * 1e3
        );
        runs.push((edited, run));
    }
    let ((n1, r1), (n2, r2)) = (runs[0], runs[1]);
    println!(
        "marginal        each further 1,000 changed Contacts, batches of {BATCH}: {:.1} Salesforce calls, {:.1} Higher Logic calls (between the first \
         two runs above; a sync's fixed cost is the no-change run's)",
        per_thousand(r2.salesforce.saturating_sub(r1.salesforce), n2 - n1),
        per_thousand(r2.higher_logic.saturating_sub(r1.higher_logic), n2 - n1),
    );
}

/// Figures of one first load, and their projection to `target` Contacts.
struct FirstLoad {
    name: &'static str,
    contacts: u64,
    salesforce: u64,
    higher_logic: u64,
    sqs: u64,
    took: Duration,
}

impl FirstLoad {
    fn print(&self, target: u64) {
        let scale = target as f64 / self.contacts as f64;
        let hl = self.higher_logic as f64 * scale;
        let own = self.took.mul_f64(scale);
        let paced = Duration::from_secs_f64(hl / HL_PER_MINUTE * 60.0);
        println!(
            "first load      {:<8} {} Contacts: {} Salesforce, {} SQS, {} Higher Logic calls, {:.1} s ({:.0} Contacts/s)",
            self.name,
            self.contacts,
            self.salesforce,
            self.sqs,
            self.higher_logic,
            self.took.as_secs_f64(),
            per_second(self.contacts, self.took)
        );
        println!(
            "  projected     {:<8} {target} Contacts: {:.0} Salesforce, {:.0} SQS, {:.0} Higher Logic calls; hlsync's own work {}, \
             Higher Logic at {HL_PER_MINUTE:.0} calls/min {} => {} ({})",
            self.name,
            self.salesforce as f64 * scale,
            self.sqs as f64 * scale,
            hl,
            human(own),
            human(paced),
            human(own.max(paced)),
            if paced >= own {
                "limited by Higher Logic's rate"
            } else {
                "limited by hlsync"
            }
        );
    }
}

async fn bench_first_load(contacts: usize, naive_sample: usize) {
    let sys = unthrottled_system(contacts).await;
    let function = Function::new(&sys, Arc::new(Unlimited));
    let state = MemoryState::default();
    let queue = CountingQueue::default();
    let run = one_sync(&sys, &function, &state, &queue, BATCH).await;
    let hlsync = FirstLoad {
        name: "hlsync",
        contacts: run.queued_contacts,
        salesforce: run.salesforce,
        higher_logic: run.higher_logic,
        sqs: run.sqs,
        took: run.took,
    };
    drop(sys);

    // The naive baseline: one message per Contact, sent one by one; each message its own
    // invocation (one Salesforce read) and its own push.
    let sys = unthrottled_system(naive_sample).await;
    let cfg = sys.config();
    let function = Function::new(&sys, Arc::new(Unlimited));
    let state = MemoryState::default();
    let queue = CountingQueue::default();
    let sf_before = sys.salesforce.counters().api_calls;
    let hl_before = sys.higher_logic.counters().total_calls();
    let start = Instant::now();
    let ids: Vec<String> = sys
        .salesforce
        .all("Contact")
        .into_iter()
        .filter(|c| c.get("IsDeleted") != Some(&Value::Bool(true)))
        .filter_map(|c| c.get("Id")?.as_str().map(str::to_string))
        .collect();
    // Its Id scan: the query pages a naive first load reads to list the Contacts.
    let scan_pages = (ids.len() as u64).div_ceil(2_000);
    let deps = function.deps(&cfg, &state, &queue);
    for (i, id) in ids.iter().enumerate() {
        let body = hlsync_sync::message::WorkMessage::contact(
            id.parse().expect("an Id"),
            None,
            "naive",
            false,
        )
        .to_body();
        let message = IncomingMessage {
            message_id: format!("naive-{i}"),
            body,
        };
        let report = member_refresh(&deps, vec![message], &Deadline::none())
            .await
            .expect("naive member refresh");
        assert!(report.failed_message_ids.is_empty());
    }
    let naive = FirstLoad {
        name: "naive",
        contacts: ids.len() as u64,
        salesforce: sys.salesforce.counters().api_calls - sf_before + scan_pages,
        higher_logic: sys.higher_logic.counters().total_calls() - hl_before,
        // SendMessage, ReceiveMessage and DeleteMessage, one each per Contact.
        sqs: 3 * ids.len() as u64,
        took: start.elapsed(),
    };
    hlsync.print(1_000_000);
    naive.print(1_000_000);
}

/// Several Member Refreshes work one backfill under one shared Higher Logic pace.
async fn bench_shared_budget(functions: usize, per_minute: u32, contacts: usize, limit: Duration) {
    let sys = LocalSystem::start(LocalOptions {
        contacts,
        higher_logic: HlSimOptions {
            // Higher Logic enforces the same limit: a call over it would be a 429.
            max_calls_per_minute: per_minute,
            ..HlSimOptions::default()
        },
        ..LocalOptions::default()
    })
    .await
    .expect("local system");
    let cfg = sys.config();
    let state = Arc::new(MemoryState::default());
    let queue = CountingQueue::default();
    let pace: Arc<dyn RateLimiter> = Arc::new(SharedPace::new(
        Arc::clone(&state) as Arc<dyn StateStore>,
        NonZeroU32::new(per_minute).expect("a rate"),
    ));
    let fleet: Vec<Function> = (0..functions)
        .map(|_| Function::new(&sys, Arc::clone(&pace)))
        .collect();
    periodic_refresh(&cfg, &fleet[0].crm, &*state, &queue, &periodic_options())
        .await
        .expect("periodic refresh");
    let backlog = Backlog::default();
    let hl_before = sys.higher_logic.counters();
    let calls = || fleet.iter().map(|f| f.community.calls_made()).sum::<u64>();
    let start = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    // Calls made, sampled each second.
    let sampler = async {
        let mut samples = vec![calls()];
        while !done.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            samples.push(calls());
        }
        samples
    };
    let work = async {
        let runs = fleet.iter().map(|f| {
            let deps = f.deps(&cfg, &*state, &queue);
            let backlog = &backlog;
            let queue = &queue;
            async move { work_backlog(&deps, queue, backlog, SHARED_BATCH, Some(limit)).await }
        });
        let worked = futures::future::join_all(runs).await;
        done.store(true, Ordering::Relaxed);
        worked
    };
    let (samples, worked) = tokio::join!(sampler, work);
    let took = start.elapsed();
    let mut total = Worked::default();
    for w in worked {
        total.add(w);
    }
    let hl = sys.higher_logic.counters();
    let made = hl.total_calls() - hl_before.total_calls();
    let budget = f64::from(per_minute) * took.as_secs_f64() / 60.0;
    let per_second: Vec<u64> = samples.windows(2).map(|w| w[1] - w[0]).collect();
    // The run's last second is partial: idle seconds are counted before it.
    let idle = per_second
        .iter()
        .take(per_second.len().saturating_sub(1))
        .filter(|n| **n == 0)
        .count();
    let busiest_minute = samples
        .iter()
        .zip(samples.iter().skip(60))
        .map(|(a, b)| b - a)
        .max();
    println!(
        "shared budget   {functions} Member Refreshes, {per_minute} Higher Logic calls/min shared, {} Contacts in {} range messages, \
         invocations of at most {} s: {made} calls in {:.1} s = {:.1}% of the budget; {idle} idle seconds; busiest minute {}; \
         {} answered 429; {} invocations, {} SQS calls",
        total.pushed,
        total.messages,
        limit.as_secs(),
        took.as_secs_f64(),
        made as f64 * 100.0 / budget.max(1e-9),
        busiest_minute.map_or_else(
            || "(run shorter than a minute)".to_string(),
            |m| format!("{m} calls")
        ),
        hl.throttled - hl_before.throttled,
        total.invocations,
        queue.send_calls.load(Ordering::Relaxed) + total.receive_delete_calls,
    );
}

async fn bench_full_system(n: usize) {
    let sys = LocalSystem::start(LocalOptions {
        contacts: n,
        ..LocalOptions::default()
    })
    .await
    .expect("local system");
    let rt = sys.runtime();
    let sf_before = sys.salesforce.counters().api_calls;
    let start = Instant::now();
    let r = commands::sync(&rt, 500, &Progress::hidden())
        .await
        .expect("sync");
    let took = start.elapsed();
    let sf = sys.salesforce.counters().api_calls - sf_before;
    println!(
        "full system     {n} Contacts ({} pushed) in {:.1} s through moto: {:.0} Contacts/s; {sf} Salesforce calls, \
         {} Higher Logic calls",
        r.member_refresh.pushed,
        took.as_secs_f64(),
        per_second(n as u64, took),
        r.member_refresh.higher_logic_calls
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only NAME` (mapping, changed, first-load, shared-budget, full-system) runs one part.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    println!("hlsync benchmarks (release build; figures, not assertions)");
    if runs("mapping") {
        bench_mapping(if quick { 2_000 } else { 50_000 }).await;
    }
    if runs("changed") {
        if quick {
            bench_changed(5_000, 500, 2_500).await;
        } else {
            bench_changed(20_000, 1_000, 10_000).await;
        }
    }
    if runs("first-load") {
        if quick {
            bench_first_load(20_000, 500).await;
        } else {
            bench_first_load(200_000, 5_000).await;
        }
    }
    if runs("shared-budget") {
        if quick {
            bench_shared_budget(3, 600, 4_000, Duration::from_secs(5)).await;
        } else {
            bench_shared_budget(3, 180, 40_000, Duration::from_secs(30)).await;
        }
    }
    if runs("full-system") {
        bench_full_system(if quick { 500 } else { 2_000 }).await;
    }
    println!(
        "peak RSS of the benchmark process (simulators included): {:.1} MiB",
        peak_rss_mib()
    );
}
