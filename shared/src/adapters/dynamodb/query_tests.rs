//! Unit tests of the query builder: the expressions it sends, without a network.

use aws_sdk_dynamodb::{config::BehaviorVersion, Client, Config};

use super::*;
use crate::adapters::dynamodb::GSI1;

fn table() -> Table {
    let config = Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .build();
    Table::new(Client::from_conf(config), "t")
}

fn expression(q: Query<'_>) -> (&'static str, Vec<(String, String)>, Item) {
    let e = q.expression().expect("builds");
    let mut names: Vec<_> = e.names.into_iter().collect();
    names.sort();
    (e.text, names, e.values)
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_partition_of_the_table_or_of_the_index() {
    let t = table();
    let q = t.partition("DEV#d");
    assert!(q.forward && q.consistent);
    assert_eq!(
        expression(q),
        (
            "#pk = :pk",
            pairs(&[("#pk", "pk")]),
            values(serde_json::json!({ ":pk": "DEV#d" })).expect("values")
        )
    );
    let q = t
        .partition("NS#default")
        .index(GSI1)
        .sk_from(Some("b"))
        .newest_first();
    assert!(!q.forward);
    assert!(matches!(
        q.read,
        Read::Partition {
            index: Some(GSI1),
            ..
        }
    ));
    assert_eq!(
        expression(q),
        (
            "#pk = :pk AND #sk >= :from",
            pairs(&[("#pk", "gsi1pk"), ("#sk", "gsi1sk")]),
            values(serde_json::json!({ ":pk": "NS#default", ":from": "b" })).expect("values")
        )
    );
    assert!(!t.partition("p").eventually_consistent().consistent);
}

#[test]
fn a_sort_key_range_is_inclusive_at_both_ends_or_open_at_one() {
    let t = table();
    let sk = pairs(&[("#pk", "pk"), ("#sk", "sk")]);
    assert_eq!(
        expression(t.partition("p").sk_from(Some("a")).sk_to(Some("b~"))),
        (
            "#pk = :pk AND #sk BETWEEN :from AND :to",
            sk.clone(),
            values(serde_json::json!({ ":pk": "p", ":from": "a", ":to": "b~" })).expect("values")
        )
    );
    assert_eq!(
        expression(t.partition("p").sk_to(Some("b~"))),
        (
            "#pk = :pk AND #sk <= :to",
            sk,
            values(serde_json::json!({ ":pk": "p", ":to": "b~" })).expect("values")
        )
    );
}

#[test]
fn a_scan_by_sort_key_ignores_partition_refinements() {
    let t = table();
    let q = t.scan_sk("TWIN").index(GSI1).sk_from(Some("x"));
    assert!(matches!(q.read, Read::SortKey("TWIN")));
    assert_eq!(
        expression(q),
        (
            "#sk = :sk",
            pairs(&[("#sk", "sk")]),
            values(serde_json::json!({ ":sk": "TWIN" })).expect("values")
        )
    );
}

#[test]
fn sort_keys_below_a_bound_on_the_second_index_use_its_own_key_names() {
    let t = table();
    let q = t
        .partition("ONLINE#3")
        .index("gsi2")
        .sk_before("0000001700000000000");
    assert_eq!(
        expression(q),
        (
            "#pk = :pk AND #sk < :before",
            pairs(&[("#pk", "gsi2pk"), ("#sk", "gsi2sk")]),
            values(serde_json::json!({ ":pk": "ONLINE#3", ":before": "0000001700000000000" }))
                .expect("values")
        )
    );
    let q = t.partition("p").sk_from(Some("a")).sk_before("b");
    assert_eq!(
        expression(q).0,
        "#pk = :pk AND #sk BETWEEN :from AND :to",
        "one sort key condition"
    );
}
