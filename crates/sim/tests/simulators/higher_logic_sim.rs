//! The Higher Logic Push API v2 simulator over real HTTP, as a client sees it.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use hlsync_sim::higher_logic::{
    DEFAULT_API_KEY, HigherLogicSim, HlFaults, HlSimOptions, PushHistory,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADA: &str = "0030000000000AdAAA";
const BOB: &str = "0030000000000BoAAA";
const CY: &str = "0030000000000CyAAA";
const GALA: &str = "7010000000000GaAAA";
const SUMMIT: &str = "7010000000000SuAAA";

/// A live element as the hlsync client sends it: every key, every collection.
fn full(contact_id: &str) -> Value {
    json!({
        "ContactDetails": {
            "ContactId": contact_id, "FirstName": "Ada", "LastName": "Lovelace",
            "PrimaryEmailAddress": "ada@example.org", "OrganizationName": "Analytical Engines",
            "Title": "Countess", "IsMember": true, "IsOrganization": false,
            "DoNotEmail": false, "IsDeleted": false
        },
        "Groups": [
            {"GroupId": "HL_Member_Type__c:Gold", "GroupName": "Gold", "GroupType": "Membership", "Role": ""},
            {"GroupId": "HL_Chapter__c:Ohio", "GroupName": "Ohio", "GroupType": "Chapter", "Role": null},
            {"GroupId": GALA, "GroupName": "Gala", "GroupType": "Event", "Role": "Registered"}
        ],
        "Addresses": [{
            "AddressLine1": "1 Main St", "AddressLine2": null, "City": "Columbus",
            "StateProvince": "OH", "PostalCode": "43004", "CountryCode": "US",
            "AddressType": "Main", "IsPrimary": true
        }],
        "PhoneNumbers": [
            {"FormattedNumber": "614-555-0100", "PhoneType": "Work", "IsPreferred": true},
            {"FormattedNumber": "614-555-0199", "PhoneType": "Mobile", "IsPreferred": false}
        ],
        "EmailAddresses": [
            {"EmailAddress": "ada@example.org", "EmailType": "Primary Email", "IsPreferred": true}
        ]
    })
}

fn delete(contact_id: &str) -> Value {
    json!({"ContactDetails": {"ContactId": contact_id, "IsDeleted": true}})
}

fn gala() -> Value {
    json!({"MeetingId": GALA, "Title": "Gala", "Description": null, "MeetingType": "Dinner",
           "BeginDate": "2026-12-01T00:00:00.000Z", "EndDate": "2026-12-02T00:00:00.000Z",
           "IsDeleted": false})
}

async fn start() -> HigherLogicSim {
    start_with(HlSimOptions::default()).await
}

async fn start_with(opts: HlSimOptions) -> HigherLogicSim {
    HigherLogicSim::start(opts).await.expect("simulator starts")
}

/// An answer: status, `Retry-After` when given, and the raw body.
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: String,
}

impl Answer {
    /// The `Message` of an error answer.
    fn message(&self) -> String {
        let body: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("error body {:?} is not JSON: {e}", self.body));
        body["Message"]
            .as_str()
            .unwrap_or_else(|| panic!("error body {:?} has no Message", self.body))
            .to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("simulator answers");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().expect("Retry-After in seconds"));
    let body = response.text().await.expect("a body");
    Answer {
        status,
        retry_after,
        body,
    }
}

/// POST with the right key and `Content-Type: application/json`.
async fn post(sim: &HigherLogicSim, endpoint: &str, body: &Value) -> Answer {
    answer(
        reqwest::Client::new()
            .post(format!("{}/{endpoint}", sim.base_url()))
            .header("ApiKey", sim.api_key())
            .json(body),
    )
    .await
}

/// POST that must be accepted: 200 with an empty body.
async fn accept(sim: &HigherLogicSim, endpoint: &str, body: &Value) {
    let answer = post(sim, endpoint, body).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, ""),
        "POST /{endpoint} {body}"
    );
}

/// POST that must be refused with a 400; returns its message.
async fn refuse(sim: &HigherLogicSim, endpoint: &str, body: &Value) -> String {
    let answer = post(sim, endpoint, body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    answer.message()
}

async fn prefs(sim: &HigherLogicSim, since: Option<&str>) -> Answer {
    let mut url = reqwest::Url::parse(&sim.email_preferences_url()).unwrap();
    if let Some(since) = since {
        url.query_pairs_mut().append_pair("since", since);
    }
    answer(
        reqwest::Client::new()
            .get(url)
            .header("ApiKey", sim.api_key()),
    )
    .await
}

#[tokio::test]
async fn urls_and_key() {
    let sim = start().await;
    let port = sim.addr().port();
    assert_eq!(sim.base_url(), format!("http://127.0.0.1:{port}/v2"));
    assert_eq!(
        sim.email_preferences_url(),
        format!("http://127.0.0.1:{port}/v2/emailpreferences")
    );
    assert_eq!(sim.api_key(), DEFAULT_API_KEY);
    let unknown = post(&sim, "list", &json!([{"ContactIds": [ADA]}])).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.message().contains("/v2/contactinfo"));
}

