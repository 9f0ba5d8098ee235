//! The hlsync configuration (SPEC.md §3): one TOML file read by every function and by the CLI.
//!
//! The sections derive `Deserialize` (unknown keys refused, left-out keys take the defaults of
//! SPEC.md §3). `serde_path_to_error` records where a value failed, so every error names the full
//! dotted key (`salesforce.lookback`); after that, [`Config::validate`] checks ranges and names
//! and says what to change, again by key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The environment variable that holds the config: a file path, or the TOML text itself.
pub const CONFIG_ENV: &str = "HLSYNC_CONFIG";

/// Why a configuration cannot be used. Every variant says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Neither `--config` nor `HLSYNC_CONFIG` was given.
    #[error(
        "no configuration given: pass --config FILE, or set {CONFIG_ENV} to a file path or to the TOML text itself"
    )]
    NotSet,
    /// The config file could not be read.
    #[error(
        "cannot read the config file {path}: {reason}; check the path given by --config or {CONFIG_ENV}"
    )]
    Read {
        /// The path that was tried.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The text is not TOML at all.
    #[error("the config from {origin} is not valid TOML: {reason}")]
    Syntax {
        /// Where the text came from (a file, `HLSYNC_CONFIG`, text passed in).
        origin: String,
        /// The TOML parser's message, with the line and column.
        reason: String,
    },
    /// One key has a value hlsync cannot use.
    #[error("config key `{key}`: {problem}")]
    Key {
        /// The dotted key, e.g. `salesforce.lookback` or `contacts.community_fields[0]`.
        key: String,
        /// What is wrong and, where it helps, what to write instead.
        problem: String,
    },
}

impl ConfigError {
    fn key(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Accept `http://` URLs for Salesforce and Higher Logic: for local emulators and tests only.
    pub allow_insecure_http: bool,
    /// `[salesforce]`: the API version, the allotment and the change windows.
    pub salesforce: SalesforceConfig,
    /// `[contacts]`: which Contacts are active and which fields feed groups.
    pub contacts: ContactsConfig,
    /// `[events]`: Campaigns pushed as meetings, registrations as groups.
    pub events: EventsConfig,
    /// `[higher_logic]`: where and how fast to push.
    pub higher_logic: HigherLogicConfig,
}

/// `[salesforce]`: how hlsync reads Contacts and how much of the org's API it may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table ([salesforce])")]
pub struct SalesforceConfig {
    /// REST API version without the `v`, e.g. "62.0".
    pub api_version: String,
    /// The 24 hour API call allotment agreed with the customer.
    pub daily_api_allotment: u64,
    /// Never take the org's usage past this share (0, 1] of the allotment.
    pub max_allotment_share: f64,
    /// The Contact field that orders changes: `SystemModstamp` or a Flow-kept date field.
    pub cursor_field: String,
    /// How far each window reaches back before the watermark (changes are eventually consistent).
    #[serde(with = "duration_text")]
    pub lookback: Duration,
    /// Changes younger than this are left for the next run.
    #[serde(with = "duration_text")]
    pub settle: Duration,
}

impl Default for SalesforceConfig {
    fn default() -> Self {
        SalesforceConfig {
            api_version: "62.0".into(),
            daily_api_allotment: 100_000,
            max_allotment_share: 0.5,
            cursor_field: "SystemModstamp".into(),
            lookback: Duration::from_mins(10),
            settle: Duration::from_mins(1),
        }
    }
}

/// `[contacts]`: which Contacts are active and which of their fields become groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table ([contacts])")]
pub struct ContactsConfig {
    /// Checkbox field that says whether the Contact is a site user; `None`: everyone is.
    pub active_field: Option<String>,
    /// Every Contact field whose API name starts with this feeds groups.
    pub group_field_prefix: String,
    /// Make the Contact's Record Type a security group too.
    pub record_type_groups: bool,
    /// The `GroupType` Higher Logic files security groups under.
    pub security_group_type: String,
    /// When non-empty, only Contacts holding one of these groups (by name or id) are active.
    pub security_group_filter: Vec<String>,
    /// Prefixed fields that feed community groups instead of security groups, each with the
    /// `GroupType` of its groups.
    #[serde(deserialize_with = "community_fields")]
    pub community_fields: Vec<CommunityField>,
    /// How often to re-read every Contact when formula fields feed groups.
    #[serde(with = "duration_text")]
    pub full_refresh_every: Duration,
}

/// The `GroupType` of security groups when `contacts.security_group_type` is left out.
pub const DEFAULT_SECURITY_GROUP_TYPE: &str = "Membership";
/// The `GroupType` of a community field given in the plain-list form of `community_fields`.
pub const DEFAULT_COMMUNITY_GROUP_TYPE: &str = "Community";

/// A Contact field that feeds community groups, and the `GroupType` of those groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommunityField {
    /// The Contact field's API name.
    pub field: String,
    /// The `GroupType` of the groups its values become.
    pub group_type: String,
}

