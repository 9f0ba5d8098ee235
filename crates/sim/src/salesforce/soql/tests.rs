//! Behaviour tests of the SOQL engine: filtering, ordering, paging, projection.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::salesforce::ids::make_id;

fn rows(values: Vec<Value>) -> Vec<Map<String, Value>> {
    values
        .into_iter()
        .map(|v| match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        })
        .collect()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 19, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The `Name` (or, failing that, `Id`) of each row the query returns, in order.
fn run(soql: &str, data: &[Map<String, Value>]) -> Vec<String> {
    let query = parse(soql).unwrap_or_else(|e| panic!("{soql}: {e}"));
    let out = query
        .execute_at(data.iter().collect(), now())
        .unwrap_or_else(|e| panic!("{soql}: {e}"));
    out.iter()
        .map(|r| {
            let v = r
                .get("Name")
                .or_else(|| r.get("Id"))
                .cloned()
                .unwrap_or(Value::Null);
            v.as_str().map_or_else(|| v.to_string(), str::to_string)
        })
        .collect()
}

fn people() -> Vec<Map<String, Value>> {
    rows(vec![
        json!({"Id": make_id("003", "5E", 1), "Name": "Ada Lovelace", "Age": 36, "Active": true,
               "SystemModstamp": "2026-11-24T10:00:00.000+0000", "Birthdate": "1815-12-10",
               "Email": "ada@example.org", "Account": {"Name": "Analytical"}}),
        json!({"Id": make_id("003", "5E", 2), "Name": "alan turing", "Age": 41, "Active": false,
               "SystemModstamp": "2026-11-24T09:00:00.000+0000", "Birthdate": "1912-06-23",
               "Email": null, "Account": null}),
        json!({"Id": make_id("003", "5E", 3), "Name": "Grace_Hopper", "Age": 85.5, "Active": true,
               "SystemModstamp": "2026-11-24T11:30:00.000+0000", "Birthdate": "2026-11-24",
               "Email": "grace@example.org", "Account": {"Name": "navy"}}),
        json!({"Id": make_id("003", "5E", 4), "Name": "O'Brien", "Active": true,
               "SystemModstamp": "2026-11-23T10:00:00.000+0000", "Birthdate": "2026-11-20"}),
    ])
}

#[test]
fn equality_on_text_is_case_insensitive() {
    let data = people();
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Name = 'ALAN TURING'", &data),
        ["alan turing"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE name = 'o\\'brien'", &data),
        ["O'Brien"]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Account.Name = 'NAVY'",
            &data
        ),
        ["Grace_Hopper"]
    );
}

#[test]
fn like_wildcards_and_escapes() {
    let data = people();
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Name LIKE 'a%'", &data),
        ["Ada Lovelace", "alan turing"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Name LIKE '%LOVE%'", &data),
        ["Ada Lovelace"]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Name LIKE '_lan turing'",
            &data
        ),
        ["alan turing"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Name LIKE 'a%g'", &data),
        ["alan turing"]
    );
    // `_` matches any one character; `\_` only an underscore.
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Name LIKE 'Grace_Hopper'",
            &data
        ),
        ["Grace_Hopper"]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Name LIKE 'Ada\\_Lovelace'",
            &data
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Name LIKE 'Grace\\_%'",
            &data
        ),
        ["Grace_Hopper"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Email LIKE '%'", &data),
        ["Ada Lovelace", "Grace_Hopper"]
    );
}

#[test]
fn numbers_booleans_and_nulls() {
    let data = people();
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Age > 40", &data),
        ["alan turing", "Grace_Hopper"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Age = 85.5", &data),
        ["Grace_Hopper"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Active = FALSE", &data),
        ["alan turing"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Email = null", &data),
        ["alan turing", "O'Brien"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Email != null", &data),
        ["Ada Lovelace", "Grace_Hopper"]
    );
    // Two-valued logic: a null is "not equal" to a value, and in no order with it.
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Email != 'ada@example.org'",
            &data
        ),
        ["alan turing", "Grace_Hopper", "O'Brien"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Age < 100", &data).len(),
        3
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Age > null", &data).len(),
        0
    );
    // A literal of another type matches nothing rather than comparing text with numbers.
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Age = '36'", &data).len(),
        0
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Account.Name = null", &data),
        ["alan turing", "O'Brien"]
    );
}

#[test]
fn logic_and_precedence_by_parentheses() {
    let data = people();
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Active = true AND (Age > 80 OR Name LIKE 'o%')",
            &data
        ),
        ["Grace_Hopper", "O'Brien"]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE (Active = true AND Age > 80) OR Name LIKE 'a%'",
            &data
        ),
        ["Ada Lovelace", "alan turing", "Grace_Hopper"]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE NOT (Active = true OR Age > 40)",
            &data
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE NOT Active = true", &data),
        ["alan turing"]
    );
    let e = parse("SELECT Name FROM Contact WHERE Active = true OR Age > 80 AND Name = 'x'")
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
    assert!(e.contains("unexpected token: 'AND'"), "{e}");
}

