use std::{io::Read, time::Duration};

use bytes::Bytes;
use mir_proto::{
    wire::{
        CommandRequest, CommandResponse, CommandResponseStatus, Compression, DesiredProperties,
        Heartbeat, Hello, PropertyValue, TelemetryBatch,
    },
    MAX_PAYLOAD_BYTES,
};
use prost::Message;

use super::*;
use crate::test_support::{
    drain, item, later, published_on, t0, topic, Names, SessionBuilder, DEVICE,
};

fn subscriptions() -> Request {
    Request::Subscribe(vec![
        topic("cmd/req"),
        topic("cfg/desired"),
        topic("hello/get"),
    ])
}

fn desired(values: &[(&str, &[u8], i64)]) -> Bytes {
    DesiredProperties {
        properties: values
            .iter()
            .map(|(name, payload, at)| PropertyValue {
                name: name.to_string(),
                payload: Bytes::copy_from_slice(payload),
                updated_at_ns: *at,
                version: 1,
            })
            .collect(),
        complete: false,
    }
    .encode_to_vec()
    .into()
}

fn command(id: &str, name: &str, deadline_unix_ms: i64) -> Bytes {
    CommandRequest {
        id: id.into(),
        name: name.into(),
        payload: Bytes::from_static(b"\x08\x05"),
        deadline_unix_ms,
    }
    .encode_to_vec()
    .into()
}

fn responses(requests: &[Request]) -> Vec<CommandResponse> {
    published_on(requests, "cmd/resp")
        .into_iter()
        .map(|p| CommandResponse::decode(p).expect("response decodes"))
        .collect()
}

#[test]
fn connecting_subscribes_then_says_hello_pulls_desired_and_beats() {
    let now = t0();
    let mut s = SessionBuilder::new().build(now);
    s.on_connected(now);
    let sent = drain(&mut s);
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert_eq!(sent[0], subscriptions());
    let Request::Publish(hello) = &sent[1] else {
        panic!("hello expected")
    };
    assert_eq!(hello.topic, topic("hello"));
    let Request::Publish(get) = &sent[2] else {
        panic!("desired get expected")
    };
    assert_eq!(get.topic, topic("cfg/desired/get"));
    assert!(get.payload.is_empty());
    let Request::Publish(hb) = &sent[3] else {
        panic!("heartbeat expected")
    };
    assert_eq!(hb.topic, topic("hb"));
    assert_eq!(
        Heartbeat::decode(hb.payload.clone())
            .expect("hb")
            .sent_at_ns,
        now.unix_ns
    );
}

#[test]
fn hello_carries_the_schema_the_sdk_version_and_the_send_time() {
    let now = t0();
    let s = SessionBuilder::new().connected(now);
    let mut s = s;
    s.on_connected(now);
    let hello = published_on(&drain(&mut s), "hello");
    let hello = Hello::decode(hello[0].clone()).expect("hello decodes");
    assert_eq!(hello.schema, Bytes::from_static(b"schema"));
    assert_eq!(hello.compression, Compression::Zlib as i32);
    assert_eq!(hello.sdk_version, crate::SDK_VERSION);
    assert_eq!(hello.sent_at_ns, now.unix_ns);
}

#[test]
fn every_connack_subscribes_again() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    for _ in 0..3 {
        s.on_disconnected();
        s.on_connected(now);
        let sent = drain(&mut s);
        assert_eq!(sent.first(), Some(&subscriptions()));
        assert_eq!(published_on(&sent, "hello").len(), 1);
        assert_eq!(published_on(&sent, "cfg/desired/get").len(), 1);
    }
}

#[test]
fn a_burst_not_yet_sent_is_replaced_not_repeated_and_durable_messages_stay() {
    let now = t0();
    let mut s = SessionBuilder::new().build(now);
    s.on_connected(now);
    s.push_reported(
        PropertyValue {
            name: "schema.v1.HVACStatus".into(),
            ..Default::default()
        },
        now,
    )
    .expect("small");
    s.on_disconnected();
    s.on_connected(now);
    let sent = drain(&mut s);
    assert_eq!(
        sent.iter()
            .filter(|r| matches!(r, Request::Subscribe(_)))
            .count(),
        1
    );
    assert_eq!(published_on(&sent, "hello").len(), 1);
    assert_eq!(published_on(&sent, "hb").len(), 1);
    assert_eq!(published_on(&sent, "cfg/reported").len(), 1);
    assert_eq!(sent[0], subscriptions(), "the burst goes first");
}

