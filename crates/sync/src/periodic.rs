//! The Periodic Refresh: find what changed in Salesforce since the watermark, fan the Ids out to
//! the work queue, and only then move the watermark.
//!
//! The watermarks move through `crate::watermark` (its rules are there). Here:
//! - a window reads `lookback` before the watermark (late commits) and stops `settle` short of
//!   Salesforce's clock (changes still being committed);
//! - within a window, each page's messages are accepted by the queue before the checkpoint moves
//!   past them, and the checkpoint is the exact (cursor, Id) of the last record sent, so a run that
//!   stops (deadline, error) resumes where it stopped without skipping or rescanning.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hlsync_core::allotment::{self, ApiUsage};
use hlsync_core::config::Config;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::Deadline;
use crate::error::SyncError;
use crate::full::{self, FullRefreshReport};
use crate::message::{RecordKind, WorkMessage};
use crate::optout::{self, OptOutReport};
use crate::ports::{ChangeQuery, Community, Crm, Filter, StateStore, WorkQueue};
use crate::records::{StateRecord, StateRecords as _};
use crate::watermark::{Mark, WindowCheckpoint};

/// The lease that keeps two overlapping scheduled runs from scanning the same window twice.
pub const LEASE: &str = "periodic-refresh";
/// Feed (watermark) names.
pub const FEED_CONTACTS: &str = "contacts";
pub const FEED_CONTACT_DELETES: &str = "contacts-deleted";
pub const FEED_ACCOUNTS: &str = "accounts";
pub const FEED_CAMPAIGNS: &str = "campaigns";
pub const FEED_CAMPAIGN_MEMBERS: &str = "campaign-members";
/// Every feed a Periodic Refresh may scan with a time window (for `hlsync status`); the full
/// refresh and the email preferences have their own watermarks too: [`full::FEED_FULL_REFRESH`],
/// [`optout::FEED_EMAIL_PREFERENCES`].
pub const WINDOW_FEEDS: &[&str] = &[
    FEED_CONTACTS,
    FEED_CONTACT_DELETES,
    FEED_ACCOUNTS,
    FEED_CAMPAIGNS,
    FEED_CAMPAIGN_MEMBERS,
];

/// The last run's report as it is kept for `hlsync status`: the report, and the error that
/// ended the run, if one did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeriodicRun {
    #[serde(flatten)]
    pub report: PeriodicReport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StateRecord for PeriodicRun {
    type Id = ();
    fn key((): &()) -> String {
        "run#periodic-refresh".into()
    }
}

/// The API usage Salesforce last reported, kept for `hlsync status`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UsageSeen {
    pub used: u64,
    pub max: u64,
    /// When it was recorded.
    pub at: Option<DateTime<Utc>>,
}

impl StateRecord for UsageSeen {
    type Id = ();
    fn key((): &()) -> String {
        "usage#salesforce".into()
    }
}

#[derive(Debug, Clone)]
pub struct PeriodicOptions {
    pub run_id: String,
    pub deadline: Deadline,
    /// How long the lease lasts if this run dies without releasing it.
    pub lease_ttl: Duration,
}

/// What one feed's scan did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedReport {
    pub feed: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub changed: u64,
    pub deleted: u64,
    pub sent: u64,
    /// The whole window was scanned and the watermark moved to its end.
    pub completed: bool,
    /// Times the window was split after a QUERY_TIMEOUT.
    pub splits: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeriodicReport {
    pub run_id: String,
    pub feeds: Vec<FeedReport>,
    /// Set when the run did nothing on purpose (lease held by another run).
    pub skipped: Option<String>,
    pub salesforce_calls: u64,
    pub usage: Option<ApiUsage>,
    pub allotment_share: Option<f64>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Set when this run scanned (or resumed) the full refresh of all Contacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_refresh: Option<FullRefreshReport>,
    /// Set when this run read Higher Logic's email preference changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_preferences: Option<OptOutReport>,
}

impl PeriodicReport {
    pub fn changed(&self) -> u64 {
        self.feeds.iter().map(|f| f.changed).sum()
    }
    pub fn sent(&self) -> u64 {
        self.feeds.iter().map(|f| f.sent).sum::<u64>()
            + self.full_refresh.as_ref().map_or(0, |f| f.sent)
    }
    /// Messages queued: one per Contact from the feeds, one per range from a full refresh.
    pub fn messages(&self) -> u64 {
        self.feeds.iter().map(|f| f.sent).sum::<u64>()
            + self.full_refresh.as_ref().map_or(0, |f| f.messages)
    }
    pub fn completed(&self) -> bool {
        self.feeds.iter().all(|f| f.completed)
            && self.full_refresh.as_ref().is_none_or(|f| f.completed)
    }
}

