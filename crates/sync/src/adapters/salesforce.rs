//! The Salesforce org behind the `Crm` port.
//!
//! Besides translating calls, this adapter enforces SPEC §4's login rule across runs: a rejected
//! login is recorded in the state table with the secret's version, and no later run (of any
//! function) calls Salesforce again until the secret has a new version.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hlsync_core::allotment::ApiUsage;
use hlsync_core::id::SfId;
use hlsync_core::time::parse_sf_datetime;
use hlsync_salesforce::{
    ClientOptions, CompositeQuery, LoginState, QueryPager, SalesforceClient, SfError,
};
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::info;

use super::calls::CallCount;
use crate::credentials::{Admission, Credentials, Outcome, ParsedSecret};
use crate::error::{Service, SyncError};
use crate::ports::{
    Change, ChangePages, ChangeQuery, Crm, Describe, FindBy, IdScan, OrgStatus, Record, WriteResult,
};
/// How long a warm function trusts its cached describe before reading it again, so that a new
/// `HL_` field is picked up without a redeploy.
pub const DESCRIBE_TTL: Duration = Duration::from_mins(15);

impl From<SfError> for SyncError {
    fn from(e: SfError) -> Self {
        let message = e.to_string();
        match e {
            SfError::LoginRejected { .. } | SfError::SessionRejected { .. } => {
                SyncError::Rejected {
                    service: Service::Salesforce,
                    message,
                }
            }
            SfError::AllotmentGuard { .. }
            | SfError::BudgetExhausted { .. }
            | SfError::LimitExceeded { .. } => SyncError::Allotment(message),
            SfError::QueryTimeout { .. } => SyncError::QueryTimeout(message),
            e if e.is_retryable() => SyncError::Transient {
                service: Service::Salesforce,
                message,
            },
            _ => SyncError::Failed {
                service: Some(Service::Salesforce),
                message,
            },
        }
    }
}

/// The Salesforce client of the current secret version, made on first use.
pub struct SalesforceCrm {
    credentials: Arc<Credentials>,
    options: ClientOptions,
    current: Mutex<Option<Current>>,
    calls: CallCount<SalesforceClient>,
    last_usage: Arc<std::sync::Mutex<Option<ApiUsage>>>,
}

struct Current {
    secret: Arc<ParsedSecret>,
    client: SalesforceClient,
    describe_read_at: Option<Instant>,
}

