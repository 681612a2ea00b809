//! The meter: an HTTP proxy between the AWS adapters and the endpoint that records each
//! DynamoDB request and response, and the capacity units DynamoDB would charge for them
//! by its documented rules, computed from the items' sizes (the endpoint's own
//! `ConsumedCapacity` is not used: moto reports a fixed 1.0).
//!
//! Rules (DynamoDB developer guide, "Read/write capacity mode"):
//! - a write costs 1 WRU per KB (rounded up) of the item, in a transaction twice;
//!   a failed conditional write costs the same; each index the write changes costs its
//!   entry's size again (twice when the entry's key changes: a delete and a put);
//! - a strongly consistent read costs 1 RRU per 4 KB (rounded up) of each item (for a
//!   Query or Scan, of the request's items together), an eventually consistent one half.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{body::Bytes, extract::State, http::HeaderMap, routing::any, Router};
use serde_json::Value;

/// One DynamoDB call as sent and answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub op: String,
    pub request: Value,
    pub response: Value,
}

#[derive(Clone)]
struct Upstream {
    url: String,
    http: reqwest::Client,
    calls: Arc<Mutex<Vec<Call>>>,
}

/// The proxy, listening on loopback.
pub struct Meter {
    pub url: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Meter {
    pub async fn start(upstream: &str) -> Meter {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = Upstream {
            url: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            calls: calls.clone(),
        };
        let app = Router::new().fallback(any(forward)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Meter { url, calls }
    }

    /// The calls since the last take.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

async fn forward(
    State(up): State<Upstream>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (axum::http::StatusCode, HeaderMap, Bytes) {
    let mut req = up.http.post(format!(
        "{}{}",
        up.url,
        uri.path_and_query().map_or("/", |p| p.as_str())
    ));
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let resp = req.body(body.clone()).send().await.unwrap();
    let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let mut out_headers = HeaderMap::new();
    for (k, v) in resp.headers() {
        if k != "content-length" && k != "transfer-encoding" {
            out_headers.insert(k.clone(), v.clone());
        }
    }
    let bytes = resp.bytes().await.unwrap();
    if let Some(target) = headers.get("x-amz-target").and_then(|t| t.to_str().ok()) {
        if let Some(op) = target.strip_prefix("DynamoDB_20120810.") {
            up.calls.lock().unwrap().push(Call {
                op: op.to_string(),
                request: serde_json::from_slice(&body).unwrap_or(Value::Null),
                response: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            });
        }
    }
    (status, out_headers, bytes)
}

/// The size DynamoDB counts for an item in its JSON wire form (attribute names plus
/// values: strings and binary by their bytes, numbers about one byte per two digits,
/// maps and lists 3 bytes plus their elements).
pub fn item_size(item: &Value) -> usize {
    item.as_object()
        .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
}

fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|m| m.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => inner
            .as_str()
            .map_or(1, |n| n.trim_start_matches('-').len().div_ceil(2) + 1),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "M" => 3 + item_size(inner),
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |l| l.iter().map(|e| 1 + value_size(e)).sum())
        }
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |l| {
            l.iter().map(|e| e.as_str().map_or(0, str::len)).sum()
        }),
        _ => 0,
    }
}

/// Which attributes key each table's indexes, and whether the index holds whole items
/// (`ALL`) or keys only: as `infra/cdk/lib/data-stack.ts` creates them.
pub struct Indexes {
    /// Per table suffix (`twins`, `events`, ...): (partition key attribute, all attributes projected).
    pub by_table: HashMap<&'static str, Vec<(&'static str, bool)>>,
}

impl Default for Indexes {
    fn default() -> Self {
        let mut by_table = HashMap::new();
        by_table.insert("twins", vec![("gsi1pk", false), ("gsi2pk", false)]);
        for t in ["schemas", "commands", "events", "telemetry"] {
            by_table.insert(t, vec![("gsi1pk", true)]);
        }
        Self { by_table }
    }
}

/// Capacity units of a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Units {
    pub requests: u64,
    pub wru: f64,
    pub rru: f64,
}

