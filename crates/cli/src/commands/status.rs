//! `hlsync status`: watermarks, queue and DLQ depth, the last runs, API usage against the
//! allotment, and whether Salesforce and Higher Logic accept the stored credentials.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use hlsync_core::allotment;
use hlsync_sync::error::Service;
use hlsync_sync::member::MemberRun;
use hlsync_sync::periodic::{self, PeriodicRun, UsageSeen};
use hlsync_sync::ports::StateStore as _;
use hlsync_sync::records::StateRecords as _;
use hlsync_sync::runtime::Runtime;
use serde::Serialize;

use crate::context;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub stack: StackResources,
    /// Per feed that has run: where its watermark stands.
    pub watermarks: BTreeMap<String, WatermarkState>,
    pub queue: Depth,
    pub dlq: Depth,
    /// The last Periodic Refresh as it recorded itself.
    pub last_periodic_refresh: Option<PeriodicRun>,
    /// The last Member Refresh batch as it recorded itself.
    pub last_member_refresh: Option<MemberRun>,
    /// The org's usage as Salesforce last reported it, against hlsync's share; `None` before
    /// the first report.
    pub api_usage: Option<ApiUsage>,
    pub salesforce_login: CredentialsState,
    pub higher_logic_credentials: CredentialsState,
}

#[derive(Debug, Serialize)]
pub struct StackResources {
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub secret_id: String,
}

#[derive(Debug, Serialize)]
pub struct WatermarkState {
    pub at: Option<DateTime<Utc>>,
    /// A window was stopped part way; the next run resumes it.
    pub unfinished_window: bool,
    pub version: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
}