impl SalesforceCrm {
    pub fn new(credentials: Arc<Credentials>, options: ClientOptions) -> Self {
        SalesforceCrm {
            credentials,
            options,
            current: Mutex::new(None),
            calls: CallCount::new(SalesforceClient::calls_made),
            last_usage: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// The client for the secret's current version; refuses when that version's login was
    /// rejected before.
    pub async fn client(&self) -> Result<SalesforceClient, SyncError> {
        let secret = self.credentials.get().await?;
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref()
            && c.secret.version == secret.version
        {
            // A client whose login was rejected never logs in again; only a new secret
            // version helps, so look for one now rather than when the cache expires.
            let rejected = matches!(c.client.login_state().await, LoginState::Rejected { .. });
            if !rejected || !self.credentials.refresh_if_rotated(&secret.version).await? {
                return Ok(c.client.clone());
            }
        }
        let secret = self.credentials.usable_for(Service::Salesforce).await?;
        let client = SalesforceClient::with_options(
            &self.credentials.cfg.salesforce,
            secret.salesforce.clone(),
            self.credentials.cfg.allow_insecure_http,
            self.options.clone(),
        )?;
        // Credentials no function has seen work yet log in one at a time, across functions: a
        // bad password costs one failed login, not one per concurrent cold start.
        if let Admission::FirstUse(first_use) =
            self.credentials.admit(Service::Salesforce, &secret).await?
        {
            let login = client.login().await;
            let outcome = match &login {
                Ok(()) => Outcome::Accepted,
                Err(SfError::LoginRejected { .. }) => Outcome::Rejected,
                Err(_) => Outcome::Unknown,
            };
            if let Err(e) = login {
                let error = rejection_recorded(&self.credentials, Some(&secret), e).await;
                self.credentials.finish(first_use, outcome).await;
                return Err(error);
            }
            self.credentials.finish(first_use, outcome).await;
        }
        if current.is_some() {
            info!("the secret has a new version: logging in to Salesforce again");
        }
        self.calls.switch(
            current.as_ref().map(|old| &old.client),
            Some(client.clone()),
        );
        *current = Some(Current {
            secret,
            client: client.clone(),
            describe_read_at: None,
        });
        Ok(client)
    }

    /// Records a rejected login so that no run retries it with the same credentials.
    async fn on_error(&self, e: SfError) -> SyncError {
        let secret = self
            .current
            .lock()
            .await
            .as_ref()
            .map(|c| Arc::clone(&c.secret));
        rejection_recorded(&self.credentials, secret.as_deref(), e).await
    }

    async fn pages(
        &self,
        client: SalesforceClient,
        pager: QueryPager,
        cursor_field: String,
        key_field: Option<String>,
    ) -> Box<dyn ChangePages> {
        let secret = self
            .current
            .lock()
            .await
            .as_ref()
            .map(|c| Arc::clone(&c.secret));
        Box::new(Pages {
            pager,
            cursor_field,
            key_field,
            credentials: Arc::clone(&self.credentials),
            secret,
            client,
            last_usage: Arc::clone(&self.last_usage),
        })
    }

    fn observe(&self, client: &SalesforceClient) {
        if let Some(usage) = client.usage() {
            *self
                .last_usage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(usage);
        }
    }
}

/// The operator's error for `e`; a rejected login is first recorded against the credentials
/// it was made with (see `Credentials::record_rejection`).
async fn rejection_recorded(
    credentials: &Credentials,
    secret: Option<&ParsedSecret>,
    e: SfError,
) -> SyncError {
    if let (SfError::LoginRejected { .. }, Some(secret)) = (&e, secret) {
        credentials
            .record_rejection(Service::Salesforce, secret, &e.to_string())
            .await;
    }
    match SyncError::from(e) {
        SyncError::Rejected { message, .. } => SyncError::Rejected {
            service: Service::Salesforce,
            message: format!("{message} (secret {})", credentials.secret_id),
        },
        e => e,
    }
}

struct Pages {
    pager: QueryPager,
    cursor_field: String,
    key_field: Option<String>,
    /// To record a login rejected while paging (a session that expired mid-scan re-logs in).
    credentials: Arc<Credentials>,
    secret: Option<Arc<ParsedSecret>>,
    client: SalesforceClient,
    last_usage: Arc<std::sync::Mutex<Option<ApiUsage>>>,
}

fn field<'a>(record: &'a Record, name: &str) -> Option<&'a Value> {
    record
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// A field of a query row; a dotted path reads the nested record of a lookup
/// (`Account.SystemModstamp` comes back as `{"Account": {"SystemModstamp": …}}`).
fn path_value<'a>(record: &'a Record, path: &str) -> Option<&'a Value> {
    match path.split_once('.') {
        None => field(record, path),
        Some((parent, rest)) => path_value(field(record, parent)?.as_object()?, rest),
    }
}

#[async_trait]
impl ChangePages for Pages {
    async fn next_page(&mut self) -> Result<Option<Vec<Change>>, SyncError> {
        let page = self.pager.next_page().await;
        if let Some(usage) = self.client.usage() {
            *self
                .last_usage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(usage);
        }
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                return Err(rejection_recorded(&self.credentials, self.secret.as_deref(), e).await);
            }
        };
        let Some(records) = page else {
            return Ok(None);
        };
        let mut changes = Vec::with_capacity(records.len());
        for r in &records {
            let id: SfId = field(r, "Id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    SyncError::failed(format!("a change row without a valid Id: {r:?}"))
                })?;
            let cursor = path_value(r, &self.cursor_field)
                .and_then(Value::as_str)
                .and_then(parse_sf_datetime)
                .ok_or_else(|| {
                    SyncError::failed(format!(
                        "Contact {id} has no value in the cursor field `{}` (salesforce.cursor_field): \
                         every Contact needs one; check the Flow that keeps it",
                        self.cursor_field
                    ))
                })?;
            let deleted = field(r, "IsDeleted")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let key = match &self.key_field {
                None => None,
                Some(k) => match field(r, k).and_then(Value::as_str) {
                    None => None,
                    Some(text) => Some(text.parse().map_err(|e| {
                        SyncError::failed(format!("{id}: `{k}` is not a Salesforce Id: {e}"))
                    })?),
                },
            };
            changes.push(Change {
                id,
                cursor,
                deleted,
                key,
            });
        }
        Ok(Some(changes))
    }
}