#[tokio::test]
async fn a_missing_or_wrong_api_key_is_401() {
    let sim = start().await;
    let client = reqwest::Client::new();
    let url = format!("{}/contactinfo", sim.base_url());
    let body = json!([full(ADA)]);
    let requests = [
        client.post(&url).json(&body),
        client.post(&url).header("ApiKey", "wrong").json(&body),
        // The key in another header is no key at all.
        client
            .post(&url)
            .header("Authorization", DEFAULT_API_KEY)
            .json(&body),
        client
            .post(format!("{}/meeting", sim.base_url()))
            .json(&json!([gala()])),
        client.get(format!(
            "{}?since=2026-01-01T00:00:00.000Z",
            sim.email_preferences_url()
        )),
    ];
    for request in requests {
        let answer = answer(request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(answer.message().contains("ApiKey"));
    }
    let counters = sim.counters();
    assert_eq!(counters.auth_rejected, 5);
    assert_eq!(counters.contactinfo_calls, 3);
    assert_eq!(counters.total_calls(), 5);
    assert!(sim.members().is_empty() && sim.meetings().is_empty());

    let other_key = start_with(HlSimOptions {
        api_key: "another-key".to_owned(),
        ..HlSimOptions::default()
    })
    .await;
    assert_eq!(other_key.api_key(), "another-key");
    accept(&other_key, "contactinfo", &body).await;
}

#[tokio::test]
async fn a_full_element_is_stored_normalised() {
    let sim = start().await;
    accept(&sim, "meeting", &json!([gala()])).await;
    accept(&sim, "contactinfo", &json!([full(ADA)])).await;
    assert_eq!(sim.member(ADA), Some(full(ADA)), "every key was sent");
    assert_eq!(sim.email_opt_out(ADA), Some(false));
    assert!(!sim.is_deleted(ADA));

    // Left-out keys read as null (text), false (flags) and [] (collections).
    accept(
        &sim,
        "contactinfo",
        &json!([{
            "ContactDetails": {"ContactId": BOB, "LastName": "Builder", "IsMember": true},
            "Groups": [{"GroupId": "HL_Staff__c", "GroupName": "Staff", "GroupType": "Membership"}],
            "Addresses": [{"City": "Leeds", "AddressType": "Main"}]
        }]),
    )
    .await;
    assert_eq!(
        sim.member(BOB).unwrap(),
        json!({
            "ContactDetails": {"ContactId": BOB, "FirstName": null, "LastName": "Builder",
                "PrimaryEmailAddress": null, "OrganizationName": null, "Title": null,
                "IsMember": true, "IsOrganization": false, "DoNotEmail": false,
                "IsDeleted": false},
            "Groups": [{"GroupId": "HL_Staff__c", "GroupName": "Staff",
                        "GroupType": "Membership", "Role": null}],
            "Addresses": [{"AddressLine1": null, "AddressLine2": null, "City": "Leeds",
                "StateProvince": null, "PostalCode": null, "CountryCode": null,
                "AddressType": "Main", "IsPrimary": false}],
            "PhoneNumbers": [],
            "EmailAddresses": []
        })
    );
    assert_eq!(
        sim.members().keys().collect::<Vec<_>>(),
        [ADA, BOB],
        "members() is keyed by ContactId"
    );
    let counters = sim.counters();
    assert_eq!(
        (
            counters.contactinfo_calls,
            counters.meeting_calls,
            counters.records_received
        ),
        (2, 1, 3)
    );
}

#[tokio::test]
async fn text_json_is_accepted_and_other_content_types_are_415() {
    let sim = start().await;
    let body = json!([full(ADA)]).to_string();
    let with_type = |content_type: Option<&str>| {
        let request = reqwest::Client::new()
            .post(format!("{}/contactinfo", sim.base_url()))
            .header("ApiKey", sim.api_key())
            .body(body.clone());
        match content_type {
            Some(t) => request.header("Content-Type", t),
            None => request,
        }
    };
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let answer = answer(with_type(content_type)).await;
        assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(answer.message().contains("application/json"));
    }
    assert!(sim.members().is_empty());
    for content_type in ["text/json", "application/json; charset=utf-8"] {
        let answer = answer(with_type(Some(content_type))).await;
        assert_eq!(answer.status, StatusCode::OK, "{content_type}");
    }
    assert_eq!(sim.counters().bad_requests, 3);
}

