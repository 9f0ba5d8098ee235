//! Email opt-out written in both systems (SPEC.md §6): the later change wins.

use chrono::{DateTime, Utc};

/// The opt-out to keep, given Salesforce's `(HasOptedOutOfEmail, SystemModstamp when read)` and
/// Higher Logic's `(EmailOptOut, UpdatedOn)`. The later change wins; on a tie opted out wins,
/// because wrongly mailing someone who opted out is the costlier mistake (GDPR).
pub fn resolve_opt_out(sf: (bool, DateTime<Utc>), hl: (bool, DateTime<Utc>)) -> bool {
    match sf.1.cmp(&hl.1) {
        std::cmp::Ordering::Greater => sf.0,
        std::cmp::Ordering::Less => hl.0,
        std::cmp::Ordering::Equal => sf.0 || hl.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn later_change_wins_and_tie_opts_out() {
        let early = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
        let late = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
        assert!(resolve_opt_out((true, late), (false, early)));
        assert!(!resolve_opt_out((false, late), (true, early)));
        assert!(resolve_opt_out((false, early), (true, late)));
        assert!(!resolve_opt_out((true, early), (false, late)));
        assert!(resolve_opt_out((true, late), (false, late)));
        assert!(resolve_opt_out((false, late), (true, late)));
        assert!(!resolve_opt_out((false, late), (false, late)));
    }
}