#[test]
fn hello_get_publishes_hello_again() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    let actions = s.on_incoming(&topic("hello/get"), &Bytes::new(), &Names::default(), now);
    assert!(actions.is_empty());
    assert_eq!(published_on(&drain(&mut s), "hello").len(), 1);
}

#[test]
fn telemetry_waits_for_the_linger_then_leaves_in_one_batch() {
    let now = t0();
    let mut s = SessionBuilder::new()
        .linger(Duration::from_millis(50))
        .connected(now);
    for _ in 0..3 {
        s.push_telemetry(item("schema.v1.Env", 20, now), now)
            .expect("fits");
    }
    assert_eq!(
        s.next_deadline(),
        Some(now.mono + Duration::from_millis(50))
    );
    s.on_timer(later(now, Duration::from_millis(49)));
    assert!(published_on(&drain(&mut s), "tlm").is_empty(), "too early");
    s.on_timer(later(now, Duration::from_millis(50)));
    let batches = published_on(&drain(&mut s), "tlm");
    assert_eq!(batches.len(), 1);
    let batch = TelemetryBatch::decode(batches[0].clone()).expect("batch decodes");
    assert_eq!(batch.items.len(), 3);
    assert!(batch
        .items
        .iter()
        .all(|i| i.name == "schema.v1.Env" && i.payload.len() == 20));
    assert_eq!(
        s.next_deadline(),
        Some(now.mono + Duration::from_secs(30)),
        "only the heartbeat"
    );
}

#[test]
fn sequence_numbers_increase_by_one_across_batches() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    let mut seqs = Vec::new();
    for round in 0..3u32 {
        for _ in 0..4 {
            seqs.push(
                s.push_telemetry(item("schema.v1.Env", 8, now), now)
                    .expect("fits"),
            );
        }
        s.on_timer(later(now, Duration::from_secs(u64::from(round) + 1)));
    }
    let sent: Vec<u64> = published_on(&drain(&mut s), "tlm")
        .into_iter()
        .flat_map(|b| TelemetryBatch::decode(b).expect("batch").items)
        .map(|i| i.seq)
        .collect();
    assert_eq!(sent, seqs);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(seqs[0] > 0);
}

#[test]
fn a_full_batch_leaves_before_the_item_that_would_exceed_the_payload_limit() {
    let now = t0();
    let mut s = SessionBuilder::new()
        .linger(Duration::from_secs(60))
        .connected(now);
    let n = 40;
    for _ in 0..n {
        s.push_telemetry(item("schema.v1.Env", 10_000, now), now)
            .expect("fits");
    }
    s.flush_telemetry(now);
    let batches = published_on(&drain(&mut s), "tlm");
    assert!(batches.len() >= 4, "{} batches", batches.len());
    let mut total = 0;
    for b in &batches {
        assert!(
            b.len() <= BATCH_LIMIT && BATCH_LIMIT < MAX_PAYLOAD_BYTES,
            "{}",
            b.len()
        );
        total += TelemetryBatch::decode(b.clone())
            .expect("batch")
            .items
            .len();
    }
    assert_eq!(total, n);
    // Every batch but the last is full: one more item would not have fitted.
    let first = TelemetryBatch::decode(batches[0].clone()).expect("batch");
    let entry = batch_entry_len(&first.items[0]);
    assert!(batches[0].len() + entry > BATCH_LIMIT);
}

