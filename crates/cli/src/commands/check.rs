//! `hlsync check`: the config against the live Salesforce org.

use std::fmt;
use std::path::Path;

use hlsync_core::config::Config;
use hlsync_core::schema::{ContactSchema, FieldInfo, FieldType};
use hlsync_sync::ports::{Crm as _, Describe};
use serde::{Serialize, Serializer};

use crate::context;

/// What `check` found: the first problem that stops hlsync, or what the config makes of the org.
#[derive(Debug)]
pub enum CheckReport {
    Failed(String),
    Passed(SchemaCheck),
}

#[derive(Debug, Serialize)]
pub struct SchemaCheck {
    /// The field that says whether a Contact is active; `None`: every Contact is.
    pub active_field: Option<String>,
    pub prefix: String,
    /// Each prefixed field and what it becomes.
    pub fields: Vec<CheckedField>,
    pub formula_fields: Vec<String>,
    pub record_type_groups: bool,
    pub record_types: Vec<RecordTypeName>,
    pub warnings: Vec<String>,
    /// Contacts with no value in a Flow-kept cursor field (not counted for SystemModstamp).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor_nulls: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct CheckedField {
    pub field: String,
    pub label: String,
    #[serde(rename = "type")]
    pub field_type: String,
    pub formula: bool,
    pub becomes: String,
    pub group_type: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RecordTypeName {
    pub name: String,
    pub developer_name: String,
}

/// `{"ok": false, "error": …}`, or `{"ok": true, …}` with what was found.
impl Serialize for CheckReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Failed<'a> {
            ok: bool,
            error: &'a str,
        }
        #[derive(Serialize)]
        struct Passed<'a> {
            ok: bool,
            #[serde(flatten)]
            check: &'a SchemaCheck,
        }
        match self {
            CheckReport::Failed(error) => Failed { ok: false, error }.serialize(serializer),
            CheckReport::Passed(check) => Passed { ok: true, check }.serialize(serializer),
        }
    }
}

pub async fn run(config: Option<&Path>, stack: &str) -> anyhow::Result<CheckReport> {
    let rt = context::runtime(config, stack).await?;
    let describe = rt.crm.describe_contact(true).await?;
    let mut report = check_report(&rt.cfg, &describe);
    // A Flow-kept cursor field: how many Contacts it is null on (no window finds them; the
    // initial load and the full refresh do).
    let cursor = &rt.cfg.salesforce.cursor_field;
    if let CheckReport::Passed(check) = &mut report
        && !cursor.eq_ignore_ascii_case("SystemModstamp")
    {
        let client = rt.crm.client().await?;
        let mut pager = client.query(&format!(
            "SELECT COUNT() FROM Contact WHERE {cursor} = null"
        ))?;
        pager.next_page().await?;
        let nulls = pager.total_size().unwrap_or(0);
        check.cursor_nulls = Some(nulls);
        if nulls > 0 {
            check.warnings.push(format!(
                "{nulls} Contacts have no value in {cursor} (salesforce.cursor_field): no change window finds them; \
                 the initial load and the full refresh (every {}) read them. Fix the Flow that keeps it, or accept that delay",
                humantime::format_duration(rt.cfg.contacts.full_refresh_every)
            ));
        }
    }
    Ok(report)
}

/// What the config makes of the org's Contact describe, or the first thing that stops it.
pub fn check_report(cfg: &Config, describe: &Describe) -> CheckReport {
    match schema_check(cfg, describe) {
        Ok(check) => CheckReport::Passed(check),
        Err(problem) => CheckReport::Failed(problem),
    }
}

