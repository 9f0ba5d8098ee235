//! `make bench`: figures for speed, memory and Salesforce API calls (the scarcest resource).
//!
//! 1. mapping: the pure Contact -> member mapping and hash, per Contact.
//! 2. pipeline: Periodic Refresh + Member Refresh with real HTTP to the simulators, and the AWS
//!    ports in memory: the pipeline's own cost, without the emulator's.
//! 3. full system: the same sync through moto's SQS and DynamoDB (the emulator's cost included).
//!
//! Figures are printed, never asserted: timings belong here, not in tests.

use std::time::{Duration, Instant};

use hlsync_cli::commands;
use hlsync_cli::local::{LocalOptions, LocalSystem};
use hlsync_cli::output::Progress;
use hlsync_core::mapping::{ContactInput, map_contact};
use hlsync_core::schema::ContactSchema;
use hlsync_sync::Deadline;
use hlsync_sync::member::{MemberDeps, member_refresh};
use hlsync_sync::memory::{MemoryQueue, MemoryState};
use hlsync_sync::periodic::{PeriodicOptions, periodic_refresh};
use hlsync_sync::ports::Crm as _;
use serde_json::Value;

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

async fn bench_mapping(sys: &LocalSystem, n: usize) {
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
        "mapping        {mapped:>7} Contacts mapped and hashed in {:>8.1} ms: {:>9.0} Contacts/s ({:.2} µs each)",
        took.as_secs_f64() * 1e3,
        per_second(mapped, took),
        took.as_secs_f64() * 1e6 / mapped.max(1) as f64
    );
}

async fn bench_pipeline_memory_aws(n: usize) {
    let sys = LocalSystem::start(LocalOptions {
        contacts: n,
        // Events on: each batch also reads its Contacts' registrations.
        extra_config: "\n[events]\nenabled = true\n".into(),
        ..LocalOptions::default()
    })
    .await
    .expect("local system");
    let rt = sys.runtime();
    let state = MemoryState::default();
    let queue = MemoryQueue::default();
    let sf_before = sys.salesforce.counters().api_calls;
    let start = Instant::now();
    let opts = PeriodicOptions {
        run_id: "bench".into(),
        deadline: Deadline::none(),
        lease_ttl: Duration::from_secs(600),
    };
    let p = periodic_refresh(&rt.cfg, &rt.crm, &state, &queue, &opts)
        .await
        .expect("periodic");
    let periodic_took = start.elapsed();
    let messages = queue.take();
    let deps = MemberDeps {
        cfg: &rt.cfg,
        crm: &rt.crm,
        community: &rt.community,
        state: &state,
        queue: &queue,
    };
    let mut pushed = 0;
    // Batches of 500, as the event source hands them over.
    let mut rest = messages;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(500));
        let r = member_refresh(&deps, rest, &Deadline::none())
            .await
            .expect("member refresh");
        pushed += r.pushed;
        rest = tail;
    }
    let took = start.elapsed();
    let counters = sys.salesforce.counters();
    let sf = counters.api_calls - sf_before;
    let by = |endpoint: &str| {
        counters
            .calls_by_endpoint
            .get(endpoint)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "pipeline       {n:>7} Contacts ({} changed, {pushed} pushed) in {:>8.1} ms ({:.1} ms scanning): {:>7.0} Contacts/s; \
         {sf} Salesforce API calls ({:.1} per 1,000 Contacts: {} batch reads, {} queries incl. registrations), {} Higher Logic calls",
        p.changed(),
        took.as_secs_f64() * 1e3,
        periodic_took.as_secs_f64() * 1e3,
        per_second(n as u64, took),
        sf as f64 * 1000.0 / n as f64,
        by("composite_retrieve"),
        by("query") + by("queryAll") + by("query_more"),
        sys.higher_logic.counters().total_calls()
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
        "full system    {n:>7} Contacts ({} pushed) in {:>8.1} ms through moto: {:>7.0} Contacts/s; {sf} Salesforce API calls, \
         {} Higher Logic calls",
        r.member_refresh.pushed,
        took.as_secs_f64() * 1e3,
        per_second(n as u64, took),
        r.member_refresh.higher_logic_calls
    );
    // A second sync with nothing changed: what a quiet scheduled run costs.
    sys.salesforce.advance(Duration::from_secs(120));
    let start = Instant::now();
    let r = commands::sync(&rt, 500, &Progress::hidden())
        .await
        .expect("sync");
    println!(
        "quiet run      {n:>7} Contacts, nothing changed, in {:>8.1} ms: {} Salesforce API calls, {} Higher Logic calls",
        start.elapsed().as_secs_f64() * 1e3,
        r.periodic.salesforce_calls + r.member_refresh.salesforce_calls,
        r.member_refresh.higher_logic_calls
    );
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[usize] = if quick { &[500] } else { &[2_000, 10_000] };
    println!("hlsync benchmarks (release build; figures, not assertions)");
    {
        let sys = LocalSystem::start(LocalOptions {
            contacts: 2_000,
            ..LocalOptions::default()
        })
        .await
        .expect("local system");
        bench_mapping(&sys, if quick { 2_000 } else { 50_000 }).await;
    }
    for &n in sizes {
        bench_pipeline_memory_aws(n).await;
    }
    bench_full_system(if quick { 500 } else { 2_000 }).await;
    println!(
        "peak RSS of the benchmark process (simulators included): {:.1} MiB",
        peak_rss_mib()
    );
}
