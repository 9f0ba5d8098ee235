//! SOQL `query` / `queryAll`, page by page along `nextRecordsUrl`.

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::client::{Call, MAX_URL_BYTES, SalesforceClient};
use crate::error::SfError;

/// One record as Salesforce returns it (its `attributes` included).
pub type Record = serde_json::Map<String, Value>;

/// Salesforce accepts batch sizes in this range; it may still return other page sizes.
const BATCH_MIN: u32 = 200;
const BATCH_MAX: u32 = 2000;

/// The pages of one query. Fetches nothing until `next_page`; a failed `next_page` leaves the
/// pager where it was, so the caller may call it again (or checkpoint and stop).
#[derive(Debug)]
pub struct QueryPager {
    client: SalesforceClient,
    what: &'static str,
    /// The path of the next page; `None` once the last page was read.
    next: Option<String>,
    batch_size: Option<u32>,
    total_size: Option<u64>,
    pages: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    total_size: Option<u64>,
    done: bool,
    next_records_url: Option<String>,
    #[serde(default)]
    records: Vec<Value>,
}

impl SalesforceClient {
    /// `query`: rows not in the recycle bin. Refuses a SOQL whose URL would be too long (Salesforce
    /// would answer 414) before any call is made.
    pub fn query(&self, soql: &str) -> Result<QueryPager, SfError> {
        QueryPager::new(self, soql, false)
    }

    /// `queryAll`: deleted (recycle bin) and archived rows too, e.g. `IsDeleted = true`.
    pub fn query_all(&self, soql: &str) -> Result<QueryPager, SfError> {
        QueryPager::new(self, soql, true)
    }
}

/// `query` or `queryAll`, the resource name.
pub(crate) fn resource(all: bool) -> &'static str {
    if all { "queryAll" } else { "query" }
}

/// The path of a query's first page, `/services/data/vXX.X/query?q=...`. Refuses a SOQL whose
/// path alone is over `MAX_URL_BYTES` (Salesforce would answer 414), without any call.
pub(crate) fn first_page_path(
    client: &SalesforceClient,
    soql: &str,
    all: bool,
) -> Result<String, SfError> {
    let encoded: String = url::form_urlencoded::byte_serialize(soql.trim().as_bytes()).collect();
    let path = client.data_path(&format!("{}?q={encoded}", resource(all)));
    if path.len() > MAX_URL_BYTES {
        return Err(SfError::QueryTooLong {
            bytes: path.len(),
            limit: MAX_URL_BYTES,
        });
    }
    Ok(path)
}

/// The batch size a query asks for when it does not set its own.
pub(crate) fn default_batch_size(client: &SalesforceClient) -> Option<u32> {
    client.inner.options.query_batch_size.map(clamp_batch)
}

/// One page of a query answer, checked: its records, and the path of the next page.
pub(crate) struct CheckedPage {
    pub records: Vec<Record>,
    pub next: Option<String>,
    pub total_size: Option<u64>,
}

impl CheckedPage {
    /// Reads a page in the documented shape; `what` names the query in errors.
    pub(crate) fn read(answer: Value, what: &str) -> Result<Self, SfError> {
        let decode = |detail: String| SfError::Decode {
            what: what.to_string(),
            detail,
        };
        let page: Page = serde_json::from_value(answer).map_err(|e| decode(e.to_string()))?;
        let next = match (page.done, page.next_records_url) {
            (true, _) => None,
            (false, Some(url)) if url.starts_with("/services/") => Some(url),
            (false, Some(url)) => {
                return Err(decode(format!(
                    "nextRecordsUrl `{url}` is not a /services path"
                )));
            }
            (false, None) => {
                return Err(decode(
                    "done is false but there is no nextRecordsUrl".into(),
                ));
            }
        };
        let mut records = Vec::with_capacity(page.records.len());
        for r in page.records {
            match r {
                Value::Object(map) => records.push(map),
                other => return Err(decode(format!("a record is not an object: {other}"))),
            }
        }
        Ok(CheckedPage {
            records,
            next,
            total_size: page.total_size,
        })
    }
}

impl QueryPager {
    fn new(client: &SalesforceClient, soql: &str, all: bool) -> Result<Self, SfError> {
        // The instance URL is added at send time, where the full URL is checked again; checking
        // the path here refuses the obvious cases without a login.
        let path = first_page_path(client, soql, all)?;
        Ok(QueryPager {
            client: client.clone(),
            what: resource(all),
            next: Some(path),
            batch_size: default_batch_size(client),
            total_size: None,
            pages: 0,
        })
    }

    /// Asks for pages of `n` records (`Sforce-Query-Options: batchSize=n`, clamped to 200..=2000).
    #[must_use]
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = Some(clamp_batch(n));
        self
    }

    /// The next page of records, or `None` when the query is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Record>>, SfError> {
        let Some(path) = self.next.clone() else {
            return Ok(None);
        };
        let answer = self
            .client
            .send(Call {
                what: self.what.to_string(),
                method: Method::GET,
                path,
                body: None,
                query_batch_size: self.batch_size,
                guarded: true,
            })
            .await?;
        let page = CheckedPage::read(answer, self.what)?;
        if self.total_size.is_none() {
            self.total_size = page.total_size;
        }
        self.pages += 1;
        self.next = page.next;
        Ok(Some(page.records))
    }

    /// Every remaining record, in order.
    pub async fn collect_all(mut self) -> Result<Vec<Record>, SfError> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// `totalSize` as the first page reported it.
    pub fn total_size(&self) -> Option<u64> {
        self.total_size
    }

    /// Pages read so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Whether the last page was read: `next_page` will answer `None` without a call.
    pub fn is_done(&self) -> bool {
        self.next.is_none()
    }
}

fn clamp_batch(n: u32) -> u32 {
    n.clamp(BATCH_MIN, BATCH_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_is_kept_in_salesforce_range() {
        assert_eq!(clamp_batch(10), 200);
        assert_eq!(clamp_batch(500), 500);
        assert_eq!(clamp_batch(5000), 2000);
    }
}