impl CommunityField {
    /// A community field and its `GroupType`.
    pub fn new(field: impl Into<String>, group_type: impl Into<String>) -> Self {
        CommunityField {
            field: field.into(),
            group_type: group_type.into(),
        }
    }
}

impl ContactsConfig {
    /// The `GroupType` of a community field's groups, when `name` is one (any case).
    pub fn community_group_type(&self, name: &str) -> Option<&str> {
        self.community_fields
            .iter()
            .find(|c| c.field.eq_ignore_ascii_case(name))
            .map(|c| c.group_type.as_str())
    }
}

impl Default for ContactsConfig {
    fn default() -> Self {
        ContactsConfig {
            active_field: None,
            group_field_prefix: "HL_".into(),
            record_type_groups: false,
            security_group_type: DEFAULT_SECURITY_GROUP_TYPE.into(),
            security_group_filter: Vec::new(),
            community_fields: Vec::new(),
            full_refresh_every: Duration::from_hours(24),
        }
    }
}

/// `[events]`: Campaigns of one type become Higher Logic meetings, and registrations groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table ([events])")]
pub struct EventsConfig {
    /// Push events at all (off unless the config says so).
    pub enabled: bool,
    /// Campaigns whose `Type` equals this become events.
    pub campaign_type: String,
    /// CampaignMember statuses that count as registered.
    pub registered_statuses: Vec<String>,
    /// The `GroupType` of a registration's group on the member's record.
    pub group_type: String,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            enabled: false,
            campaign_type: "Event".into(),
            registered_statuses: vec!["Registered".into(), "Attended".into()],
            group_type: "Event".into(),
        }
    }
}

/// `[higher_logic]`: the tenant's Push API and how hard hlsync may call it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    default = "HigherLogicConfig::without_url",
    deny_unknown_fields,
    expecting = "a table ([higher_logic])"
)]
pub struct HigherLogicConfig {
    /// The Push API v2 base URL, without a trailing slash (one is removed if given).
    pub base_url: String,
    /// Calls per minute across all concurrent functions.
    pub max_calls_per_minute: u32,
    /// Records per push request.
    pub batch_size: usize,
    /// The tenant's email-preference feed (SPEC.md §6); `None`: no opt-out write-back.
    pub email_preferences_url: Option<String>,
}

/// The most records hlsync puts in one push request (`higher_logic.batch_size`'s upper bound).
pub const MAX_BATCH_SIZE: usize = 1_000;

impl HigherLogicConfig {
    /// A config for `base_url` with the default rate and batch size; for tests and the demo.
    pub fn new(base_url: impl Into<String>) -> Self {
        HigherLogicConfig {
            base_url: base_url.into(),
            max_calls_per_minute: 180,
            batch_size: 200,
            email_preferences_url: None,
        }
    }

    /// The defaults of the keys left out of `[higher_logic]`. `base_url` has none: left empty,
    /// [`Config::validate`] reports it as required.
    fn without_url() -> Self {
        HigherLogicConfig::new("")
    }
}

/// A fully commented example, valid as it stands (used by docs, `hlsync demo` and tests).
pub const EXAMPLE_TOML: &str = r#"# hlsync configuration (SPEC.md section 3).

# Accept plain http:// URLs for Salesforce and Higher Logic. Only for local emulators and tests.
allow_insecure_http = false

[salesforce]
# REST API version, without the "v".
api_version = "62.0"
# The worksheet's 24 hour Salesforce API call allotment for this integration.
daily_api_allotment = 100000
# hlsync never takes the org's usage past this share of the smaller of the allotment above and
# the org's own daily limit. A number in (0, 1].
max_allotment_share = 0.5
# The Contact field that orders changes: SystemModstamp, or a custom "HL mod date" field kept by a Flow.
cursor_field = "SystemModstamp"
# Each window re-reads this much before the watermark, because Salesforce changes are eventually consistent.
lookback = "10m"
# Changes younger than this are left for the next run.
settle = "60s"

[contacts]
# Checkbox field that says whether the Contact is a site user. Omit it: every Contact is active.
active_field = "Active__c"
# Every Contact field whose API name starts with this prefix feeds groups (found through describe).
group_field_prefix = "HL_"
# Make each Contact's Record Type a security group ("RecordType:<DeveloperName>").
record_type_groups = true
# The GroupType Higher Logic files security groups under.
security_group_type = "Membership"
# When non-empty, a Contact holding none of these groups (by name or id) is pushed as inactive.
security_group_filter = []
# Prefixed fields that feed community groups instead of security groups: field = GroupType.
# (A plain list of field names also works; each then has GroupType "Community".)
community_fields = { HL_Chapter__c = "Chapter" }
# When a prefixed field is a formula, re-read every Contact this often (formulas do not move SystemModstamp).
full_refresh_every = "24h"