#[test]
fn datetimes_compare_as_instants_across_formats() {
    let data = people();
    for literal in [
        "2026-11-24T10:00:00Z",
        "2026-11-24T10:00:00.000Z",
        "2026-11-24T11:00:00+01:00",
        "2026-11-24T05:00:00-05:00",
    ] {
        assert_eq!(
            run(
                &format!("SELECT Name FROM Contact WHERE SystemModstamp = {literal}"),
                &data
            ),
            ["Ada Lovelace"],
            "{literal}"
        );
        assert_eq!(
            run(
                &format!("SELECT Name FROM Contact WHERE SystemModstamp > {literal}"),
                &data
            ),
            ["Grace_Hopper"],
            "{literal}"
        );
        assert_eq!(
            run(
                &format!("SELECT Name FROM Contact WHERE SystemModstamp <= {literal}"),
                &data
            ),
            ["Ada Lovelace", "alan turing", "O'Brien"],
            "{literal}"
        );
    }
    // A date literal against a datetime field is a type mismatch: no match.
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE SystemModstamp > 2026-01-01",
            &data
        )
        .len(),
        0
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Birthdate < 1900-01-01",
            &data
        ),
        ["Ada Lovelace"]
    );
}

#[test]
fn window_query_as_hlsync_writes_it() {
    let data = rows(
        (0..6u64)
            .map(|i| {
                json!({
                    "Id": make_id("003", "5E", 10 - i),
                    "SystemModstamp": format!("2026-11-24T10:00:0{}.000+0000", i / 2),
                    "IsDeleted": i % 3 == 0,
                })
            })
            .collect(),
    );
    // Rows (stamp second, Id sequence): (0,10) (0,9) (1,8) (1,7) (2,6) (2,5); 10 and 7 deleted.
    let resume_id = make_id("003", "5E", 6);
    let soql = format!(
        "SELECT Id, SystemModstamp, IsDeleted FROM Contact WHERE (SystemModstamp > 2026-11-24T09:59:59Z \
         AND SystemModstamp <= 2026-11-24T10:00:02Z) AND (SystemModstamp > 2026-11-24T10:00:01Z OR \
         (SystemModstamp = 2026-11-24T10:00:01Z AND Id > '{resume_id}')) ORDER BY SystemModstamp ASC, Id ASC"
    );
    // Resuming after (10:00:01, Id 6): the rest of second 1 by Id, then second 2 by Id.
    let out = run(&soql, &data);
    let expected: Vec<String> = [7u64, 8, 5, 6]
        .iter()
        .map(|seq| make_id("003", "5E", *seq))
        .collect();
    assert_eq!(out, expected);
    let deleted = run(
        &format!(
            "{} AND (IsDeleted = true)",
            soql.split(" ORDER BY").next().unwrap_or_default()
        ),
        &data,
    );
    assert_eq!(deleted, [make_id("003", "5E", 7)]);
}

#[test]
fn date_literals_are_ranges_of_days() {
    let data = people();
    // now() is 2026-11-24T19:00Z.
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE SystemModstamp = TODAY",
            &data
        )
        .len(),
        3
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE SystemModstamp = YESTERDAY",
            &data
        ),
        ["O'Brien"]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE SystemModstamp < TODAY",
            &data
        ),
        ["O'Brien"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Birthdate = TODAY", &data),
        ["Grace_Hopper"]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Birthdate = LAST_N_DAYS:4",
            &data
        ),
        ["Grace_Hopper", "O'Brien"]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Birthdate = LAST_N_DAYS:3",
            &data
        ),
        ["Grace_Hopper"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Birthdate > TODAY", &data).len(),
        0
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Birthdate >= TODAY", &data),
        ["Grace_Hopper"]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Birthdate = NEXT_N_DAYS:5",
            &data
        )
        .len(),
        0
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Birthdate IN (TODAY, 1815-12-10)",
            &data
        ),
        ["Ada Lovelace", "Grace_Hopper"]
    );
}

