//! The HTTP API's request side (`mir_shared::api`): any JSON parses to an API Gateway
//! v2 request or a serde error, and `ApiRequest::from_event` then answers a request or
//! a 400/413, never a panic; every read of a request (page, targets, JSON bodies, path
//! parameters, caller) answers a value or a 400; `parse_since` answers any string with
//! a representable time or a 400; page tokens, target queries, merge patches and route
//! matching hold their contracts on any input.

use base64::Engine;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Value};

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use mir_shared::api::{self, ApiRequest, CertificateRequest, SendCommand, SendConfig};
use mir_shared::domain::page::{decode_token, encode_token, MAX_PAGE_LIMIT};
use mir_shared::domain::{PageRequest, Targets};
use mir_shared::routes::{HttpRoute, RoutesTable};

use crate::{config, json, CI_CASES};

const FIXTURE: &str = include_str!("../../fixtures/apigw-v2-request.json");

const KEYS: &[&str] = &[
    "version",
    "routeKey",
    "rawPath",
    "rawQueryString",
    "headers",
    "requestContext",
    "http",
    "method",
    "path",
    "requestId",
    "authorizer",
    "iam",
    "userArn",
    "accountId",
    "pathParameters",
    "deviceId",
    "body",
    "isBase64Encoded",
    "cookies",
    "queryStringParameters",
    "stageVariables",
    "GET /v1/devices",
    "limit=5&nextToken=x",
];

/// Words of a query string: the parameters the API reads and their odd values.
const QUERY_WORDS: &[&str] = &[
    "limit",
    "nextToken",
    "ids",
    "id",
    "deviceId",
    "names",
    "name",
    "namespaces",
    "namespace",
    "labels",
    "label",
    "since",
    "until",
    "=",
    "&",
    ",",
    "/",
    "%",
    "%zz",
    "+",
    "0",
    "1",
    "10000",
    "10001",
    "-1",
    "a=b",
    "a/b/c",
    "*/ns",
    "15m",
];

fn query_string() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(json::string_from(QUERY_WORDS), 0..12).prop_map(|w| w.concat()),
        any::<String>(),
    ]
}

/// Every read a handler makes of a request: each answers a value or a 400.
fn read_request(req: &ApiRequest) -> Result<(), TestCaseError> {
    match req.page() {
        Ok(page) => prop_assert!((1..=MAX_PAGE_LIMIT).contains(&page.limit)),
        Err(e) => prop_assert_eq!(e.status, 400),
    }
    if let Err(e) = req.targets() {
        prop_assert_eq!(e.status, 400);
    }
    for result in [
        req.json::<SendCommand>().map(|_| ()),
        req.json::<SendConfig>().map(|_| ()),
        req.json::<CertificateRequest>().map(|_| ()),
        req.json::<Value>().map(|_| ()),
    ] {
        if let Err(e) = result {
            prop_assert_eq!(e.status, 400);
        }
    }
    if let Err(e) = req.path_param("deviceId") {
        prop_assert_eq!(e.status, 400);
    }
    let _ = req
        .query_value("since")
        .map(|s| api::parse_since(s, Utc::now()));
    prop_assert!(req.caller.cause(1).starts_with("api|"));
    let _ = req.caller.actor();
    Ok(())
}

fn from_event_answers(ev: &ApiGatewayV2httpRequest) -> Result<(), TestCaseError> {
    match ApiRequest::from_event(ev) {
        Ok(req) => read_request(&req)?,
        Err(e) => prop_assert!(e.status == 400 || e.status == 413, "{e:?}"),
    }
    Ok(())
}

