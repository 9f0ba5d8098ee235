//! The commands, each a thin layer over the same code the Lambdas run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use hlsync_aws::Clients;
use hlsync_core::allotment;
use hlsync_core::schema::ContactSchema;
use hlsync_sync::Deadline;
use hlsync_sync::error::Service;
use hlsync_sync::periodic::{self, PeriodicOptions, PeriodicReport};
use hlsync_sync::ports::Crm as _;
use hlsync_sync::runtime::Runtime;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};

use crate::context::{self, StackNames};
use crate::drain::{self, DrainReport};
use crate::output::{emit, progress};
use crate::{Cli, Command};

/// Visibility timeout of the work queue made by `provision` (the template uses 6x the function
/// timeout; locally, two minutes).
pub const QUEUE_VISIBILITY: Duration = Duration::from_secs(120);
pub const MAX_RECEIVE_COUNT: u32 = 5;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Provision { secret_file } => {
            provision(&cli.stack, secret_file.as_deref(), cli.json).await
        }
        Command::PeriodicRefresh => {
            let rt = context::runtime(config, &cli.stack).await?;
            let report = periodic_refresh(&rt, cli.json).await?;
            emit(cli.json, &report, || periodic_text(&report))
        }
        Command::MemberRefresh { drain, batch_size } => {
            if !drain {
                bail!(
                    "member-refresh runs as the SQS-triggered Lambda; locally use `hlsync member-refresh --drain`"
                );
            }
            let rt = context::runtime(config, &cli.stack).await?;
            let report = drain::drain(&rt, batch_size, cli.json).await?;
            emit(cli.json, &report, || drain_text(&report))
        }
        Command::Sync { batch_size } => {
            let rt = context::runtime(config, &cli.stack).await?;
            let report = sync(&rt, batch_size, cli.json).await?;
            emit(cli.json, &report, || {
                format!(
                    "{}{}",
                    periodic_text(&report.periodic),
                    drain_text(&report.member_refresh)
                )
            })
        }
        Command::Resync { drain, batch_size } => {
            let rt = context::runtime(config, &cli.stack).await?;
            progress(cli.json, "resync: listing every Contact in Salesforce…");
            let run_id = format!("resync-{}", uuid_like());
            let queued = hlsync_sync::full::queue_resync(&rt.crm, &rt.queues, &run_id).await?;
            let drained = match drain {
                true => Some(drain::drain(&rt, batch_size, cli.json).await?),
                false => None,
            };
            let out = json!({ "queued": queued, "member_refresh": drained });
            emit(cli.json, &out, || {
                let mut text =
                    format!("resync: {queued} Contacts queued to be read and pushed again\n");
                match &drained {
                    Some(r) => text.push_str(&drain_text(r)),
                    None => text.push_str(
                        "resync: the member-refresh function works them off (locally: hlsync member-refresh --drain)\n",
                    ),
                }
                text
            })
        }
        Command::Status => status(config, &cli.stack, cli.json).await,
        Command::Check => check(config, &cli.stack, cli.json).await,
        Command::Redrive { max } => redrive(&cli.stack, max, cli.json).await,
        Command::Demo { contacts, seed } => crate::demo::run(contacts, seed, cli.json).await,
    }
}

#[derive(Debug, Serialize)]
pub struct SyncReport {
    pub periodic: PeriodicReport,
    pub member_refresh: DrainReport,
}

pub async fn periodic_refresh(rt: &Runtime, json: bool) -> anyhow::Result<PeriodicReport> {
    progress(json, "periodic-refresh: reading changes from Salesforce…");
    let opts = PeriodicOptions {
        run_id: format!("cli-{}", uuid_like()),
        deadline: Deadline::none(),
        lease_ttl: Duration::from_secs(15 * 60),
    };
    Ok(rt.periodic_refresh(&opts).await?)
}

/// A Periodic Refresh and the Member Refresh of what it queues, running side by side as the
/// deployed functions do (the queue stays short, which also keeps an emulated SQS fast).
pub async fn sync(rt: &Runtime, batch_size: usize, json: bool) -> anyhow::Result<SyncReport> {
    let producer_done = AtomicBool::new(false);
    let producer = async {
        let result = periodic_refresh(rt, json).await;
        producer_done.store(true, Ordering::SeqCst);
        result
    };
    let consumer = drain::drain_until(rt, batch_size, json, &producer_done);
    let (periodic, member_refresh) = tokio::join!(producer, consumer);
    Ok(SyncReport {
        periodic: periodic?,
        member_refresh: member_refresh?,
    })
}