#[test]
fn ids_compare_case_safely_in_15_and_18_characters() {
    let data = people();
    let id18 = make_id("003", "5E", 2);
    let id15 = &id18[..15];
    assert_eq!(
        run(
            &format!("SELECT Name FROM Contact WHERE Id = '{id15}'"),
            &data
        ),
        ["alan turing"]
    );
    assert_eq!(
        run(
            &format!("SELECT Name FROM Contact WHERE Id = '{id18}'"),
            &data
        ),
        ["alan turing"]
    );
    // The suffix is case-insensitive, the first 15 characters are not.
    let lower_suffix = format!("{id15}{}", id18[15..].to_lowercase());
    assert_eq!(
        run(
            &format!("SELECT Name FROM Contact WHERE Id = '{lower_suffix}'"),
            &data
        ),
        ["alan turing"]
    );
    let other_case = format!("{}{}", id18[..15].to_lowercase(), &id18[15..]);
    if other_case[..15] != id18[..15] {
        assert_eq!(
            run(
                &format!(
                    "SELECT Name FROM Contact WHERE Id = '{}'",
                    &other_case[..15]
                ),
                &data
            )
            .len(),
            0
        );
    }
    assert_eq!(
        run(
            &format!(
                "SELECT Name FROM Contact WHERE Id IN ('{id15}', '{}')",
                make_id("003", "5E", 3)
            ),
            &data
        ),
        ["alan turing", "Grace_Hopper"]
    );
    assert_eq!(
        run(
            &format!("SELECT Name FROM Contact WHERE Id NOT IN ('{id15}')"),
            &data
        ),
        ["Ada Lovelace", "Grace_Hopper", "O'Brien"]
    );
}

#[test]
fn in_list_of_2000_ids_uses_a_set() {
    let data: Vec<Map<String, Value>> = (0..5000u64)
        .map(|i| {
            let mut m = Map::new();
            m.insert("Id".into(), json!(make_id("003", "5E", i)));
            m
        })
        .collect();
    let wanted: Vec<String> = (0..2000u64)
        .map(|i| {
            let id = make_id("003", "5E", i * 2);
            // Half of them in the 15-character form.
            if i % 2 == 0 { id[..15].to_string() } else { id }
        })
        .collect();
    let list = wanted
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let out = run(
        &format!("SELECT Id FROM Contact WHERE Id IN ({list})"),
        &data,
    );
    assert_eq!(out.len(), 2000);
    assert!(
        out.iter()
            .zip(&wanted)
            .all(|(got, want)| got.starts_with(want.as_str()))
    );
}

#[test]
fn in_and_not_in_with_text_numbers_and_null() {
    let data = people();
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Name IN ('ADA LOVELACE', 'nobody')",
            &data
        ),
        ["Ada Lovelace"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Age IN (36, 41.0)", &data),
        ["Ada Lovelace", "alan turing"]
    );
    assert_eq!(
        run("SELECT Name FROM Contact WHERE Email IN (null)", &data),
        ["alan turing", "O'Brien"]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact WHERE Email NOT IN ('ada@example.org')",
            &data
        ),
        ["alan turing", "Grace_Hopper", "O'Brien"]
    );
}

#[test]
fn order_by_with_nulls_ties_and_directions() {
    let data = rows(vec![
        json!({"Id": "a", "Name": "b1", "K": 2, "T": "beta"}),
        json!({"Id": "b", "Name": "n1", "K": null, "T": "Alpha"}),
        json!({"Id": "c", "Name": "a1", "K": 1, "T": "alpha"}),
        json!({"Id": "d", "Name": "b2", "K": 2, "T": null}),
        json!({"Id": "e", "Name": "n2", "T": "Gamma"}),
    ]);
    assert_eq!(
        run("SELECT Name FROM X ORDER BY K", &data),
        ["n1", "n2", "a1", "b1", "b2"]
    );
    assert_eq!(
        run("SELECT Name FROM X ORDER BY K ASC NULLS LAST", &data),
        ["a1", "b1", "b2", "n1", "n2"]
    );
    assert_eq!(
        run("SELECT Name FROM X ORDER BY K DESC", &data),
        ["b1", "b2", "a1", "n1", "n2"]
    );
    assert_eq!(
        run("SELECT Name FROM X ORDER BY K DESC NULLS FIRST", &data),
        ["n1", "n2", "b1", "b2", "a1"]
    );
    assert_eq!(
        run("SELECT Name FROM X ORDER BY K DESC, Name DESC", &data),
        ["b2", "b1", "a1", "n2", "n1"]
    );
    // Text sorts case-insensitively; ties keep the stored order.
    assert_eq!(
        run("SELECT Name FROM X ORDER BY T", &data),
        ["b2", "n1", "a1", "b1", "n2"]
    );
    assert_eq!(
        run("SELECT Name FROM X ORDER BY t NULLS LAST", &data),
        ["n1", "a1", "b1", "n2", "b2"]
    );
}