#[async_trait]
impl Crm for SalesforceCrm {
    async fn org_status(&self) -> Result<OrgStatus, SyncError> {
        let client = self.client().await?;
        let usage = match client.limits().await {
            Ok(u) => u,
            Err(e) => return Err(self.on_error(e).await),
        };
        self.observe(&client);
        // Salesforce's clock, from the `Date` header of that very answer.
        let now = client.server_time().ok_or_else(|| {
            SyncError::failed(
                "Salesforce's answer had no Date header: cannot measure the window on its clock",
            )
        })?;
        Ok(OrgStatus { usage, now })
    }

    async fn describe_contact(&self, refresh: bool) -> Result<Arc<Describe>, SyncError> {
        let client = self.client().await?;
        let stale = {
            let mut current = self.current.lock().await;
            let c = current.as_mut();
            let stale = c
                .as_ref()
                .and_then(|c| c.describe_read_at)
                .is_none_or(|t| t.elapsed() > DESCRIBE_TTL);
            if let Some(c) = c
                && (stale || refresh)
            {
                c.describe_read_at = Some(Instant::now());
            }
            stale
        };
        let result = client.describe("Contact", refresh || stale).await;
        self.observe(&client);
        match result {
            Ok(d) => Ok(d),
            Err(e) => Err(self.on_error(e).await),
        }
    }

    async fn changes(&self, query: ChangeQuery) -> Result<Box<dyn ChangePages>, SyncError> {
        let client = self.client().await?;
        let soql = query.soql();
        let pager = if query.include_deleted {
            client.query_all(&soql)
        } else {
            client.query(&soql)
        };
        match pager {
            Ok(pager) => Ok(self
                .pages(client, pager, query.cursor_field, query.key_field)
                .await),
            Err(e) => Err(self.on_error(e).await),
        }
    }

    async fn read(
        &self,
        object: &str,
        ids: &[SfId],
        fields: &[String],
    ) -> Result<Vec<Option<Record>>, SyncError> {
        let client = self.client().await?;
        let result = client.retrieve(object, ids, fields).await;
        self.observe(&client);
        match result {
            Ok(r) => Ok(r),
            Err(e) => Err(self.on_error(e).await),
        }
    }

    async fn scan(&self, scan: IdScan) -> Result<Box<dyn ChangePages>, SyncError> {
        let client = self.client().await?;
        match client.query(&scan.soql()) {
            Ok(pager) => Ok(self
                .pages(client, pager, "SystemModstamp".into(), None)
                .await),
            Err(e) => Err(self.on_error(e).await),
        }
    }

    async fn find_many(&self, queries: Vec<FindBy>) -> Result<Vec<Vec<Record>>, SyncError> {
        let client = self.client().await?;
        // Every SOQL of every lookup goes into one composite read (five queries per call); each
        // answer goes back to the lookup it came from.
        let mut owners = Vec::new();
        let mut batch = Vec::new();
        for (index, query) in queries.iter().enumerate() {
            for soql in query.soqls() {
                owners.push(index);
                batch.push(if query.with_deleted {
                    CompositeQuery::query_all(soql)
                } else {
                    CompositeQuery::query(soql)
                });
            }
        }
        let answers = client.query_many(&batch).await;
        self.observe(&client);
        let answers = match answers {
            Ok(answers) => answers,
            Err(e) => return Err(self.on_error(e).await),
        };
        let mut out = vec![Vec::new(); queries.len()];
        for (index, records) in owners.into_iter().zip(answers) {
            out[index].extend(records);
        }
        Ok(out)
    }

    async fn update(
        &self,
        records: Vec<(String, SfId, Record)>,
    ) -> Result<Vec<WriteResult>, SyncError> {
        let client = self.client().await?;
        let result = client.update(records).await;
        self.observe(&client);
        match result {
            Ok(results) => Ok(results
                .into_iter()
                .map(|r| WriteResult {
                    id: r.id,
                    error: (!r.success).then(|| {
                        let errors: Vec<String> = r
                            .errors
                            .iter()
                            .map(|e| format!("{}: {}", e.status_code, e.message))
                            .collect();
                        if errors.is_empty() {
                            "Salesforce did not save the record and gave no reason".to_string()
                        } else {
                            errors.join("; ")
                        }
                    }),
                })
                .collect()),
            Err(e) => Err(self.on_error(e).await),
        }
    }

    fn calls_made(&self) -> u64 {
        self.calls.total()
    }

    fn usage(&self) -> Option<ApiUsage> {
        *self
            .last_usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