impl std::ops::AddAssign for Units {
    fn add_assign(&mut self, o: Self) {
        self.requests += o.requests;
        self.wru += o.wru;
        self.rru += o.rru;
    }
}

fn kb(size: usize) -> f64 {
    size.max(1).div_ceil(1024) as f64
}

fn four_kb(size: usize, consistent: bool) -> f64 {
    let units = size.max(1).div_ceil(4096) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

impl Indexes {
    fn table_of<'a>(&self, name: &'a str) -> &'a str {
        name.rsplit('-').next().unwrap_or(name)
    }

    /// Index write units of writing `item` to `table`; `key_changes`: the write moves
    /// an existing entry (delete + put).
    fn index_writes(&self, table: &str, item: &Value, key_changes: bool) -> f64 {
        let Some(indexes) = self.by_table.get(self.table_of(table)) else {
            return 0.0;
        };
        let size = item_size(item);
        indexes
            .iter()
            .filter(|(pk, _)| item.get(*pk).is_some())
            .map(|(_, all)| {
                let entry = if *all { size } else { 100 + 64 };
                kb(entry) * if key_changes { 2.0 } else { 1.0 }
            })
            .sum()
    }

    /// The units of one call; `stored` gives an item's size after an UpdateItem.
    pub fn units(&self, call: &Call, stored: &dyn Fn(&str, &Value) -> Option<Value>) -> Units {
        let r = &call.request;
        let table = r["TableName"].as_str().unwrap_or("");
        let consistent = r["ConsistentRead"].as_bool().unwrap_or(false);
        let mut u = Units {
            requests: 1,
            ..Units::default()
        };
        match call.op.as_str() {
            "PutItem" => {
                let item = &r["Item"];
                u.wru = kb(item_size(item)) + self.index_writes(table, item, false);
            }
            "UpdateItem" => {
                let after = stored(table, &r["Key"]).unwrap_or(Value::Null);
                let moves = r["UpdateExpression"]
                    .as_str()
                    .is_some_and(|e| e.contains("gsi2sk"));
                u.wru = kb(item_size(&after))
                    + if moves {
                        self.index_writes(table, &after, true)
                    } else {
                        0.0
                    };
            }
            "DeleteItem" => u.wru = 1.0,
            "BatchWriteItem" => {
                for (t, reqs) in r["RequestItems"].as_object().into_iter().flatten() {
                    for w in reqs.as_array().into_iter().flatten() {
                        let item = &w["PutRequest"]["Item"];
                        u.wru += kb(item_size(item)) + self.index_writes(t, item, false);
                    }
                }
            }
            "TransactWriteItems" => {
                for a in r["TransactItems"].as_array().into_iter().flatten() {
                    let (kind, op) = a.as_object().and_then(|m| m.iter().next()).unwrap();
                    let t = op["TableName"].as_str().unwrap_or("");
                    let item = match kind.as_str() {
                        "Put" => op["Item"].clone(),
                        _ => stored(t, &op["Key"]).unwrap_or(Value::Null),
                    };
                    u.wru += 2.0 * kb(item_size(&item));
                    if kind == "Put" {
                        u.wru += 2.0 * self.index_writes(t, &item, false);
                    }
                }
            }
            "GetItem" => u.rru = four_kb(item_size(&call.response["Item"]), consistent),
            "Query" | "Scan" => {
                let size: usize = call.response["Items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(item_size)
                    .sum();
                u.rru = four_kb(size, consistent && r["IndexName"].is_null());
            }
            "BatchGetItem" => {
                for (t, items) in call.response["Responses"].as_object().into_iter().flatten() {
                    let c = r["RequestItems"][t]["ConsistentRead"]
                        .as_bool()
                        .unwrap_or(false);
                    for i in items.as_array().into_iter().flatten() {
                        u.rru += four_kb(item_size(i), c);
                    }
                }
            }
            "TransactGetItems" => {
                for i in call.response["Responses"].as_array().into_iter().flatten() {
                    u.rru += 2.0 * four_kb(item_size(&i["Item"]), true);
                }
            }
            _ => {}
        }
        u
    }
}
