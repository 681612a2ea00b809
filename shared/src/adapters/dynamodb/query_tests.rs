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
fn sort_key_bounds_are_inclusive_on_either_side_or_both() {
    let t = table();
    let names = pairs(&[("#pk", "pk"), ("#sk", "sk")]);
    assert_eq!(
        expression(t.partition("p").sk_to(Some("z"))),
        (
            "#pk = :pk AND #sk <= :to",
            names.clone(),
            values(serde_json::json!({ ":pk": "p", ":to": "z" })).expect("values")
        )
    );
    assert_eq!(
        expression(t.partition("p").sk_from(Some("a")).sk_to(Some("z"))),
        (
            "#pk = :pk AND #sk BETWEEN :from AND :to",
            names,
            values(serde_json::json!({ ":pk": "p", ":from": "a", ":to": "z" })).expect("values")
        )
    );
}

#[test]
fn a_scan_by_sort_key_ignores_partition_refinements() {
    let t = table();
    let q = t
        .scan_sk("TWIN")
        .index(GSI1)
        .sk_from(Some("x"))
        .sk_to(Some("y"));
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