fn uuid_like() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%S%3f").to_string()
}

fn periodic_text(r: &PeriodicReport) -> String {
    if let Some(why) = &r.skipped {
        return format!("periodic-refresh: skipped ({why})\n");
    }
    let mut out = String::new();
    for f in &r.feeds {
        out.push_str(&format!(
            "periodic-refresh: {feed}: window {from} .. {to}: {changed} changed ({deleted} deleted), {sent} queued{done}\n",
            feed = f.feed,
            from = f.from.map_or("-".into(), |t| t.to_rfc3339()),
            to = f.to.map_or("-".into(), |t| t.to_rfc3339()),
            changed = f.changed,
            deleted = f.deleted,
            sent = f.sent,
            done = if f.completed { "" } else { " (unfinished: the next run resumes)" },
        ));
    }
    if let Some(full) = &r.full_refresh {
        out.push_str(&format!(
            "periodic-refresh: full refresh (formula fields {}): {} Contacts queued{}\n",
            full.formula_fields.join(", "),
            full.sent,
            if full.completed {
                ""
            } else {
                " (unfinished: the next run resumes)"
            }
        ));
    }
    if let Some(optout) = &r.email_preferences {
        out.push_str(&format!(
            "periodic-refresh: email opt-out changes in Higher Logic: {}, written to Salesforce: {}, failed: {}{}\n",
            optout.changes,
            optout.written,
            optout.failed,
            optout.error.as_deref().map_or(String::new(), |e| format!(" ({e})"))
        ));
    }
    out.push_str(&format!(
        "periodic-refresh: {} Salesforce API calls{}\n",
        r.salesforce_calls,
        r.usage.map_or(String::new(), |u| format!(
            ", org usage {}/{}",
            u.used, u.max
        ))
    ));
    out
}

fn drain_text(r: &DrainReport) -> String {
    format!(
        "member-refresh: {} messages in {} batches: {} Contacts, {} pushed ({} deactivated, {} deleted), \
         {} meetings pushed, {} registrations carried, \
         {} unchanged, {} dead-lettered, {} failed deliveries; {} Salesforce calls, {} Higher Logic calls\n",
        r.messages,
        r.batches,
        r.contacts,
        r.pushed,
        r.deactivated,
        r.deleted,
        r.meetings_pushed,
        r.registrations_pushed,
        r.skipped_unchanged + r.already_current,
        r.dead_lettered,
        r.failed_deliveries,
        r.salesforce_calls,
        r.higher_logic_calls
    )
}

#[derive(Debug, Serialize)]
pub struct Provisioned {
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub secret: Option<String>,
}

pub async fn provision(stack: &str, secret_file: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let sdk = context::sdk_config().await;
    let clients = Clients::new(&sdk);
    let out = provision_with(&clients, stack, secret_file).await?;
    emit(json, &out, || {
        format!(
            "provisioned stack `{stack}`:\n  table  {}\n  queue  {}\n  dlq    {}\n  secret {}\n",
            out.table,
            out.queue_url,
            out.dlq_url,
            out.secret
                .as_deref()
                .unwrap_or("(not changed: pass --secret-file to store one)")
        )
    })
}

pub async fn provision_with(
    clients: &Clients,
    stack: &str,
    secret_file: Option<&Path>,
) -> anyhow::Result<Provisioned> {
    let names = StackNames::new(stack);
    hlsync_aws::create_table(&clients.dynamodb, &names.table).await?;
    let (queue_url, dlq_url) = hlsync_aws::create_queue_pair(
        &clients.sqs,
        &names.queue,
        &names.dlq,
        MAX_RECEIVE_COUNT,
        QUEUE_VISIBILITY,
    )
    .await?;
    let secret = match secret_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the secret file {}", path.display()))?;
            // Refuse a document the functions could not use, before storing it.
            hlsync_sync::credentials::parse_secret(&names.secret, "new", &text)?;
            hlsync_aws::put_secret(&clients.secrets, &names.secret, &SecretString::from(text))
                .await?;
            Some(names.secret.clone())
        }
        None => None,
    };
    Ok(Provisioned {
        table: names.table,
        queue_url,
        dlq_url,
        secret,
    })
}

async fn status(config: Option<&Path>, stack: &str, json: bool) -> anyhow::Result<()> {
    let rt = context::runtime(config, stack).await?;
    let value = status_value(&rt).await?;
    emit(json, &value, || status_text(&value))
}