struct Feed {
    name: &'static str,
    object: &'static str,
    kind: RecordKind,
    cursor_field: String,
    filter: Option<Filter>,
    /// `queryAll`: deleted rows too.
    include_deleted: bool,
    /// Queue the record this reference names instead of the changed one.
    key_field: Option<&'static str>,
    /// Its messages ask for a re-read whatever the stored cursor: the change is not the queued
    /// record's own (a CampaignMember's or an Account's), so its cursor says nothing of when
    /// that record was last read.
    full: bool,
    /// Its first window starts at the initial load, which reads what came before: the feeds of
    /// Contacts and of what their records are made of (Accounts, registrations). Campaigns are
    /// read from the beginning: a meeting nobody registered for is pushed too.
    from_initial_load: bool,
}

fn feeds(cfg: &Config) -> Vec<Feed> {
    let cursor_field = cfg.salesforce.cursor_field.clone();
    let mut feeds = vec![Feed {
        name: FEED_CONTACTS,
        object: "Contact",
        kind: RecordKind::Contact,
        cursor_field: cursor_field.clone(),
        filter: None,
        include_deleted: true,
        key_field: None,
        full: false,
        from_initial_load: true,
    }];
    // A Flow-kept cursor field does not move on delete or undelete, nor on an edit the Flow
    // misses: those are found on SystemModstamp, as the rows whose cursor field stayed behind.
    if !cursor_field.eq_ignore_ascii_case("SystemModstamp") {
        feeds.push(Feed {
            name: FEED_CONTACT_DELETES,
            object: "Contact",
            kind: RecordKind::Contact,
            cursor_field: "SystemModstamp".into(),
            filter: Some(Filter::CursorBehind {
                field: cursor_field,
            }),
            include_deleted: true,
            key_field: None,
            full: false,
            from_initial_load: true,
        });
    }
    // An Account renamed changes its Contacts' OrganizationName: the Contacts of changed
    // Accounts, through the lookup (deleted Contacts are the Contacts feed's).
    feeds.push(Feed {
        name: FEED_ACCOUNTS,
        object: "Contact",
        kind: RecordKind::Contact,
        cursor_field: "Account.SystemModstamp".into(),
        filter: None,
        include_deleted: false,
        key_field: None,
        full: true,
        from_initial_load: true,
    });
    if cfg.events.enabled {
        // Campaigns and their members carry no Flow-kept field: both are read on
        // SystemModstamp, which also moves on delete, so queryAll's IsDeleted rows are the deletes.
        // Every Campaign: one that leaves the events' type must be taken back from Higher Logic,
        // which the Member Refresh decides.
        feeds.push(Feed {
            name: FEED_CAMPAIGNS,
            object: "Campaign",
            kind: RecordKind::Campaign,
            cursor_field: "SystemModstamp".into(),
            filter: None,
            include_deleted: true,
            key_field: None,
            full: false,
            from_initial_load: false,
        });
        // A registration travels on its Contact's record (SPEC §6): a CampaignMember that
        // changed, appeared or was deleted queues its Contact, which is re-read whole.
        feeds.push(Feed {
            name: FEED_CAMPAIGN_MEMBERS,
            object: "CampaignMember",
            kind: RecordKind::Contact,
            cursor_field: "SystemModstamp".into(),
            filter: Some(Filter::Equals {
                path: "Campaign.Type".into(),
                value: cfg.events.campaign_type.trim().to_owned(),
            }),
            include_deleted: true,
            key_field: Some("ContactId"),
            full: true,
            from_initial_load: true,
        });
    }
    feeds
}

/// Refuses to start when Salesforce usage is at or past the configured share of the allotment.
pub fn check_allotment(cfg: &Config, usage: ApiUsage) -> Result<(), SyncError> {
    let ceiling = allotment::ceiling(&cfg.salesforce, Some(usage.max));
    // Usage must stay below the ceiling: the next call may not reach it.
    if !allotment::allows(usage, &cfg.salesforce, 1) {
        return Err(SyncError::Allotment(format!(
            "Salesforce API usage is {used} of {max} calls in the last 24 hours, at hlsync's ceiling of {ceiling} \
             (salesforce.max_allotment_share = {share} of min(daily_api_allotment = {cfg_max}, org max = {max})): \
             no work started; the next run tries again when usage has fallen",
            used = usage.used,
            max = usage.max,
            share = cfg.salesforce.max_allotment_share,
            cfg_max = cfg.salesforce.daily_api_allotment,
        )));
    }
    Ok(())
}

/// What a Periodic Refresh works with. `community` is needed only for the email opt-out
/// write-back (the tenant's email-preference feed); without it that step is left out.
pub struct PeriodicDeps<'a> {
    pub cfg: &'a Config,
    pub crm: &'a dyn Crm,
    pub community: Option<&'a dyn Community>,
    pub state: &'a dyn StateStore,
    pub queue: &'a dyn WorkQueue,
}