#[test]
fn a_message_that_can_never_fit_is_refused_at_once() {
    let now = t0();
    let too_big = item("schema.v1.Env", MAX_PAYLOAD_BYTES, now);
    match check_item_fits(&too_big) {
        Err(SdkError::PayloadTooLarge { name, size, limit }) => {
            assert_eq!(name, "schema.v1.Env");
            assert!(size > limit);
            assert_eq!(limit, BATCH_LIMIT);
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    let mut s = SessionBuilder::new().connected(now);
    assert!(matches!(
        s.push_telemetry(too_big, now),
        Err(SdkError::PayloadTooLarge { .. })
    ));
    check_item_fits(&item("schema.v1.Env", BATCH_LIMIT - 100, now)).expect("fits");
    let seq = s
        .push_telemetry(item("schema.v1.Env", BATCH_LIMIT - 100, now), now)
        .expect("fits");
    assert_eq!(s.queued_messages(), 1, "message {seq} is in the open batch");
}

#[test]
fn a_command_without_handler_is_answered_with_an_error_naming_it() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    let names = Names::default().command("schema.v1.ActivateHVACCmd");
    let actions = s.on_incoming(
        &topic("cmd/req"),
        &command("c1", "schema.v1.Other", 0),
        &names,
        now,
    );
    assert!(actions.is_empty());
    let r = responses(&drain(&mut s));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].id, "c1");
    assert_eq!(r[0].status, CommandResponseStatus::Error as i32);
    assert_eq!(
        r[0].error,
        format!("no handler for command schema.v1.Other on device {DEVICE}")
    );
}

#[test]
fn a_command_with_a_handler_is_handed_to_the_event_loop_and_its_answer_published() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    let names = Names::default().command("schema.v1.ActivateHVACCmd");
    let payload = command("c2", "schema.v1.ActivateHVACCmd", 0);
    let actions = s.on_incoming(&topic("cmd/req"), &payload, &names, now);
    let [Action::RunCommand(req)] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(req.id, "c2");
    assert!(drain(&mut s).is_empty());
    s.command_finished(CommandResponse {
        id: "c2".into(),
        status: CommandResponseStatus::Success as i32,
        name: "schema.v1.ActivateHVACResp".into(),
        payload: Bytes::from_static(b"\x08\x01"),
        error: String::new(),
    });
    let r = responses(&drain(&mut s));
    assert_eq!(r[0].status, CommandResponseStatus::Success as i32);
    assert_eq!(r[0].name, "schema.v1.ActivateHVACResp");
}

#[test]
fn a_command_past_its_deadline_is_answered_timeout_without_running() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    let names = Names::default().command("schema.v1.ActivateHVACCmd");
    let past = now.unix_ns / 1_000_000 - 1;
    let actions = s.on_incoming(
        &topic("cmd/req"),
        &command("c3", "schema.v1.ActivateHVACCmd", past),
        &names,
        now,
    );
    assert!(actions.is_empty());
    assert_eq!(
        responses(&drain(&mut s))[0].status,
        CommandResponseStatus::Timeout as i32
    );
    let future = now.unix_ns / 1_000_000 + 1_000;
    let actions = s.on_incoming(
        &topic("cmd/req"),
        &command("c4", "schema.v1.ActivateHVACCmd", future),
        &names,
        now,
    );
    assert_eq!(actions.len(), 1);
}

#[test]
fn a_response_too_large_to_publish_becomes_an_error() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    s.command_finished(CommandResponse {
        id: "big".into(),
        status: CommandResponseStatus::Success as i32,
        name: "schema.v1.Huge".into(),
        payload: Bytes::from(vec![0u8; MAX_PAYLOAD_BYTES + 1]),
        error: String::new(),
    });
    let r = responses(&drain(&mut s));
    assert_eq!(r[0].status, CommandResponseStatus::Error as i32);
    assert!(r[0].error.contains("schema.v1.Huge"), "{}", r[0].error);
}