#[tokio::test]
async fn a_push_replaces_the_whole_record() {
    let sim = start().await;
    accept(&sim, "contactinfo", &json!([full(ADA)])).await;

    // The next push leaves out the event group and the mobile phone: both are gone.
    let mut fewer = full(ADA);
    fewer["Groups"].as_array_mut().unwrap().pop();
    fewer["PhoneNumbers"].as_array_mut().unwrap().pop();
    accept(&sim, "contactinfo", &json!([fewer])).await;
    let stored = sim.member(ADA).unwrap();
    assert_eq!(stored["Groups"].as_array().unwrap().len(), 2);
    assert!(
        stored["Groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["GroupId"] != GALA)
    );
    assert_eq!(
        stored["PhoneNumbers"],
        json!([{"FormattedNumber": "614-555-0100", "PhoneType": "Work", "IsPreferred": true}])
    );

    // Collections and fields left out altogether are cleared too.
    let bare = json!({"ContactDetails": {"ContactId": ADA, "FirstName": "Ada", "IsMember": false}});
    accept(&sim, "contactinfo", &json!([bare])).await;
    let stored = sim.member(ADA).unwrap();
    for collection in ["Groups", "Addresses", "PhoneNumbers", "EmailAddresses"] {
        assert_eq!(stored[collection], json!([]), "{collection}");
    }
    assert_eq!(stored["ContactDetails"]["OrganizationName"], Value::Null);
    assert_eq!(stored["ContactDetails"]["Title"], Value::Null);
    assert_eq!(stored["ContactDetails"]["IsMember"], false);
    assert_eq!(sim.history(ADA).unwrap().changes, 3);
}

#[tokio::test]
async fn the_delete_shape_removes_the_member() {
    let sim = start().await;
    accept(&sim, "contactinfo", &json!([full(ADA), full(BOB)])).await;
    accept(&sim, "contactinfo", &json!([delete(ADA)])).await;
    assert_eq!(sim.member(ADA), None);
    assert!(sim.is_deleted(ADA));
    assert!(!sim.is_deleted(BOB));
    assert_eq!(sim.members().keys().collect::<Vec<_>>(), [BOB]);

    // A delete that carries anything but the id is refused, and the member stays.
    let mut with_name = delete(BOB);
    with_name["ContactDetails"]["FirstName"] = json!("Bob");
    let message = refuse(&sim, "contactinfo", &json!([with_name])).await;
    assert!(
        message.starts_with(&format!("element 0 (ContactId {BOB}): ")),
        "{message}"
    );
    assert!(message.contains("ContactDetails.FirstName"), "{message}");
    let mut with_groups = delete(BOB);
    with_groups["Groups"] = json!([]);
    let message = refuse(&sim, "contactinfo", &json!([with_groups])).await;
    assert!(message.contains("Groups"), "{message}");
    let mut as_live = full(BOB);
    as_live["ContactDetails"]["IsDeleted"] = json!(true);
    refuse(&sim, "contactinfo", &json!([as_live])).await;
    assert!(sim.member(BOB).is_some());
    assert!(!sim.is_deleted(BOB));

    // A live push re-creates a deleted member.
    accept(&sim, "contactinfo", &json!([full(ADA)])).await;
    assert!(!sim.is_deleted(ADA));
    assert_eq!(sim.member(ADA), Some(full(ADA)));
    assert_eq!(
        sim.history(ADA),
        Some(PushHistory {
            pushes: 3,
            changes: 3,
            last_push_changed: true
        })
    );
}

/// Each rule: the element to put at index 1 (after a valid one), and what the message must say.
#[expect(clippy::too_many_lines, reason = "a table of cases, one per rule")]
fn strictness_cases() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut element = full(BOB);
        edit(&mut element);
        element
    };
    let bob = "element 1 (ContactId 0030000000000BoAAA): ";
    vec![
        (
            "unknown top-level key",
            with(&|e| e["Demographics"] = json!([])),
            vec![bob, "unknown key Demographics"],
        ),
        (
            "unknown ContactDetails key",
            with(&|e| e["ContactDetails"]["Nickname"] = json!("B")),
            vec![bob, "unknown key ContactDetails.Nickname"],
        ),
        (
            "unknown key in a group",
            with(&|e| e["Groups"][2]["BeginDate"] = json!("2026-12-01T00:00:00.000Z")),
            vec![bob, "unknown key Groups[2].BeginDate"],
        ),
        (
            "unknown key in an address",
            with(&|e| e["Addresses"][0]["IsBill"] = json!(false)),
            vec![bob, "unknown key Addresses[0].IsBill"],
        ),
        (
            "missing ContactId",
            with(&|e| {
                e["ContactDetails"]
                    .as_object_mut()
                    .unwrap()
                    .remove("ContactId");
            }),
            vec!["element 1: ContactDetails.ContactId is required"],
        ),
        (
            "empty ContactId",
            with(&|e| e["ContactDetails"]["ContactId"] = json!("")),
            vec!["element 1: ContactDetails.ContactId must be a non-empty string"],
        ),
        (
            "missing ContactDetails",
            json!({"Groups": []}),
            vec!["element 1: ContactDetails is required"],
        ),
        (
            "missing GroupType",
            with(&|e| {
                e["Groups"][1].as_object_mut().unwrap().remove("GroupType");
            }),
            vec![bob, "Groups[1].GroupType is required"],
        ),
        (
            "empty GroupId",
            with(&|e| e["Groups"][0]["GroupId"] = json!("  ")),
            vec![bob, "Groups[0].GroupId must be a non-empty string"],
        ),
        (
            "the same group twice",
            with(&|e| {
                let first = e["Groups"][0].clone();
                e["Groups"].as_array_mut().unwrap().push(first);
            }),
            vec![bob, "Groups[3] repeats Groups[0]"],
        ),
        (
            "lower-case CountryCode",
            with(&|e| e["Addresses"][0]["CountryCode"] = json!("us")),
            vec![bob, "Addresses[0].CountryCode must be"],
        ),
        (
            "three-letter CountryCode",
            with(&|e| e["Addresses"][0]["CountryCode"] = json!("USA")),
            vec![bob, "Addresses[0].CountryCode must be"],
        ),
        (
            "missing AddressType",
            with(&|e| {
                e["Addresses"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("AddressType");
            }),
            vec![bob, "Addresses[0].AddressType is required"],
        ),
        (
            "a boolean as text",
            with(&|e| e["ContactDetails"]["IsMember"] = json!("true")),
            vec![bob, "ContactDetails.IsMember must be true or false"],
        ),
        (
            "a null boolean",
            with(&|e| e["PhoneNumbers"][0]["IsPreferred"] = Value::Null),
            vec![bob, "PhoneNumbers[0].IsPreferred must be true or false"],
        ),
        (
            "a number as text",
            with(&|e| e["ContactDetails"]["Title"] = json!(7)),
            vec![bob, "ContactDetails.Title must be a string or null"],
        ),
        (
            "a null GroupName",
            with(&|e| e["Groups"][0]["GroupName"] = Value::Null),
            vec![bob, "Groups[0].GroupName must be a string"],
        ),
        (
            "an empty phone number",
            with(&|e| e["PhoneNumbers"][1]["FormattedNumber"] = json!("")),
            vec![
                bob,
                "PhoneNumbers[1].FormattedNumber must be a non-empty string",
            ],
        ),
        (
            "an email address without its type",
            with(&|e| {
                e["EmailAddresses"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("EmailType");
            }),
            vec![bob, "EmailAddresses[0].EmailType is required"],
        ),
        (
            "a collection that is not an array",
            with(&|e| e["Groups"] = json!({"GroupId": "x"})),
            vec![bob, "Groups must be an array"],
        ),
        (
            "a null collection",
            with(&|e| e["EmailAddresses"] = Value::Null),
            vec![bob, "EmailAddresses must be an array"],
        ),
        (
            "a collection entry that is not an object",
            with(&|e| e["PhoneNumbers"] = json!(["614-555-0100"])),
            vec![bob, "PhoneNumbers[0] must be an object"],
        ),
        (
            "ContactDetails that is not an object",
            json!({"ContactDetails": "0030000000000BoAAA"}),
            vec!["element 1: ContactDetails must be an object"],
        ),
        (
            "an element that is not an object",
            json!("0030000000000BoAAA"),
            vec!["element 1: the element must be a JSON object"],
        ),
    ]
}

#[tokio::test]
async fn each_strictness_rule_refuses_the_request_naming_element_and_key() {
    let sim = start().await;
    let cases = strictness_cases();
    for (rule, element, expected) in &cases {
        let message = refuse(&sim, "contactinfo", &json!([full(ADA), element])).await;
        for part in expected {
            assert!(message.contains(part), "{rule}: {message:?} lacks {part:?}");
        }
        assert!(
            !message.contains("element 0"),
            "{rule}: only the bad element is named: {message}"
        );
    }
    assert!(
        sim.members().is_empty(),
        "nothing of a refused request is stored"
    );
    assert_eq!(sim.history(ADA), None);
    let counters = sim.counters();
    assert_eq!(counters.bad_requests, cases.len() as u64);
    assert_eq!(counters.records_received, 2 * cases.len() as u64);
}

#[tokio::test]
async fn the_body_must_be_an_array_of_1_to_max_elements() {
    let sim = start_with(HlSimOptions {
        max_records_per_call: 3,
        ..HlSimOptions::default()
    })
    .await;
    let message = refuse(&sim, "contactinfo", &json!([])).await;
    assert!(message.contains("empty array"), "{message}");
    let four: Vec<Value> = [ADA, BOB, CY, "0030000000000DdAAA"].map(full).into();
    let message = refuse(&sim, "contactinfo", &json!(four)).await;
    assert!(
        message.contains("4 elements") && message.contains("at most 3"),
        "{message}"
    );
    let message = refuse(&sim, "contactinfo", &full(ADA)).await;
    assert!(message.contains("must be a JSON array"), "{message}");
    let message = refuse(&sim, "meeting", &gala()).await;
    assert!(message.contains("must be a JSON array"), "{message}");
    let not_json = answer(
        reqwest::Client::new()
            .post(format!("{}/contactinfo", sim.base_url()))
            .header("ApiKey", sim.api_key())
            .header("Content-Type", "application/json")
            .body("[{\"ContactDetails\":"),
    )
    .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert!(not_json.message().contains("not JSON"));
    assert!(sim.members().is_empty());
    assert_eq!(sim.counters().bad_requests, 5);
    accept(&sim, "contactinfo", &json!(four[..3])).await;
    assert_eq!(sim.members().len(), 3);
}

#[tokio::test]
async fn two_hundred_elements_by_default() {
    let sim = start().await;
    let ids: Vec<String> = (0..201).map(|i| format!("0030000000{i:05}AAAA")).collect();
    let elements: Vec<Value> = ids.iter().map(|id| full(id)).collect();
    let message = refuse(&sim, "contactinfo", &json!(elements)).await;
    assert!(message.contains("at most 200"), "{message}");
    accept(&sim, "contactinfo", &json!(elements[..200])).await;
    assert_eq!(sim.members().len(), 200);
}

#[tokio::test]
async fn one_bad_element_stores_nothing_of_its_request() {
    let sim = start().await;
    accept(&sim, "contactinfo", &json!([full(ADA)])).await;
    let before = sim.history(ADA).unwrap();

    let mut renamed = full(ADA);
    renamed["ContactDetails"]["Title"] = json!("Analyst");
    let mut bad = full(CY);
    bad["Addresses"][0]["CountryCode"] = json!("Ohio");
    let message = refuse(
        &sim,
        "contactinfo",
        &json!([renamed, full(BOB), bad, delete(ADA)]),
    )
    .await;
    assert!(
        message.starts_with(&format!(
            "element 2 (ContactId {CY}): Addresses[0].CountryCode"
        )),
        "{message}"
    );
    assert_eq!(
        sim.member(ADA),
        Some(full(ADA)),
        "element 0 was not applied"
    );
    assert_eq!(sim.member(BOB), None);
    assert!(!sim.is_deleted(ADA), "element 3 was not applied");
    assert_eq!(sim.history(ADA), Some(before));
    assert_eq!(sim.history(BOB), None);
}

#[tokio::test]
async fn refused_contact_ids_refuse_their_request_until_cleared() {
    let sim = start_with(HlSimOptions {
        faults: HlFaults {
            refused_contacts: BTreeSet::from([BOB.to_owned()]),
            ..HlFaults::default()
        },
        ..HlSimOptions::default()
    })
    .await;
    let batch = json!([full(ADA), full(BOB), full(CY)]);
    let message = refuse(&sim, "contactinfo", &batch).await;
    assert!(
        message.starts_with(&format!("element 1 (ContactId {BOB}): ")),
        "{message}"
    );
    assert!(
        message.contains(&format!("refused ContactId {BOB}")),
        "{message}"
    );
    assert!(sim.members().is_empty(), "the neighbours are not stored");
    // A delete for a refused ContactId is refused too.
    refuse(&sim, "contactinfo", &json!([delete(BOB)])).await;
    // Its neighbours alone go through, as a client that splits the request finds.
    accept(&sim, "contactinfo", &json!([full(ADA)])).await;
    accept(&sim, "contactinfo", &json!([full(CY)])).await;

    sim.refuse_contacts([CY]);
    let message = refuse(&sim, "contactinfo", &json!([full(CY)])).await;
    assert!(message.contains(CY), "{message}");
    sim.clear_refusals();
    accept(&sim, "contactinfo", &batch).await;
    assert_eq!(sim.members().len(), 3);
    assert_eq!(sim.counters().bad_requests, 3);
}

#[tokio::test]
async fn meetings_are_stored_replaced_and_deleted() {
    let sim = start().await;
    let summit = json!({"MeetingId": SUMMIT, "Title": "Summit"});
    accept(&sim, "meeting", &json!([gala(), summit])).await;
    assert_eq!(sim.meeting(GALA), Some(gala()));
    assert_eq!(
        sim.meeting(SUMMIT),
        Some(
            json!({"MeetingId": SUMMIT, "Title": "Summit", "Description": null,
                    "MeetingType": null, "BeginDate": null, "EndDate": null,
                    "IsDeleted": false})
        )
    );

    // Full-record replacement: the second push has no dates.
    let mut undated = gala();
    undated["BeginDate"] = Value::Null;
    undated.as_object_mut().unwrap().remove("EndDate");
    accept(&sim, "meeting", &json!([undated])).await;
    let stored = sim.meeting(GALA).unwrap();
    assert_eq!(
        (&stored["BeginDate"], &stored["EndDate"]),
        (&Value::Null, &Value::Null)
    );

    accept(
        &sim,
        "meeting",
        &json!([{"MeetingId": GALA, "IsDeleted": true}]),
    )
    .await;
    assert_eq!(sim.meeting(GALA), None);
    assert!(sim.is_meeting_deleted(GALA));
    assert_eq!(sim.meetings().keys().collect::<Vec<_>>(), [SUMMIT]);
    accept(&sim, "meeting", &json!([gala()])).await;
    assert!(!sim.is_meeting_deleted(GALA));
    assert_eq!(sim.counters().meeting_calls, 4);
}

#[tokio::test]
async fn meeting_elements_are_checked_strictly() {
    let sim = start().await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut element = json!({"MeetingId": SUMMIT, "Title": "Summit", "Description": null,
            "MeetingType": null, "BeginDate": "2026-09-14T13:00:00.000Z", "EndDate": null,
            "IsDeleted": false});
        edit(&mut element);
        element
    };
    let summit = "element 1 (MeetingId 7010000000000SuAAA): ";
    let mut cases = vec![
        (
            with(&|m| m["Location"] = json!("Hall")),
            "unknown key Location".to_owned(),
        ),
        (
            with(&|m| {
                m.as_object_mut().unwrap().remove("MeetingId");
            }),
            "element 1: MeetingId is required".to_owned(),
        ),
        (
            with(&|m| m["Title"] = json!(["Summit"])),
            "Title must be a string or null".to_owned(),
        ),
        (
            with(&|m| m["IsDeleted"] = json!("no")),
            "IsDeleted must be true or false".to_owned(),
        ),
        (
            json!({"MeetingId": SUMMIT, "IsDeleted": true, "Title": "Summit"}),
            "remove Title".to_owned(),
        ),
    ];
    for (field, bad) in [
        ("BeginDate", "2026-09-14T13:00:00Z"),
        ("BeginDate", "2026-09-14T13:00:00.12Z"),
        ("EndDate", "2026-09-14"),
        ("EndDate", "2026-09-14T13:00:00.000+00:00"),
        ("BeginDate", "2026-02-30T13:00:00.000Z"),
    ] {
        cases.push((
            with(&|m| m[field] = json!(bad)),
            format!("{field} must be null or a UTC date-time"),
        ));
    }
    for (element, expected) in &cases {
        let message = refuse(&sim, "meeting", &json!([gala(), element])).await;
        assert!(
            message.contains(expected.as_str()),
            "{message:?} lacks {expected:?}"
        );
        if !expected.starts_with("element") {
            assert!(message.starts_with(summit), "{message}");
        }
    }
    assert!(
        sim.meetings().is_empty(),
        "nothing of a refused request is stored"
    );
    assert_eq!(sim.counters().bad_requests, cases.len() as u64);
}

