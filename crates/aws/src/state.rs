//! Durable state in one DynamoDB table: partition key `pk` (S), TTL attribute `expires_at`
//! (epoch seconds). Item kinds are told apart by the key's prefix:
//!
//! | key                 | what                                                     |
//! |---------------------|----------------------------------------------------------|
//! | `watermark#<name>`  | `at`, `at_ns`, `checkpoint`, `version`                   |
//! | `lease#<name>`      | `owner`, `expires_at`                                    |
//! | `contact#<id>` ...  | `hash`, `cursor`, `cursor_ms`, `pushed_at`, `opt_out`, `opt_out_since` (any prefix: see `Pushed`) |
//! | `doc#<key>`         | `doc` (JSON text), optional `expires_at`                 |
//! | `pace#<name>`       | `next_ms`: the next free slot of a shared pace           |

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::hash::Hash;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes,
    PutRequest, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
    WriteRequest,
};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use hlsync_core::SfId;
use hlsync_core::state::{Pushed, StoredWatermark};
use serde_json::Value;

use crate::backoff::backoff;
use crate::error::{AwsError, Service, aws, error_code};

pub const PARTITION_KEY: &str = "pk";
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Key prefix of the per-Contact push records.
pub const CONTACT_PREFIX: &str = "contact#";

/// DynamoDB's limits per BatchGetItem and per BatchWriteItem request.
const BATCH_GET_MAX: usize = 100;
const BATCH_WRITE_MAX: usize = 25;
/// Batches in flight at once: enough to hide latency, few enough not to provoke throttling of an
/// on-demand table that has just been created.
const CONCURRENT_BATCHES: usize = 8;
/// Rounds of a slot reservation lost to other callers before giving up (each round is lost only
/// when another caller won it).
const SLOT_ATTEMPTS: u32 = 50;
/// Conditional single-item writes in flight at once.
const CONCURRENT_PUTS: usize = 16;
/// Attempts at a batch whose items DynamoDB keeps leaving unprocessed.
const BATCH_ATTEMPTS: u32 = 8;

type Item = HashMap<String, AttributeValue>;

/// The state table in DynamoDB; the sync crate's `StateStore` port is implemented on it.
#[derive(Debug, Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
}

impl DynamoState {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoState {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    // ----- watermarks -------------------------------------------------------------------------

    pub async fn get_watermark(&self, name: &str) -> Result<StoredWatermark, AwsError> {
        let key = format!("watermark#{name}");
        let Some(item) = self.get_item(&key).await? else {
            return Ok(StoredWatermark::default());
        };
        let version = number(&item, "version")
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| self.corrupt(&key, "no `version` number"))?;
        let at = match text(&item, "at") {
            Some(at) => Some(parse_time(at).map_err(|m| self.corrupt(&key, &m))?),
            None => None,
        };
        Ok(StoredWatermark {
            at,
            checkpoint: text(&item, "checkpoint").map(str::to_owned),
            version,
        })
    }

