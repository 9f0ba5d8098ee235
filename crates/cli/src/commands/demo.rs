//! `hlsync demo`: the whole system on this machine, end to end, with a summary.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::status::{ApiUsage, Depth, status_report};
use super::sync::{SyncReport, sync};
use crate::local::{LocalOptions, LocalSystem};
use crate::output::Progress;

#[derive(Debug, Serialize)]
pub struct Round {
    pub name: String,
    pub changed: u64,
    pub pushed: u64,
    pub skipped_unchanged: u64,
    pub deactivated: u64,
    pub deleted: u64,
    pub dead_lettered: u64,
    pub meetings: u64,
    pub registrations: u64,
    pub salesforce_calls: u64,
    pub higher_logic_calls: u64,
    pub wall_ms: u128,
}

impl Round {
    fn new(name: &str, r: &SyncReport, wall: Duration) -> Self {
        Round {
            name: name.into(),
            changed: r.periodic.changed(),
            pushed: r.member_refresh.pushed,
            skipped_unchanged: r.member_refresh.skipped_unchanged
                + r.member_refresh.already_current,
            deactivated: r.member_refresh.deactivated,
            deleted: r.member_refresh.deleted,
            dead_lettered: r.member_refresh.dead_lettered,
            meetings: r.member_refresh.meetings_pushed,
            registrations: r.member_refresh.registrations_pushed,
            salesforce_calls: r.periodic.salesforce_calls + r.member_refresh.salesforce_calls,
            higher_logic_calls: r.member_refresh.higher_logic_calls,
            wall_ms: wall.as_millis(),
        }
    }
}

/// What the demo changes in Salesforce between the first and the second sync.
#[derive(Debug, Default, Serialize)]
pub struct Edits {
    pub renamed: usize,
    pub deactivated: usize,
    pub deleted: usize,
    pub opted_out: usize,
    pub regrouped: usize,
}

/// Edits some Contacts the way people do during a day.
pub fn edit_contacts(sys: &LocalSystem) -> Edits {
    let contacts: Vec<_> = sys
        .salesforce
        .all("Contact")
        .into_iter()
        .filter(|c| c.get("IsDeleted") != Some(&json!(true)))
        .filter(|c| c.get("Active__c") == Some(&json!(true)))
        .collect();
    let id = |c: &serde_json::Map<String, Value>| {
        c.get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut edits = Edits::default();
    for (i, c) in contacts.iter().take(38).enumerate() {
        let fields = |v: Value| v.as_object().cloned().unwrap_or_default();
        match i {
            0..20 => {
                sys.salesforce.update(
                    "Contact",
                    &id(c),
                    fields(json!({"Title": format!("Director of Things {i}")})),
                );
                edits.renamed += 1;
            }
            20..25 => {
                sys.salesforce
                    .update("Contact", &id(c), fields(json!({"Active__c": false})));
                edits.deactivated += 1;
            }
            25..28 => {
                sys.salesforce.delete("Contact", &id(c));
                edits.deleted += 1;
            }
            28..33 => {
                sys.salesforce.update(
                    "Contact",
                    &id(c),
                    fields(json!({"HasOptedOutOfEmail": true})),
                );
                edits.opted_out += 1;
            }
            _ => {
                sys.salesforce.update(
                    "Contact",
                    &id(c),
                    fields(json!({"HL_Member_Type__c": "Platinum"})),
                );
                edits.regrouped += 1;
            }
        }
    }
    edits
}

/// What the demo shows at its end.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub contacts_seeded: usize,
    pub edits: Edits,
    pub rounds: Vec<Round>,
    pub higher_logic: HigherLogicHolds,
    pub dlq: Depth,
    pub salesforce_api_usage: Option<ApiUsage>,
    pub wall_ms: u128,
}

/// What Higher Logic's simulator holds after the syncs.
#[derive(Debug, Serialize)]
pub struct HigherLogicHolds {
    pub members: usize,
    pub active: usize,
    pub deleted: usize,
    pub meetings: usize,
    pub registrations: usize,
    /// One record as Higher Logic's Push API v2 received it.
    pub sample_record: Value,
}

/// The syncs the demo runs, each after its own setup.
const ROUNDS: u64 = 3;

