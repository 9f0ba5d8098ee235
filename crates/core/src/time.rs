//! Salesforce's datetime forms.
//!
//! The REST API writes datetimes as `2026-11-24T10:00:00.000+0000` (an offset without a colon,
//! which RFC 3339 parsers reject), while SOQL literals are written `2026-11-24T10:00:00Z`.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parse a datetime as Salesforce returns it, or in RFC 3339 form (`Z` or `+00:00`).
/// `None` when the text is not a datetime.
pub fn parse_sf_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.with_timezone(&Utc));
    }
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .map(|dt| dt.with_timezone(&Utc))
}

/// The SOQL literal for a datetime: `2026-11-24T10:00:00Z`.
///
/// Salesforce keeps datetimes to the second, so sub-second parts are dropped (not rounded): a
/// literal never lies after the instant it stands for.
pub fn format_soql_datetime(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The wire form of Higher Logic's `UpdatedOn`: `2026-11-24T10:00:00.000Z`.
pub fn format_millis(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `serde` adapter for `Option<DateTime<Utc>>` in the millisecond `Z` form; reading accepts every
/// form that [`parse_sf_datetime`] does.
pub mod millis_opt {
    use super::{DateTime, Utc, format_millis, parse_sf_datetime};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write the millisecond `Z` form, or none.
    pub fn serialize<S: Serializer>(v: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(at) => s.serialize_str(&format_millis(*at)),
            None => s.serialize_none(),
        }
    }

    /// Read any form [`parse_sf_datetime`] accepts, or none.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => parse_sf_datetime(&t)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("not a datetime: {t:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ten() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()
    }

    #[test]
    fn parses_salesforce_offset_without_colon() {
        assert_eq!(
            parse_sf_datetime("2026-11-24T10:00:00.000+0000"),
            Some(ten())
        );
        assert_eq!(
            parse_sf_datetime("2026-11-24T11:00:00.000+0100"),
            Some(ten())
        );
    }

    #[test]
    fn parses_z_and_colon_offsets() {
        assert_eq!(parse_sf_datetime("2026-11-24T10:00:00Z"), Some(ten()));
        assert_eq!(parse_sf_datetime("2026-11-24T10:00:00.000Z"), Some(ten()));
        assert_eq!(parse_sf_datetime("2026-11-24T10:00:00+00:00"), Some(ten()));
    }

    #[test]
    fn rejects_non_datetimes() {
        assert_eq!(parse_sf_datetime("2026-11-24"), None);
        assert_eq!(parse_sf_datetime("yesterday"), None);
        assert_eq!(parse_sf_datetime(""), None);
    }

    #[test]
    fn soql_literal_form() {
        assert_eq!(format_soql_datetime(ten()), "2026-11-24T10:00:00Z");
        let later = ten() + chrono::Duration::milliseconds(999);
        assert_eq!(format_soql_datetime(later), "2026-11-24T10:00:00Z");
    }

    #[test]
    fn millis_form() {
        assert_eq!(format_millis(ten()), "2026-11-24T10:00:00.000Z");
    }
}