[events]
# Push Campaigns of the type below as meetings, and registrations as groups on their members.
enabled = true
campaign_type = "Event"
# CampaignMember statuses that count as registered; any other status removes the registration.
registered_statuses = ["Registered", "Attended"]
# The GroupType of a registration on the member's record.
group_type = "Event"

[higher_logic]
# The tenant's Push API v2 base URL (Canada: https://datapushapi.onlinecommunity.ca/v2).
base_url = "https://datapushapi.higherlogic.com/v2"
# Calls per minute across all concurrent functions.
max_calls_per_minute = 180
# Records per push request.
batch_size = 200
# The tenant's email-preference feed, for the opt-out write-back; empty: no write-back.
email_preferences_url = ""
"#;

impl Config {
    /// A config with every default and the given Higher Logic URL; for tests and the demo.
    pub fn with_base_url(base_url: impl Into<String>) -> Self {
        Config {
            allow_insecure_http: false,
            salesforce: SalesforceConfig::default(),
            contacts: ContactsConfig::default(),
            events: EventsConfig::default(),
            higher_logic: HigherLogicConfig::new(base_url),
        }
    }

    /// The example configuration, parsed.
    pub fn example() -> Self {
        // EXAMPLE_TOML is a constant checked by a unit test, so this cannot fail at run time.
        #[allow(clippy::expect_used)]
        Self::from_toml_str(EXAMPLE_TOML).expect("EXAMPLE_TOML is valid (checked by tests)")
    }

    /// Parse and validate TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, "TOML text")
    }

    /// Read, parse and validate a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &format!("file {}", path.display()))
    }

    /// The config the way every binary finds it: the explicit path (`--config`) when given,
    /// else `HLSYNC_CONFIG` (see [`Config::load_with`] for how its value is read).
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let env = std::env::var(CONFIG_ENV).ok();
        Self::load_with(explicit, env.as_deref())
    }

    /// [`Config::load`] with the environment value passed in, so callers and tests need not
    /// touch the process environment.
    ///
    /// `HLSYNC_CONFIG` holds TOML text when it contains a newline, or when it parses as TOML
    /// holding at least one table (`[salesforce]` or an inline `higher_logic = { … }`); anything
    /// else is a file path. A path never parses as such TOML (a bare path has no `=`), so the rule
    /// cannot mistake one for the other.
    pub fn load_with(explicit: Option<&Path>, env: Option<&str>) -> Result<Self, ConfigError> {
        if let Some(path) = explicit {
            return Self::from_file(path);
        }
        let value = env.map(str::trim).filter(|v| !v.is_empty());
        let Some(value) = value else {
            return Err(ConfigError::NotSet);
        };
        if looks_like_toml(value) {
            Self::parse(value, &format!("{CONFIG_ENV} (TOML text)"))
        } else {
            Self::from_file(Path::new(value))
        }
    }

    fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.to_owned(),
                    reason: e.to_string().trim_end().to_owned(),
                })?;
        let file: ConfigFile = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                ConfigError::key(e.path().to_string(), in_plain_words(e.inner().message()))
            })?;
        let Some(higher_logic) = file.higher_logic else {
            return Err(ConfigError::key(
                "higher_logic.base_url",
                "is required: add a [higher_logic] table with base_url = \"https://…\" (the tenant's Push API v2 URL)",
            ));
        };
        let mut config = Config {
            allow_insecure_http: file.allow_insecure_http,
            salesforce: file.salesforce,
            contacts: file.contacts,
            events: file.events,
            higher_logic,
        };
        config.normalise();
        config.validate()?;
        Ok(config)
    }

    /// Tidy what a person may have typed: trim the spaces around every string (TOML keeps those
    /// inside the quotes), drop a trailing `/` from the base URL, and read an empty
    /// `email_preferences_url` as "no write-back".
    fn normalise(&mut self) {
        fn trim(s: &mut String) {
            *s = s.trim().to_owned();
        }
        let sf = &mut self.salesforce;
        trim(&mut sf.api_version);
        trim(&mut sf.cursor_field);

        let c = &mut self.contacts;
        if let Some(active) = &mut c.active_field {
            trim(active);
        }
        trim(&mut c.group_field_prefix);
        trim(&mut c.security_group_type);
        c.security_group_filter.iter_mut().for_each(trim);
        for community in &mut c.community_fields {
            trim(&mut community.field);
            trim(&mut community.group_type);
        }

        let e = &mut self.events;
        trim(&mut e.campaign_type);
        e.registered_statuses.iter_mut().for_each(trim);
        trim(&mut e.group_type);

        let hl = &mut self.higher_logic;
        hl.base_url = hl.base_url.trim().trim_end_matches('/').to_owned();
        hl.email_preferences_url = hl
            .email_preferences_url
            .take()
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty());
    }

    /// Check every value (also run by the parsers). Public so that a config built in code can be
    /// checked the same way. One step a table, in turn; the first problem found is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.salesforce.check()?;
        self.contacts.check()?;
        self.events.check()?;
        self.higher_logic.check(self.allow_insecure_http)
    }
}

