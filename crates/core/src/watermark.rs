//! Change windows over the cursor field (SPEC.md §5).
//!
//! Each Periodic Refresh reads the Contacts whose cursor lies in `(from, to]`. `from` reaches
//! `lookback` before the stored watermark because Salesforce commits changes out of order; `to`
//! stays `settle` behind Salesforce's clock so that changes still being committed are left for
//! the next run. After a successful run the watermark becomes `to`, so consecutive windows
//! overlap and never leave a gap. Within a window, pages are ordered by `(cursor, Id)` and
//! resumed after the last `(cursor, Id)` seen, so records that share a timestamp are never lost
//! at a page edge.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::id::SfId;
use crate::time::format_soql_datetime;

/// A position in the change stream: the cursor value and the record Id, ordered by both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cursor {
    /// The record's cursor field value.
    pub at: DateTime<Utc>,
    /// The record's Id, which orders records with the same `at`.
    pub id: SfId,
}

/// The range of cursor values one run reads: `from` exclusive, `to` inclusive, optionally
/// resumed after a cursor within it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Exclusive lower bound of the cursor.
    pub from: DateTime<Utc>,
    /// Inclusive upper bound of the cursor.
    pub to: DateTime<Utc>,
    /// Read only the records after this one (the last record of the page before), if set.
    pub after: Option<Cursor>,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Window {
    /// The next window to read, or `None` when there is nothing settled to read yet.
    ///
    /// `sf_now` must be Salesforce's clock (its `Date` header or the newest cursor seen), not
    /// the function's. With no watermark the window starts at the Unix epoch: the first run reads
    /// everything.
    pub fn next(
        watermark: Option<DateTime<Utc>>,
        sf_now: DateTime<Utc>,
        lookback: Duration,
        settle: Duration,
    ) -> Option<Window> {
        let from = match watermark {
            None => DateTime::UNIX_EPOCH,
            Some(w) => w
                .checked_sub_signed(delta(lookback))
                .unwrap_or(DateTime::UNIX_EPOCH)
                .max(DateTime::UNIX_EPOCH),
        };
        let to = sf_now.checked_sub_signed(delta(settle))?;
        // Whole seconds: SOQL literals have no fraction, and a fractional `to` written as a
        // truncated literal would silently widen or narrow the window.
        let to = to.duration_trunc(TimeDelta::seconds(1)).ok()?;
        (to > from).then_some(Window {
            from,
            to,
            after: None,
        })
    }

    /// The same window, continued after the last record of a page.
    #[must_use]
    pub fn resume(self, after: Cursor) -> Window {
        Window {
            after: Some(after),
            ..self
        }
    }

    /// The SOQL `WHERE` condition of this window over `field`:
    /// `(F > from AND F <= to)`, and with a resume point
    /// `AND (F > at OR (F = at AND Id > 'id'))`. Pair it with `ORDER BY F, Id`.
    ///
    /// `field` must be an API name (checked by the config); `from` is written to the second
    /// below, so a fractional watermark only widens the window.
    pub fn soql_condition(&self, field: &str) -> String {
        let mut out = format!(
            "({field} > {} AND {field} <= {})",
            format_soql_datetime(self.from),
            format_soql_datetime(self.to)
        );
        if let Some(after) = &self.after {
            let at = format_soql_datetime(after.at);
            // An Id holds only [A-Za-z0-9], so it needs no escaping inside quotes.
            out.push_str(&format!(
                " AND ({field} > {at} OR ({field} = {at} AND Id > '{}'))",
                after.id
            ));
        }
        out
    }

    /// Whether a record at `cursor` falls in this window (the same test as the SOQL, for
    /// simulators and tests).
    pub fn contains(&self, cursor: &Cursor) -> bool {
        let at = cursor.at;
        let in_range = at > self.from && at <= self.to;
        in_range && self.after.as_ref().is_none_or(|after| cursor > after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, h, m, s).unwrap()
    }

    const TEN_MIN: Duration = Duration::from_mins(10);
    const MINUTE: Duration = Duration::from_mins(1);

    #[test]
    fn first_run_starts_at_epoch() {
        let w = Window::next(None, t(10, 0, 0), TEN_MIN, MINUTE).unwrap();
        assert_eq!(w.from, DateTime::UNIX_EPOCH);
        assert_eq!(w.to, t(9, 59, 0));
        assert_eq!(w.after, None);
    }

    #[test]
    fn overlaps_by_lookback_and_settles() {
        let w = Window::next(Some(t(9, 0, 0)), t(10, 0, 0), TEN_MIN, MINUTE).unwrap();
        assert_eq!(w.from, t(8, 50, 0));
        assert_eq!(w.to, t(9, 59, 0));
    }

    #[test]
    fn to_is_truncated_to_whole_seconds() {
        let now = t(10, 0, 0) + TimeDelta::milliseconds(750);
        let w = Window::next(Some(t(9, 0, 0)), now, TEN_MIN, MINUTE).unwrap();
        assert_eq!(w.to, t(9, 59, 0));
    }

    #[test]
    fn nothing_settled_gives_none() {
        // Watermark in the future of the settled edge (clock went back, or runs too close).
        assert_eq!(
            Window::next(Some(t(10, 0, 0)), t(10, 0, 30), Duration::ZERO, MINUTE),
            None
        );
        assert_eq!(
            Window::next(Some(t(9, 59, 0)), t(10, 0, 0), Duration::ZERO, MINUTE),
            None
        );
        assert!(Window::next(Some(t(9, 59, 0)), t(10, 0, 1), Duration::ZERO, MINUTE).is_some());
    }

    #[test]
    fn soql_condition_without_and_with_resume() {
        let w = Window::next(Some(t(9, 0, 0)), t(10, 0, 0), TEN_MIN, MINUTE).unwrap();
        assert_eq!(
            w.soql_condition("SystemModstamp"),
            "(SystemModstamp > 2026-11-24T08:50:00Z AND SystemModstamp <= 2026-11-24T09:59:00Z)"
        );
        let w = w.resume(Cursor {
            at: t(9, 30, 0),
            id: "003000000000001".parse().unwrap(),
        });
        assert_eq!(
            w.soql_condition("HL_Mod__c"),
            "(HL_Mod__c > 2026-11-24T08:50:00Z AND HL_Mod__c <= 2026-11-24T09:59:00Z) \
             AND (HL_Mod__c > 2026-11-24T09:30:00Z OR (HL_Mod__c = 2026-11-24T09:30:00Z AND Id > '003000000000001AAA'))"
        );
    }

    #[test]
    fn resume_keeps_records_sharing_the_page_edge_timestamp() {
        let id = |s: &str| -> SfId { s.parse().unwrap() };
        let w = Window::next(None, t(10, 0, 0), TEN_MIN, MINUTE)
            .unwrap()
            .resume(Cursor {
                at: t(9, 0, 0),
                id: id("003000000000002"),
            });
        assert!(!w.contains(&Cursor {
            at: t(9, 0, 0),
            id: id("003000000000001")
        }));
        assert!(!w.contains(&Cursor {
            at: t(9, 0, 0),
            id: id("003000000000002")
        }));
        assert!(w.contains(&Cursor {
            at: t(9, 0, 0),
            id: id("003000000000003")
        }));
        assert!(w.contains(&Cursor {
            at: t(9, 0, 1),
            id: id("003000000000001")
        }));
        assert!(!w.contains(&Cursor {
            at: t(9, 59, 1),
            id: id("003000000000009")
        }));
    }

    proptest! {
        #[test]
        fn windows_are_nonempty_and_leave_no_gap(
            start in 0i64..2_000_000_000,
            steps in proptest::collection::vec(0i64..7_200_000, 1..20),
            lookback_s in 0u64..3_600,
            settle_s in 0u64..600,
        ) {
            let lookback = Duration::from_secs(lookback_s);
            let settle = Duration::from_secs(settle_s);
            let mut now = DateTime::from_timestamp(start, 0).unwrap();
            let mut watermark: Option<DateTime<Utc>> = None;
            let mut previous_to: Option<DateTime<Utc>> = None;
            for step in steps {
                now += TimeDelta::milliseconds(step);
                if let Some(w) = Window::next(watermark, now, lookback, settle) {
                    prop_assert!(w.from < w.to);
                    prop_assert!(w.to <= now);
                    if let Some(prev) = previous_to {
                        prop_assert!(w.from <= prev, "gap between {} and {}", prev, w.from);
                    }
                    previous_to = Some(w.to);
                    watermark = Some(w.to);
                }
            }
        }
    }
}