pub async fn status_value(rt: &Runtime) -> anyhow::Result<Value> {
    use hlsync_sync::ports::StateStore as _;
    let mut watermarks = serde_json::Map::new();
    let feeds = periodic::WINDOW_FEEDS.iter().chain([
        &hlsync_sync::full::FEED_FULL_REFRESH,
        &hlsync_sync::optout::FEED_EMAIL_PREFERENCES,
    ]);
    for feed in feeds {
        let wm = rt.state.watermark(feed).await?;
        if wm.version > 0 {
            watermarks.insert(
                (*feed).into(),
                json!({ "at": wm.at, "unfinished_window": wm.checkpoint.is_some(), "version": wm.version }),
            );
        }
    }
    let queue = rt.queues.queue.depth().await?;
    let dlq = rt.queues.dlq.depth().await?;
    let usage = rt.state.get_doc(periodic::USAGE_DOC).await?;
    let allotment = usage.as_ref().and_then(|u| {
        let used = u.get("used")?.as_u64()?;
        let max = u.get("max")?.as_u64()?;
        let usage = allotment::ApiUsage { used, max };
        Some(json!({
            "used": used,
            "org_max": max,
            "ceiling": allotment::ceiling(&rt.cfg.salesforce, Some(max)),
            "share_of_allotment": allotment::share(usage, &rt.cfg.salesforce),
            "at": u.get("at"),
        }))
    });
    let login = credentials_state(rt, Service::Salesforce).await?;
    let higher_logic_credentials = credentials_state(rt, Service::HigherLogic).await?;
    Ok(json!({
        "stack": {
            "table": rt.resources.table,
            "queue_url": rt.resources.queue_url,
            "dlq_url": rt.resources.dlq_url,
            "secret_id": rt.resources.secret_id,
        },
        "watermarks": watermarks,
        "queue": { "visible": queue.visible, "in_flight": queue.in_flight },
        "dlq": { "visible": dlq.visible, "in_flight": dlq.in_flight },
        "last_periodic_refresh": rt.state.get_doc(periodic::LAST_RUN_DOC).await?,
        "last_member_refresh": rt.state.get_doc(hlsync_sync::member::LAST_RUN_DOC).await?,
        "api_usage": allotment,
        "salesforce_login": login,
        "higher_logic_credentials": higher_logic_credentials,
    }))
}

/// Whether a service's rejection of its credentials still blocks it: only while the secret
/// holds the very credentials it rejected.
async fn credentials_state(rt: &Runtime, service: Service) -> anyhow::Result<Value> {
    Ok(match rt.credentials.rejection(service).await? {
        None => json!({ "state": "ok" }),
        Some(r) => json!({
            "state": if r.blocks {
                "rejected: waiting for new credentials in the secret"
            } else {
                "rejected earlier; the credentials have changed since, the next run tries them"
            },
            "message": r.message,
            "at": r.at,
        }),
    })
}

fn status_text(v: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    out.push_str("watermarks:\n");
    match v["watermarks"].as_object() {
        Some(w) if !w.is_empty() => {
            for (feed, wm) in w {
                out.push_str(&format!(
                    "  {feed:<18} {}{}\n",
                    s(&wm["at"]),
                    if wm["unfinished_window"] == json!(true) {
                        " (a window is unfinished: the next run resumes it)"
                    } else {
                        ""
                    }
                ));
            }
        }
        _ => out.push_str("  (none yet: no Periodic Refresh has completed)\n"),
    }
    out.push_str(&format!(
        "queue:      {} visible, {} in flight\ndlq:        {} visible{}\n",
        s(&v["queue"]["visible"]),
        s(&v["queue"]["in_flight"]),
        s(&v["dlq"]["visible"]),
        if v["dlq"]["visible"].as_u64().unwrap_or(0) > 0 {
            " (fix the cause, then `hlsync redrive`)"
        } else {
            ""
        }
    ));
    let last = &v["last_periodic_refresh"];
    out.push_str(&format!(
        "last periodic refresh: {} ({} changed, {} Salesforce calls){}\n",
        s(&last["finished_at"]),
        last["feeds"].as_array().map_or(0, |f| f
            .iter()
            .filter_map(|f| f["changed"].as_u64())
            .sum::<u64>()),
        s(&last["salesforce_calls"]),
        last.get("error")
            .map_or(String::new(), |e| format!(" error: {}", s(e)))
    ));
    let last = &v["last_member_refresh"];
    out.push_str(&format!(
        "last member refresh batch: {} ({} pushed, {} unchanged, {} failed)\n",
        s(&last["finished_at"]),
        s(&last["pushed"]),
        s(&last["skipped_unchanged"]),
        s(&last["failed"])
    ));
    match v["api_usage"].as_object() {
        Some(u) => out.push_str(&format!(
            "API usage: {} of {} in the last 24 h; hlsync's ceiling {} ({:.1}% of its allotment used), as of {}\n",
            s(&u["used"]),
            s(&u["org_max"]),
            s(&u["ceiling"]),
            u["share_of_allotment"].as_f64().unwrap_or(0.0) * 100.0,
            s(&u["at"])
        )),
        None => out.push_str("API usage: not known yet\n"),
    }
    for (title, key) in [
        ("Salesforce login", "salesforce_login"),
        ("Higher Logic credentials", "higher_logic_credentials"),
    ] {
        out.push_str(&format!("{title}: {}", s(&v[key]["state"])));
        if let Some(m) = v[key].get("message") {
            out.push_str(&format!(" ({})", s(m)));
        }
        out.push('\n');
    }
    out
}