/// The steps of [`check_report`]: the schema the config makes of the describe, the checks it
/// leaves to this command (each failure names the config key and what to change), then what
/// each prefixed field becomes and the warnings.
fn schema_check(cfg: &Config, describe: &Describe) -> Result<SchemaCheck, String> {
    let schema = ContactSchema::build(&describe.fields, &describe.record_types, cfg)
        .map_err(|e| e.to_string())?;
    check_cursor_field(cfg, describe)?;
    check_community_prefixes(cfg)?;
    let record_types = record_types(cfg, &schema)?;
    let formulas: Vec<String> = schema
        .formula_fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let mut warnings = Vec::new();
    if !formulas.is_empty() {
        warnings.push(format!(
            "formula fields {} change without moving SystemModstamp: a full refresh re-reads all Contacts every {} (contacts.full_refresh_every), costing Salesforce reads but pushing only the members that changed",
            formulas.join(", "),
            humantime::format_duration(cfg.contacts.full_refresh_every)
        ));
    }
    Ok(SchemaCheck {
        active_field: schema.active_field().map(|f| f.name.clone()),
        prefix: cfg.contacts.group_field_prefix.clone(),
        fields: checked_fields(cfg, describe, &schema),
        formula_fields: formulas,
        record_type_groups: cfg.contacts.record_type_groups,
        record_types,
        warnings,
        cursor_nulls: None,
    })
}

/// The window's cursor (`salesforce.cursor_field`) must be a date/time field of Contact that
/// the integration user sees: a Flow-kept "HL mod date", say.
fn check_cursor_field(cfg: &Config, describe: &Describe) -> Result<(), String> {
    let cursor = &cfg.salesforce.cursor_field;
    match describe.field(cursor).map(|f| &f.field_type) {
        Some(FieldType::DateTime) => Ok(()),
        Some(other) => Err(format!(
            "config key `salesforce.cursor_field`: Contact field `{cursor}` is a {}, not a date/time field",
            other.as_sf()
        )),
        None => Err(format!(
            "config key `salesforce.cursor_field`: Contact has no field `{cursor}` (or the integration user cannot see it)"
        )),
    }
}

/// Each of `contacts.community_fields` must carry the group prefix: only prefixed fields feed
/// groups.
fn check_community_prefixes(cfg: &Config) -> Result<(), String> {
    let prefix = &cfg.contacts.group_field_prefix;
    let prefix_lower = prefix.to_ascii_lowercase();
    for name in cfg.contacts.community_fields.iter().map(|c| &c.field) {
        if !name.to_ascii_lowercase().starts_with(&prefix_lower) {
            return Err(format!(
                "config key `contacts.community_fields`: the field {name:?} does not carry the group prefix {prefix:?} (contacts.group_field_prefix); rename the field or remove it from the list"
            ));
        }
    }
    Ok(())
}

/// The org's Contact record types other than Master (every org lists Master; only the others
/// say something about a Contact). With `contacts.record_type_groups` on, there must be some.
fn record_types(cfg: &Config, schema: &ContactSchema) -> Result<Vec<RecordTypeName>, String> {
    let record_types: Vec<RecordTypeName> = schema
        .record_types()
        .iter()
        .filter(|r| r.developer_name != "Master")
        .map(|r| RecordTypeName {
            name: r.name.clone(),
            developer_name: r.developer_name.clone(),
        })
        .collect();
    if cfg.contacts.record_type_groups && record_types.is_empty() {
        return Err(
            "config key `contacts.record_type_groups` is true, but the org has no Contact record types (or the integration user cannot see them): create them or set it to false".into(),
        );
    }
    Ok(record_types)
}

/// Each prefixed field of the describe and what it becomes: the security group fields, the
/// community group fields, then the prefixed fields that are the cursor or the active field,
/// which never become groups (SPEC §2).
fn checked_fields(cfg: &Config, describe: &Describe, schema: &ContactSchema) -> Vec<CheckedField> {
    let security_type = cfg.contacts.security_group_type.as_str();
    let mut fields: Vec<CheckedField> = schema
        .security_group_fields()
        .iter()
        .map(|f| CheckedField::new(f, "security groups", Some(security_type)))
        .collect();
    fields.extend(schema.community_group_fields().iter().map(|f| {
        let group_type = cfg.contacts.community_group_type(&f.name);
        CheckedField::new(f, "community groups", group_type)
    }));
    let prefix_lower = cfg.contacts.group_field_prefix.to_ascii_lowercase();
    let unlisted: Vec<&FieldInfo> = describe
        .fields
        .iter()
        .filter(|f| {
            f.name.to_ascii_lowercase().starts_with(&prefix_lower)
                && !fields.iter().any(|listed| listed.field == f.name)
        })
        .collect();
    for f in unlisted {
        let why = if f.name.eq_ignore_ascii_case(&cfg.salesforce.cursor_field) {
            "no group (it is salesforce.cursor_field)"
        } else {
            "no group (it is contacts.active_field)"
        };
        fields.push(CheckedField::new(f, why, None));
    }
    fields
}