#[test]
fn limit_and_offset_apply_after_sorting() {
    let data = people();
    let all = run("SELECT Name FROM Contact ORDER BY SystemModstamp", &data);
    assert_eq!(
        all,
        ["O'Brien", "alan turing", "Ada Lovelace", "Grace_Hopper"]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact ORDER BY SystemModstamp LIMIT 2",
            &data
        ),
        all[..2]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact ORDER BY SystemModstamp LIMIT 2 OFFSET 1",
            &data
        ),
        all[1..3]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact ORDER BY SystemModstamp OFFSET 3",
            &data
        ),
        all[3..]
    );
    assert_eq!(
        run(
            "SELECT Name FROM Contact ORDER BY SystemModstamp OFFSET 9",
            &data
        )
        .len(),
        0
    );
    assert_eq!(run("SELECT Name FROM Contact LIMIT 0", &data).len(), 0);
    let count = parse("SELECT COUNT() FROM Contact WHERE Active = true")
        .map(|q| q.execute_at(data.iter().collect(), now()).map(|r| r.len()));
    assert_eq!(count, Ok(Ok(3)));
}

#[test]
fn projection_nests_relationships() {
    let data = people();
    let query = parse("SELECT Id, name, Account.Name, Account.Owner.Name FROM Contact")
        .unwrap_or_else(|e| panic!("{e}"));
    let attrs = |rel: &[String]| -> Option<Value> {
        (rel.len() == 1)
            .then(|| json!({"type": "Account", "url": "/services/data/v62.0/sobjects/Account/001"}))
    };
    let with_parent = query.project(&data[0], &attrs);
    assert_eq!(
        Value::Object(with_parent),
        json!({
            "Id": data[0]["Id"],
            "name": "Ada Lovelace",
            "Account": {
                "attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/001"},
                "Name": "Analytical",
                "Owner": null
            }
        })
    );
    let no_parent = |_: &[String]| -> Option<Value> { None };
    let without = query.project(&data[1], &no_parent);
    assert_eq!(without.get("Account"), Some(&Value::Null));
    assert_eq!(without.get("name"), Some(&json!("alan turing")));
}

#[test]
fn referenced_fields_and_canonical_names() {
    let mut query = parse(
        "SELECT Id, lastname FROM Contact WHERE (LASTNAME = 'x' OR Account.Name LIKE 'a%') \
         AND Id IN ('1') ORDER BY systemmodstamp, id",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = query
        .referenced_fields()
        .iter()
        .map(FieldRef::dotted)
        .collect();
    assert_eq!(names, ["Id", "lastname", "Account.Name", "systemmodstamp"]);
    let canon = |path: &[String]| -> Option<Vec<String>> {
        let known = ["Id", "LastName", "SystemModstamp", "Account", "Name"];
        path.iter()
            .map(|p| {
                known
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(p))
                    .map(std::string::ToString::to_string)
            })
            .collect()
    };
    query.canonicalize(&canon);
    let names: Vec<String> = query
        .referenced_fields()
        .iter()
        .map(FieldRef::dotted)
        .collect();
    assert_eq!(names, ["Id", "LastName", "Account.Name", "SystemModstamp"]);
    let row = people().remove(0);
    let projected = query.project(&row, &|_| None);
    assert!(projected.contains_key("LastName"));
}

#[test]
fn type_check_against_describe() {
    let types = |path: &[String]| -> Option<FieldType> {
        match path.last().map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("systemmodstamp") => FieldType::from_describe("datetime"),
            Some("birthdate") => FieldType::from_describe("date"),
            Some("id") => FieldType::from_describe("id"),
            Some("age") => FieldType::from_describe("double"),
            Some("name") => FieldType::from_describe("string"),
            _ => None,
        }
    };
    let check = |soql: &str| parse(soql).and_then(|q| q.check_types(&types));
    assert_eq!(
        check("SELECT Id FROM Contact WHERE SystemModstamp > 2026-11-24T10:00:00Z"),
        Ok(())
    );
    assert_eq!(
        check("SELECT Id FROM Contact WHERE Birthdate = TODAY AND Age > 3 AND Name = null"),
        Ok(())
    );
    let e = check("SELECT Id FROM Contact WHERE SystemModstamp > '2026-11-24T10:00:00Z'").err();
    assert_eq!(e.as_ref().map(|e| e.code), Some("INVALID_FIELD"));
    assert!(e.is_some_and(|e| e.message.contains("must be of type dateTime")));
    assert!(check("SELECT Id FROM Contact WHERE Id IN ('a', 3)").is_err());
    assert!(check("SELECT Id FROM Contact WHERE Age LIKE 'a%'").is_err());
    assert!(check("SELECT Id FROM Contact WHERE Unknown__c = 5").is_ok());
}