#[test]
fn undecodable_messages_are_dropped_without_answer() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    let junk = Bytes::from_static(b"\xff\xff\xff");
    let names = Names::default().property("p").command("c");
    assert!(s
        .on_incoming(&topic("cmd/req"), &junk, &names, now)
        .is_empty());
    assert!(s
        .on_incoming(&topic("cfg/desired"), &junk, &names, now)
        .is_empty());
    assert!(s
        .on_incoming("mir/other/cmd/req", &junk, &names, now)
        .is_empty());
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_desired_value_reaches_its_handler_and_an_older_one_is_ignored() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    let names = Names::default().property("schema.v1.DataRateProp");
    let at = now.unix_ns;
    let actions = s.on_incoming(
        &topic("cfg/desired"),
        &desired(&[
            ("schema.v1.DataRateProp", b"\x08\x05", at),
            ("schema.v1.Unhandled", b"", at),
        ]),
        &names,
        now,
    );
    let [Action::ApplyProperty(v)] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(v.payload, Bytes::from_static(b"\x08\x05"));

    let stale = desired(&[("schema.v1.DataRateProp", b"\x08\x02", at - 1)]);
    assert!(s
        .on_incoming(&topic("cfg/desired"), &stale, &names, now)
        .is_empty());

    let newer = desired(&[("schema.v1.DataRateProp", b"\x08\x09", at + 1)]);
    assert_eq!(
        s.on_incoming(&topic("cfg/desired"), &newer, &names, now)
            .len(),
        1
    );
    let applied: Vec<_> = s.applied_properties().map(|p| p.payload.clone()).collect();
    assert_eq!(applied, vec![Bytes::from_static(b"\x08\x09")]);
}

#[test]
fn the_same_desired_value_pulled_again_after_a_reconnect_is_not_applied_twice() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    let names = Names::default().property("schema.v1.DataRateProp");
    let value = desired(&[("schema.v1.DataRateProp", b"\x08\x05", now.unix_ns)]);
    assert_eq!(
        s.on_incoming(&topic("cfg/desired"), &value, &names, now)
            .len(),
        1
    );
    s.on_disconnected();
    s.on_connected(now);
    assert!(s
        .on_incoming(&topic("cfg/desired"), &value, &names, now)
        .is_empty());
}

#[test]
fn a_property_handler_registered_late_gets_the_newest_value_received() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    let value = desired(&[("schema.v1.DataRateProp", b"\x08\x07", now.unix_ns)]);
    assert!(s
        .on_incoming(&topic("cfg/desired"), &value, &Names::default(), now)
        .is_empty());
    let Some(Action::ApplyProperty(v)) = s.on_property_registered("schema.v1.DataRateProp") else {
        panic!("the stored value should be applied")
    };
    assert_eq!(v.payload, Bytes::from_static(b"\x08\x07"));
    assert!(
        s.on_property_registered("schema.v1.DataRateProp").is_none(),
        "once"
    );
    assert!(s.on_property_registered("schema.v1.Nothing").is_none());
}

