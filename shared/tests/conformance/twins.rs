//! Twins: create, get, list by ids/namespaces/names/labels, optimistic concurrency,
//! rename, uniqueness of name/namespace, delete, the item size limit.

use mir_shared::{
    domain::{presence::Beat, PageRequest, Targets, Twin},
    ports::{BeatWrite, Provisioned, StoreError, Tombstone},
    service::{self, Change},
    testing::at_ms,
};

use crate::support::Ports;

pub fn twin(id: &str, name: &str, ns: &str, labels: &[(&str, &str)]) -> Twin {
    let mut t = Twin::default();
    t.spec.device_id = id.into();
    t.meta.name = name.into();
    t.meta.namespace = ns.into();
    for (k, v) in labels {
        t.meta.labels.insert((*k).into(), (*v).into());
    }
    t.normalized().unwrap()
}

async fn ids(p: &Ports, targets: &Targets) -> Vec<String> {
    let mut out: Vec<String> = p
        .twins()
        .list(targets)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.value.spec.device_id)
        .collect();
    out.sort();
    out
}

async fn create_and_get(p: &Ports) {
    let mut t = twin("d1", "alpha", "factory", &[("type", "temp")]);
    t.properties.desired.insert("a.B".into(), serde_json::json!({"sec": 5, "ratio": 0.5, "on": true, "tags": ["x", "y"], "nested": {"n": -3}}));
    t.meta.annotations.insert("note".into(), "".into());
    let v = p.twins().create(&t).await.unwrap();
    assert_eq!(v.version, 1);
    let got = p.twins().get("d1").await.unwrap().expect("stored");
    assert_eq!((got.version, &got.value), (1, &t), "{}", p.kind);
    let by_name = p
        .twins()
        .get_by_name("alpha", "factory")
        .await
        .unwrap()
        .expect("by name");
    assert_eq!(by_name.value.spec.device_id, "d1");
    assert!(p
        .twins()
        .get_by_name("alpha", "office")
        .await
        .unwrap()
        .is_none());
    assert!(p.twins().get("nope").await.unwrap().is_none());
}

async fn create_refuses_a_taken_id_or_name(p: &Ports) {
    p.twins()
        .create(&twin("d1", "alpha", "factory", &[]))
        .await
        .unwrap();
    let e = p
        .twins()
        .create(&twin("d1", "beta", "factory", &[("k", "v")]))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists(_)), "{e}");
    let e = p
        .twins()
        .create(&twin("d2", "alpha", "factory", &[]))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists(_)), "{e}");
    assert!(!e.is_retryable());
    // Nothing of the refused writes stayed behind: their name and labels are free.
    p.twins()
        .create(&twin("d3", "beta", "factory", &[]))
        .await
        .unwrap();
    let mut labels = Targets::default();
    labels.add_labels("k=v").unwrap();
    assert!(ids(p, &labels).await.is_empty());
    // The same name in another namespace is another name.
    p.twins()
        .create(&twin("d2", "alpha", "office", &[]))
        .await
        .unwrap();
}

async fn list_by_ids_namespaces_names_and_labels(p: &Ports) {
    for t in [
        twin("a", "a", "factory", &[("type", "temp"), ("floor", "1")]),
        twin("b", "b", "factory", &[("type", "hvac")]),
        twin("c", "c", "office", &[("type", "temp")]),
        twin("d", "shared", "office", &[]),
        twin("e", "shared", "lab", &[]),
    ] {
        p.twins().create(&t).await.unwrap();
    }
    assert_eq!(ids(p, &Targets::all()).await, ["a", "b", "c", "d", "e"]);
    assert_eq!(ids(p, &Targets::ids(["a", "c", "zzz"])).await, ["a", "c"]);
    let mut t = Targets::default();
    t.add_positional("/factory").unwrap();
    assert_eq!(ids(p, &t).await, ["a", "b"]);
    let mut t = Targets::default();
    t.add_labels("type=temp").unwrap();
    assert_eq!(ids(p, &t).await, ["a", "c"]);
    t.add_labels("floor=1").unwrap();
    assert_eq!(ids(p, &t).await, ["a"]);
    let mut t = Targets::default();
    t.add_positional("/office").unwrap();
    t.add_labels("type=temp").unwrap();
    assert_eq!(ids(p, &t).await, ["c"]);
    let mut t = Targets::default();
    t.add_positional("shared").unwrap();
    assert_eq!(ids(p, &t).await, ["d", "e"]);
    let mut t = Targets::default();
    t.add_positional("shared/lab").unwrap();
    t.add_positional("b/office").unwrap();
    t.ids.push("c".into());
    assert_eq!(ids(p, &t).await, ["c", "e"]);
    let mut t = Targets::default();
    t.add_labels("type=none").unwrap();
    assert!(ids(p, &t).await.is_empty());
}