/// `Ok` when `holds`; otherwise the error of config key `key`, saying `problem`.
fn require(
    holds: bool,
    key: impl Into<String>,
    problem: impl Into<String>,
) -> Result<(), ConfigError> {
    if holds {
        Ok(())
    } else {
        Err(ConfigError::key(key, problem))
    }
}

impl SalesforceConfig {
    /// `[salesforce]`: the API version's shape, a non-zero allotment, a share in (0, 1], and a
    /// cursor field that is an API name.
    fn check(&self) -> Result<(), ConfigError> {
        require(
            is_api_version(&self.api_version),
            "salesforce.api_version",
            format!(
                "must look like \"62.0\" (digits, a dot, digits; no \"v\"), got {:?}",
                self.api_version
            ),
        )?;
        require(
            self.daily_api_allotment != 0,
            "salesforce.daily_api_allotment",
            "must be > 0, got 0",
        )?;
        let share = self.max_allotment_share;
        // Written so that NaN fails too.
        require(
            share > 0.0 && share <= 1.0,
            "salesforce.max_allotment_share",
            format!("must be > 0 and <= 1, got {share}"),
        )?;
        check_api_name("salesforce.cursor_field", &self.cursor_field)
    }
}

impl ContactsConfig {
    /// `[contacts]`: the active field, the group prefix, the security GroupType, the community
    /// fields, the filter list and the full refresh's period.
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(active) = &self.active_field {
            check_api_name("contacts.active_field", active)?;
        }
        self.check_group_prefix()?;
        require(
            !self.security_group_type.trim().is_empty(),
            "contacts.security_group_type",
            "must not be empty (the default is \"Membership\"): it is the GroupType Higher Logic files security groups under",
        )?;
        self.check_community_fields()?;
        if let Some(blank) = self
            .security_group_filter
            .iter()
            .find(|g| g.trim().is_empty())
        {
            return Err(ConfigError::key(
                "contacts.security_group_filter",
                format!(
                    "entries must be group names or keys, got the blank entry {blank:?}; remove it"
                ),
            ));
        }
        require(
            !self.full_refresh_every.is_zero(),
            "contacts.full_refresh_every",
            "must be longer than 0s, e.g. \"24h\"",
        )
    }

    /// The group prefix: not empty (it would make every field a group) and made only of the
    /// characters of an API name.
    fn check_group_prefix(&self) -> Result<(), ConfigError> {
        let prefix = &self.group_field_prefix;
        require(
            !prefix.trim().is_empty(),
            "contacts.group_field_prefix",
            "must not be empty (the default is \"HL_\"); an empty prefix would turn every Contact field into groups",
        )?;
        require(
            prefix
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_'),
            "contacts.group_field_prefix",
            format!(
                "must hold only letters, digits and _ (it is the start of field API names), got {prefix:?}"
            ),
        )
    }

    /// Each community field: an API name carrying the group prefix, with a GroupType.
    fn check_community_fields(&self) -> Result<(), ConfigError> {
        for CommunityField { field, group_type } in &self.community_fields {
            check_api_name("contacts.community_fields", field)?;
            require(
                !group_type.trim().is_empty(),
                format!("contacts.community_fields.{field}"),
                "must name the GroupType of the field's groups, e.g. \"Chapter\"; it is empty",
            )?;
            require(
                starts_with_ignore_case(field, &self.group_field_prefix),
                "contacts.community_fields",
                format!(
                    "field {field:?} does not start with the group prefix {:?} (contacts.group_field_prefix); only prefixed fields feed groups",
                    self.group_field_prefix
                ),
            )?;
        }
        Ok(())
    }
}

impl EventsConfig {
    /// `[events]`: when enabled, a Campaign type, a GroupType and at least one registered
    /// status. Disabled, nothing here is used.
    fn check(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        require(
            !self.campaign_type.trim().is_empty(),
            "events.campaign_type",
            "must not be empty when events.enabled is true",
        )?;
        require(
            !self.group_type.trim().is_empty(),
            "events.group_type",
            "must not be empty when events.enabled is true (the default is \"Event\"): it is the GroupType of a registration",
        )?;
        require(
            !self.registered_statuses.is_empty(),
            "events.registered_statuses",
            "must list at least one CampaignMember status when events.enabled is true, e.g. [\"Registered\", \"Attended\"]",
        )
    }
}