async fn check(config: Option<&Path>, stack: &str, json: bool) -> anyhow::Result<()> {
    let rt = context::runtime(config, stack).await?;
    let describe = rt.crm.describe_contact(true).await?;
    let mut report = check_report(&rt.cfg, &describe);
    // A Flow-kept cursor field: how many Contacts it is null on (no window finds them; the
    // initial load and the full refresh do).
    let cursor = &rt.cfg.salesforce.cursor_field;
    if report["ok"] == json!(true) && !cursor.eq_ignore_ascii_case("SystemModstamp") {
        let client = rt.crm.client().await?;
        let mut pager = client.query(&format!(
            "SELECT COUNT() FROM Contact WHERE {cursor} = null"
        ))?;
        pager.next_page().await?;
        let nulls = pager.total_size().unwrap_or(0);
        report["cursor_nulls"] = json!(nulls);
        if nulls > 0
            && let Some(w) = report["warnings"].as_array_mut()
        {
            w.push(json!(format!(
                "{nulls} Contacts have no value in {cursor} (salesforce.cursor_field): no change window finds them; \
                 the initial load and the full refresh (every {}) read them. Fix the Flow that keeps it, or accept that delay",
                humantime::format_duration(rt.cfg.contacts.full_refresh_every)
            )));
        }
    }
    emit(json, &report, || check_text(&report))?;
    if let Some(error) = report.get("error").and_then(Value::as_str) {
        bail!("{error}");
    }
    Ok(())
}

