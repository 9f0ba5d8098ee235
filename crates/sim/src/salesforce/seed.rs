//! A deterministic generator of realistic org data: the messiness hlsync must survive (accents
//! and non-Latin scripts, blanks, stray whitespace, opt-outs, inactive and deleted Contacts,
//! Contacts without an Account, timestamps shared by many records).

use chrono::{DateTime, Duration, DurationRound, NaiveDate, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

use super::ids;
use super::store::format_datetime;

/// Generated records carry Ids of this "instance", distinct from the store's own.
const DATASET_INSTANCE: &str = "Sd";

/// Records to load into a simulator with [`super::SalesforceSim::load`]. Every record carries
/// its Id and its CreatedDate, LastModifiedDate and SystemModstamp.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    pub record_types: Vec<Map<String, Value>>,
    pub accounts: Vec<Map<String, Value>>,
    pub contacts: Vec<Map<String, Value>>,
    pub campaigns: Vec<Map<String, Value>>,
    pub campaign_members: Vec<Map<String, Value>>,
}

impl Dataset {
    /// Objects in load order: parents before the records that point at them.
    pub fn objects(&self) -> [(&'static str, &Vec<Map<String, Value>>); 5] {
        [
            ("RecordType", &self.record_types),
            ("Account", &self.accounts),
            ("Contact", &self.contacts),
            ("Campaign", &self.campaigns),
            ("CampaignMember", &self.campaign_members),
        ]
    }

    /// The newest SystemModstamp of any Contact.
    pub fn newest_contact_modstamp(&self) -> Option<String> {
        self.contacts
            .iter()
            .filter_map(|c| c.get("SystemModstamp").and_then(Value::as_str))
            .max()
            .map(str::to_owned)
    }
}

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "José",
    "Zoë",
    "Björn",
    "Łukasz",
    "Ngozi",
    "Søren",
    "François",
    "Иван",
    "Ольга",
    "张伟",
    "李娜",
    "さくら",
    "Mohammed",
    "محمد",
    "Αλέξανδρος",
    "Siobhán",
    "Nguyễn Văn",
    "Ana",
    "Emily",
    "Liam",
    "Priya",
    "Chidi",
    "Mëlanie",
    "O'Neil",
    "Jean-Luc",
    "Dvořák",
    "Hanna",
    "Kwame",
    "Ines",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "García",
    "Müller",
    "Øster",
    "Wiśniewski",
    "Okafor",
    "Brontë",
    "Lefèvre",
    "Петров",
    "Смирнова",
    "王",
    "李",
    "山田",
    "Al-Farsi",
    "العلي",
    "Παπαδόπουλος",
    "Ó Briain",
    "Trần",
    "Smith",
    "Johnson",
    "Patel",
    "Nwosu",
    "D'Angelo",
    "van der Berg",
    "Núñez",
    "Kowalski",
    "Schmidt",
    "Jones",
    "Lee",
    "Kim",
];
const TITLES: &[&str] = &[
    "Director",
    "Engineer",
    "Professor",
    "Chief Executive Officer",
    "Analyst",
    "Nurse Practitioner",
    "Directrice générale",
    "Geschäftsführer",
    "Student",
    "Consultant",
];
const PLACES: &[(&str, &str, &str, &str)] = &[
    ("Columbus", "OH", "43215", "United States"),
    ("Austin", "TX", "73301", "United States"),
    ("Montréal", "QC", "H2X 1Y4", "Canada"),
    ("München", "BY", "80331", "Germany"),
    ("大阪市", "大阪府", "530-0001", "Japan"),
    ("São Paulo", "SP", "01000-000", "Brazil"),
    ("Lagos", "LA", "100001", "Nigeria"),
    ("Αθήνα", "", "105 52", "Greece"),
    // Countries as people type them: codes of either length, any case.
    ("Boston", "MA", "02108", "USA"),
    ("Toronto", "ON", "M5H 2N2", "ca"),
    ("Leeds", "", "LS1 1UR", "GBR"),
];
const STREETS: &[&str] = &[
    "1 Main St",
    "221B Baker Street",
    "Rue de la Paix 12",
    "Hauptstraße 5\nHinterhaus",
    "1-1 Umeda",
    "Av. Paulista, 1000",
    "12 Marina Road",
];
const ACCOUNT_STEMS: &[&str] = &[
    "Acme",
    "Société Générale",
    "Müller & Söhne",
    "山田商事",
    "Globex",
    "Initech",
    "Øresund",
    "Ngozi Holdings",
    "Ελληνικά Έργα",
    "Umbrella",
];
const ACCOUNT_SUFFIXES: &[&str] = &["Inc.", "GmbH", "SA", "株式会社", "Ltd", "LLC", "Group"];
const MEMBER_TYPES: &[&str] = &["Gold", "Silver", "Bronze", "Student", "Retired"];
const COMMITTEES: &[&str] = &["Finance", "Events", "Education", "Membership", "Advocacy"];
const CHAPTERS: &[&str] = &["Ohio", "Texas", "Québec", "Bavaria", "Kansai"];
const CAMPAIGN_NAMES: &[&str] = &[
    "Annual Conference",
    "Spring Gala",
    "Webinar: Advocacy 101",
    "Chapter Meetup",
    "Newsletter",
    "Leadership Summit",
    "Journée d'étude",
    "Board Retreat",
];
const MEMBER_STATUSES: &[&str] = &["Registered", "Attended", "Sent"];