/// The fixture request with any query, body and path parameters.
fn fixture_request() -> impl Strategy<Value = (ApiGatewayV2httpRequest, String, Option<Vec<u8>>)> {
    (
        query_string(),
        prop_oneof![
            Just(None),
            json::text_like(json::object_with(KEYS)).prop_map(|t| Some(t.into_bytes())),
            vec(any::<u8>(), 0..64).prop_map(Some),
        ],
        any::<bool>(),
        btree_map(
            json::string_from(&["deviceId", "id"]),
            any::<String>(),
            0..3,
        ),
    )
        .prop_map(|(query, body, base64_body, params)| {
            let mut ev: Value = serde_json::from_str(FIXTURE).unwrap_or_default();
            ev["rawQueryString"] = query.clone().into();
            ev["pathParameters"] = json!(params);
            let encoded = body.as_ref().map(|b| {
                if base64_body {
                    base64::engine::general_purpose::STANDARD.encode(b)
                } else {
                    String::from_utf8_lossy(b).into_owned()
                }
            });
            if let Some(text) = &encoded {
                ev["body"] = text.clone().into();
                ev["isBase64Encoded"] = base64_body.into();
            }
            let ev = serde_json::from_value(ev).unwrap_or_default();
            let body = encoded.map(|text| {
                if base64_body {
                    body.unwrap_or_default()
                } else {
                    text.into_bytes()
                }
            });
            (ev, query, body)
        })
}

fn now() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..9_223_372_036).prop_map(|s| Utc.timestamp_opt(s, 0).single().unwrap_or_default())
}

fn representable(t: DateTime<Utc>) -> bool {
    t.timestamp() >= 0 && t.timestamp_nanos_opt().is_some()
}

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:-]{1,12}"
}