#[test]
fn heartbeats_follow_the_interval_only_while_connected() {
    let now = t0();
    let mut s = SessionBuilder::new()
        .heartbeat(Duration::from_secs(10))
        .connected(now);
    s.on_timer(later(now, Duration::from_secs(9)));
    assert!(published_on(&drain(&mut s), "hb").is_empty());
    let t10 = later(now, Duration::from_secs(10));
    s.on_timer(t10);
    let hb = published_on(&drain(&mut s), "hb");
    assert_eq!(hb.len(), 1);
    let hb = Heartbeat::decode(hb[0].clone()).expect("hb");
    assert_eq!(hb.uptime_sec, 10);
    assert_eq!(s.next_deadline(), Some(now.mono + Duration::from_secs(20)));
    s.on_disconnected();
    assert_eq!(s.next_deadline(), None);
    s.on_timer(later(now, Duration::from_secs(60)));
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_heartbeat_carries_the_queue_store_clock_and_link_status_of_the_counters() {
    use mir_proto::wire::heartbeat::{ClockState as WireClock, LinkIssue as WireLink, StoreState};
    let now = t0();
    let mut s = SessionBuilder::new()
        .heartbeat(Duration::from_secs(10))
        .connected(now);
    s.set_link_issue(Some(crate::LinkIssue::DroppedAfterConnect { in_a_row: 3 }));
    s.push_telemetry(item("schema.v1.Env", 8, now), now)
        .expect("fits");
    s.flush_telemetry(now);
    // NTP lost: the clock is no longer called set when the heartbeat is due.
    let due = Now {
        synced: false,
        ..later(now, Duration::from_secs(10))
    };
    s.on_timer(due);
    let c = s.counters();
    assert!(c.queued_bytes > 0, "{c:?}");
    assert_eq!(c.clock, crate::ClockState::Unsynced);
    assert_eq!(c.store, crate::StoreHealth::MemoryOnly);
    let hb = published_on(&drain(&mut s), "hb");
    let hb = Heartbeat::decode(hb[0].clone()).expect("hb");
    assert_eq!(hb.queued, 1);
    assert_eq!(hb.queued_bytes, c.queued_bytes);
    assert_eq!(hb.quarantined_records, 0);
    assert_eq!(hb.store_errors, 0);
    assert_eq!(hb.store_state(), StoreState::MemoryOnly);
    assert_eq!(hb.clock_state(), WireClock::Unsynced);
    assert_eq!(hb.link_issue(), WireLink::DroppedAfterConnect);
    assert_eq!(hb.dropped_after_connect_in_a_row, 3);
}

#[test]
fn control_messages_leave_before_records_and_records_keep_their_order() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    s.push_telemetry(item("schema.v1.Env", 8, now), now)
        .expect("fits");
    s.flush_telemetry(now);
    s.push_reported(
        PropertyValue {
            name: "schema.v1.HVACStatus".into(),
            ..Default::default()
        },
        now,
    )
    .expect("small");
    s.command_finished(error_response("c".into(), "e".into()));
    let sent = drain(&mut s);
    let topics: Vec<_> = sent
        .iter()
        .filter_map(|r| match r {
            Request::Publish(p) => Some(p.topic.clone()),
            Request::Subscribe(_) => None,
        })
        .collect();
    assert_eq!(
        topics,
        vec![topic("cmd/resp"), topic("tlm"), topic("cfg/reported")]
    );
}

#[test]
fn offline_telemetry_beyond_the_byte_cap_drops_the_oldest_batches() {
    let now = t0();
    let mut s = SessionBuilder::new()
        .max_queued_bytes(MAX_PAYLOAD_BYTES * 2)
        .build(now);
    for i in 0..5u8 {
        let mut it = item("schema.v1.Env", 100_000, now);
        it.payload = Bytes::from(vec![i; 100_000]);
        s.push_telemetry(it, now).expect("fits");
        s.flush_telemetry(now);
    }
    s.on_connected(now);
    let batches = published_on(&drain(&mut s), "tlm");
    assert_eq!(batches.len(), 2);
    let first = TelemetryBatch::decode(batches[0].clone()).expect("batch");
    assert_eq!(first.items[0].payload[0], 3, "the newest batches are kept");
}

#[test]
fn reported_properties_too_large_are_refused() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    let big = PropertyValue {
        name: "schema.v1.Big".into(),
        payload: Bytes::from(vec![0; MAX_PAYLOAD_BYTES]),
        ..Default::default()
    };
    assert!(matches!(
        s.push_reported(big, now),
        Err(SdkError::PayloadTooLarge { name, .. }) if name == "schema.v1.Big"
    ));
}

#[test]
fn the_schema_sent_in_hello_is_zlib_of_the_descriptor_set() {
    let set = prost_types::FileDescriptorSet {
        file: vec![prost_types::FileDescriptorProto {
            name: Some("a.proto".into()),
            ..Default::default()
        }],
    };
    let config = crate::Builder::default()
        .device_id("weather")
        .schema(&set.encode_to_vec())
        .resolve()
        .expect("valid");
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&config.schema[..])
        .read_to_end(&mut raw)
        .expect("zlib");
    assert_eq!(
        prost_types::FileDescriptorSet::decode(&raw[..]).expect("set"),
        set
    );
}

