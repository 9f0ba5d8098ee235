//! The whole domain path as the sync uses it: config text → describe JSON → schema →
//! a queried Contact and its registrations → the member record.

use hlsync_core::{
    CampaignMembership, Config, ContactInput, ContactSchema, FieldInfo, RecordTypeInfo, Window,
    map_contact, parse_limit_info,
};
use serde_json::{Value, json};

fn describe() -> Value {
    json!({
        "name": "Contact",
        "fields": [
            {"name": "Id", "label": "Contact ID", "type": "id", "calculated": false},
            {"name": "Active__c", "label": "Active", "type": "boolean", "calculated": false},
            {"name": "HL_Member_Type__c", "label": "Member Type", "type": "picklist", "calculated": false},
            {"name": "HL_Interests__c", "label": "Interests", "type": "multipicklist", "calculated": false},
            {"name": "HL_Staff__c", "label": "Staff", "type": "boolean", "calculated": false},
            {"name": "HL_Tier__c", "label": "Tier", "type": "string", "calculated": true},
            {"name": "HL_Chapter__c", "label": "Chapter", "type": "picklist", "calculated": false}
        ],
        "recordTypeInfos": [
            {"recordTypeId": "012000000000000AAA", "name": "Master", "developerName": "Master",
             "active": true, "available": true, "master": true},
            {"recordTypeId": "0125g000000AbCdAAK", "name": "Partner Contact", "developerName": "Partner",
             "active": true, "available": true, "master": false}
        ]
    })
}

fn schema(config: &Config) -> ContactSchema {
    let d = describe();
    let fields: Vec<FieldInfo> = serde_json::from_value(d["fields"].clone()).unwrap();
    let rts: Vec<RecordTypeInfo> = serde_json::from_value(d["recordTypeInfos"].clone()).unwrap();
    ContactSchema::build(&fields, &rts, config).unwrap()
}

#[test]
fn queried_contact_becomes_the_documented_member() {
    let config = Config::example();
    let schema = schema(&config);
    assert_eq!(schema.formula_fields().len(), 1);
    assert!(config.events.enabled);

    let page: Value = json!({
        "totalSize": 1, "done": true,
        "records": [{
            "attributes": {"type": "Contact", "url": "/services/data/v62.0/sobjects/Contact/0035g00000ABCdeAAA"},
            "Id": "0035g00000ABCde", "FirstName": "Grace", "LastName": "Hopper",
            "Email": "grace@example.org", "Title": "Rear Admiral", "Phone": null, "MobilePhone": "",
            "MailingStreet": "1 Navy Way", "MailingCity": "Arlington", "MailingState": "VA",
            "MailingPostalCode": "22201", "MailingCountry": "USA",
            "HasOptedOutOfEmail": true, "IsDeleted": false,
            "SystemModstamp": "2026-11-24T10:00:00.000+0000",
            "AccountId": "0015g00000XyZab", "RecordTypeId": "0125g000000AbCdAAK",
            "Active__c": true, "HL_Member_Type__c": "Gold", "HL_Interests__c": "Navy;COBOL",
            "HL_Staff__c": false, "HL_Tier__c": null, "HL_Chapter__c": "Virginia"
        }]
    });
    let record = page["records"][0].as_object().unwrap();
    let registrations = [CampaignMembership {
        campaign_id: "7015g00000EvTaA".parse().unwrap(),
        campaign_name: Some("Annual Conference".into()),
        status: Some("Registered".into()),
    }];
    let member = map_contact(
        &ContactInput {
            fields: record,
            account_name: Some("US Navy"),
            registrations: &registrations,
        },
        &schema,
        &config,
    )
    .unwrap();

    assert_eq!(member.contact_id.to_15(), "0035g00000ABCde");
    assert_eq!(member.contact_id.as_str().len(), 18);
    assert_eq!(member.organization_name.as_deref(), Some("US Navy"));
    assert!(member.is_member && member.do_not_email && !member.is_deleted);
    let groups: Vec<(&str, &str, &str, &str)> = member
        .groups
        .iter()
        .map(|g| {
            (
                g.group_type.as_str(),
                g.key.as_str(),
                g.name.as_str(),
                g.role.as_str(),
            )
        })
        .collect();
    let event_id = registrations[0].campaign_id.to_string();
    assert_eq!(
        groups,
        [
            ("Chapter", "HL_Chapter__c:Virginia", "Virginia", ""),
            (
                "Event",
                event_id.as_str(),
                "Annual Conference",
                "Registered"
            ),
            ("Membership", "HL_Interests__c:COBOL", "COBOL", ""),
            ("Membership", "HL_Interests__c:Navy", "Navy", ""),
            ("Membership", "HL_Member_Type__c:Gold", "Gold", ""),
            ("Membership", "RecordType:Partner", "Partner Contact", ""),
        ]
    );
    assert_eq!(member.addresses[0].country_code.as_deref(), Some("US"));
    assert!(member.phones.is_empty(), "Phone null, MobilePhone empty");

    // The same Contact read again after an unrelated edit is not a change.
    let mut touched = record.clone();
    touched.insert(
        "SystemModstamp".into(),
        json!("2026-11-24T11:00:00.000+0000"),
    );
    let again = map_contact(
        &ContactInput {
            fields: &touched,
            account_name: Some("US Navy"),
            registrations: &registrations,
        },
        &schema,
        &config,
    )
    .unwrap();
    assert_eq!(again.content_hash(), member.content_hash());
}

#[test]
fn refresh_reads_exactly_the_fields_it_maps() {
    let config = Config::example();
    let fields = schema(&config).contact_fields();
    for f in [
        "Id",
        "AccountId",
        "RecordTypeId",
        "Active__c",
        "HL_Chapter__c",
        "HL_Tier__c",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
    }
}

#[test]
fn window_and_allotment_from_response_headers() {
    let config = Config::example();
    let sf_now = chrono::DateTime::parse_from_rfc2822("Tue, 24 Nov 2026 10:00:00 GMT")
        .unwrap()
        .to_utc();
    let w = Window::next(
        None,
        sf_now,
        config.salesforce.lookback,
        config.salesforce.settle,
    )
    .unwrap();
    let soql = format!(
        "SELECT Id FROM Contact WHERE {} ORDER BY {f}, Id",
        w.soql_condition(&config.salesforce.cursor_field),
        f = config.salesforce.cursor_field
    );
    assert!(
        soql.contains("SystemModstamp > 1970-01-01T00:00:00Z"),
        "{soql}"
    );
    assert!(
        soql.contains("SystemModstamp <= 2026-11-24T09:59:00Z"),
        "{soql}"
    );

    let usage = parse_limit_info("api-usage=49990/100000; api-bursts=0/1000").unwrap();
    // 49,990 used of a 50,000 ceiling: 9 more calls stay below it, 10 would reach it.
    assert!(hlsync_core::allotment::allows(usage, &config.salesforce, 9));
    assert!(!hlsync_core::allotment::allows(
        usage,
        &config.salesforce,
        10
    ));
}