    /// Stores the watermark if nobody else moved it since it was read at `expected_version`
    /// (0: nothing stored) and `at` does not move it backwards; returns the new version
    /// (`expected_version + 1`). Otherwise `AwsError::Conflict`: two runs can never both advance
    /// it from the same version, and it never moves back.
    pub async fn save_watermark(
        &self,
        name: &str,
        at: Option<DateTime<Utc>>,
        checkpoint: Option<String>,
        expected_version: u64,
    ) -> Result<u64, AwsError> {
        let key = format!("watermark#{name}");
        let version = expected_version + 1;
        let mut item = Item::new();
        item.insert(PARTITION_KEY.into(), s(&key));
        item.insert("version".into(), n(version));
        item.insert("updated_at".into(), s(format_time(Utc::now())));
        let mut values = HashMap::new();
        // The comparison runs on nanoseconds as a number: DynamoDB compares strings by bytes,
        // which RFC 3339 texts of different precision do not survive.
        let at_condition = match at {
            Some(at) => {
                let nanos = at.timestamp_nanos_opt().ok_or_else(|| AwsError::Invalid {
                    resource: self.table.clone(),
                    message: format!("watermark {at} is outside the years 1677 to 2262"),
                })?;
                item.insert("at".into(), s(format_time(at)));
                item.insert("at_ns".into(), n(nanos));
                values.insert(":at".to_owned(), n(nanos));
                "(attribute_not_exists(at_ns) OR at_ns <= :at)"
            }
            None => "attribute_not_exists(at_ns)",
        };
        if let Some(checkpoint) = checkpoint {
            item.insert("checkpoint".into(), s(checkpoint));
        }
        let condition = if expected_version == 0 {
            "attribute_not_exists(pk)".to_owned()
        } else {
            values.insert(":expected".to_owned(), n(expected_version));
            format!("version = :expected AND {at_condition}")
        };
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(version),
            Err(err) if error_code(&err) == Some("ConditionalCheckFailedException") => {
                Err(AwsError::Conflict { name: name.into() })
            }
            Err(err) => Err(aws(Service::DynamoDb, "PutItem", &self.table)(err)),
        }
    }

    // ----- leases -----------------------------------------------------------------------------

    /// Takes the lease `name` for `owner` for `ttl` when it is free, expired or already ours.
    pub async fn try_acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, AwsError> {
        self.try_acquire_lease_at(name, owner, ttl, Utc::now())
            .await
    }

    /// As `try_acquire_lease`, with the clock given (tests; or Salesforce's clock).
    pub async fn try_acquire_lease_at(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, AwsError> {
        let key = format!("lease#{name}");
        let mut item = Item::new();
        item.insert(PARTITION_KEY.into(), s(&key));
        item.insert("owner".into(), s(owner));
        item.insert(TTL_ATTRIBUTE.into(), n(lease_expiry(now, ttl)));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now OR #owner = :owner",
            )
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        conditional(result, "PutItem", &self.table)
    }

    // ----- shared pacing -------------------------------------------------------------------------

    /// Reserves the next free slot of a pace shared by every function (one call every
    /// `interval`), and answers when it is: the caller waits until then. Each caller gets its own
    /// slot, in the order DynamoDB serializes the updates, so all of them together never go
    /// faster than the pace. Two conditional updates at most, retried while other callers race.
    pub async fn reserve_slot(
        &self,
        name: &str,
        interval: Duration,
    ) -> Result<DateTime<Utc>, AwsError> {
        let key = format!("pace#{name}");
        let step = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        for _ in 0..SLOT_ATTEMPTS {
            let now = Utc::now().timestamp_millis();
            // The pace is busy: take the slot after the last one reserved.
            let queued = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PARTITION_KEY, s(&key))
                .update_expression("SET next_ms = next_ms + :step")
                .condition_expression("next_ms >= :now")
                .expression_attribute_values(":step", n(step))
                .expression_attribute_values(":now", n(now))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedOld)
                .send()
                .await;
            match queued {
                Ok(out) => {
                    let slot = out
                        .attributes
                        .as_ref()
                        .and_then(|a| number(a, "next_ms"))
                        .unwrap_or(now);
                    return Ok(DateTime::from_timestamp_millis(slot).unwrap_or_else(Utc::now));
                }
                Err(err) if error_code(&err) == Some("ConditionalCheckFailedException") => {}
                Err(err) => return Err(aws(Service::DynamoDb, "UpdateItem", &self.table)(err)),
            }
            // The pace is idle (or new): this call goes now, the next one a step later.
            let idle = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PARTITION_KEY, s(&key))
                .update_expression("SET next_ms = :next")
                .condition_expression("attribute_not_exists(next_ms) OR next_ms < :now")
                .expression_attribute_values(":next", n(now.saturating_add(step)))
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            if conditional(idle, "UpdateItem", &self.table)? {
                return Ok(DateTime::from_timestamp_millis(now).unwrap_or_else(Utc::now));
            }
        }
        Err(AwsError::Unprocessed {
            table: self.table.clone(),
            count: 1,
            attempts: SLOT_ATTEMPTS,
        })
    }

    /// Extends a lease we hold; false when it is not ours (any more).
    pub async fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, AwsError> {
        self.renew_lease_at(name, owner, ttl, Utc::now()).await
    }

    pub async fn renew_lease_at(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, AwsError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(format!("lease#{name}")))
            .update_expression("SET expires_at = :exp")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":exp", n(lease_expiry(now, ttl)))
            .send()
            .await;
        conditional(result, "UpdateItem", &self.table)
    }

    /// Gives a lease back, only if it is ours; false when it was not (nothing changed then).
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<bool, AwsError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(format!("lease#{name}")))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        conditional(result, "DeleteItem", &self.table)
    }

    // ----- push records -----------------------------------------------------------------------

    /// The push records of these Contacts (those that have one).
    pub async fn get_pushed(&self, ids: &[SfId]) -> Result<HashMap<SfId, Pushed>, AwsError> {
        self.get_pushed_for(CONTACT_PREFIX, ids).await
    }

    pub async fn put_pushed(&self, items: &[(SfId, Pushed)]) -> Result<(), AwsError> {
        self.put_pushed_for(CONTACT_PREFIX, items).await
    }

    /// Push records of any kind of key (events, registrations), stored under `prefix`.
    pub async fn get_pushed_for<K>(
        &self,
        prefix: &str,
        keys: &[K],
    ) -> Result<HashMap<K, Pushed>, AwsError>
    where
        K: Display + Clone + Eq + Hash,
    {
        let by_text: HashMap<String, K> = keys.iter().map(|k| (k.to_string(), k.clone())).collect();
        let texts: Vec<String> = by_text.keys().cloned().collect();
        let found = self.get_pushed_keys(prefix, &texts).await?;
        Ok(found
            .into_iter()
            .filter_map(|(text, pushed)| by_text.get(&text).map(|k| (k.clone(), pushed)))
            .collect())
    }

    pub async fn put_pushed_for<K: Display>(
        &self,
        prefix: &str,
        items: &[(K, Pushed)],
    ) -> Result<(), AwsError> {
        let items: Vec<(String, Pushed)> = items
            .iter()
            .map(|(k, p)| (k.to_string(), p.clone()))
            .collect();
        self.put_pushed_keys(prefix, &items).await
    }

    /// BatchGetItem in chunks of 100, several at once, retrying unprocessed keys with backoff.
    pub async fn get_pushed_keys(
        &self,
        prefix: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Pushed>, AwsError> {
        // DynamoDB rejects a batch that names a key twice.
        let mut seen = HashSet::new();
        let unique: Vec<&String> = keys.iter().filter(|k| seen.insert(*k)).collect();
        let chunks: Vec<Vec<Item>> = unique
            .chunks(BATCH_GET_MAX)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|k| HashMap::from([(PARTITION_KEY.to_owned(), s(format!("{prefix}{k}")))]))
                    .collect()
            })
            .collect();
        let items: Vec<Vec<Item>> = stream::iter(chunks)
            .map(|chunk| self.batch_get(chunk))
            .buffer_unordered(CONCURRENT_BATCHES)
            .try_collect()
            .await?;
        let mut out = HashMap::new();
        for item in items.into_iter().flatten() {
            let Some(pk) = text(&item, PARTITION_KEY) else {
                continue;
            };
            let Some(key) = pk.strip_prefix(prefix) else {
                continue;
            };
            let pushed = self.parse_pushed(pk, &item)?;
            out.insert(key.to_owned(), pushed);
        }
        Ok(out)
    }

    /// BatchWriteItem in chunks of 25, several at once, retrying unprocessed items with backoff.
    pub async fn put_pushed_keys(
        &self,
        prefix: &str,
        items: &[(String, Pushed)],
    ) -> Result<(), AwsError> {
        // The last record of a key wins; DynamoDB rejects a batch that names a key twice.
        let mut last: HashMap<&str, &Pushed> = HashMap::new();
        let mut order = Vec::new();
        for (key, pushed) in items {
            if last.insert(key.as_str(), pushed).is_none() {
                order.push(key.as_str());
            }
        }
        let mut requests = Vec::with_capacity(order.len());
        for key in order {
            let Some(pushed) = last.get(key) else {
                continue;
            };
            let item = pushed_item(&format!("{prefix}{key}"), pushed);
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(self.invalid())?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        let chunks: Vec<Vec<WriteRequest>> = requests
            .chunks(BATCH_WRITE_MAX)
            .map(<[_]>::to_vec)
            .collect();
        stream::iter(chunks)
            .map(|chunk| self.batch_write(chunk))
            .buffer_unordered(CONCURRENT_BATCHES)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Writes each push record only where no record of a later cursor is stored (two functions
    /// that pushed the same Contact from reads of different ages: the newer record stays).
    /// Answers the keys refused that way. Items without a cursor are written unconditionally.
    pub async fn put_pushed_if_newer(
        &self,
        prefix: &str,
        items: &[(String, Pushed)],
    ) -> Result<Vec<String>, AwsError> {
        let puts: Vec<_> = items
            .iter()
            .map(|(key, pushed)| self.put_pushed_one(prefix, key, pushed))
            .collect();
        let outcomes: Vec<Option<String>> = stream::iter(puts)
            .buffer_unordered(CONCURRENT_PUTS)
            .try_collect()
            .await?;
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// One conditional write of [`DynamoState::put_pushed_if_newer`]: the key when refused.
    async fn put_pushed_one(
        &self,
        prefix: &str,
        key: &str,
        pushed: &Pushed,
    ) -> Result<Option<String>, AwsError> {
        let pk = format!("{prefix}{key}");
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(pushed_item(&pk, pushed)));
        if let Some(cursor) = pushed.cursor {
            put = put
                .condition_expression("attribute_not_exists(cursor_ms) OR cursor_ms <= :cursor")
                .expression_attribute_values(":cursor", n(cursor.timestamp_millis()));
        }
        let written = conditional(put.send().await, "PutItem", &self.table)?;
        Ok((!written).then(|| key.to_owned()))
    }

    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, AwsError> {
        self.until_processed(keys, |keys| async move {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(self.invalid())?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(aws(Service::DynamoDb, "BatchGetItem", &self.table))?;
            let found = out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default();
            let unprocessed = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            Ok((found, unprocessed))
        })
        .await
    }

    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), AwsError> {
        self.until_processed(requests, |requests| async move {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(aws(Service::DynamoDb, "BatchWriteItem", &self.table))?;
            let unprocessed = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            // A write answers nothing but what it left unprocessed.
            Ok((Vec::<()>::new(), unprocessed))
        })
        .await?;
        Ok(())
    }

    /// Sends `pending` with `send` until DynamoDB has processed all of it (under load it leaves
    /// part of a batch unprocessed), backing off between attempts. `send` answers the items that
    /// came back and what is still unprocessed; the items of every attempt are returned.
    async fn until_processed<T, R, Fut>(
        &self,
        mut pending: Vec<T>,
        mut send: impl FnMut(Vec<T>) -> Fut,
    ) -> Result<Vec<R>, AwsError>
    where
        Fut: Future<Output = Result<(Vec<R>, Vec<T>), AwsError>>,
    {
        let mut found = Vec::new();
        for attempt in 0..BATCH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let (got, unprocessed) = send(pending).await?;
            found.extend(got);
            pending = unprocessed;
            if pending.is_empty() {
                return Ok(found);
            }
        }
        Err(AwsError::Unprocessed {
            table: self.table.clone(),
            count: pending.len(),
            attempts: BATCH_ATTEMPTS,
        })
    }

    fn parse_pushed(&self, pk: &str, item: &Item) -> Result<Pushed, AwsError> {
        let hash = text(item, "hash").ok_or_else(|| self.corrupt(pk, "no `hash`"))?;
        let pushed_at =
            text(item, "pushed_at").ok_or_else(|| self.corrupt(pk, "no `pushed_at`"))?;
        let cursor = match text(item, "cursor") {
            Some(c) => Some(parse_time(c).map_err(|m| self.corrupt(pk, &m))?),
            None => None,
        };
        let opt_out = match (item.get("opt_out"), text(item, "opt_out_since")) {
            (Some(AttributeValue::Bool(value)), Some(since)) => {
                Some((*value, parse_time(since).map_err(|m| self.corrupt(pk, &m))?))
            }
            _ => None,
        };
        Ok(Pushed {
            hash: hash.to_owned(),
            cursor,
            pushed_at: parse_time(pushed_at).map_err(|m| self.corrupt(pk, &m))?,
            opt_out,
        })
    }

    // ----- records (typed by the sync crate, JSON here) -----------------------------------------

    /// A record's JSON (run report, rejected login, API usage); `None` when absent
    /// or expired (DynamoDB deletes expired items only eventually, so expiry is checked here).
    pub async fn get_record(&self, key: &str) -> Result<Option<Value>, AwsError> {
        let pk = format!("doc#{key}");
        let Some(item) = self.get_item(&pk).await? else {
            return Ok(None);
        };
        if number(&item, TTL_ATTRIBUTE).is_some_and(|exp| exp <= Utc::now().timestamp()) {
            return Ok(None);
        }
        let doc = text(&item, "doc").ok_or_else(|| self.corrupt(&pk, "no `doc`"))?;
        serde_json::from_str(doc)
            .map(Some)
            .map_err(|e| self.corrupt(&pk, &e.to_string()))
    }

    /// Stores a document, replacing any; with `ttl`, it disappears after that long.
    pub async fn put_record(
        &self,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), AwsError> {
        let now = Utc::now();
        let mut item = Item::new();
        item.insert(PARTITION_KEY.into(), s(format!("doc#{key}")));
        item.insert("doc".into(), s(value.to_string()));
        item.insert("updated_at".into(), s(format_time(now)));
        if let Some(ttl) = ttl {
            item.insert(TTL_ATTRIBUTE.into(), n(lease_expiry(now, ttl)));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(aws(Service::DynamoDb, "PutItem", &self.table))?;
        Ok(())
    }

    pub async fn delete_record(&self, key: &str) -> Result<(), AwsError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(format!("doc#{key}")))
            .send()
            .await
            .map_err(aws(Service::DynamoDb, "DeleteItem", &self.table))?;
        Ok(())
    }

    // ----- helpers ----------------------------------------------------------------------------

    async fn get_item(&self, pk: &str) -> Result<Option<Item>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws(Service::DynamoDb, "GetItem", &self.table))?;
        Ok(out.item)
    }

    fn corrupt(&self, key: &str, message: &str) -> AwsError {
        AwsError::Corrupt {
            resource: self.table.clone(),
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }

    fn invalid(&self) -> impl FnOnce(BuildError) -> AwsError + '_ {
        |err| AwsError::Invalid {
            resource: self.table.clone(),
            message: err.to_string(),
        }
    }
}