pub async fn run(contacts: usize, seed: u64, json: bool) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    let progress = Progress::steps(json, "demo", ROUNDS);
    progress.set_message("starting moto server and the Salesforce and Higher Logic simulators…");
    let sys = LocalSystem::start(LocalOptions {
        contacts,
        seed,
        // The whole worksheet: Campaigns of type "Event" become meetings too.
        extra_config: "\n[events]\nenabled = true\n".into(),
        ..LocalOptions::default()
    })
    .await?;
    progress.note(format!(
        "demo: Salesforce simulator at {}, Higher Logic simulator at {}, moto at {}; {} Contacts seeded",
        sys.salesforce.base_url(),
        sys.higher_logic.base_url(),
        sys.moto.endpoint_url(),
        contacts
    ));
    let rt = sys.runtime();
    let mut rounds = Vec::new();

    progress.note("demo: first sync (every Contact is new)…");
    let t = Instant::now();
    let r = sync(&rt, 500, &progress).await?;
    rounds.push(Round::new("initial sync", &r, t.elapsed()));
    progress.step();

    let edits = edit_contacts(&sys);
    // Let the edits age past `settle` on Salesforce's clock.
    sys.salesforce.advance(Duration::from_mins(2));
    progress.note(format!(
        "demo: edited Contacts in Salesforce: {edits:?}; second sync…"
    ));
    let t = Instant::now();
    let r = sync(&rt, 500, &progress).await?;
    rounds.push(Round::new("after edits", &r, t.elapsed()));
    progress.step();

    sys.salesforce.advance(Duration::from_mins(2));
    progress.note("demo: third sync (nothing changed)…");
    let t = Instant::now();
    let r = sync(&rt, 500, &progress).await?;
    rounds.push(Round::new("no changes", &r, t.elapsed()));
    progress.step();

    let members = sys.higher_logic.members();
    let active = members
        .values()
        .filter(|m| m["ContactDetails"]["IsMember"] == json!(true))
        .count();
    let deleted = sys
        .salesforce
        .all("Contact")
        .iter()
        .filter_map(|c| c.get("Id").and_then(Value::as_str))
        .filter(|id| sys.higher_logic.is_deleted(id))
        .count();
    let meetings = sys.higher_logic.meetings().len();
    let registrations: usize = members
        .values()
        .map(|m| {
            m["Groups"].as_array().map_or(0, |g| {
                g.iter().filter(|g| g["GroupType"] == "Event").count()
            })
        })
        .sum();
    // One record as Higher Logic's Push API v2 received it: a member with a registration if
    // there is one.
    let sample = members
        .values()
        .find(|m| {
            m["Groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["GroupType"] == "Event"))
        })
        .or_else(|| members.values().next())
        .cloned()
        .unwrap_or(Value::Null);
    let status = status_report(&rt).await?;
    Ok(DemoReport {
        contacts_seeded: contacts,
        edits,
        rounds,
        higher_logic: HigherLogicHolds {
            members: members.len(),
            active,
            deleted,
            meetings,
            registrations,
            sample_record: sample,
        },
        dlq: status.dlq,
        salesforce_api_usage: status.api_usage,
        wall_ms: started.elapsed().as_millis(),
    })
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEADER: [&str; 12] = [
            "round",
            "changed",
            "pushed",
            "unchanged",
            "deactivated",
            "deleted",
            "dead-lettered",
            "meetings",
            "registrations",
            "SF calls",
            "HL calls",
            "wall ms",
        ];
        // The first column left-aligned, the others right-aligned under their titles.
        let row = |f: &mut fmt::Formatter<'_>, cells: [String; 12]| -> fmt::Result {
            write!(f, "{:<14}", cells[0])?;
            for (cell, title) in cells.iter().zip(HEADER).skip(1) {
                write!(f, " {cell:>width$}", width = title.len().max(7))?;
            }
            writeln!(f)
        };
        write!(f, "\nhlsync demo: summary\n")?;
        row(f, HEADER.map(str::to_owned))?;
        for r in &self.rounds {
            row(
                f,
                [
                    r.name.clone(),
                    r.changed.to_string(),
                    r.pushed.to_string(),
                    r.skipped_unchanged.to_string(),
                    r.deactivated.to_string(),
                    r.deleted.to_string(),
                    r.dead_lettered.to_string(),
                    r.meetings.to_string(),
                    r.registrations.to_string(),
                    r.salesforce_calls.to_string(),
                    r.higher_logic_calls.to_string(),
                    r.wall_ms.to_string(),
                ],
            )?;
        }
        let hl = &self.higher_logic;
        writeln!(
            f,
            "Higher Logic now holds {} member records ({} members, {} inactive), {} deleted, {} meetings and {} registrations; \
             DLQ: {} messages; total wall time {:.1} s",
            hl.members,
            hl.active,
            hl.members - hl.active,
            hl.deleted,
            hl.meetings,
            hl.registrations,
            self.dlq.visible,
            self.wall_ms as f64 / 1000.0
        )?;
        writeln!(
            f,
            "\nOne record as Higher Logic received it (POST /contactinfo, Push API v2):\n{}",
            serde_json::to_string_pretty(&hl.sample_record).unwrap_or_default()
        )
    }
}