/// A Periodic Refresh without the opt-out write-back (no Higher Logic calls).
pub async fn periodic_refresh(
    cfg: &Config,
    crm: &dyn Crm,
    state: &dyn StateStore,
    queue: &dyn WorkQueue,
    opts: &PeriodicOptions,
) -> Result<PeriodicReport, SyncError> {
    let deps = PeriodicDeps {
        cfg,
        crm,
        community: None,
        state,
        queue,
    };
    run(&deps, opts).await
}

/// One Periodic Refresh: the window feeds, the full refresh when it is due, then the email
/// opt-out write-back.
pub async fn run(
    deps: &PeriodicDeps<'_>,
    opts: &PeriodicOptions,
) -> Result<PeriodicReport, SyncError> {
    let PeriodicDeps {
        cfg, crm, state, ..
    } = *deps;
    let mut report = PeriodicReport {
        run_id: opts.run_id.clone(),
        ..PeriodicReport::default()
    };
    if !state.try_lease(LEASE, &opts.run_id, opts.lease_ttl).await? {
        info!(run_id = %opts.run_id, "another Periodic Refresh holds the lease; nothing to do");
        report.skipped = Some("another Periodic Refresh is running".into());
        return Ok(report);
    }
    let calls_before = crm.calls_made();
    let result = scan_all(deps, opts, &mut report).await;
    report.salesforce_calls = crm.calls_made().saturating_sub(calls_before);
    report.usage = crm.usage();
    report.allotment_share = report.usage.map(|u| allotment::share(u, &cfg.salesforce));
    report.finished_at = Some(Utc::now());
    if let Some(usage) = report.usage {
        let seen = UsageSeen {
            used: usage.used,
            max: usage.max,
            at: Some(Utc::now()),
        };
        if let Err(e) = state.store(&(), &seen).await {
            warn!(error = %e, "could not record the API usage");
        }
    }
    let run = PeriodicRun {
        report: report.clone(),
        error: result.as_ref().err().map(ToString::to_string),
    };
    if let Err(e) = state.store(&(), &run).await {
        warn!(error = %e, "could not record the run report");
    }
    if let Err(e) = state.release_lease(LEASE, &opts.run_id).await {
        // The lease expires by itself; the next run only waits for it.
        warn!(error = %e, "could not release the Periodic Refresh lease");
    }
    result.map(|()| report)
}