impl CheckedField {
    /// The line of field `f`: what it `becomes`, and the GroupType of its groups if any.
    fn new(f: &FieldInfo, becomes: &str, group_type: Option<&str>) -> Self {
        CheckedField {
            field: f.name.clone(),
            label: f.label.clone(),
            field_type: f.field_type.as_sf().to_owned(),
            formula: f.calculated,
            becomes: becomes.to_owned(),
            group_type: group_type.map(str::to_owned),
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckReport::Failed(error) => writeln!(f, "check failed: {error}"),
            CheckReport::Passed(check) => write!(f, "{check}"),
        }
    }
}

impl fmt::Display for SchemaCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "active field: {}",
            self.active_field
                .as_deref()
                .unwrap_or("(none: every Contact is active)")
        )?;
        writeln!(f, "fields with the prefix `{}`:", self.prefix)?;
        for field in &self.fields {
            let becomes = match &field.group_type {
                Some(t) => format!("{} of GroupType {t}", field.becomes),
                None => field.becomes.clone(),
            };
            writeln!(
                f,
                "  {:<28} {:<14} {:<18} -> {}{}",
                field.field,
                field.field_type,
                field.label,
                becomes,
                if field.formula { " (formula)" } else { "" }
            )?;
        }
        if self.record_type_groups {
            let names: Vec<&str> = self.record_types.iter().map(|r| r.name.as_str()).collect();
            writeln!(f, "record types -> security groups: {}", names.join(", "))?;
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn describe(cursor_type: &str) -> Describe {
        let fields = json!([
            {"name": "SystemModstamp", "label": "Modified", "type": cursor_type},
            {"name": "Active__c", "label": "Active", "type": "boolean"},
            {"name": "HL_Member_Type__c", "label": "Member Type", "type": "picklist"},
            {"name": "HL_Chapter__c", "label": "Chapter", "type": "picklist"},
        ]);
        let record_types = json!([
            {"recordTypeId": "012000000000000AAA", "name": "Master", "developerName": "Master"},
            {"recordTypeId": "012000000000001AAA", "name": "Member", "developerName": "Member"},
        ]);
        serde_json::from_value(json!({"fields": fields, "recordTypeInfos": record_types}))
            .expect("a describe")
    }

    #[test]
    fn a_fitting_org_reports_its_fields_as_text_and_json() {
        let report = check_report(&Config::example(), &describe("datetime"));
        let value = serde_json::to_value(&report).expect("serializes");
        assert_eq!(value["ok"], json!(true));
        assert_eq!(value["fields"][0]["type"], json!("picklist"));
        assert_eq!(value["fields"][1]["group_type"], json!("Chapter"));
        assert!(value.get("cursor_nulls").is_none(), "{value}");
        let text = report.to_string();
        assert!(
            text.starts_with(
                "active field: Active__c
"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "record types -> security groups: Member
"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_failed_check_is_ok_false_with_the_error() {
        let report = check_report(&Config::example(), &describe("string"));
        let value = serde_json::to_value(&report).expect("serializes");
        let error = value["error"].as_str().map(str::to_owned);
        assert_eq!(value["ok"], json!(false));
        assert_eq!(value.as_object().map(serde_json::Map::len), Some(2));
        assert!(matches!(report, CheckReport::Failed(_)));
        assert_eq!(
            report.to_string(),
            format!("check failed: {}\n", error.unwrap_or_default())
        );
    }
}