/// [`generate_at`] anchored at the current hour: the modstamps lie in the days before it.
pub fn generate(n_contacts: usize, seed: u64) -> Dataset {
    let now = Utc::now();
    let anchor = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
    generate_at(n_contacts, seed, anchor)
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from.choose(rng).copied().unwrap_or_default()
}

/// Pads a value with the stray whitespace people type, now and then.
fn sloppy(rng: &mut StdRng, s: &str) -> String {
    match rng.random_range(0..20) {
        0 => format!(" {s}"),
        1 => format!("{s}  "),
        2 => format!("\t{s} "),
        _ => s.to_owned(),
    }
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn maybe(rng: &mut StdRng, p_missing: f64, value: Value) -> Value {
    if rng.random_bool(p_missing) {
        Value::Null
    } else {
        value
    }
}

/// An email local part from a name: ASCII letters only, or a neutral one for other scripts.
fn email_for(first: &str, last: &str, i: usize) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let (f, l) = (clean(first), clean(last));
    if f.is_empty() || l.is_empty() {
        format!("member{i}@example.org")
    } else {
        format!("{f}.{l}{i}@example.org")
    }
}

fn stamps(record: &mut Map<String, Value>, created: DateTime<Utc>, modified: DateTime<Utc>) {
    record.insert("CreatedDate".to_owned(), text(format_datetime(created)));
    record.insert(
        "LastModifiedDate".to_owned(),
        text(format_datetime(modified)),
    );
    record.insert("SystemModstamp".to_owned(), text(format_datetime(modified)));
}