#[tokio::test]
async fn event_groups_naming_no_meeting_are_recorded() {
    let sim = start().await;
    // ADA's event group names GALA before it is pushed; BOB's comes after.
    accept(&sim, "contactinfo", &json!([full(ADA)])).await;
    accept(&sim, "meeting", &json!([gala()])).await;
    accept(&sim, "contactinfo", &json!([full(BOB)])).await;
    assert_eq!(
        sim.orphan_event_groups(),
        BTreeSet::from([(ADA.to_owned(), GALA.to_owned())])
    );
    assert!(
        sim.member(ADA).is_some(),
        "an orphan event group is still accepted"
    );

    // A deleted meeting is no longer held; other group types never name meetings.
    accept(
        &sim,
        "meeting",
        &json!([{"MeetingId": GALA, "IsDeleted": true}]),
    )
    .await;
    accept(&sim, "contactinfo", &json!([full(CY)])).await;
    assert!(
        sim.orphan_event_groups()
            .contains(&(CY.to_owned(), GALA.to_owned()))
    );
    assert_eq!(sim.orphan_event_groups().len(), 2);

    // A refused request records nothing.
    let mut bad = full(BOB);
    bad["Groups"][2]["GroupId"] = json!(SUMMIT);
    bad["Title"] = json!("top-level");
    refuse(&sim, "contactinfo", &json!([bad])).await;
    assert_eq!(sim.orphan_event_groups().len(), 2);

    // The event GroupType is an option.
    let custom = start_with(HlSimOptions {
        event_group_type: "Registration".to_owned(),
        ..HlSimOptions::default()
    })
    .await;
    let mut registrant = full(ADA);
    registrant["Groups"][2]["GroupType"] = json!("Registration");
    accept(&custom, "contactinfo", &json!([registrant])).await;
    assert_eq!(
        custom.orphan_event_groups(),
        BTreeSet::from([(ADA.to_owned(), GALA.to_owned())])
    );
}