async fn update_with_a_stale_version_is_refused(p: &Ports) {
    let t = twin("d1", "alpha", "factory", &[]);
    p.twins().create(&t).await.unwrap();
    let mut t2 = t.clone();
    t2.status.online = true;
    assert_eq!(p.twins().update(&t2, 1).await.unwrap().version, 2);
    let mut stale = t.clone();
    stale.meta.labels.insert("k".into(), "v".into());
    let e = p.twins().update(&stale, 1).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert!(e.is_retryable());
    let got = p.twins().get("d1").await.unwrap().unwrap();
    assert_eq!((got.version, got.value), (2, t2));
    let mut labels = Targets::default();
    labels.add_labels("k=v").unwrap();
    assert!(
        ids(p, &labels).await.is_empty(),
        "a refused update leaves no label behind"
    );
    let e = p
        .twins()
        .update(&twin("ghost", "g", "default", &[]), 1)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
}

async fn rename_moves_the_name_and_labels_follow(p: &Ports) {
    p.twins()
        .create(&twin("a", "alpha", "factory", &[("k", "v")]))
        .await
        .unwrap();
    p.twins()
        .create(&twin("b", "beta", "factory", &[]))
        .await
        .unwrap();
    let renamed = twin("a", "gamma", "office", &[("k", "w"), ("x", "y")]);
    assert_eq!(p.twins().update(&renamed, 1).await.unwrap().version, 2);
    assert!(p
        .twins()
        .get_by_name("alpha", "factory")
        .await
        .unwrap()
        .is_none());
    let got = p
        .twins()
        .get_by_name("gamma", "office")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value.spec.device_id, "a");
    // The old name is free again.
    p.twins()
        .create(&twin("c", "alpha", "factory", &[]))
        .await
        .unwrap();
    // Taking a used name is refused and changes nothing.
    let e = p
        .twins()
        .update(&twin("b", "gamma", "office", &[]), 1)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists(_)), "{e}");
    let b = p.twins().get("b").await.unwrap().unwrap();
    assert_eq!(
        (b.version, b.value.display_name()),
        (1, "beta/factory".to_string())
    );
    let mut t = Targets::default();
    t.add_labels("k=v").unwrap();
    assert!(ids(p, &t).await.is_empty());
    let mut t = Targets::default();
    t.add_labels("k=w,x=y").unwrap();
    assert_eq!(ids(p, &t).await, ["a"]);
    let mut t = Targets::default();
    t.add_positional("/office").unwrap();
    assert_eq!(ids(p, &t).await, ["a"]);
}

async fn delete_returns_the_twin_and_frees_id_name_and_labels(p: &Ports) {
    let t = twin("d1", "alpha", "factory", &[("k", "v")]);
    p.twins().create(&t).await.unwrap();
    assert_eq!(
        p.twins().delete("d1", at_ms(5_000)).await.unwrap(),
        Some(t.clone())
    );
    assert!(p.twins().get("d1").await.unwrap().is_none());
    assert!(p
        .twins()
        .get_by_name("alpha", "factory")
        .await
        .unwrap()
        .is_none());
    let mut labels = Targets::default();
    labels.add_labels("k=v").unwrap();
    assert!(ids(p, &labels).await.is_empty());
    assert!(ids(p, &Targets::all()).await.is_empty());
    assert_eq!(p.twins().delete("d1", at_ms(6_000)).await.unwrap(), None);
    assert_eq!(p.twins().create(&t).await.unwrap().version, 1);
}

async fn a_twin_over_the_item_limit_is_refused(p: &Ports) {
    let mut t = twin("big", "big", "default", &[]);
    t.meta
        .annotations
        .insert("blob".into(), "x".repeat(450 * 1024));
    let e = p.twins().create(&t).await.unwrap_err();
    assert!(matches!(e, StoreError::TooLarge(_)), "{}: {e}", p.kind);
    assert!(p.twins().get("big").await.unwrap().is_none());
    let small = twin("big", "big", "default", &[]);
    p.twins().create(&small).await.unwrap();
    let e = p.twins().update(&t, 1).await.unwrap_err();
    assert!(matches!(e, StoreError::TooLarge(_)), "{}: {e}", p.kind);
}