impl HigherLogicConfig {
    /// `[higher_logic]`: a base URL (https unless `allow_insecure_http`), a non-zero rate, a
    /// batch size within [`MAX_BATCH_SIZE`], and the feed's URL when one is set.
    fn check(&self, allow_insecure_http: bool) -> Result<(), ConfigError> {
        require(
            !self.base_url.is_empty(),
            "higher_logic.base_url",
            "is required: set it to the tenant's Push API v2 URL, e.g. \"https://datapushapi.higherlogic.com/v2\"",
        )?;
        check_url(&self.base_url, allow_insecure_http, "higher_logic.base_url")?;
        require(
            self.max_calls_per_minute != 0,
            "higher_logic.max_calls_per_minute",
            "must be > 0, got 0",
        )?;
        require(
            (1..=MAX_BATCH_SIZE).contains(&self.batch_size),
            "higher_logic.batch_size",
            format!(
                "must be between 1 and {MAX_BATCH_SIZE} records per push request, got {} (the default is 200)",
                self.batch_size
            ),
        )?;
        match &self.email_preferences_url {
            Some(url) => check_url(
                url,
                allow_insecure_http,
                "higher_logic.email_preferences_url",
            ),
            None => Ok(()),
        }
    }
}

/// Check that `url` is an absolute http(s) URL with a host, and `https` unless
/// `allow_insecure_http`. `what` names the key or secret field in the error
/// (e.g. "higher_logic.base_url", "secret salesforce.login_url").
pub fn check_url(url: &str, allow_insecure_http: bool, what: &str) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        ConfigError::key(
            what,
            format!("must be an absolute URL such as \"https://host/path\", got {url:?} ({e})"),
        )
    })?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_insecure_http => {}
        "http" => {
            return Err(ConfigError::key(
                what,
                format!(
                    "must use https, got {url:?}; plain http is accepted only with allow_insecure_http = true (local emulators and tests)"
                ),
            ));
        }
        other => {
            return Err(ConfigError::key(
                what,
                format!("must be an https URL, got scheme {other:?} in {url:?}"),
            ));
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::key(
            what,
            format!("must name a host, got {url:?}"),
        ));
    }
    Ok(())
}

/// True for a plausible Salesforce API name: a letter, then letters, digits and underscores,
/// not ending in `_` (custom fields end in `__c`, namespaced ones look like `ns__Field__c`).
pub fn is_api_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.ends_with('_')
        && name.len() <= 80
}

fn check_api_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if is_api_name(name) {
        Ok(())
    } else {
        Err(ConfigError::key(
            key,
            format!(
                "{name:?} is not a field API name (a letter, then letters, digits and _, e.g. \"Active__c\"); use the API name from Setup, not the label"
            ),
        ))
    }
}

pub(crate) fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn is_api_version(v: &str) -> bool {
    match v.split_once('.') {
        Some((major, minor)) => {
            !major.is_empty()
                && !minor.is_empty()
                && major.chars().all(|c| c.is_ascii_digit())
                && minor.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

fn looks_like_toml(value: &str) -> bool {
    if value.contains('\n') {
        return true;
    }
    value
        .parse::<toml::Table>()
        .is_ok_and(|t| t.values().any(toml::Value::is_table))
}
/// The TOML document as written: every section may be left out, but `[higher_logic]` is needed
/// for its `base_url`. Kept apart from [`Config`] so that a missing `[higher_logic]` gets its own
/// message rather than serde's "missing field".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    allow_insecure_http: bool,
    #[serde(default)]
    salesforce: SalesforceConfig,
    #[serde(default)]
    contacts: ContactsConfig,
    #[serde(default)]
    events: EventsConfig,
    higher_logic: Option<HigherLogicConfig>,
}

/// serde names Rust's number types when a number is wrong ("expected u64"); an operator needs
/// plain words.
fn in_plain_words(message: &str) -> String {
    message
        .replace("expected u64", "expected a whole number (0 or more)")
        .replace("expected usize", "expected a whole number (0 or more)")
        .replace(
            "expected u32",
            &format!("expected a whole number from 0 to {}", u32::MAX),
        )
        .replace("expected f64", "expected a number")
}

/// Durations are text such as "10m" (humantime), both in the TOML and when a config is
/// serialised.
mod duration_text {
    use std::fmt;
    use std::time::Duration;

    use serde::Serializer;
    use serde::de::{self, Deserializer, Visitor};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationText)
    }

    struct DurationText;

    impl Visitor<'_> for DurationText {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration in quotes such as \"10m\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text.trim()).map_err(|e| {
                E::custom(format!(
                    "must be a duration such as \"60s\", \"10m\" or \"24h\", got {text:?} ({e})"
                ))
            })
        }
    }
}

