//! Periodic Refresh → SQS → Member Refresh, end to end: moto server, the simulators, the real SDKs
//! and real HTTP (SPEC.md §1, §2, §5; issue 4's list).

use std::collections::BTreeMap;
use std::time::Duration;

use hlsync_cli::commands;
use hlsync_cli::commands::demo::edit_contacts;
use hlsync_cli::local::{LocalOptions, LocalSystem};
use hlsync_cli::output::Progress;
use hlsync_core::mapping::{ContactInput, map_contact};
use hlsync_core::schema::ContactSchema;
use hlsync_higher_logic::wire::contact_info;
use hlsync_salesforce::ClientOptions;
use hlsync_sync::periodic::FEED_CONTACTS;
use hlsync_sync::ports::{Crm as _, StateStore as _};
use hlsync_sync::runtime::Runtime;
use serde_json::{Map, Value, json};

use crate::common::{is_live, live_contacts, start, sync, system};

fn id_of(c: &Map<String, Value>) -> String {
    c["Id"].as_str().expect("Id").to_string()
}

/// The mapping of every live Contact as Salesforce has it now, in the wire form Higher Logic
/// stores, and whether it is a member (an inactive Contact never pushed is not in Higher Logic).
async fn expected_members(sys: &LocalSystem, rt: &Runtime) -> BTreeMap<String, (bool, Value)> {
    let describe = rt.crm.describe_contact(true).await.expect("describe");
    let cfg = sys.config();
    let schema =
        ContactSchema::build(&describe.fields, &describe.record_types, &cfg).expect("schema");
    let accounts: BTreeMap<String, String> = sys
        .salesforce
        .all("Account")
        .into_iter()
        .filter_map(|a| {
            Some((
                a.get("Id")?.as_str()?.to_string(),
                a.get("Name")?.as_str()?.to_string(),
            ))
        })
        .collect();
    sys.salesforce
        .all("Contact")
        .into_iter()
        .filter(is_live)
        .map(|c| {
            let account_name = c
                .get("AccountId")
                .and_then(Value::as_str)
                .and_then(|a| accounts.get(a))
                .map(String::as_str);
            let member = map_contact(
                &ContactInput {
                    fields: &c,
                    account_name,
                    registrations: &[],
                },
                &schema,
                &cfg,
            )
            .expect("maps");
            (
                id_of(&c),
                (
                    member.is_member,
                    serde_json::to_value(contact_info(&member)).expect("serialises"),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_sync_makes_higher_logic_equal_the_mapping_of_every_contact() {
    let sys = system(300).await;
    let rt = sys.runtime();
    let report = sync(&rt).await;
    assert!(report.periodic.completed());
    assert_eq!(report.member_refresh.failed_deliveries, 0);

    let expected = expected_members(&sys, &rt).await;
    let actual = sys.higher_logic.members();
    let members = expected.values().filter(|(member, _)| *member).count();
    assert!(
        members > 0 && members < expected.len(),
        "some Contacts are inactive"
    );
    assert_eq!(actual.len(), members, "one member per active live Contact");
    for (key, (member, want)) in &expected {
        if *member {
            assert_eq!(actual.get(key), Some(want), "member {key}");
        } else {
            assert_eq!(
                actual.get(key),
                None,
                "an inactive Contact never pushed: {key}"
            );
        }
    }
    // Batch reads: at most a describe, one Contact read and one Account read per batch (how
    // many batches the drain's window makes depends on timing), plus the status call and the
    // query pages of the Periodic Refresh.
    let batches = report.member_refresh.batches;
    let sf = report.periodic.salesforce_calls + report.member_refresh.salesforce_calls;
    assert!(
        sf <= 4 + 3 * batches,
        "{sf} Salesforce calls for 300 Contacts in {batches} batches"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_sync_carries_every_kind_of_change_and_nothing_else() {
    let sys = system(200).await;
    let rt = sys.runtime();
    sync(&rt).await;
    let before = sys.higher_logic.counters();

    let edits = edit_contacts(&sys);
    sys.salesforce.advance(Duration::from_mins(2));
    let report = sync(&rt).await;
    let touched =
        edits.renamed + edits.deactivated + edits.deleted + edits.opted_out + edits.regrouped;
    assert_eq!(report.member_refresh.pushed as usize, touched);
    assert_eq!(
        report.member_refresh.deactivated as usize,
        edits.deactivated
    );
    assert_eq!(report.member_refresh.deleted as usize, edits.deleted);
    let after = sys.higher_logic.counters();
    assert_eq!(
        after.contactinfo_calls - before.contactinfo_calls,
        1,
        "one push of {touched} records"
    );
    assert_eq!(
        after.records_received - before.records_received,
        touched as u64,
        "nothing else pushed"
    );

    // Higher Logic equals the mapping again, deleted Contacts deleted.
    let expected = expected_members(&sys, &rt).await;
    let members = sys.higher_logic.members();
    for (key, (member, want)) in &expected {
        match members.get(key) {
            Some(got) => assert_eq!(got, want, "member {key}"),
            None => assert!(!member, "an active Contact missing: {key}"),
        }
    }
    let deleted = sys
        .salesforce
        .all("Contact")
        .into_iter()
        .filter(|c| c.get("IsDeleted") == Some(&json!(true)))
        .filter(|c| sys.higher_logic.is_deleted(&id_of(c)))
        .count();
    assert!(deleted >= edits.deleted);
    let inactive: Vec<&Value> = members
        .values()
        .filter(|m| m["ContactDetails"]["IsMember"] == json!(false))
        .collect();
    assert!(inactive.len() >= edits.deactivated);
    for m in inactive {
        assert_eq!(m["Groups"], json!([]), "an inactive member holds no group");
    }
    let opted_out = members
        .values()
        .filter(|m| m["ContactDetails"]["DoNotEmail"] == json!(true))
        .count();
    assert!(opted_out >= edits.opted_out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sync_without_changes_makes_no_higher_logic_call() {
    let sys = system(150).await;
    let rt = sys.runtime();
    sync(&rt).await;
    sys.salesforce.advance(Duration::from_mins(2));
    let before = sys.higher_logic.counters();
    let sf_before = sys.salesforce.counters().api_calls;
    let report = sync(&rt).await;
    assert_eq!(report.member_refresh.pushed, 0);
    let after = sys.higher_logic.counters();
    // Only the read of members' own email opt-out changes (the write-back), never a push.
    assert_eq!(
        after.total_calls() - before.total_calls(),
        after.emailpreferences_calls - before.emailpreferences_calls,
        "no push to Higher Logic"
    );
    assert_eq!(after.records_received, before.records_received);
    let sf = sys.salesforce.counters().api_calls - sf_before;
    assert!(
        sf <= 3,
        "a quiet run costs the status call and the query: {sf} calls"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_commit_within_the_lookback_is_not_lost() {
    let sys = system(50).await;
    let rt = sys.runtime();
    sync(&rt).await;
    let wm = rt
        .state
        .watermark(FEED_CONTACTS)
        .await
        .expect("watermark")
        .at
        .expect("set");
    // A transaction that started before the watermark commits now, with its old timestamp.
    let late_at = wm - chrono::Duration::minutes(4);
    let fields = json!({"FirstName": "Late", "LastName": "Commit", "Active__c": true});
    let id = sys.salesforce.insert_with_modstamp(
        "Contact",
        fields.as_object().cloned().expect("object"),
        late_at,
    );
    sys.salesforce.advance(Duration::from_mins(2));
    sync(&rt).await;
    let member = sys
        .higher_logic
        .member(&id)
        .expect("the late commit arrived");
    assert_eq!(member["ContactDetails"]["LastName"], "Commit");
}

#[tokio::test(flavor = "multi_thread")]
async fn contacts_sharing_one_timestamp_across_page_edges_are_not_lost() {
    let sys = system(0).await;
    // The initial load of the empty org: the Contact feeds begin.
    sync(&sys.runtime()).await;
    let at = sys.salesforce.now() + chrono::Duration::seconds(30);
    sys.salesforce.advance(Duration::from_mins(1));
    for n in 0..500 {
        let fields =
            json!({"FirstName": format!("Same{n}"), "LastName": "Stamp", "Active__c": true});
        sys.salesforce.insert_with_modstamp(
            "Contact",
            fields.as_object().cloned().expect("object"),
            at,
        );
    }
    sys.salesforce.advance(Duration::from_mins(2));
    // Pages of 200: the shared timestamp spans two page edges.
    let rt = sys.runtime_with(ClientOptions {
        query_batch_size: Some(200),
        ..ClientOptions::default()
    });
    let report = sync(&rt).await;
    assert_eq!(report.periodic.changed(), 500);
    assert_eq!(report.member_refresh.pushed, 500);
    assert_eq!(sys.higher_logic.members().len(), 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_periodic_refreshes_at_once_lose_nothing_and_keep_the_watermark_consistent() {
    let sys = system(300).await;
    let (a, b) = (sys.runtime(), sys.runtime());
    let opts = |run: &str| hlsync_sync::periodic::PeriodicOptions {
        run_id: run.into(),
        deadline: hlsync_sync::Deadline::none(),
        lease_ttl: Duration::from_mins(1),
    };
    let (oa, ob) = (opts("a"), opts("b"));
    let (ra, rb) = tokio::join!(a.periodic_refresh(&oa), b.periodic_refresh(&ob));
    let (ra, rb) = (ra.expect("a runs"), rb.expect("b runs"));
    // One loaded every live Contact, the other found the lease taken (or ran after it, finding
    // nothing new).
    let live = live_contacts(&sys);
    assert_eq!(ra.sent() + rb.sent(), live, "{ra:?} {rb:?}");
    let wm = a.state.watermark(FEED_CONTACTS).await.expect("watermark");
    assert!(wm.at.is_some() && wm.checkpoint.is_none());
    assert!(wm.at.expect("set") <= sys.salesforce.now() - chrono::Duration::seconds(60));
    let drained = hlsync_cli::drain::drain(&a, 500, &Progress::hidden())
        .await
        .expect("drain");
    assert_eq!(drained.contacts, live);
    let members = expected_members(&sys, &a)
        .await
        .into_values()
        .filter(|(member, _)| *member)
        .count();
    assert_eq!(sys.higher_logic.members().len(), members);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_function_resumes_as_soon_as_the_rejected_secret_is_replaced() {
    let sys = start(LocalOptions {
        contacts: 20,
        auth: "password".into(),
        wrong_password: true,
        ..LocalOptions::default()
    })
    .await;
    // One runtime for the whole test: a warm Lambda, with the secret cached.
    let rt = sys.runtime();
    for _ in 0..2 {
        let err = commands::sync(&rt, 500, &Progress::hidden())
            .await
            .expect_err("rejected");
        assert!(err.to_string().contains("hlsync/credentials"), "{err}");
    }
    assert_eq!(sys.salesforce.counters().failed_logins, 1);
    sys.replace_in_secret("not-the-password", hlsync_sim::salesforce::DEFAULT_PASSWORD)
        .await
        .expect("rotated");
    // Well inside the secret cache's lifetime: the rejection makes hlsync look at the version.
    let report = sync(&rt).await;
    assert!(report.member_refresh.pushed > 0);
    assert_eq!(sys.salesforce.counters().failed_logins, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_cold_starts_spend_one_failed_login_and_each_service_keeps_its_own_rejection() {
    let sys = start(LocalOptions {
        contacts: 20,
        auth: "password".into(),
        wrong_password: true,
        wrong_api_key: true,
        ..LocalOptions::default()
    })
    .await;
    // Four functions start at once with a bad password: one logs in, the others wait for its
    // outcome and stop without a login of their own.
    let runtimes: Vec<Runtime> = (0..4).map(|_| sys.runtime()).collect();
    let runs = runtimes.iter().enumerate().map(|(i, rt)| {
        let opts = hlsync_sync::periodic::PeriodicOptions {
            run_id: format!("cold-{i}"),
            deadline: hlsync_sync::Deadline::none(),
            lease_ttl: Duration::from_mins(1),
        };
        async move { rt.periodic_refresh(&opts).await }
    });
    for result in futures::future::join_all(runs).await {
        // One holds the run lease and is rejected; the others find the lease taken or, when
        // they get it later, the rejection.
        if let Err(e) = result {
            assert!(e.to_string().contains("hlsync/credentials"), "{e}");
        }
    }
    assert_eq!(sys.salesforce.counters().failed_logins, 1);
    // More cold starts, and a drain: still that one failed login.
    for rt in [sys.runtime(), sys.runtime()] {
        assert!(commands::sync(&rt, 500, &Progress::hidden()).await.is_err());
    }
    assert_eq!(sys.salesforce.counters().failed_logins, 1);

    // Only the Higher Logic key is rotated: the rejected Salesforce password is not tried again.
    sys.replace_in_secret("not-the-api-key", sys.higher_logic.api_key())
        .await
        .expect("rotated");
    let err = commands::sync(&sys.runtime(), 500, &Progress::hidden())
        .await
        .expect_err("the password is still the rejected one");
    assert!(err.to_string().contains("Salesforce"), "{err}");
    assert_eq!(sys.salesforce.counters().failed_logins, 1);

    // The password too: everything goes through, with one successful login per function.
    sys.replace_in_secret("not-the-password", hlsync_sim::salesforce::DEFAULT_PASSWORD)
        .await
        .expect("rotated");
    let report = sync(&sys.runtime()).await;
    assert!(report.member_refresh.pushed > 0);
    assert_eq!(sys.salesforce.counters().failed_logins, 1);
    assert_eq!(
        sys.higher_logic.counters().auth_rejected,
        0,
        "the bad key was never used"
    );
}