#[derive(Debug, Serialize)]
pub struct ApiUsage {
    pub used: u64,
    pub org_max: u64,
    /// The most calls hlsync lets the org reach (its share of the allotment).
    pub ceiling: u64,
    /// How much of that share is used, 0 to 1.
    pub share_of_allotment: f64,
    /// When Salesforce reported it.
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct CredentialsState {
    pub state: &'static str,
    /// Set when the service rejected the credentials.
    #[serde(flatten)]
    pub rejection: Option<Rejected>,
}

#[derive(Debug, Serialize)]
pub struct Rejected {
    pub message: String,
    pub at: Option<DateTime<Utc>>,
}

pub async fn run(config: Option<&Path>, stack: &str) -> anyhow::Result<StatusReport> {
    let rt = context::runtime(config, stack).await?;
    status_report(&rt).await
}

pub async fn status_report(rt: &Runtime) -> anyhow::Result<StatusReport> {
    let mut watermarks = BTreeMap::new();
    let feeds = periodic::WINDOW_FEEDS.iter().chain([
        &hlsync_sync::full::FEED_FULL_REFRESH,
        &hlsync_sync::optout::FEED_EMAIL_PREFERENCES,
    ]);
    for feed in feeds {
        let wm = rt.state.watermark(feed).await?;
        if wm.version > 0 {
            watermarks.insert(
                (*feed).to_owned(),
                WatermarkState {
                    at: wm.at,
                    unfinished_window: wm.checkpoint.is_some(),
                    version: wm.version,
                },
            );
        }
    }
    let queue = rt.queues.queue.depth().await?;
    let dlq = rt.queues.dlq.depth().await?;
    let usage = rt.state.load::<UsageSeen>(&()).await?;
    let api_usage = usage.map(|u| ApiUsage {
        used: u.used,
        org_max: u.max,
        ceiling: allotment::ceiling(&rt.cfg.salesforce, Some(u.max)),
        share_of_allotment: allotment::share(
            allotment::ApiUsage {
                used: u.used,
                max: u.max,
            },
            &rt.cfg.salesforce,
        ),
        at: u.at,
    });
    let last_periodic_refresh = rt.state.load::<PeriodicRun>(&()).await?;
    let last_member_refresh = rt.state.load::<MemberRun>(&()).await?;
    Ok(StatusReport {
        stack: StackResources {
            table: rt.resources.table.clone(),
            queue_url: rt.resources.queue_url.clone(),
            dlq_url: rt.resources.dlq_url.clone(),
            secret_id: rt.resources.secret_id.clone(),
        },
        watermarks,
        queue: Depth {
            visible: queue.visible,
            in_flight: queue.in_flight,
        },
        dlq: Depth {
            visible: dlq.visible,
            in_flight: dlq.in_flight,
        },
        last_periodic_refresh,
        last_member_refresh,
        api_usage,
        salesforce_login: credentials_state(rt, Service::Salesforce).await?,
        higher_logic_credentials: credentials_state(rt, Service::HigherLogic).await?,
    })
}

/// Whether a service's rejection of its credentials still blocks it: only while the secret
/// holds the very credentials it rejected.
async fn credentials_state(rt: &Runtime, service: Service) -> anyhow::Result<CredentialsState> {
    Ok(match rt.credentials.rejection(service).await? {
        None => CredentialsState {
            state: "ok",
            rejection: None,
        },
        Some(r) => CredentialsState {
            state: if r.blocks {
                "rejected: waiting for new credentials in the secret"
            } else {
                "rejected earlier; the credentials have changed since, the next run tries them"
            },
            rejection: Some(Rejected {
                message: r.message,
                at: r.at,
            }),
        },
    })
}

/// A value the text shows, or `-` when it is not known.
fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A time as its JSON shows it.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "watermarks:")?;
        if self.watermarks.is_empty() {
            writeln!(f, "  (none yet: no Periodic Refresh has completed)")?;
        }
        for (feed, wm) in &self.watermarks {
            writeln!(
                f,
                "  {feed:<18} {}{}",
                or_dash(wm.at.map(rfc3339)),
                if wm.unfinished_window {
                    " (a window is unfinished: the next run resumes it)"
                } else {
                    ""
                }
            )?;
        }
        writeln!(
            f,
            "queue:      {} visible, {} in flight",
            self.queue.visible, self.queue.in_flight
        )?;
        writeln!(
            f,
            "dlq:        {} visible{}",
            self.dlq.visible,
            if self.dlq.visible > 0 {
                " (fix the cause, then `hlsync redrive`)"
            } else {
                ""
            }
        )?;
        let last = self.last_periodic_refresh.as_ref();
        write!(
            f,
            "last periodic refresh: {} ({} changed, {} Salesforce calls)",
            or_dash(last.and_then(|l| l.report.finished_at).map(rfc3339)),
            last.map_or(0, |l| l.report.changed()),
            or_dash(last.map(|l| l.report.salesforce_calls)),
        )?;
        if let Some(error) = last.and_then(|l| l.error.as_ref()) {
            write!(f, " error: {error}")?;
        }
        writeln!(f)?;
        let last = self.last_member_refresh.as_ref();
        writeln!(
            f,
            "last member refresh batch: {} ({} pushed, {} unchanged, {} failed)",
            or_dash(last.and_then(|l| l.finished_at).map(rfc3339)),
            or_dash(last.map(|l| l.report.pushed)),
            or_dash(last.map(|l| l.report.skipped_unchanged)),
            or_dash(last.map(|l| l.failed)),
        )?;
        match &self.api_usage {
            Some(u) => writeln!(
                f,
                "API usage: {} of {} in the last 24 h; hlsync's ceiling {} ({:.1}% of its allotment used), as of {}",
                u.used,
                u.org_max,
                u.ceiling,
                u.share_of_allotment * 100.0,
                or_dash(u.at.map(rfc3339))
            )?,
            None => writeln!(f, "API usage: not known yet")?,
        }
        for (title, credentials) in [
            ("Salesforce login", &self.salesforce_login),
            ("Higher Logic credentials", &self.higher_logic_credentials),
        ] {
            write!(f, "{title}: {}", credentials.state)?;
            if let Some(r) = &credentials.rejection {
                write!(f, " ({})", r.message)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn report(last_periodic_refresh: Option<PeriodicRun>) -> StatusReport {
        let ok = || CredentialsState {
            state: "ok",
            rejection: None,
        };
        StatusReport {
            stack: StackResources {
                table: "t".into(),
                queue_url: "q".into(),
                dlq_url: "d".into(),
                secret_id: "s".into(),
            },
            watermarks: BTreeMap::new(),
            queue: Depth {
                visible: 0,
                in_flight: 0,
            },
            dlq: Depth {
                visible: 2,
                in_flight: 0,
            },
            last_periodic_refresh,
            last_member_refresh: None,
            api_usage: None,
            salesforce_login: ok(),
            higher_logic_credentials: ok(),
        }
    }

    #[test]
    fn before_any_run_the_text_says_so() {
        assert_eq!(
            report(None).to_string(),
            "watermarks:\n  (none yet: no Periodic Refresh has completed)\n\
             queue:      0 visible, 0 in flight\n\
             dlq:        2 visible (fix the cause, then `hlsync redrive`)\n\
             last periodic refresh: - (0 changed, - Salesforce calls)\n\
             last member refresh batch: - (- pushed, - unchanged, - failed)\n\
             API usage: not known yet\n\
             Salesforce login: ok\n\
             Higher Logic credentials: ok\n"
        );
    }

    #[test]
    fn a_run_record_is_shown_whole_in_json_and_summed_in_text() {
        let doc = json!({
            "run_id": "cli-1",
            "feeds": [
                {"feed": "contacts", "from": null, "to": "2024-03-04T05:06:07Z", "changed": 5,
                 "deleted": 1, "sent": 4, "completed": true, "splits": 0},
                {"feed": "accounts", "from": null, "to": null, "changed": 7,
                 "deleted": 0, "sent": 4, "completed": false, "splits": 1},
            ],
            "salesforce_calls": 12,
            "finished_at": "2024-03-04T05:06:08.5Z",
            "error": "boom",
        });
        let last: PeriodicRun = serde_json::from_value(doc.clone()).expect("a run record");
        let report = report(Some(last.clone()));
        let value = serde_json::to_value(&report).expect("serializes");
        let shown = &value["last_periodic_refresh"];
        for key in ["run_id", "salesforce_calls", "error"] {
            assert_eq!(shown[key], doc[key], "{key}");
        }
        let read_back: PeriodicRun = serde_json::from_value(shown.clone()).expect("reads back");
        assert_eq!(read_back, last);
        assert!(
            report.to_string().contains(
                "last periodic refresh: 2024-03-04T05:06:08.500Z (12 changed, 12 Salesforce calls) error: boom\n"
            ),
            "{report}"
        );
    }
}