/// Creates the state table unless it exists (on-demand billing, TTL on `expires_at`) and waits
/// until it is ACTIVE. Safe to run again, and concurrently.
pub async fn create_table(client: &Client, name: &str) -> Result<(), AwsError> {
    let described = client.describe_table().table_name(name).send().await;
    match described {
        Ok(_) => {}
        Err(err) if error_code(&err) == Some("ResourceNotFoundException") => {
            let invalid = |err: BuildError| AwsError::Invalid {
                resource: name.to_owned(),
                message: err.to_string(),
            };
            let created = client
                .create_table()
                .table_name(name)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(PARTITION_KEY)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(invalid)?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(PARTITION_KEY)
                        .key_type(KeyType::Hash)
                        .build()
                        .map_err(invalid)?,
                )
                .send()
                .await;
            match created {
                Ok(_) => {}
                // Someone else is creating it right now: wait for it like for our own.
                Err(err) if error_code(&err) == Some("ResourceInUseException") => {}
                Err(err) => return Err(aws(Service::DynamoDb, "CreateTable", name)(err)),
            }
        }
        Err(err) => return Err(aws(Service::DynamoDb, "DescribeTable", name)(err)),
    }
    wait_active(client, name).await?;
    enable_ttl(client, name).await
}

async fn wait_active(client: &Client, name: &str) -> Result<(), AwsError> {
    // A new on-demand table takes seconds to a minute; emulators are ACTIVE at once.
    const TRIES: u32 = 120;
    for attempt in 0..TRIES {
        let out = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(aws(Service::DynamoDb, "DescribeTable", name))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(backoff(attempt.min(5) + 1)).await;
    }
    Err(AwsError::TableNotActive {
        table: name.to_owned(),
        tries: TRIES,
    })
}