async fn scan_all(
    deps: &PeriodicDeps<'_>,
    opts: &PeriodicOptions,
    report: &mut PeriodicReport,
) -> Result<(), SyncError> {
    let PeriodicDeps {
        cfg,
        crm,
        state,
        queue,
        ..
    } = *deps;
    let status = crm.org_status().await?;
    check_allotment(cfg, status.usage)?;
    // The write-back goes first: the Contacts this run fans out are then read after its writes,
    // so no push of this run undoes a member's choice (SPEC §6). Only where the tenant provides
    // an email-preference feed; otherwise no call.
    if let Some(community) = deps
        .community
        .filter(|_| cfg.higher_logic.email_preferences_url.is_some())
    {
        let wb = optout::WriteBack {
            cfg,
            crm,
            community,
            state,
            queue,
            run_id: &opts.run_id,
        };
        report.email_preferences = Some(optout::write_back(&wb).await?);
    }
    // A Contact feed's first window (and the Accounts' and registrations') starts now (less
    // `settle`), not at the beginning of time: what came before is the initial load's (an Id scan of every Contact, nulls of a Flow-kept
    // cursor included), which starts in this same run and resumes until done. Starting the
    // feeds first means nothing that changes while the initial load runs is missed.
    let settle = chrono::TimeDelta::from_std(cfg.salesforce.settle).unwrap_or_default();
    for feed in feeds(cfg).iter().filter(|f| f.from_initial_load) {
        let mut mark = Mark::load(state, feed.name).await?;
        if mark.at().is_none() {
            mark.advance(state, status.now - settle).await?;
        }
    }
    for feed in feeds(cfg) {
        let mut feed_report = FeedReport {
            feed: feed.name.to_string(),
            ..FeedReport::default()
        };
        let result = scan_feed(
            cfg,
            crm,
            state,
            queue,
            opts,
            &feed,
            status.now,
            &mut feed_report,
        )
        .await;
        report.feeds.push(feed_report);
        result?;
        if opts.deadline.near() {
            return Ok(());
        }
    }
    let full_deps = full::FullDeps {
        cfg,
        crm,
        state,
        queue,
        run_id: &opts.run_id,
        deadline: &opts.deadline,
    };
    report.full_refresh = full::run_if_due(&full_deps, status.now).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn scan_feed(
    cfg: &Config,
    crm: &dyn Crm,
    state: &dyn StateStore,
    queue: &dyn WorkQueue,
    opts: &PeriodicOptions,
    feed: &Feed,
    sf_now: DateTime<Utc>,
    report: &mut FeedReport,
) -> Result<(), SyncError> {
    let mut mark = Mark::load(state, feed.name).await?;
    let Some(mut cp) = WindowCheckpoint::plan(
        &mark,
        sf_now,
        cfg.salesforce.lookback,
        cfg.salesforce.settle,
    ) else {
        // Nothing settled to read; a checkpoint that aimed behind the watermark is dropped.
        mark.clear_checkpoint(state).await?;
        report.completed = true;
        return Ok(());
    };
    report.from = Some(cp.from);
    report.to = Some(cp.target);
    info!(feed = feed.name, from = %cp.from, to = %cp.target, resumed = cp.after.is_some(), "scanning window");

    loop {
        match scan_window(crm, state, queue, opts, feed, &mut cp, &mut mark, report).await {
            Ok(true) => {}
            Ok(false) => return Ok(()), // deadline: checkpoint saved
            Err(SyncError::QueryTimeout(message)) => {
                let lower = cp.after.as_ref().map_or(cp.from, |(at, _)| *at);
                let mid = lower + (cp.to - lower) / 2;
                let mid = DateTime::from_timestamp(mid.timestamp(), 0).unwrap_or(mid);
                if mid <= lower {
                    return Err(SyncError::QueryTimeout(format!(
                        "{message}; the window can not be split below one second at {lower}"
                    )));
                }
                warn!(feed = feed.name, to = %mid, "QUERY_TIMEOUT: splitting the window");
                cp.to = mid;
                report.splits += 1;
                continue;
            }
            Err(e) => return Err(e),
        }
        // The (sub-)window is done: everything up to `cp.to` is on the queue.
        if cp.to >= cp.target {
            mark.advance(state, cp.target).await?;
            report.completed = true;
            return Ok(());
        }
        cp = WindowCheckpoint {
            from: cp.to,
            to: cp.target,
            target: cp.target,
            after: None,
        };
        mark.save_checkpoint(state, &cp).await?;
    }
}

/// Scans the checkpoint's window from its position. `Ok(true)`: done; `Ok(false)`: stopped at
/// the deadline with the checkpoint saved.
#[allow(clippy::too_many_arguments)]
async fn scan_window(
    crm: &dyn Crm,
    state: &dyn StateStore,
    queue: &dyn WorkQueue,
    opts: &PeriodicOptions,
    feed: &Feed,
    cp: &mut WindowCheckpoint,
    mark: &mut Mark,
    report: &mut FeedReport,
) -> Result<bool, SyncError> {
    let query = ChangeQuery {
        object: feed.object.to_string(),
        cursor_field: feed.cursor_field.clone(),
        window: cp.window(),
        filter: feed.filter.clone(),
        include_deleted: feed.include_deleted,
        key_field: feed.key_field.map(str::to_owned),
    };
    let mut pages = crm.changes(query).await?;
    while let Some(page) = pages.next_page().await? {
        let Some(last) = page.last() else { continue };
        let last = (last.cursor, last.id.clone());
        let bodies: Vec<String> = page
            .iter()
            .filter_map(|c| {
                let (id, deleted) = match feed.key_field {
                    None => (c.id.clone(), c.deleted),
                    // A Lead's CampaignMember names no Contact: nothing to queue.
                    Some(_) => (c.key.clone()?, false),
                };
                Some(WorkMessage {
                    full: feed.full,
                    ..WorkMessage::of(feed.kind, id, Some(c.cursor), &opts.run_id, deleted)
                })
            })
            .map(|m| m.to_body())
            .collect();
        let count = bodies.len() as u64;
        let failed = if bodies.is_empty() {
            Vec::new()
        } else {
            queue.send(bodies).await?
        };
        if !failed.is_empty() {
            return Err(SyncError::Transient {
                service: crate::error::Service::Aws,
                message: format!(
                    "the queue did not accept {} of {count} messages; the watermark stays before them and the next run resends them",
                    failed.len()
                ),
            });
        }
        report.changed += count;
        report.sent += count;
        if feed.key_field.is_none() {
            report.deleted += page.iter().filter(|c| c.deleted).count() as u64;
        }
        cp.after = Some(last);
        mark.save_checkpoint(state, cp).await?;
        if opts.deadline.near() {
            info!(
                feed = feed.name,
                "near the deadline: stopping; the next run resumes from the checkpoint"
            );
            return Ok(false);
        }
    }
    Ok(true)
}