/// 50 concurrent desired-property updates of one twin through `service::update_twin`:
/// every one applies (conflicts are retried), none is lost.
async fn fifty_concurrent_desired_updates_lose_none(p: &Ports) {
    p.twins()
        .create(&twin("hot", "hot", "default", &[]))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let twins = p.ports.twins.clone().expect("twins");
        tasks.push(tokio::spawn(async move {
            // As an invocation would be: retried while the error says a retry can help.
            let mut redeliveries = 0;
            loop {
                let r = service::update_twin(twins.as_ref(), "hot", |t| {
                    t.properties
                        .desired
                        .insert(format!("p.Prop{i}"), serde_json::json!({ "i": i }));
                    Ok(Change::Changed)
                })
                .await;
                match r {
                    Err(e) if e.is_retryable() && redeliveries < 20 => redeliveries += 1,
                    other => return (other, redeliveries),
                }
            }
        }));
    }
    let mut redelivered = 0;
    for t in tasks {
        let (r, n) = t.await.unwrap();
        r.unwrap().expect("exists");
        redelivered += n;
    }
    crate::support::note(&format!(
        "conformance: {}: 50 concurrent updates applied, {redelivered} after exhausting update_twin's {} attempts",
        p.kind,
        service::MAX_TWIN_ATTEMPTS
    ));
    let got = p.twins().get("hot").await.unwrap().unwrap();
    assert_eq!(got.value.properties.desired.len(), 50, "{}", p.kind);
    assert_eq!(got.version, 51);
}

async fn a_deleted_twin_leaves_a_tombstone_that_stops_auto_provisioning(p: &Ports) {
    let t = twin("d1", "d1", "default", &[("k", "v")]);
    p.twins().create(&t).await.unwrap();
    assert!(p.twins().tombstone("d1").await.unwrap().is_none());
    p.twins().delete("d1", at_ms(5_000)).await.unwrap();
    let tomb = Tombstone {
        device_id: "d1".into(),
        deleted_at: at_ms(5_000),
    };
    assert_eq!(p.twins().tombstone("d1").await.unwrap(), Some(tomb.clone()));
    // A heartbeat, telemetry or lifecycle event: never.
    assert_eq!(
        p.twins().provision(&t, None).await.unwrap(),
        Provisioned::Deleted(tomb.clone()),
        "{}",
        p.kind
    );
    // A hello sent before the delete: no; the update of a deleted twin: no.
    assert_eq!(
        p.twins().provision(&t, Some(at_ms(5_000))).await.unwrap(),
        Provisioned::Deleted(tomb.clone())
    );
    let e = p.twins().update(&t, 1).await.unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound(_) | StoreError::Conflict(_)),
        "{}: {e}",
        p.kind
    );
    assert!(p.twins().get("d1").await.unwrap().is_none());
    assert!(p
        .twins()
        .get_by_name("d1", "default")
        .await
        .unwrap()
        .is_none());
    // A hello received after the delete registers the device again.
    let again = p.twins().provision(&t, Some(at_ms(5_001))).await.unwrap();
    assert!(
        matches!(&again, Provisioned::Created(v) if v.version == 1),
        "{again:?}"
    );
    assert!(p.twins().tombstone("d1").await.unwrap().is_none());
    // Deleted once more, then created by an operator: the tombstone goes too.
    p.twins().delete("d1", at_ms(7_000)).await.unwrap();
    p.twins().create(&t).await.unwrap();
    assert!(p.twins().tombstone("d1").await.unwrap().is_none());
    // A device never deleted is provisioned; once it exists, provisioning refuses it.
    let fresh = twin("d2", "d2", "default", &[]);
    assert!(matches!(
        p.twins().provision(&fresh, None).await.unwrap(),
        Provisioned::Created(_)
    ));
    let e = p.twins().provision(&fresh, None).await.unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists(_)), "{}: {e}", p.kind);
}

/// A twin that is online with its last heartbeat at `hb_ms` and stale at `stale_ms`.
fn online(id: &str, hb_ms: i64, stale_ms: i64) -> Twin {
    let mut t = twin(id, id, "presence", &[]);
    t.status.online = true;
    t.status.last_heartbeat = Some(at_ms(hb_ms));
    t.status.stale_at = Some(at_ms(stale_ms));
    t
}