async fn enable_ttl(client: &Client, name: &str) -> Result<(), AwsError> {
    let out = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(aws(Service::DynamoDb, "DescribeTimeToLive", name))?;
    if let Some(ttl) = out.time_to_live_description()
        && ttl.attribute_name() == Some(TTL_ATTRIBUTE)
        && matches!(
            ttl.time_to_live_status(),
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        )
    {
        return Ok(());
    }
    let spec = TimeToLiveSpecification::builder()
        .attribute_name(TTL_ATTRIBUTE)
        .enabled(true)
        .build()
        .map_err(|err| AwsError::Invalid {
            resource: name.to_owned(),
            message: err.to_string(),
        })?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(aws(Service::DynamoDb, "UpdateTimeToLive", name))?;
    Ok(())
}

/// A conditional write's outcome as a yes/no: a failed condition is an answer, not an error.
fn conditional<T, E, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
    operation: &'static str,
    table: &str,
) -> Result<bool, AwsError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(err) if error_code(&err) == Some("ConditionalCheckFailedException") => Ok(false),
        Err(err) => Err(aws(Service::DynamoDb, operation, table)(err)),
    }
}

/// Epoch seconds at which a lease (or document) taken at `now` for `ttl` runs out, rounded up so
/// that it is never held for less than `ttl`.
fn lease_expiry(now: DateTime<Utc>, ttl: Duration) -> i64 {
    let millis = now.timestamp_millis() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    millis.div_euclid(1000) + i64::from(millis.rem_euclid(1000) != 0)
}