pub fn check_report(
    cfg: &hlsync_core::config::Config,
    describe: &hlsync_sync::ports::Describe,
) -> Value {
    let schema = match ContactSchema::build(&describe.fields, &describe.record_types, cfg) {
        Ok(schema) => schema,
        Err(e) => return json!({ "ok": false, "error": e.to_string() }),
    };
    // The window's cursor: a datetime field of Contact (a Flow-kept "HL mod date", say).
    let cursor = &cfg.salesforce.cursor_field;
    match describe.field(cursor).map(|f| &f.field_type) {
        Some(hlsync_core::schema::FieldType::DateTime) => {}
        Some(other) => {
            return json!({ "ok": false, "error": format!(
                "config key `salesforce.cursor_field`: Contact field `{cursor}` is a {}, not a date/time field", other.as_sf()
            ) });
        }
        None => {
            return json!({ "ok": false, "error": format!(
                "config key `salesforce.cursor_field`: Contact has no field `{cursor}` (or the integration user cannot see it)"
            ) });
        }
    }
    let field = |f: &hlsync_core::schema::FieldInfo, becomes: &str, group_type: Option<&str>| {
        json!({
            "field": f.name,
            "label": f.label,
            "type": f.field_type.as_sf(),
            "formula": f.calculated,
            "becomes": becomes,
            "group_type": group_type,
        })
    };
    let security_type = cfg.contacts.security_group_type.as_str();
    let mut fields: Vec<Value> = schema
        .security_group_fields()
        .iter()
        .map(|f| field(f, "security groups", Some(security_type)))
        .collect();
    fields.extend(schema.community_group_fields().iter().map(|f| {
        let group_type = cfg.contacts.community_group_type(&f.name);
        field(f, "community groups", group_type)
    }));
    // Prefixed fields that are the cursor or the active field never become groups (SPEC §2).
    let prefix_lower = cfg.contacts.group_field_prefix.to_ascii_lowercase();
    let listed: Vec<String> = fields
        .iter()
        .filter_map(|x| x["field"].as_str().map(str::to_owned))
        .collect();
    for f in describe.fields.iter().filter(|f| {
        f.name.to_ascii_lowercase().starts_with(&prefix_lower) && !listed.contains(&f.name)
    }) {
        let why = if f.name.eq_ignore_ascii_case(cursor) {
            "no group (it is salesforce.cursor_field)"
        } else {
            "no group (it is contacts.active_field)"
        };
        fields.push(field(f, why, None));
    }
    let formulas: Vec<String> = schema
        .formula_fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    // Checks the schema build leaves to others: each names the config key and what to change.
    let prefix = &cfg.contacts.group_field_prefix;
    for name in cfg.contacts.community_fields.iter().map(|c| &c.field) {
        if !name
            .to_ascii_lowercase()
            .starts_with(&prefix.to_ascii_lowercase())
        {
            return json!({ "ok": false, "error": format!(
                "config key `contacts.community_fields`: the field {name:?} does not carry the group prefix {prefix:?} (contacts.group_field_prefix); rename the field or remove it from the list"
            )});
        }
    }
    // Every org lists the Master record type; only others say something about a Contact.
    let record_types: Vec<&hlsync_core::schema::RecordTypeInfo> = schema
        .record_types()
        .iter()
        .filter(|r| r.developer_name != "Master")
        .collect();
    if cfg.contacts.record_type_groups && record_types.is_empty() {
        return json!({ "ok": false, "error":
            "config key `contacts.record_type_groups` is true, but the org has no Contact record types (or the integration user cannot see them): create them or set it to false"
        });
    }
    let mut warnings = Vec::new();
    if !formulas.is_empty() {
        warnings.push(format!(
            "formula fields {} change without moving SystemModstamp: a full refresh re-reads all Contacts every {} (contacts.full_refresh_every), costing Salesforce reads but pushing only the members that changed",
            formulas.join(", "),
            humantime::format_duration(cfg.contacts.full_refresh_every)
        ));
    }
    json!({
        "ok": true,
        "active_field": schema.active_field().map(|f| f.name.clone()),
        "prefix": cfg.contacts.group_field_prefix,
        "fields": fields,
        "formula_fields": formulas,
        "record_type_groups": cfg.contacts.record_type_groups,
        "record_types": record_types.iter().map(|r| json!({"name": r.name, "developer_name": r.developer_name})).collect::<Vec<_>>(),
        "warnings": warnings,
    })
}

fn check_text(v: &Value) -> String {
    if let Some(e) = v.get("error") {
        return format!("check failed: {}\n", e.as_str().unwrap_or_default());
    }
    let mut out = String::new();
    out.push_str(&format!(
        "active field: {}\n",
        v["active_field"]
            .as_str()
            .unwrap_or("(none: every Contact is active)")
    ));
    out.push_str(&format!(
        "fields with the prefix `{}`:\n",
        v["prefix"].as_str().unwrap_or_default()
    ));
    for f in v["fields"].as_array().into_iter().flatten() {
        let becomes = match f["group_type"].as_str() {
            Some(t) => format!(
                "{} of GroupType {t}",
                f["becomes"].as_str().unwrap_or_default()
            ),
            None => f["becomes"].as_str().unwrap_or_default().to_owned(),
        };
        out.push_str(&format!(
            "  {:<28} {:<14} {:<18} -> {}{}\n",
            f["field"].as_str().unwrap_or_default(),
            f["type"].as_str().unwrap_or_default(),
            f["label"].as_str().unwrap_or_default(),
            becomes,
            if f["formula"] == json!(true) {
                " (formula)"
            } else {
                ""
            }
        ));
    }
    if v["record_type_groups"] == json!(true) {
        let names: Vec<&str> = v["record_types"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        out.push_str(&format!(
            "record types -> security groups: {}\n",
            names.join(", ")
        ));
    }
    for w in v["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!("warning: {}\n", w.as_str().unwrap_or_default()));
    }
    out
}

async fn redrive(stack: &str, max: Option<usize>, json: bool) -> anyhow::Result<()> {
    let sdk = context::sdk_config().await;
    let clients = Clients::new(&sdk);
    let resources = context::resources(&clients, stack).await?;
    let report =
        hlsync_aws::redrive(&clients.sqs, &resources.dlq_url, &resources.queue_url, max).await?;
    let out = json!({ "moved": report.moved, "failed": report.failed, "method": format!("{:?}", report.method) });
    emit(json, &out, || {
        format!(
            "redrive: {} messages moved from the DLQ back to the queue{}\n",
            report.moved,
            if report.failed > 0 {
                format!(", {} left on the DLQ (could not be sent)", report.failed)
            } else {
                String::new()
            }
        )
    })
}