fn targets() -> impl Strategy<Value = Targets> {
    (
        vec(segment(), 0..3),
        vec(
            (
                segment().prop_filter("not *", |s| s != "*"),
                proptest::option::of(segment()),
            ),
            0..3,
        ),
        vec(segment(), 0..3),
        btree_map(segment(), segment(), 0..3),
    )
        .prop_map(|(ids, names, namespaces, labels)| Targets {
            ids,
            names: names
                .into_iter()
                .map(|(name, namespace)| mir_shared::domain::NameRef { name, namespace })
                .collect(),
            namespaces,
            labels,
        })
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn any_json_value_is_a_request_or_a_serde_error(value in json::value_with(KEYS)) {
        if let Ok(ev) = serde_json::from_value::<ApiGatewayV2httpRequest>(value) {
            from_event_answers(&ev)?;
        }
    }

    #[test]
    fn any_json_object_of_request_keys_is_a_request_or_a_serde_error(value in json::object_with(KEYS)) {
        if let Ok(ev) = serde_json::from_value::<ApiGatewayV2httpRequest>(value) {
            from_event_answers(&ev)?;
        }
    }

    #[test]
    fn a_request_with_any_query_body_and_path_parameters_is_read_or_refused(
        (ev, query, body) in fixture_request(),
    ) {
        from_event_answers(&ev)?;
        if let Ok(req) = ApiRequest::from_event(&ev) {
            prop_assert_eq!(&req.body, &body);
            let pairs: Vec<(String, String)> = url_decode_pairs(&query);
            prop_assert_eq!(&req.query, &pairs);
            prop_assert_eq!(req.caller.request_id.as_str(), "JKJaXmPLvHcESHA=");
        }
    }

    #[test]
    fn a_limit_is_a_page_size_exactly_when_it_is_a_whole_number_in_range(limit in prop_oneof![
        (0usize..20_000).prop_map(|n| n.to_string()),
        any::<String>(),
        Just(" 5 ".to_string()),
    ]) {
        let mut ev: Value = serde_json::from_str(FIXTURE).unwrap_or_default();
        ev["rawQueryString"] = format!("limit={}", utf8_percent(&limit)).into();
        let ev: ApiGatewayV2httpRequest = serde_json::from_value(ev).unwrap_or_default();
        let req = ApiRequest::from_event(&ev);
        prop_assert!(req.is_ok());
        let Ok(req) = req else { return Ok(()) };
        let expected = limit.trim().parse::<usize>().ok().filter(|n| (1..=MAX_PAGE_LIMIT).contains(n));
        prop_assert_eq!(req.page().ok().map(|p| p.limit), expected);
    }

    #[test]
    fn since_of_any_string_is_a_representable_time_or_a_400(s in any::<String>(), now in now()) {
        match api::parse_since(&s, now) {
            Ok(t) => prop_assert!(representable(t), "{s:?} -> {t}"),
            Err(e) => prop_assert_eq!(e.status, 400),
        }
    }

    #[test]
    fn since_of_duration_like_strings_is_a_representable_time_or_a_400(
        s in "[ ]?[0-9]{0,22}[smhdw]?[ ]?|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
        now in now(),
    ) {
        match api::parse_since(&s, now) {
            Ok(t) => prop_assert!(representable(t), "{s:?} -> {t}"),
            Err(e) => prop_assert_eq!(e.status, 400),
        }
    }

    #[test]
    fn a_duration_within_the_lookback_is_that_long_before_now(
        n in 0i64..=api::MAX_LOOKBACK_DAYS,
        unit in proptest::sample::select(vec![("s", 1i64), ("m", 60), ("h", 3_600), ("d", 86_400), ("", 60)]),
        now in (1_800_000_000i64..9_000_000_000).prop_map(|s| Utc.timestamp_opt(s, 0).single().unwrap_or_default()),
    ) {
        let secs = (n * unit.1).min(api::MAX_LOOKBACK_DAYS * 86_400);
        let n = secs / unit.1;
        let got = api::parse_since(&format!("{n}{}", unit.0), now);
        prop_assert_eq!(got, Ok(now - TimeDelta::seconds(n * unit.1)));
    }

    #[test]
    fn any_page_token_is_a_position_or_a_bad_token(token in prop_oneof![
        any::<String>(),
        json::value().prop_map(|v| encode_token(&v)),
        "[A-Za-z0-9_-]{0,40}",
    ]) {
        let page = PageRequest { limit: 1, token: Some(token.clone()) };
        let _ = page.position::<Value>();
        let _ = page.position::<(String, u64)>();
        if let Err(e) = decode_token::<Value>(&token) {
            prop_assert!(e.to_string().starts_with("invalid page token: "), "{e}");
        }
    }

    #[test]
    fn any_position_survives_its_token(position in json::value()) {
        let token = encode_token(&position);
        prop_assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        prop_assert_eq!(decode_token::<Value>(&token).ok(), Some(position));
    }

    #[test]
    fn targets_survive_the_query_string(t in targets()) {
        let q = t.to_query();
        let back = Targets::from_query(q.iter().map(|(k, v)| (*k, v.as_str())));
        prop_assert_eq!(back, Ok(t));
    }

    #[test]
    fn any_query_pairs_are_targets_or_an_error(
        pairs in vec((json::string_from(QUERY_WORDS), json::string_from(QUERY_WORDS)), 0..6),
    ) {
        let _ = Targets::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }

    #[test]
    fn a_merge_patch_applied_twice_is_applied_once(target in json::value(), patch in json::value()) {
        let mut once = target.clone();
        api::merge_patch(&mut once, &patch);
        let mut twice = once.clone();
        api::merge_patch(&mut twice, &patch);
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn any_path_matches_a_route_or_not(
        method in json::string_from(&["GET", "POST", "PUT", "PATCH", "DELETE", "get"]),
        path in vec(json::string_from(&["", "v1", "devices", "commands", "config", "certificate", "{deviceId}", "w1"]), 0..6)
            .prop_map(|p| p.join("/")),
        template in vec(json::string_from(&["", "v1", "{deviceId}", "{", "}", "{}", "devices"]), 0..5)
            .prop_map(|p| p.join("/")),
    ) {
        let routes = RoutesTable::load().map(|t| t.functions).unwrap_or_default();
        for route in routes.iter().flat_map(|f| f.http.iter()) {
            if let Some(params) = route.match_path(&method, &path) {
                prop_assert!(params.values().all(|v| !v.is_empty() && !v.contains('/')));
            }
        }
        let _ = HttpRoute { method: method.clone(), path: template }.match_path(&method, &path);
    }
}

/// `application/x-www-form-urlencoded` pairs, written from the spec (not the crate the
/// API uses): split on `&`, then on the first `=`, `+` is a space, `%XX` a byte.
fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && hex(bytes[i + 1]).is_some()
                && hex(bytes[i + 2]).is_some() =>
            {
                out.push(hex(bytes[i + 1]).unwrap_or(0) * 16 + hex(bytes[i + 2]).unwrap_or(0));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes every byte but unreserved ASCII.
fn utf8_percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