/// A push record as a DynamoDB item. `cursor_ms` carries the cursor as a number, for the
/// conditional writes of [`DynamoState::put_pushed_if_newer`].
fn pushed_item(pk: &str, pushed: &Pushed) -> Item {
    let mut item = Item::new();
    item.insert(PARTITION_KEY.into(), s(pk));
    item.insert("hash".into(), s(&pushed.hash));
    if let Some(cursor) = pushed.cursor {
        item.insert("cursor".into(), s(format_time(cursor)));
        item.insert("cursor_ms".into(), n(cursor.timestamp_millis()));
    }
    item.insert("pushed_at".into(), s(format_time(pushed.pushed_at)));
    if let Some((value, since)) = pushed.opt_out {
        item.insert("opt_out".into(), AttributeValue::Bool(value));
        item.insert("opt_out_since".into(), s(format_time(since)));
    }
    item
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("bad timestamp {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn lease_expiry_rounds_up_to_whole_seconds() {
        let now = Utc.timestamp_millis_opt(10_500).single().expect("valid");
        assert_eq!(lease_expiry(now, Duration::from_secs(30)), 41);
        let now = Utc.timestamp_millis_opt(10_000).single().expect("valid");
        assert_eq!(lease_expiry(now, Duration::from_secs(30)), 40);
    }

    #[test]
    fn times_round_trip_exactly() {
        let t = Utc
            .timestamp_opt(1_700_000_000, 123_456_789)
            .single()
            .expect("valid");
        assert_eq!(parse_time(&format_time(t)), Ok(t));
        assert!(parse_time("yesterday").is_err());
    }
}
