//! What the pipeline's tests build their worlds from: a config, a Contact describe, records as
//! Salesforce returns them, and the four ports in memory. One place, so that no test file keeps
//! its own copy (feature `testing`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hlsync_core::config::Config;
use hlsync_core::id::SfId;
use hlsync_core::schema::{FieldInfo, FieldType};
use serde_json::{Value, json};

use crate::Deadline;
use crate::member::MemberDeps;
use crate::memory::{MemoryCommunity, MemoryCrm, MemoryQueue, MemoryState};
use crate::periodic::{PeriodicDeps, PeriodicOptions};
use crate::ports::{Describe, Record};

/// The settings every test world shares: a lookback of ten minutes, a settle time of one, the
/// `Active__c` checkbox, and a Higher Logic nobody listens at.
const BASE_CONFIG: &str = r#"
allow_insecure_http = true
[salesforce]
lookback = "10m"
settle = "60s"
[contacts]
active_field = "Active__c"
[higher_logic]
base_url = "http://127.0.0.1:1/v2"
"#;

/// The shared settings with `extra` laid over them, table by table (`extra` may add keys to
/// a table the base has, or replace them).
pub fn config(extra: &str) -> Config {
    let mut base: toml::Table = BASE_CONFIG.parse().expect("the base test config parses");
    let extra: toml::Table = extra.parse().expect("the test's config parses");
    merge(&mut base, extra);
    Config::from_toml_str(&base.to_string()).expect("a valid test config")
}

fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(into)), toml::Value::Table(from)) => merge(into, from),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A describe field.
pub fn field(name: &str, label: &str, field_type: FieldType) -> FieldInfo {
    FieldInfo {
        name: name.into(),
        label: label.into(),
        field_type,
        calculated: false,
    }
}

/// A formula field (when `formula`): Salesforce changes its value without moving
/// `SystemModstamp`.
pub fn formula(mut field: FieldInfo, formula: bool) -> FieldInfo {
    field.calculated = formula;
    field
}

/// The Contact describe: `Id`, `LastName`, `Active__c` and `HL_Member_Type__c`, then `more`.
pub fn describe(more: Vec<FieldInfo>) -> Describe {
    let mut fields = vec![
        field("Id", "Contact ID", FieldType::Id),
        field("LastName", "Last Name", FieldType::String),
        field("Active__c", "Active", FieldType::Boolean),
        field("HL_Member_Type__c", "Member Type", FieldType::Picklist),
    ];
    fields.extend(more);
    Describe {
        fields,
        record_types: vec![],
    }
}

/// Where every test world's clock starts (Salesforce's clock).
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
        .single()
        .expect("valid time")
}

/// A time as Salesforce writes it in a record.
pub fn sf_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// The `n`th Id with a key prefix (`003` a Contact, `001` an Account, `701` a Campaign, `00v` a
/// CampaignMember).
pub fn sfid(prefix: &str, n: usize) -> SfId {
    format!("{prefix}{n:012}")
        .parse()
        .expect("valid 15-char id")
}

/// The `n`th Contact's Id.
pub fn contact_id(n: usize) -> SfId {
    sfid("003", n)
}

/// A JSON object as a record.
pub fn obj(v: Value) -> Record {
    serde_json::from_value(v).expect("an object")
}

/// `record` with the fields of `more` added or replaced.
pub fn with(mut record: Record, more: Value) -> Record {
    record.extend(obj(more));
    record
}

/// The `n`th Contact, active, Gold, not opted out, last modified `at`.
pub fn contact(n: usize, at: DateTime<Utc>) -> Record {
    obj(json!({
        "Id": contact_id(n).to_string(), "LastName": format!("Last{n}"), "Active__c": true,
        "HL_Member_Type__c": "Gold", "HasOptedOutOfEmail": false,
        "IsDeleted": false, "SystemModstamp": sf_time(at),
    }))
}

/// The `n`th Campaign, of type `kind`.
pub fn campaign(n: usize, kind: &str, at: DateTime<Utc>) -> Record {
    obj(json!({
        "Id": sfid("701", n).to_string(), "Name": format!("Campaign {n}"), "Type": kind,
        "StartDate": "2026-12-01", "EndDate": null, "IsDeleted": false,
        "SystemModstamp": sf_time(at),
    }))
}

/// The `n`th CampaignMember: Contact `contact` in Campaign `campaign`.
pub fn campaign_member(
    n: usize,
    campaign: usize,
    contact: usize,
    status: &str,
    at: DateTime<Utc>,
) -> Record {
    obj(json!({
        "Id": sfid("00v", n).to_string(), "CampaignId": sfid("701", campaign).to_string(),
        "ContactId": contact_id(contact).to_string(), "Status": status, "IsDeleted": false,
        "SystemModstamp": sf_time(at),
    }))
}

/// A config and the four ports in memory, the org's clock at [`t0`].
pub struct MemoryWorld {
    pub cfg: Config,
    pub crm: Arc<MemoryCrm>,
    pub community: Arc<MemoryCommunity>,
    pub state: Arc<MemoryState>,
    pub queue: Arc<MemoryQueue>,
}

impl MemoryWorld {
    /// Salesforce answering with `describe`, its queries in pages of `page_size`.
    pub fn build(cfg: Config, describe: Describe, page_size: usize) -> Self {
        MemoryWorld {
            cfg,
            crm: Arc::new(MemoryCrm::new(describe, t0()).with_page_size(page_size)),
            community: Arc::new(MemoryCommunity::default()),
            state: Arc::new(MemoryState::default()),
            queue: Arc::new(MemoryQueue::default()),
        }
    }

    /// Salesforce's clock.
    pub fn now(&self) -> DateTime<Utc> {
        *self.crm.now.lock().expect("clock")
    }

    /// Moves Salesforce's clock on.
    pub fn advance(&self, by: TimeDelta) {
        self.crm.set_now(self.now() + by);
    }

    /// The Periodic Refresh's ports, all in memory.
    pub fn periodic_deps(&self) -> PeriodicDeps<'_> {
        PeriodicDeps {
            cfg: &self.cfg,
            crm: self.crm.as_ref(),
            community: Some(self.community.as_ref()),
            state: self.state.as_ref(),
            queue: self.queue.as_ref(),
        }
    }

    /// The Member Refresh's ports, all in memory.
    pub fn member_deps(&self) -> MemberDeps<'_> {
        MemberDeps {
            cfg: &self.cfg,
            crm: self.crm.as_ref(),
            community: self.community.as_ref(),
            state: self.state.as_ref(),
            queue: self.queue.as_ref(),
        }
    }
}

/// A Periodic Refresh's options: no deadline, a lease of fifteen minutes.
pub fn periodic_opts(run_id: &str) -> PeriodicOptions {
    PeriodicOptions {
        run_id: run_id.into(),
        deadline: Deadline::none(),
        lease_ttl: Duration::from_mins(15),
    }
}