/// `contacts.community_fields`: a table `{ Field = "GroupType" }`, or (the older form) a list of
/// field names, each then with GroupType "Community".
fn community_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CommunityField>, D::Error> {
    struct CommunityFields;

    impl<'de> Visitor<'de> for CommunityFields {
        type Value = Vec<CommunityField>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "a table of field = \"GroupType\" such as { HL_Chapter__c = \"Chapter\" }, or a list of field names",
            )
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = Vec::new();
            while let Some((field, group_type)) = map.next_entry::<String, String>()? {
                fields.push(CommunityField::new(field, group_type));
            }
            Ok(fields)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut fields = Vec::new();
            while let Some(field) = seq.next_element::<String>()? {
                fields.push(CommunityField::new(field, DEFAULT_COMMUNITY_GROUP_TYPE));
            }
            Ok(fields)
        }
    }

    d.deserialize_any(CommunityFields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[higher_logic]\nbase_url = \"https://hl.example.org/v2\"\n";

    fn with(extra: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(&format!("{extra}\n{MINIMAL}"))
    }

    fn key_of(err: ConfigError) -> String {
        match err {
            ConfigError::Key { key, .. } => key,
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    #[test]
    fn example_parses_with_documented_values() {
        let c = Config::from_toml_str(EXAMPLE_TOML).unwrap();
        assert!(!c.allow_insecure_http);
        assert_eq!(c.salesforce.api_version, "62.0");
        assert_eq!(c.salesforce.lookback, Duration::from_mins(10));
        assert_eq!(c.contacts.active_field.as_deref(), Some("Active__c"));
        assert_eq!(
            c.contacts.community_fields,
            vec![CommunityField::new("HL_Chapter__c", "Chapter")]
        );
        assert_eq!(c.contacts.security_group_type, "Membership");
        assert_eq!(c.events.group_type, "Event");
        assert_eq!(c.higher_logic.batch_size, 200);
        assert_eq!(c.higher_logic.email_preferences_url, None);
        assert!(c.events.enabled);
        assert_eq!(
            c.higher_logic.base_url,
            "https://datapushapi.higherlogic.com/v2"
        );
        assert_eq!(Config::example(), c);
    }

    #[test]
    fn v2_keys_take_their_defaults() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.contacts.security_group_type, "Membership");
        assert!(c.contacts.community_fields.is_empty());
        assert_eq!(c.events.group_type, "Event");
        assert_eq!(c.higher_logic.batch_size, 200);
        assert_eq!(c.higher_logic.email_preferences_url, None);
        let c = with(
            "[contacts]\nsecurity_group_type = \"Security\"\n[events]\ngroup_type = \"Meeting\"",
        )
        .unwrap();
        assert_eq!(c.contacts.security_group_type, "Security");
        assert_eq!(c.events.group_type, "Meeting");
    }

    #[test]
    fn community_fields_as_a_table_or_an_old_style_list() {
        let c = with(
            "[contacts]\ncommunity_fields = { HL_Chapter__c = \"Chapter\", HL_Committee__c = \"Committee\" }",
        )
        .unwrap();
        assert_eq!(
            c.contacts.community_fields,
            vec![
                CommunityField::new("HL_Chapter__c", "Chapter"),
                CommunityField::new("HL_Committee__c", "Committee")
            ]
        );
        assert_eq!(
            c.contacts.community_group_type("hl_chapter__c"),
            Some("Chapter")
        );
        // A config written before GroupTypes existed still loads: each field is a Community.
        let old = with("[contacts]\ncommunity_fields = [\"HL_Chapter__c\"]").unwrap();
        assert_eq!(
            old.contacts.community_fields,
            vec![CommunityField::new("HL_Chapter__c", "Community")]
        );
        let err = with("[contacts]\ncommunity_fields = { HL_Chapter__c = 3 }").unwrap_err();
        assert_eq!(key_of(err), "contacts.community_fields.HL_Chapter__c");
        let err = with("[contacts]\ncommunity_fields = { HL_Chapter__c = \" \" }").unwrap_err();
        assert_eq!(key_of(err), "contacts.community_fields.HL_Chapter__c");
        let err = with("[contacts]\ncommunity_fields = 3").unwrap_err();
        assert_eq!(key_of(err), "contacts.community_fields");
    }

    #[test]
    fn v2_validations_name_their_keys() {
        for (text, key) in [
            (
                "[contacts]\nsecurity_group_type = \"\"",
                "contacts.security_group_type",
            ),
            (
                "[events]\nenabled = true\ngroup_type = \"\"",
                "events.group_type",
            ),
        ] {
            assert_eq!(key_of(with(text).unwrap_err()), key, "{text}");
        }
        for (hl, key) in [
            ("batch_size = 0", "higher_logic.batch_size"),
            ("batch_size = 5000", "higher_logic.batch_size"),
            (
                "email_preferences_url = \"ftp://x\"",
                "higher_logic.email_preferences_url",
            ),
            (
                "email_preferences_url = \"http://relay.example.org/prefs\"",
                "higher_logic.email_preferences_url",
            ),
        ] {
            let text = format!("{MINIMAL}{hl}\n");
            assert_eq!(
                key_of(Config::from_toml_str(&text).unwrap_err()),
                key,
                "{hl}"
            );
        }
        let ok = Config::from_toml_str(&format!(
            "{MINIMAL}batch_size = 50\nemail_preferences_url = \"https://relay.example.org/prefs\"\n"
        ))
        .unwrap();
        assert_eq!(ok.higher_logic.batch_size, 50);
        assert_eq!(
            ok.higher_logic.email_preferences_url.as_deref(),
            Some("https://relay.example.org/prefs")
        );
        // Empty means no write-back.
        let empty =
            Config::from_toml_str(&format!("{MINIMAL}email_preferences_url = \"\"\n")).unwrap();
        assert_eq!(empty.higher_logic.email_preferences_url, None);
    }

    #[test]
    fn minimal_config_takes_spec_defaults() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.salesforce, SalesforceConfig::default());
        assert_eq!(c.salesforce.daily_api_allotment, 100_000);
        assert_eq!(c.salesforce.max_allotment_share, 0.5);
        assert_eq!(c.salesforce.cursor_field, "SystemModstamp");
        assert_eq!(c.salesforce.settle, Duration::from_mins(1));
        assert_eq!(c.contacts, ContactsConfig::default());
        assert_eq!(c.contacts.group_field_prefix, "HL_");
        assert_eq!(c.contacts.full_refresh_every, Duration::from_hours(24));
        assert_eq!(c.events, EventsConfig::default());
        assert_eq!(c.events.registered_statuses, vec!["Registered", "Attended"]);
        assert_eq!(c.higher_logic.max_calls_per_minute, 180);
    }

    #[test]
    fn share_out_of_range_names_key_and_value() {
        let err = with("[salesforce]\nmax_allotment_share = 1.5").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `salesforce.max_allotment_share`: must be > 0 and <= 1, got 1.5"
        );
        assert!(with("[salesforce]\nmax_allotment_share = 0").is_err());
        assert!(with("[salesforce]\nmax_allotment_share = nan").is_err());
        assert!(with("[salesforce]\nmax_allotment_share = 1").is_ok());
    }

    #[test]
    fn each_validation_names_its_key() {
        let cases = [
            (
                "[salesforce]\napi_version = \"v62\"",
                "salesforce.api_version",
            ),
            (
                "[salesforce]\ndaily_api_allotment = 0",
                "salesforce.daily_api_allotment",
            ),
            (
                "[salesforce]\ndaily_api_allotment = -5",
                "salesforce.daily_api_allotment",
            ),
            (
                "[salesforce]\ncursor_field = \"HL mod date\"",
                "salesforce.cursor_field",
            ),
            (
                "[salesforce]\nlookback = \"ten minutes\"",
                "salesforce.lookback",
            ),
            ("[salesforce]\nsettle = 60", "salesforce.settle"),
            (
                "[contacts]\nactive_field = \"Active\"\n[contacts.x]",
                "contacts.x",
            ),
            (
                "[contacts]\nactive_field = \"Is Active\"",
                "contacts.active_field",
            ),
            (
                "[contacts]\ngroup_field_prefix = \"\"",
                "contacts.group_field_prefix",
            ),
            (
                "[contacts]\ngroup_field_prefix = \"H L\"",
                "contacts.group_field_prefix",
            ),
            (
                "[contacts]\ncommunity_fields = [\"Chapter__c\"]",
                "contacts.community_fields",
            ),
            (
                "[contacts]\ncommunity_fields = [\"HL_\"]",
                "contacts.community_fields",
            ),
            (
                "[contacts]\ncommunity_fields = [1]",
                "contacts.community_fields[0]",
            ),
            (
                "[contacts]\ncommunity_fields = \"HL_Chapter__c\"",
                "contacts.community_fields",
            ),
            (
                "[contacts]\nsecurity_group_filter = [\" \"]",
                "contacts.security_group_filter",
            ),
            (
                "[contacts]\nrecord_type_groups = \"yes\"",
                "contacts.record_type_groups",
            ),
            (
                "[contacts]\nfull_refresh_every = \"0s\"",
                "contacts.full_refresh_every",
            ),
            (
                "[events]\nenabled = true\ncampaign_type = \"\"",
                "events.campaign_type",
            ),
            (
                "[events]\nenabled = true\nregistered_statuses = []",
                "events.registered_statuses",
            ),
            ("allow_insecure_http = 1", "allow_insecure_http"),
            ("salesforce = 3", "salesforce"),
            ("colour = \"blue\"", "colour"),
            (
                "[salesforce]\napi_verison = \"62.0\"",
                "salesforce.api_verison",
            ),
        ];
        for (toml, key) in cases {
            let err = with(toml).expect_err(toml);
            let text = err.to_string();
            assert_eq!(key_of(err), key, "{toml}");
            assert!(text.contains(&format!("`{key}`")), "{text}");
        }
    }

    #[test]
    fn wrong_numbers_are_told_in_plain_words() {
        let err = with("[salesforce]\ndaily_api_allotment = -5").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `salesforce.daily_api_allotment`: invalid value: integer `-5`, expected a whole number (0 or more)"
        );
        let err = with("[salesforce]\nmax_allotment_share = \"half\"").unwrap_err();
        assert!(err.to_string().ends_with("expected a number"), "{err}");
    }

    #[test]
    fn spaces_around_values_are_trimmed() {
        let c = Config::from_toml_str(
            "[contacts]\nactive_field = \" Active__c \"\ncommunity_fields = { \" HL_A__c \" = \" Chapter \" }\n\
             [higher_logic]\nbase_url = \" https://hl.example.org/v2/ \"\nemail_preferences_url = \" \"",
        )
        .unwrap();
        assert_eq!(c.contacts.active_field.as_deref(), Some("Active__c"));
        assert_eq!(
            c.contacts.community_fields,
            vec![CommunityField::new("HL_A__c", "Chapter")]
        );
        assert_eq!(c.higher_logic.base_url, "https://hl.example.org/v2");
        assert_eq!(c.higher_logic.email_preferences_url, None);
    }

    #[test]
    fn unknown_key_lists_allowed_keys() {
        let err = with("[events]\nenable = true").unwrap_err().to_string();
        assert!(err.contains("`events.enable`"), "{err}");
        assert!(err.contains("enabled"), "{err}");
    }

    #[test]
    fn base_url_rules() {
        let missing = Config::from_toml_str("").unwrap_err();
        assert_eq!(key_of(missing), "higher_logic.base_url");
        let no_url = Config::from_toml_str("[higher_logic]\nmax_calls_per_minute = 5").unwrap_err();
        assert_eq!(key_of(no_url), "higher_logic.base_url");

        let http = "[higher_logic]\nbase_url = \"http://127.0.0.1:9000/v2/\"";
        let err = Config::from_toml_str(http).unwrap_err();
        assert!(err.to_string().contains("allow_insecure_http"), "{err}");
        assert_eq!(key_of(err), "higher_logic.base_url");

        let ok = Config::from_toml_str(&format!("allow_insecure_http = true\n{http}")).unwrap();
        assert_eq!(ok.higher_logic.base_url, "http://127.0.0.1:9000/v2");

        let ftp = Config::from_toml_str("[higher_logic]\nbase_url = \"ftp://x.org\"").unwrap_err();
        assert_eq!(key_of(ftp), "higher_logic.base_url");
        let rel = Config::from_toml_str("[higher_logic]\nbase_url = \"/v2\"").unwrap_err();
        assert_eq!(key_of(rel), "higher_logic.base_url");

        let zero = "[higher_logic]\nbase_url = \"https://x.org\"\nmax_calls_per_minute = 0";
        assert_eq!(
            key_of(Config::from_toml_str(zero).unwrap_err()),
            "higher_logic.max_calls_per_minute"
        );
    }

    #[test]
    fn check_url_names_what() {
        let err = check_url("http://login.example", false, "secret salesforce.login_url")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`secret salesforce.login_url`"), "{err}");
        assert!(check_url("https://login.salesforce.com", false, "x").is_ok());
        assert!(check_url("http://localhost:8080", true, "x").is_ok());
    }

    #[test]
    fn syntax_error_is_reported_with_origin() {
        let err = Config::from_toml_str("[salesforce\n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    }

    #[test]
    fn load_prefers_explicit_path_then_env() {
        let dir = std::env::temp_dir().join(format!("hlsync-core-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hlsync.toml");
        std::fs::write(&file, EXAMPLE_TOML).unwrap();

        let from_path = Config::load_with(Some(&file), Some("garbage")).unwrap();
        assert_eq!(from_path, Config::example());

        let env_path = Config::load_with(None, Some(file.to_str().unwrap())).unwrap();
        assert_eq!(env_path, Config::example());

        let env_text = Config::load_with(None, Some(EXAMPLE_TOML)).unwrap();
        assert_eq!(env_text, Config::example());

        // One line of TOML with an inline table is text, not a path.
        let one_line = "higher_logic = { base_url = \"https://hl.example.org\" }";
        let c = Config::load_with(None, Some(one_line)).unwrap();
        assert_eq!(c.higher_logic.base_url, "https://hl.example.org");

        assert_eq!(
            Config::load_with(None, None).unwrap_err(),
            ConfigError::NotSet
        );
        assert_eq!(
            Config::load_with(None, Some("  ")).unwrap_err(),
            ConfigError::NotSet
        );
        assert!(ConfigError::NotSet.to_string().contains("HLSYNC_CONFIG"));

        let missing = Config::load_with(None, Some("/nonexistent/hlsync.toml")).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing:?}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn serializes_durations_as_text() {
        let json = serde_json::to_value(Config::example()).unwrap();
        assert_eq!(json["salesforce"]["lookback"], "10m");
        assert_eq!(json["contacts"]["full_refresh_every"], "1day");
    }

    #[test]
    fn api_names() {
        assert!(is_api_name("HL_Member_Type__c"));
        assert!(is_api_name("ns__HL_X__c"));
        assert!(is_api_name("SystemModstamp"));
        assert!(!is_api_name("_x"));
        assert!(!is_api_name("x_"));
        assert!(!is_api_name("9x"));
        assert!(!is_api_name("Has Space"));
        assert!(!is_api_name(""));
    }
}
