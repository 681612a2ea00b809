//! Topic names (`mir_proto::topics`): `parse` answers any string without a panic and
//! accepts exactly the topics `DeviceTopic::for_device` builds (`mir/{id}/{suffix}`);
//! `matches` answers any filter and topic, and every built topic matches its kind's
//! rule filter.

use proptest::prelude::*;

use mir_proto::topics::{self, DeviceTopic, PresenceKind, TopicError};
use mir_proto::DeviceId;

use crate::{config, CI_CASES};

fn device_id() -> impl Strategy<Value = DeviceId> {
    "[a-zA-Z0-9:_-]{1,128}".prop_filter_map("a thing name", |s| DeviceId::new(s).ok())
}

fn kind() -> impl Strategy<Value = DeviceTopic> {
    proptest::sample::select(DeviceTopic::ALL.to_vec())
}

/// Topics made of Mir-like levels: the root, real suffix words, ids, wildcards, empty
/// levels and the odd character, joined by `/`.
fn topic_like() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        Just(String::new()),
        Just("mir".to_string()),
        proptest::sample::select(vec![
            "hello",
            "hb",
            "tlm",
            "cfg",
            "reported",
            "desired",
            "get",
            "cmd",
            "req",
            "resp",
            "+",
            "#",
            "$aws",
            "events",
            "presence",
            "connected",
            "MIR",
            "mir ",
        ])
        .prop_map(String::from),
        "[a-zA-Z0-9:_-]{1,12}",
        "[a-z/+#$ é.]{1,6}",
    ];
    proptest::collection::vec(level, 0..7).prop_map(|levels| levels.join("/"))
}

/// What `parse` must answer for `topic`, from its documentation.
fn expected(topic: &str) -> Result<(DeviceId, DeviceTopic), TopicError> {
    let Some(rest) = topic.strip_prefix("mir/") else {
        return Err(TopicError::NotMir(topic.into()));
    };
    let Some((id, suffix)) = rest.split_once('/') else {
        return Err(TopicError::Unknown(topic.into()));
    };
    let id = DeviceId::new(id).map_err(|source| TopicError::BadDeviceId {
        topic: topic.into(),
        source,
    })?;
    match DeviceTopic::ALL.into_iter().find(|k| k.suffix() == suffix) {
        Some(kind) => Ok((id, kind)),
        None => Err(TopicError::Unknown(topic.into())),
    }
}

fn parse_accepts_exactly_the_built_topics(topic: &str) -> Result<(), TestCaseError> {
    let parsed = topics::parse(topic);
    prop_assert_eq!(&parsed, &expected(topic));
    if let Ok((id, kind)) = parsed {
        prop_assert_eq!(kind.for_device(&id), topic);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn any_string_parses_to_a_device_topic_or_a_typed_error(topic in any::<String>()) {
        parse_accepts_exactly_the_built_topics(&topic)?;
    }

    #[test]
    fn mir_like_topics_parse_only_when_they_are_built_topics(topic in topic_like()) {
        parse_accepts_exactly_the_built_topics(&topic)?;
    }

    #[test]
    fn every_built_topic_parses_back_to_its_device_and_kind(id in device_id(), kind in kind()) {
        let topic = kind.for_device(&id);
        prop_assert_eq!(topics::parse(&topic), Ok((id.clone(), kind)));
        prop_assert!(topics::matches(&kind.filter(), &topic));
        let others_match = DeviceTopic::ALL
            .into_iter()
            .filter(|other| topics::matches(&other.filter(), &topic))
            .collect::<Vec<_>>();
        prop_assert_eq!(others_match, vec![kind]);
    }

    #[test]
    fn matching_any_filter_against_any_topic_answers(filter in topic_like(), topic in topic_like()) {
        let matched = topics::matches(&filter, &topic);
        if filter == "#" {
            prop_assert_eq!(matched, !topic.starts_with('$'));
        }
        if !topic.contains(['+', '#']) {
            prop_assert!(topics::matches(&topic, &topic));
        }
    }

    #[test]
    fn presence_topics_match_the_presence_filter(id in device_id(), connected in any::<bool>()) {
        let kind = if connected { PresenceKind::Connected } else { PresenceKind::Disconnected };
        let topic = topics::presence(kind, id.as_str());
        prop_assert!(topics::matches(topics::PRESENCE_FILTER, &topic));
        prop_assert!(!topics::matches("#", &topic));
        prop_assert!(matches!(topics::parse(&topic), Err(TopicError::NotMir(_))));
    }
}