#[test]
fn an_unset_clock_does_not_judge_a_command_deadline() {
    let now = Now {
        unix_ns: 5_000_000_000, // 1970: the clock is not set
        synced: false,
        ..t0()
    };
    let mut s = SessionBuilder::new().connected(now);
    let names = Names::default().command("schema.v1.ActivateHVACCmd");
    // A deadline before the device's own (wrong) time: not judged.
    let actions = s.on_incoming(
        &topic("cmd/req"),
        &command("c9", "schema.v1.ActivateHVACCmd", 1_000),
        &names,
        now,
    );
    assert_eq!(actions.len(), 1, "the handler runs");
    assert!(responses(&drain(&mut s)).is_empty(), "no TIMEOUT answered");
}

#[test]
fn reported_properties_that_fit_only_without_their_topic_are_refused() {
    let now = t0();
    let mut s = SessionBuilder::new().connected(now);
    let value = |len: usize| PropertyValue {
        name: "schema.v1.DataRateStatus".into(),
        payload: vec![1u8; len].into(),
        updated_at_ns: now.unix_ns,
        version: 0,
    };
    let encoded = |len: usize| {
        mir_proto::wire::ReportedProperties {
            properties: vec![value(len)],
        }
        .encoded_len()
    };
    // The largest value whose encoding is 10 bytes under the limit: the topic
    // (`mir/weather/cfg/reported`, 24 bytes) takes it over.
    let len = (0..MAX_PAYLOAD_BYTES)
        .rev()
        .find(|l| encoded(*l) <= MAX_PAYLOAD_BYTES - 10)
        .expect("a length");
    match s.push_reported(value(len), now) {
        Err(SdkError::PayloadTooLarge { size, limit, .. }) => {
            assert_eq!(limit, MAX_PAYLOAD_BYTES);
            assert_eq!(size, encoded(len) + "mir/weather/cfg/reported".len());
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    s.push_reported(value(len - 100), now)
        .expect("fits with its topic");
}

fn rate(sec: u8, now: Now) -> PropertyValue {
    PropertyValue {
        name: "schema.v1.DataRateStatus".into(),
        payload: vec![0x08, sec].into(),
        updated_at_ns: now.unix_ns,
        version: 0,
    }
}

#[test]
fn after_a_drop_with_several_records_in_flight_they_leave_one_at_a_time() {
    let now = t0();
    let mut s = SessionBuilder::new()
        .persistence(Persistence::NoStorage)
        .connected(now);
    let mut net = crate::test_support::FakeNet::default();
    for sec in 1..=3 {
        s.push_reported(rate(sec, now), now).expect("queued");
    }
    assert_eq!(published_on(&net.send(&mut s, 10), "cfg/reported").len(), 3);
    net.drop_connection(&mut s);
    s.on_connected(now);
    // The connect burst, then one record: the next waits for its PUBACK.
    let sent = net.send(&mut s, 10);
    assert_eq!(published_on(&sent, "cfg/reported").len(), 1, "{sent:?}");
    for expected in [1, 1, 0] {
        net.ack_all(&mut s, now);
        let sent = net.send(&mut s, 10);
        assert_eq!(published_on(&sent, "cfg/reported").len(), expected);
    }
}

#[test]
fn a_record_alone_in_flight_at_three_drops_is_quarantined_and_the_next_one_leaves() {
    let now = t0();
    let mut s = SessionBuilder::new()
        .persistence(Persistence::NoStorage)
        .connected(now);
    let mut net = crate::test_support::FakeNet::default();
    s.push_reported(rate(1, now), now).expect("queued");
    for attempt in 1..=3 {
        let sent = net.send(&mut s, 10);
        assert_eq!(
            published_on(&sent, "cfg/reported").len(),
            1,
            "attempt {attempt}"
        );
        net.drop_connection(&mut s);
        s.on_connected(now);
    }
    assert_eq!(s.counters().quarantined_records, 1);
    s.push_reported(rate(2, now), now).expect("queued");
    let sent = net.send(&mut s, 10);
    let reported = published_on(&sent, "cfg/reported");
    assert_eq!(reported.len(), 1);
    let value = &mir_proto::wire::ReportedProperties::decode(reported[0].clone())
        .expect("decodes")
        .properties[0];
    assert_eq!(
        value.payload,
        Bytes::from_static(&[0x08, 2]),
        "the next one"
    );
}