/// One generated record: a SystemModstamp among few instants (so that ties are common), some
/// nulls, and a unique Id.
fn arb_rows() -> impl Strategy<Value = Vec<Map<String, Value>>> {
    prop::collection::vec(prop::option::weighted(0.9, 0u32..20), 0..60).prop_map(|stamps| {
        stamps
            .into_iter()
            .enumerate()
            .map(|(i, stamp)| {
                let mut m = Map::new();
                // Ids in shuffled order of creation, so that Id order differs from row order.
                m.insert(
                    "Id".into(),
                    json!(make_id("003", "5E", ((i * 37) % 101) as u64)),
                );
                let value = stamp.map_or(Value::Null, |s| {
                    let t = Utc
                        .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
                        .single()
                        .unwrap_or_default()
                        + chrono::Duration::seconds(i64::from(s) * 30);
                    json!(t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())
                });
                m.insert("SystemModstamp".into(), value);
                m
            })
            .collect()
    })
}

fn stamp_of(row: &Map<String, Value>) -> Option<DateTime<Utc>> {
    row.get("SystemModstamp")
        .and_then(Value::as_str)
        .and_then(super::lex::parse_datetime)
}

fn id_of(row: &Map<String, Value>) -> String {
    row.get("Id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

proptest! {
    #[test]
    fn order_by_stamp_then_id_sorts_by_both(data in arb_rows()) {
        let query = parse("SELECT Id FROM Contact ORDER BY SystemModstamp, Id").unwrap_or_else(|e| panic!("{e}"));
        let out = query.execute_at(data.iter().collect(), now()).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(out.len(), data.len());
        // Nulls first (ascending default), then by instant, then by Id.
        let keys: Vec<(Option<DateTime<Utc>>, String)> = out.iter().map(|r| (stamp_of(r), id_of(r))).collect();
        let mut expected = keys.clone();
        expected.sort();
        prop_assert_eq!(keys, expected);
    }

    #[test]
    fn greater_and_not_greater_partition_the_rows(
        data in arb_rows(),
        pivot in 0u32..20,
        offset_form in 0usize..3,
    ) {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).single().unwrap_or_default()
            + chrono::Duration::seconds(i64::from(pivot) * 30);
        let literal = match offset_form {
            0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            1 => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            _ => (t + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%S+01:00").to_string(),
        };
        let ids = |op: &str| -> Vec<String> {
            let soql = format!("SELECT Id FROM Contact WHERE SystemModstamp {op} {literal} ORDER BY SystemModstamp, Id");
            parse(&soql)
                .and_then(|q| q.execute_at(data.iter().collect(), now()))
                .unwrap_or_else(|e| panic!("{soql}: {e}"))
                .iter()
                .map(|r| id_of(r))
                .collect()
        };
        let above = ids(">");
        let below = ids("<=");
        let mut both: Vec<String> = above.iter().chain(&below).cloned().collect();
        both.sort();
        let mut non_null: Vec<String> = data.iter().filter(|r| stamp_of(r).is_some()).map(id_of).collect();
        non_null.sort();
        // Every non-null row lands on exactly one side; null rows on neither.
        prop_assert_eq!(both, non_null);
        prop_assert!(above.iter().all(|id| !below.contains(id)));

        // Keyset paging on (SystemModstamp, Id) from any row returns exactly the rows after it.
        let sorted: Vec<String> = parse("SELECT Id FROM Contact ORDER BY SystemModstamp, Id")
            .and_then(|q| q.execute_at(data.iter().collect(), now()))
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|r| id_of(r))
            .collect();
        let middle = sorted.iter().enumerate().skip(sorted.len() / 2).find(|(_, id)| {
            data.iter().any(|r| &id_of(r) == *id && stamp_of(r).is_some())
        });
        if let Some((k, first)) = middle {
            let row = data.iter().find(|r| &id_of(r) == first).cloned().unwrap_or_default();
            let stamp = stamp_of(&row).map(|s| s.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default();
            let soql = format!(
                "SELECT Id FROM Contact WHERE SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > '{first}') \
                 ORDER BY SystemModstamp, Id"
            );
            let rest: Vec<String> = parse(&soql)
                .and_then(|q| q.execute_at(data.iter().collect(), now()))
                .unwrap_or_else(|e| panic!("{soql}: {e}"))
                .iter()
                .map(|r| id_of(r))
                .collect();
            prop_assert_eq!(&rest[..], &sorted[k + 1..]);
        }
    }
}