#[tokio::test]
async fn the_same_record_again_is_not_a_change() {
    let sim = start().await;
    accept(&sim, "contactinfo", &json!([full(ADA)])).await;
    accept(&sim, "contactinfo", &json!([full(ADA)])).await;
    assert_eq!(
        sim.history(ADA),
        Some(PushHistory {
            pushes: 2,
            changes: 1,
            last_push_changed: false
        })
    );

    // Collections in another order, and null where the first push had left a key out, hold
    // the same record.
    let mut reordered = full(ADA);
    reordered["Groups"].as_array_mut().unwrap().reverse();
    reordered["PhoneNumbers"].as_array_mut().unwrap().reverse();
    accept(&sim, "contactinfo", &json!([reordered])).await;
    assert!(!sim.history(ADA).unwrap().last_push_changed);
    let mut without_line2 = full(ADA);
    without_line2["Addresses"][0]
        .as_object_mut()
        .unwrap()
        .remove("AddressLine2");
    accept(&sim, "contactinfo", &json!([without_line2])).await;
    assert!(!sim.history(ADA).unwrap().last_push_changed);

    let mut retitled = full(ADA);
    retitled["ContactDetails"]["Title"] = json!("Analyst");
    accept(&sim, "contactinfo", &json!([retitled])).await;
    assert_eq!(
        sim.history(ADA),
        Some(PushHistory {
            pushes: 5,
            changes: 2,
            last_push_changed: true
        })
    );

    // Deleting twice changes things once.
    accept(&sim, "contactinfo", &json!([delete(ADA)])).await;
    accept(&sim, "contactinfo", &json!([delete(ADA)])).await;
    assert_eq!(
        sim.history(ADA),
        Some(PushHistory {
            pushes: 7,
            changes: 3,
            last_push_changed: false
        })
    );
}

