//! The arithmetic of the API allotment guard (SPEC.md §5).
//!
//! Salesforce reports the org's 24 hour usage on every response as
//! `Sforce-Limit-Info: api-usage=N/M`. hlsync keeps `N` within `max_allotment_share` of the
//! smaller of the agreed allotment and the org's `M`, and refuses to start work that would take
//! it past that ceiling.

use crate::config::SalesforceConfig;

/// The org's API usage in the last 24 hours, as Salesforce last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiUsage {
    /// Calls made by the whole org (not only by hlsync).
    pub used: u64,
    /// The org's daily limit.
    pub max: u64,
}

/// Read the `api-usage=N/M` part of a `Sforce-Limit-Info` header. Other parts (`api-bursts=…`)
/// and their order, spacing and case do not matter. `None` when there is no usable api-usage.
pub fn parse_limit_info(header: &str) -> Option<ApiUsage> {
    header.split([';', ',']).find_map(|part| {
        let (name, value) = part.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("api-usage") {
            return None;
        }
        let (used, max) = value.split_once('/')?;
        Some(ApiUsage {
            used: used.trim().parse().ok()?,
            max: max.trim().parse().ok()?,
        })
    })
}

/// The usage hlsync must not go past: floor(share × min(configured allotment, org max)).
/// `org_max` is `None` before Salesforce has answered once.
pub fn ceiling(cfg: &SalesforceConfig, org_max: Option<u64>) -> u64 {
    let base = org_max.map_or(cfg.daily_api_allotment, |m| m.min(cfg.daily_api_allotment));
    // f64 holds every realistic allotment exactly (below 2^53); the float is clamped so that a
    // share above 1 built in code cannot lift the ceiling past the base.
    ((base as f64) * cfg.max_allotment_share.clamp(0.0, 1.0)).floor() as u64
}

/// Whether `planned_calls` more calls keep the org's usage below the ceiling (SPEC §5: the used
/// count stays below share × allotment): `used + planned < ceiling`. With `planned_calls = 0`
/// this answers "is usage still below the ceiling".
pub fn allows(usage: ApiUsage, cfg: &SalesforceConfig, planned_calls: u64) -> bool {
    usage.used.saturating_add(planned_calls) < ceiling(cfg, Some(usage.max))
}

/// Calls still available under the ceiling (0 when usage is already at or past it).
pub fn headroom(usage: ApiUsage, cfg: &SalesforceConfig) -> u64 {
    ceiling(cfg, Some(usage.max)).saturating_sub(usage.used)
}

/// Usage as a share of the allotment hlsync measures against, min(configured, org max): 0.25
/// means a quarter used. For metrics and `hlsync status`; compare with `max_allotment_share`.
pub fn share(usage: ApiUsage, cfg: &SalesforceConfig) -> f64 {
    let base = usage.max.min(cfg.daily_api_allotment);
    if base == 0 {
        return 1.0;
    }
    usage.used as f64 / base as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(allotment: u64, share: f64) -> SalesforceConfig {
        SalesforceConfig {
            daily_api_allotment: allotment,
            max_allotment_share: share,
            ..SalesforceConfig::default()
        }
    }

    #[test]
    fn parses_plain_and_with_bursts() {
        assert_eq!(
            parse_limit_info("api-usage=25/5000"),
            Some(ApiUsage {
                used: 25,
                max: 5000
            })
        );
        assert_eq!(
            parse_limit_info("api-usage=18/5000; api-bursts=0/1000"),
            Some(ApiUsage {
                used: 18,
                max: 5000
            })
        );
        assert_eq!(
            parse_limit_info("api-bursts=0/1000;API-Usage = 7 / 100"),
            Some(ApiUsage { used: 7, max: 100 })
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_limit_info(""), None);
        assert_eq!(parse_limit_info("api-bursts=0/1000"), None);
        assert_eq!(parse_limit_info("api-usage=x/5000"), None);
        assert_eq!(parse_limit_info("api-usage=5"), None);
    }

    #[test]
    fn ceiling_uses_smaller_of_configured_and_org() {
        assert_eq!(ceiling(&cfg(100_000, 0.5), None), 50_000);
        assert_eq!(ceiling(&cfg(100_000, 0.5), Some(15_000)), 7_500);
        assert_eq!(ceiling(&cfg(1_000, 0.5), Some(15_000)), 500);
        assert_eq!(ceiling(&cfg(999, 0.5), None), 499);
    }

    #[test]
    fn usage_stays_below_the_ceiling() {
        let c = cfg(1_000, 0.5);
        let u = |used| ApiUsage { used, max: 10_000 };
        assert!(allows(u(400), &c, 99));
        assert!(
            !allows(u(400), &c, 100),
            "reaching the ceiling is not below it"
        );
        assert!(!allows(u(499), &c, 1));
        assert!(allows(u(499), &c, 0));
        assert!(!allows(u(500), &c, 0));
        assert!(!allows(u(u64::MAX), &c, 5));
        assert_eq!(headroom(u(450), &c), 50);
        assert_eq!(headroom(u(900), &c), 0);
    }

    #[test]
    fn share_of_allotment() {
        let c = cfg(1_000, 0.5);
        assert_eq!(
            share(
                ApiUsage {
                    used: 250,
                    max: 10_000
                },
                &c
            ),
            0.25
        );
        assert_eq!(
            share(
                ApiUsage {
                    used: 250,
                    max: 500
                },
                &c
            ),
            0.5
        );
        assert_eq!(share(ApiUsage { used: 0, max: 0 }, &c), 1.0);
    }

    proptest! {
        #[test]
        fn allowed_work_never_passes_share(used in 0u64..200_000, max in 1u64..200_000,
                                           allotment in 1u64..200_000, s in 0.01f64..=1.0,
                                           planned in 0u64..10_000) {
            let c = cfg(allotment, s);
            let usage = ApiUsage { used, max };
            if allows(usage, &c, planned) {
                let after = (used + planned) as f64;
                prop_assert!(after < s * (allotment.min(max) as f64) + 1e-6);
            }
        }
    }
}