/// `n_contacts` Contacts with their Accounts, record types, Campaigns and CampaignMembers. The
/// same `(n_contacts, seed, anchor)` always gives the same dataset; modstamps fall in the 14
/// days before `anchor`, and about one Contact in eight shares its predecessor's timestamp.
#[expect(
    clippy::too_many_lines,
    reason = "the seeded org, one kind of record after another"
)]
pub fn generate_at(n_contacts: usize, seed: u64, anchor: DateTime<Utc>) -> Dataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut data = Dataset::default();
    let id = |prefix: &str, seq: usize| ids::make_id(prefix, DATASET_INSTANCE, seq as u64 + 1);
    let window_secs = Duration::days(14).num_seconds();
    let past = |rng: &mut StdRng| anchor - Duration::seconds(rng.random_range(1..=window_secs));

    let mut record_type_ids = Vec::new();
    for (i, (name, developer)) in [("Member", "Member"), ("Staff", "Staff")]
        .iter()
        .enumerate()
    {
        let mut rt = Map::new();
        let rt_id = id("012", i);
        rt.insert("Id".to_owned(), text(rt_id.clone()));
        rt.insert("Name".to_owned(), text(*name));
        rt.insert("DeveloperName".to_owned(), text(*developer));
        rt.insert("SobjectType".to_owned(), text("Contact"));
        rt.insert("IsActive".to_owned(), Value::Bool(true));
        let at = anchor - Duration::days(400);
        stamps(&mut rt, at, at);
        data.record_types.push(rt);
        record_type_ids.push(rt_id);
    }

    let n_accounts = n_contacts / 10 + 1;
    for i in 0..n_accounts {
        let mut account = Map::new();
        account.insert("Id".to_owned(), text(id("001", i)));
        let name = format!(
            "{} {}",
            pick(&mut rng, ACCOUNT_STEMS),
            pick(&mut rng, ACCOUNT_SUFFIXES)
        );
        account.insert("Name".to_owned(), text(sloppy(&mut rng, &name)));
        let modified = past(&mut rng);
        stamps(
            &mut account,
            modified - Duration::days(rng.random_range(0..700)),
            modified,
        );
        data.accounts.push(account);
    }

    let mut previous_stamp: Option<DateTime<Utc>> = None;
    for i in 0..n_contacts {
        let mut c = Map::new();
        c.insert("Id".to_owned(), text(id("003", i)));
        let first = pick(&mut rng, FIRST_NAMES);
        let last = pick(&mut rng, LAST_NAMES);
        let first_value = text(sloppy(&mut rng, first));
        c.insert("FirstName".to_owned(), maybe(&mut rng, 0.05, first_value));
        c.insert("LastName".to_owned(), text(sloppy(&mut rng, last)));
        let email = sloppy(&mut rng, &email_for(first, last, i));
        c.insert("Email".to_owned(), maybe(&mut rng, 0.06, text(email)));
        let title = text(pick(&mut rng, TITLES));
        c.insert("Title".to_owned(), maybe(&mut rng, 0.3, title));
        let phone = text(format!("+1 614 555 {:04}", rng.random_range(0..10_000)));
        c.insert("Phone".to_owned(), maybe(&mut rng, 0.25, phone));
        let mobile = text(format!("+44 7700 {:06}", rng.random_range(0..1_000_000)));
        c.insert("MobilePhone".to_owned(), maybe(&mut rng, 0.5, mobile));
        let home = text(format!("+1 212 555 {:04}", rng.random_range(0..10_000)));
        c.insert("HomePhone".to_owned(), maybe(&mut rng, 0.8, home));
        if rng.random_bool(0.9) {
            let (city, state, postal, country) =
                PLACES.choose(&mut rng).copied().unwrap_or(("", "", "", ""));
            let street = text(pick(&mut rng, STREETS));
            c.insert("MailingStreet".to_owned(), maybe(&mut rng, 0.1, street));
            c.insert("MailingCity".to_owned(), text(sloppy(&mut rng, city)));
            let state = if state.is_empty() {
                Value::Null
            } else {
                text(state)
            };
            c.insert("MailingState".to_owned(), state);
            c.insert("MailingPostalCode".to_owned(), text(postal));
            c.insert("MailingCountry".to_owned(), text(country));
        }
        c.insert(
            "HasOptedOutOfEmail".to_owned(),
            Value::Bool(rng.random_bool(0.08)),
        );
        if rng.random_bool(0.85) {
            let account = rng.random_range(0..n_accounts);
            c.insert("AccountId".to_owned(), text(id("001", account)));
        }
        let staff = rng.random_bool(0.1);
        let record_type = if staff {
            Some(&record_type_ids[1])
        } else if rng.random_bool(0.9) {
            Some(&record_type_ids[0])
        } else {
            None
        };
        if let Some(rt) = record_type {
            c.insert("RecordTypeId".to_owned(), text(rt.clone()));
        }
        c.insert("Active__c".to_owned(), Value::Bool(rng.random_bool(0.88)));
        let member_type = text(pick(&mut rng, MEMBER_TYPES));
        c.insert(
            "HL_Member_Type__c".to_owned(),
            maybe(&mut rng, 0.1, member_type),
        );
        let n_committees = rng.random_range(0..=3usize);
        let committees: Vec<&str> = COMMITTEES
            .choose_multiple(&mut rng, n_committees)
            .copied()
            .collect();
        c.insert(
            "HL_Committees__c".to_owned(),
            if committees.is_empty() {
                Value::Null
            } else {
                text(committees.join(";"))
            },
        );
        c.insert("HL_Staff__c".to_owned(), Value::Bool(staff));
        let chapter = text(pick(&mut rng, CHAPTERS));
        c.insert("HL_Chapter__c".to_owned(), maybe(&mut rng, 0.2, chapter));
        let year = rng.random_range(1985..=2026);
        c.insert(
            "HL_Join_Year__c".to_owned(),
            maybe(&mut rng, 0.15, Value::from(f64::from(year))),
        );
        let since =
            NaiveDate::from_ymd_opt(year, rng.random_range(1..=12), rng.random_range(1..=28))
                .map_or(Value::Null, |d| text(d.format("%Y-%m-%d").to_string()));
        c.insert(
            "HL_Member_Since__c".to_owned(),
            maybe(&mut rng, 0.15, since),
        );
        c.insert(
            "HL_Is_Board__c".to_owned(),
            Value::Bool(rng.random_bool(0.03)),
        );
        c.insert("IsDeleted".to_owned(), Value::Bool(rng.random_bool(0.01)));

        // Bulk loads and flows stamp many records in the same second.
        let modified = match previous_stamp {
            Some(prev) if rng.random_bool(0.125) => prev,
            _ => past(&mut rng),
        };
        previous_stamp = Some(modified);
        stamps(
            &mut c,
            modified - Duration::days(rng.random_range(0..1_000)),
            modified,
        );
        // The Flow-kept mod date: the last modification, except where the Flow never ran.
        let flow_date = if i % 5 == 2 {
            Value::Null
        } else {
            c.get("SystemModstamp").cloned().unwrap_or(Value::Null)
        };
        c.insert("Sync_Modified__c".to_owned(), flow_date);
        data.contacts.push(c);
    }

    // A few events a year, a few dozen registrations each: an association's calendar, not a
    // marketing list (and a volume the local SQS emulator can carry).
    let n_campaigns = (n_contacts / 200).max(3);
    let mut member_seq = 0;
    for i in 0..n_campaigns {
        let mut campaign = Map::new();
        let campaign_id = id("701", i);
        campaign.insert("Id".to_owned(), text(campaign_id.clone()));
        let name = format!(
            "{} {}",
            pick(&mut rng, CAMPAIGN_NAMES),
            2026 - (i % 3) as i32
        );
        campaign.insert("Name".to_owned(), text(name));
        let kind = if rng.random_bool(0.6) {
            "Event"
        } else {
            pick(&mut rng, &["Webinar", "Email", "Conference"])
        };
        campaign.insert("Type".to_owned(), text(kind));
        let start = anchor.date_naive() + Duration::days(rng.random_range(-60..=60));
        let end = start + Duration::days(rng.random_range(0..=2));
        campaign.insert(
            "StartDate".to_owned(),
            text(start.format("%Y-%m-%d").to_string()),
        );
        campaign.insert(
            "EndDate".to_owned(),
            maybe(&mut rng, 0.2, text(end.format("%Y-%m-%d").to_string())),
        );
        campaign.insert("IsActive".to_owned(), Value::Bool(rng.random_bool(0.85)));
        let modified = past(&mut rng);
        stamps(&mut campaign, modified - Duration::days(30), modified);
        data.campaigns.push(campaign);

        if n_contacts == 0 {
            continue;
        }
        let attendees = rng.random_range(0..=(n_contacts / 20).clamp(1, 60));
        let mut chosen: Vec<usize> =
            rand::seq::index::sample(&mut rng, n_contacts, attendees.min(n_contacts)).into_vec();
        chosen.sort_unstable();
        for contact in chosen {
            let mut member = Map::new();
            member.insert("Id".to_owned(), text(id("00v", member_seq)));
            member_seq += 1;
            member.insert("CampaignId".to_owned(), text(campaign_id.clone()));
            member.insert("ContactId".to_owned(), text(id("003", contact)));
            member.insert("Status".to_owned(), text(pick(&mut rng, MEMBER_STATUSES)));
            let modified = past(&mut rng);
            stamps(&mut member, modified, modified);
            data.campaign_members.push(member);
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T19:00:00Z")
            .unwrap()
            .into()
    }

    #[test]
    fn the_same_seed_gives_the_same_data_and_another_seed_other_data() {
        let a = generate_at(300, 7, anchor());
        assert_eq!(a, generate_at(300, 7, anchor()));
        assert_ne!(a, generate_at(300, 8, anchor()));
        assert_eq!(a.contacts.len(), 300);
        assert_eq!(a.record_types.len(), 2);
        assert!(!a.accounts.is_empty() && a.campaigns.len() >= 3);
    }

    #[test]
    fn the_data_has_the_mess_a_real_org_has() {
        let d = generate_at(2_000, 1, anchor());
        let count =
            |f: &dyn Fn(&Map<String, Value>) -> bool| d.contacts.iter().filter(|c| f(c)).count();
        let s =
            |c: &Map<String, Value>, k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
        assert!(count(&|c| s(c, "LastName").is_some_and(|n| !n.is_ascii())) > 100);
        assert!(count(&|c| s(c, "LastName").is_some_and(|n| n.trim() != n)) > 10);
        assert!(count(&|c| c.get("FirstName") == Some(&Value::Null)) > 10);
        assert!(count(&|c| c.get("AccountId").is_none()) > 50);
        assert!(count(&|c| c["Active__c"] == false) > 50);
        assert!(count(&|c| c["HasOptedOutOfEmail"] == true) > 50);
        assert!(count(&|c| s(c, "HL_Committees__c").is_some_and(|v| v.contains(';'))) > 100);
        assert!(count(&|c| c["IsDeleted"] == true) > 0);
        let staff = &d.record_types[1]["Id"];
        assert!(count(&|c| c.get("RecordTypeId") == Some(staff)) > 50);

        let mut stamps: Vec<&str> = d
            .contacts
            .iter()
            .filter_map(|c| c["SystemModstamp"].as_str())
            .collect();
        let total = stamps.len();
        stamps.sort_unstable();
        stamps.dedup();
        assert!(stamps.len() < total, "some Contacts share a timestamp");
        let oldest = format_datetime(anchor() - Duration::days(14));
        let newest = format_datetime(anchor());
        assert!(
            stamps
                .iter()
                .all(|s| *s >= oldest.as_str() && *s < newest.as_str())
        );

        assert!(d.campaigns.iter().any(|c| c["Type"] == "Event"));
        let statuses: std::collections::BTreeSet<&str> = d
            .campaign_members
            .iter()
            .filter_map(|m| m["Status"].as_str())
            .collect();
        assert_eq!(
            statuses,
            ["Attended", "Registered", "Sent"].into_iter().collect()
        );
    }

    #[test]
    fn ids_are_valid_and_unique() {
        let d = generate_at(500, 3, anchor());
        let mut all = std::collections::BTreeSet::new();
        for (_, records) in d.objects() {
            for r in records {
                let id = r["Id"].as_str().unwrap();
                assert_eq!(ids::to_18(id).as_deref(), Some(id));
                assert!(all.insert(id.to_owned()));
            }
        }
    }
}