#[tokio::test]
async fn the_email_preference_feed_lists_member_changes_strictly_after_since() {
    let sim = start().await;
    let mut opted_out = full(ADA);
    opted_out["ContactDetails"]["DoNotEmail"] = json!(true);
    accept(&sim, "contactinfo", &json!([opted_out, full(BOB)])).await;
    assert_eq!(sim.email_opt_out(ADA), Some(true));
    assert_eq!(sim.email_opt_out(CY), None);
    let answer = prefs(&sim, Some("2000-01-01T00:00:00.000Z")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({"changes": []}),
        "pushes are not member changes"
    );

    let t1 = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
    let t2 = Utc.with_ymd_and_hms(2026, 11, 24, 11, 0, 0).unwrap();
    let t3 = t2 + chrono::Duration::microseconds(1_500);
    // Made out of order: the feed lists them by UpdatedOn.
    sim.set_email_opt_out_at(BOB, true, t2);
    sim.set_email_opt_out_at(ADA, false, t1);
    sim.set_email_opt_out_at(BOB, false, t3);
    sim.set_email_opt_out_at(CY, true, t1);
    // A member change shows in the stored record, as Higher Logic would show it.
    assert_eq!(sim.email_opt_out(ADA), Some(false));
    assert_eq!(
        sim.member(ADA).unwrap()["ContactDetails"]["DoNotEmail"],
        false
    );
    assert_eq!(sim.email_opt_out(BOB), Some(false));
    assert_eq!(sim.email_opt_out(CY), Some(true));
    assert_eq!(
        sim.member(CY),
        None,
        "a change for a non-member creates no member"
    );

    let answer = prefs(&sim, Some("2026-11-24T09:00:00Z")).await;
    assert_eq!(
        answer.json(),
        json!({"changes": [
            {"ContactId": ADA, "DoNotEmail": false, "UpdatedOn": "2026-11-24T10:00:00.000Z"},
            {"ContactId": CY, "DoNotEmail": true, "UpdatedOn": "2026-11-24T10:00:00.000Z"},
            {"ContactId": BOB, "DoNotEmail": true, "UpdatedOn": "2026-11-24T11:00:00.000Z"},
            {"ContactId": BOB, "DoNotEmail": false, "UpdatedOn": "2026-11-24T11:00:00.001Z"}
        ]})
    );
    // Strictly after: a change at `since` itself is not listed again; offsets are understood.
    let after_t1 = prefs(&sim, Some("2026-11-24T10:00:00.000Z")).await.json();
    assert_eq!(after_t1["changes"].as_array().unwrap().len(), 2);
    let after_t2 = prefs(&sim, Some("2026-11-24T06:00:00.000-05:00"))
        .await
        .json();
    assert_eq!(
        after_t2["changes"],
        json!([{"ContactId": BOB, "DoNotEmail": false, "UpdatedOn": "2026-11-24T11:00:00.001Z"}])
    );
    let none = prefs(&sim, Some("2026-11-24T11:00:00.001Z")).await.json();
    assert_eq!(none, json!({"changes": []}));

    // A later push overrides the member's choice in what Higher Logic holds, and is no change
    // in the feed.
    accept(&sim, "contactinfo", &json!([full(CY)])).await;
    assert_eq!(sim.email_opt_out(CY), Some(false));
    assert_eq!(sim.history(ADA).unwrap().pushes, 1);
    accept(&sim, "contactinfo", &json!([full(ADA)])).await;
    assert!(
        !sim.history(ADA).unwrap().last_push_changed,
        "the record now matches the member's change"
    );
    assert_eq!(
        prefs(&sim, Some("2026-11-24T09:00:00Z")).await.json()["changes"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    for since in [
        None,
        Some("yesterday"),
        Some("2026-11-24T10:00:00"),
        Some("2026-11-24"),
    ] {
        let answer = prefs(&sim, since).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{since:?}");
        assert!(answer.message().contains("since"));
    }
    let counters = sim.counters();
    assert_eq!(counters.emailpreferences_calls, 10);
    assert_eq!(counters.bad_requests, 4);
}

#[tokio::test]
async fn a_deleted_member_keeps_its_preference() {
    let sim = start().await;
    let mut opted_out = full(ADA);
    opted_out["ContactDetails"]["DoNotEmail"] = json!(true);
    accept(&sim, "contactinfo", &json!([opted_out])).await;
    accept(&sim, "contactinfo", &json!([delete(ADA)])).await;
    assert_eq!(sim.email_opt_out(ADA), Some(true));
    sim.set_email_opt_out(ADA, false);
    assert_eq!(sim.email_opt_out(ADA), Some(false));
    assert_eq!(sim.member(ADA), None);
    let feed = prefs(&sim, Some("2000-01-01T00:00:00.000Z")).await.json();
    assert_eq!(feed["changes"][0]["ContactId"], ADA);
    assert_eq!(feed["changes"][0]["DoNotEmail"], false);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let sim = start_with(HlSimOptions {
        max_calls_per_minute: 2,
        ..HlSimOptions::default()
    })
    .await;
    let body = json!([full(ADA)]);
    accept(&sim, "contactinfo", &body).await;
    accept(&sim, "meeting", &json!([gala()])).await;
    for endpoint in ["contactinfo", "meeting"] {
        let answer = post(&sim, endpoint, &body).await;
        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
        let retry_after = answer.retry_after.expect("Retry-After");
        assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
        assert!(answer.message().contains("Retry-After"));
    }
    let feed = prefs(&sim, Some("2026-01-01T00:00:00.000Z")).await;
    assert_eq!(feed.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sim.counters().throttled, 3);
    assert_eq!(sim.history(ADA).unwrap().pushes, 1);

    sim.set_max_calls_per_minute(0);
    for _ in 0..5 {
        accept(&sim, "contactinfo", &body).await;
    }
}

/// The advertised Retry-After is honest: waiting it out (on tokio's paused clock) gets in.
#[tokio::test(start_paused = true)]
async fn waiting_out_retry_after_gets_in() {
    let sim = start_with(HlSimOptions {
        max_calls_per_minute: 1,
        ..HlSimOptions::default()
    })
    .await;
    let body = json!([full(ADA)]);
    accept(&sim, "contactinfo", &body).await;
    tokio::time::advance(Duration::from_secs(20)).await;
    let answer = post(&sim, "contactinfo", &body).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after = answer.retry_after.expect("Retry-After");
    assert!(retry_after <= 40, "Retry-After {retry_after}");
    tokio::time::advance(Duration::from_secs(retry_after)).await;
    accept(&sim, "contactinfo", &body).await;
    assert_eq!(sim.counters().throttled, 1);
}

#[tokio::test]
async fn scripted_outages_and_throttling_then_recovery() {
    let sim = start_with(HlSimOptions {
        faults: HlFaults {
            fail_next_calls: 2,
            ..HlFaults::default()
        },
        ..HlSimOptions::default()
    })
    .await;
    let body = json!([full(ADA)]);
    for _ in 0..2 {
        let answer = post(&sim, "contactinfo", &body).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.message().contains("simulated"));
    }
    assert!(sim.members().is_empty(), "a 503 stores nothing");
    accept(&sim, "contactinfo", &body).await;

    sim.fail_next_calls(1);
    assert_eq!(
        post(&sim, "meeting", &json!([gala()])).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(sim.meetings().is_empty());

    sim.throttle_next_calls(1, 7);
    let throttled = post(&sim, "contactinfo", &body).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.retry_after, Some(7));
    accept(&sim, "meeting", &json!([gala()])).await;

    let counters = sim.counters();
    assert_eq!((counters.faults_served, counters.throttled), (3, 1));
    assert_eq!(
        counters.records_received, 2,
        "only admitted bodies are read"
    );
    assert_eq!(sim.history(ADA).unwrap().pushes, 1);
    sim.reset_counters();
    assert_eq!(sim.counters().total_calls(), 0);
}

#[tokio::test]
async fn random_faults_are_reproducible_from_the_seed() {
    async fn statuses(seed: u64) -> Vec<StatusCode> {
        let sim = start_with(HlSimOptions {
            faults: HlFaults {
                seed,
                error_rate: 0.5,
                ..HlFaults::default()
            },
            ..HlSimOptions::default()
        })
        .await;
        let mut seen = Vec::new();
        for _ in 0..20 {
            seen.push(post(&sim, "contactinfo", &json!([full(ADA)])).await.status);
        }
        sim.set_error_rate(0.0);
        accept(&sim, "contactinfo", &json!([full(ADA)])).await;
        seen
    }
    let first = statuses(42).await;
    assert_eq!(first, statuses(42).await);
    assert!(first.iter().any(reqwest::StatusCode::is_server_error));
    assert!(first.contains(&StatusCode::OK));
}

#[tokio::test]
async fn bad_options_are_refused_at_start() {
    for opts in [
        HlSimOptions {
            api_key: String::new(),
            ..HlSimOptions::default()
        },
        HlSimOptions {
            max_records_per_call: 0,
            ..HlSimOptions::default()
        },
        HlSimOptions {
            event_group_type: " ".to_owned(),
            ..HlSimOptions::default()
        },
        HlSimOptions {
            faults: HlFaults {
                error_rate: 1.5,
                ..HlFaults::default()
            },
            ..HlSimOptions::default()
        },
    ] {
        let error = HigherLogicSim::start(opts).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("invalid Higher Logic simulator option")
        );
    }
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let sim = start().await;
    let url = sim.base_url();
    sim.shutdown().await;
    let attempt = reqwest::Client::new()
        .post(format!("{url}/contactinfo"))
        .header("ApiKey", DEFAULT_API_KEY)
        .json(&json!([full(ADA)]))
        .send()
        .await;
    assert!(attempt.is_err());
}