pub async fn pages_of_twins_hold_each_twin_once_for_every_selection(p: &Ports) {
    for i in 0..25 {
        let ns = if i % 2 == 0 { "even" } else { "odd" };
        let labels: &[(&str, &str)] = if i % 3 == 0 { &[("tier", "a")] } else { &[] };
        p.twins()
            .create(&twin(&format!("pg{i:02}"), &format!("n{i:02}"), ns, labels))
            .await
            .unwrap();
    }
    let selections = [
        Targets::all(),
        Targets::from_query([("namespace", "odd,even")]).unwrap(),
        Targets::from_query([("namespace", "odd"), ("label", "tier=a")]).unwrap(),
        Targets::from_query([("label", "tier=a")]).unwrap(),
        Targets::from_query([("ids", "pg01,pg02,pg03,nope"), ("names", "n04/even")]).unwrap(),
    ];
    for targets in selections {
        let mut paged = Vec::new();
        let mut page = PageRequest::first(4);
        loop {
            let got = p.twins().list_page(&targets, &page).await.unwrap();
            assert!(got.items.len() <= 4);
            paged.extend(got.items.into_iter().map(|t| t.value.spec.device_id));
            match got.next_token {
                Some(t) => page.token = Some(t),
                None => break,
            }
        }
        let mut sorted = paged.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), paged.len(), "each once: {paged:?}");
        assert_eq!(sorted, ids(p, &targets).await, "{targets:?}");
    }
    let bad = PageRequest {
        limit: 4,
        token: Some("not-a-token".into()),
    };
    match p.twins().list_page(&Targets::all(), &bad).await {
        Err(StoreError::BadPageToken(_)) => {}
        other => panic!("expected BadPageToken, got {other:?}"),
    }
}

pub async fn stale_lists_only_online_devices_past_their_stale_at(p: &Ports) {
    let mut offline = twin("st-off", "st-off", "presence", &[]);
    offline.status.last_heartbeat = Some(at_ms(1_000));
    p.twins().create(&offline).await.unwrap();
    for (id, stale_ms) in [("st-a", 5_000), ("st-b", 6_000), ("st-fresh", 90_000)] {
        p.twins()
            .create(&online(id, 1_000, stale_ms))
            .await
            .unwrap();
    }
    let mut found = Vec::new();
    let mut page = PageRequest::first(1);
    loop {
        let got = p.twins().stale(at_ms(10_000), &page).await.unwrap();
        found.extend(got.items);
        match got.next_token {
            Some(t) => page.token = Some(t),
            None => break,
        }
    }
    found.sort();
    assert_eq!(found, ["st-a", "st-b"]);
}

pub async fn a_heartbeat_is_one_write_that_only_moves_time_forward(p: &Ports) {
    p.twins()
        .create(&online("hb-1", 1_000, 91_000))
        .await
        .unwrap();
    p.twins()
        .create(&twin("hb-off", "hb-off", "presence", &[]))
        .await
        .unwrap();
    let fallback = chrono::Duration::seconds(90);
    let beat = |ms: i64| Beat::new(at_ms(ms), Some(30), fallback);
    let write = p.twins().beat("hb-1", &beat(61_000)).await.unwrap();
    let stored = p.twins().get("hb-1").await.unwrap().unwrap();
    if p.kind == "aws" {
        assert_eq!(write, BeatWrite::Written);
        assert_eq!(
            stored.version, 2,
            "a write like any other: conflicts stay detectable"
        );
        assert_eq!(stored.value.status.last_heartbeat, Some(at_ms(61_000)));
        assert_eq!(
            stored.value.status.stale_at,
            Some(at_ms(151_000)),
            "3 x 30 s"
        );
        assert_eq!(stored.value.status.heartbeat_interval_sec, Some(30));
        // A duplicate, a late one and one within half an interval write nothing.
        for ms in [61_000, 2_000, 75_000] {
            assert_eq!(
                p.twins().beat("hb-1", &beat(ms)).await.unwrap(),
                BeatWrite::Fresh,
                "{ms}"
            );
        }
        assert_eq!(p.twins().get("hb-1").await.unwrap().unwrap().version, 2);
    } else {
        // The embedded store has no one-write path: the handler applies the rules.
        assert_eq!(write, BeatWrite::NotApplied);
        assert_eq!(stored.version, 1);
    }
    // An offline device and an unknown one are left to the presence rules.
    for id in ["hb-off", "hb-unknown"] {
        assert_eq!(
            p.twins().beat(id, &beat(61_000)).await.unwrap(),
            BeatWrite::NotApplied,
            "{id}"
        );
    }
    assert!(
        p.twins().get("hb-unknown").await.unwrap().is_none(),
        "never created"
    );
}

conformance!(
    a_deleted_twin_leaves_a_tombstone_that_stops_auto_provisioning,
    create_and_get,
    create_refuses_a_taken_id_or_name,
    list_by_ids_namespaces_names_and_labels,
    update_with_a_stale_version_is_refused,
    rename_moves_the_name_and_labels_follow,
    delete_returns_the_twin_and_frees_id_name_and_labels,
    a_twin_over_the_item_limit_is_refused,
    fifty_concurrent_desired_updates_lose_none,
    pages_of_twins_hold_each_twin_once_for_every_selection,
    stale_lists_only_online_devices_past_their_stale_at,
    a_heartbeat_is_one_write_that_only_moves_time_forward,
);
