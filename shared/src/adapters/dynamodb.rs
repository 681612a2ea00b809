//! DynamoDB adapters: twins, schemas, commands, events, and the DynamoDB telemetry sink.
//!
//! Every table has the key schema of the CDK app (`infra/cdk/lib/data-stack.ts`):
//! partition key `pk` (S), sort key `sk` (S), GSI `gsi1` on `gsi1pk`/`gsi1sk` (S, all
//! attributes projected), TTL attribute `expiresAt` (epoch seconds). Items are converted
//! with `serde_dynamo` from the structs below; no attribute map is built by hand.
//!
//! | table | item | pk | sk | gsi1pk / gsi1sk |
//! |---|---|---|---|---|
//! | twins | twin | `DEV#<id>` | `TWIN` | `NS#<namespace>` / `<name>` |
//! | twins | name reservation | `NAME#<namespace>/<name>` | `NAME` | `NAME#<name>` / `<namespace>` |
//! | twins | label index | `LABEL#<k>=<v>` | `<id>` | - |
//! | schemas | schema | `DEV#<id>` | `SCHEMA` | - |
//! | commands | command | `CMD#<id>` | `CMD` | `DEV#<device>` / `<created time>#<id>` |
//! | events | event | `DAY#<yyyy-mm-dd>` | `<time ns>:<id>` | `DEV#<device>` / `<time ns>:<id>` |
//! | events | id guard (idempotency) | `EVT#<id>` | `EVT` | - |
//! | events | day directory | `DAYS` | `<yyyy-mm-dd>` | - |
//! | telemetry | point | `TLM#<device>#<measure>` | `<time>#<seq>` (zero-padded) | - |
//! | telemetry | series summary | `SERIES#<device>` | `<measure>` | - |
//!
//! Twin writes are transactions (TransactWriteItems): the twin item conditional on its
//! `version`, its name reservation and its label index items together, so name/namespace
//! uniqueness and the label index can never disagree with the twins.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    operation::transact_write_items::TransactWriteItemsError,
    types::{
        AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
        KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put, ReturnValue,
        ScalarAttributeType, TableStatus, TimeToLiveSpecification, TransactWriteItem,
    },
    Client,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::aws::{backoff, store_error};
use crate::domain::{
    command::CommandOutcome, CommandRecord, Event, EventFilter, Targets, Twin, Versioned,
};
use crate::ports::*;
use crate::telemetry::{FieldValue, TelemetryRecord};

pub use aws_sdk_dynamodb;

/// Largest item DynamoDB stores.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Most actions in one TransactWriteItems call.
const MAX_TRANSACT_ITEMS: usize = 100;
/// The one global secondary index.
pub const GSI1: &str = "gsi1";

type Item = HashMap<String, AttributeValue>;

fn encode<T: Serialize>(what: &str, v: &T) -> StoreResult<Item> {
    serde_dynamo::to_item(v).map_err(|e| StoreError::Corrupt(format!("encoding {what}: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, item: Item) -> StoreResult<T> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("decoding {what}: {e}")))
}

fn decode_all<T: DeserializeOwned>(what: &str, items: Vec<Item>) -> StoreResult<Vec<T>> {
    items.into_iter().map(|i| decode(what, i)).collect()
}

/// Expression attribute values from a JSON object (`{":v": 3}`), through serde_dynamo.
fn values(v: serde_json::Value) -> StoreResult<Item> {
    encode("expression values", &v)
}

fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Key {
    pk: String,
    sk: String,
}

impl Key {
    fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }

    fn item(&self) -> StoreResult<Item> {
        encode("key", self)
    }
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Corrupt(format!("building a DynamoDB request: {e}"))
}

/// A condition expression with its attribute names and values.
type Condition<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<Item>);

/// A condition as a request's three fields: expression, attribute names (none when
/// empty), attribute values.
fn condition_fields(
    condition: Option<Condition<'_>>,
) -> (
    Option<String>,
    Option<HashMap<String, String>>,
    Option<Item>,
) {
    match condition {
        None => (None, None, None),
        Some((cond, n, v)) => (Some(cond.to_string()), (!n.is_empty()).then(|| names(n)), v),
    }
}

/// A table and the client to reach it.
#[derive(Clone)]
struct Table {
    client: Client,
    name: Arc<str>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// How a transaction failed.
enum TxError {
    /// These actions' conditions failed (indexes into the transaction).
    Condition(Vec<usize>),
    Store(StoreError),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

/// How a single-item write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Written; `replaced`: an item was there before (only known when asked for).
    Done { replaced: bool },
    /// The condition failed: nothing was written.
    ConditionFailed,
}

/// What a [`Query`] reads.
#[derive(Debug, Clone, Copy)]
enum Read<'a> {
    /// Query: the partition `pk` of the table (`index` None) or of an index, sort keys
    /// from `sk_from` (inclusive) on.
    Partition {
        index: Option<&'a str>,
        pk: &'a str,
        sk_from: Option<&'a str>,
    },
    /// Scan: every item whose sort key is this.
    SortKey(&'a str),
}

/// The one builder of Query (and Scan) requests, and the one loop over their pages.
/// From [`Table::partition`] or [`Table::scan_sk`].
#[derive(Debug, Clone, Copy)]
struct Query<'a> {
    table: &'a Table,
    read: Read<'a>,
    forward: bool,
    /// Consistent reads (never on an index, where DynamoDB has none).
    consistent: bool,
}

/// A key condition (or filter) with its attribute names and values.
#[derive(Debug, Clone, PartialEq)]
struct Expression {
    text: &'static str,
    names: HashMap<String, String>,
    values: Item,
}

impl<'a> Query<'a> {
    /// The partition of this index rather than of the table.
    fn index(mut self, name: &'a str) -> Self {
        if let Read::Partition { index, .. } = &mut self.read {
            *index = Some(name);
        }
        self
    }

    /// Only sort keys from `from` on (inclusive), when set.
    fn sk_from(mut self, from: Option<&'a str>) -> Self {
        if let Read::Partition { sk_from, .. } = &mut self.read {
            *sk_from = from;
        }
        self
    }

    /// Descending sort keys.
    fn newest_first(mut self) -> Self {
        self.forward = false;
        self
    }

    /// Eventually consistent reads on the table too.
    fn eventually_consistent(mut self) -> Self {
        self.consistent = false;
        self
    }

    fn expression(&self) -> StoreResult<Expression> {
        Ok(match self.read {
            Read::Partition { index, pk, sk_from } => {
                let (pk_name, sk_name) = match index {
                    Some(_) => ("gsi1pk", "gsi1sk"),
                    None => ("pk", "sk"),
                };
                match sk_from {
                    Some(from) => Expression {
                        text: "#pk = :pk AND #sk >= :from",
                        names: names(&[("#pk", pk_name), ("#sk", sk_name)]),
                        values: values(serde_json::json!({ ":pk": pk, ":from": from }))?,
                    },
                    None => Expression {
                        text: "#pk = :pk",
                        names: names(&[("#pk", pk_name)]),
                        values: values(serde_json::json!({ ":pk": pk }))?,
                    },
                }
            }
            Read::SortKey(sk) => Expression {
                text: "#sk = :sk",
                names: names(&[("#sk", "sk")]),
                values: values(serde_json::json!({ ":sk": sk }))?,
            },
        })
    }

    /// The pages, one request each.
    fn pages(self) -> StoreResult<Pages<'a>> {
        Ok(Pages {
            expression: self.expression()?,
            query: self,
            start: None,
            done: false,
        })
    }

    /// Every item.
    async fn all(self) -> StoreResult<Vec<Item>> {
        let mut pages = self.pages()?;
        let mut out = Vec::new();
        while let Some(items) = pages.next(None).await? {
            out.extend(items);
        }
        Ok(out)
    }

    /// The first `limit` items (at least one request).
    async fn first(self, limit: usize) -> StoreResult<Vec<Item>> {
        let mut pages = self.pages()?;
        let mut out = Vec::new();
        while let Some(items) = pages
            .next(Some(limit.saturating_sub(out.len()).max(1)))
            .await?
        {
            out.extend(items);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

/// The pages of a [`Query`], from [`Query::pages`].
struct Pages<'a> {
    query: Query<'a>,
    expression: Expression,
    start: Option<Item>,
    done: bool,
}

impl Pages<'_> {
    /// The next page, of at most `size` items when set; `None` after the last.
    async fn next(&mut self, size: Option<usize>) -> StoreResult<Option<Vec<Item>>> {
        if self.done {
            return Ok(None);
        }
        let Query {
            table,
            read,
            forward,
            consistent,
        } = self.query;
        let e = &self.expression;
        let start = self.start.take();
        let (items, next) = match read {
            Read::Partition { index, .. } => {
                let out = table
                    .client
                    .query()
                    .table_name(&*table.name)
                    .set_index_name(index.map(str::to_owned))
                    .key_condition_expression(e.text)
                    .set_expression_attribute_names(Some(e.names.clone()))
                    .set_expression_attribute_values(Some(e.values.clone()))
                    .scan_index_forward(forward)
                    .set_consistent_read((consistent && index.is_none()).then_some(true))
                    .set_limit(size.map(|s| i32::try_from(s).unwrap_or(i32::MAX)))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| store_error(table.what("Query"), e))?;
                (out.items, out.last_evaluated_key)
            }
            Read::SortKey(_) => {
                let out = table
                    .client
                    .scan()
                    .table_name(&*table.name)
                    .filter_expression(e.text)
                    .set_expression_attribute_names(Some(e.names.clone()))
                    .set_expression_attribute_values(Some(e.values.clone()))
                    .set_consistent_read(consistent.then_some(true))
                    .set_limit(size.map(|s| i32::try_from(s).unwrap_or(i32::MAX)))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| store_error(table.what("Scan"), e))?;
                (out.items, out.last_evaluated_key)
            }
        };
        self.done = next.is_none();
        self.start = next;
        Ok(Some(items.unwrap_or_default()))
    }
}

impl Table {
    fn new(client: Client, name: &str) -> Self {
        Self {
            client,
            name: Arc::from(name),
        }
    }

    fn what(&self, op: &str) -> String {
        format!("DynamoDB {op} on {}", self.name)
    }

    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.name)
            .set_key(Some(key.item()?))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(self.what("GetItem"), e))?;
        Ok(out.item)
    }

    /// Items by key, any order; missing ones are absent. Unprocessed keys are retried.
    async fn batch_get(&self, keys: Vec<Key>) -> StoreResult<Vec<Item>> {
        let mut out = Vec::with_capacity(keys.len());
        let mut uniq: Vec<Key> = Vec::new();
        let mut seen = HashSet::new();
        for k in keys {
            if seen.insert(k.clone()) {
                uniq.push(k);
            }
        }
        for chunk in uniq.chunks(100) {
            let mut pending: Vec<Item> = chunk.iter().map(Key::item).collect::<StoreResult<_>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(build_err)?;
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(&*self.name, ka)
                    .send()
                    .await
                    .map_err(|e| store_error(self.what("BatchGetItem"), e))?;
                if let Some(mut r) = resp.responses {
                    out.extend(r.remove(&*self.name).unwrap_or_default());
                }
                if let Some(mut u) = resp.unprocessed_keys {
                    if let Some(ka) = u.remove(&*self.name) {
                        pending = ka.keys;
                    }
                }
                if !pending.is_empty() {
                    if attempt >= 8 {
                        return Err(StoreError::Unavailable {
                            message: format!(
                                "{}: keys left unprocessed",
                                self.what("BatchGetItem")
                            ),
                            source: None,
                        });
                    }
                    tokio::time::sleep(backoff(
                        attempt,
                        Duration::from_millis(50),
                        Duration::from_secs(2),
                    ))
                    .await;
                }
            }
        }
        Ok(out)
    }

    /// A query of the partition `pk`: of the table, oldest first, with consistent reads
    /// (refine it with [`Query`]'s methods).
    fn partition<'a>(&'a self, pk: &'a str) -> Query<'a> {
        Query {
            table: self,
            read: Read::Partition {
                index: None,
                pk,
                sk_from: None,
            },
            forward: true,
            consistent: true,
        }
    }

    /// Every item whose sort key is `sk` (a full scan: only for "all devices").
    fn scan_sk<'a>(&'a self, sk: &'a str) -> Query<'a> {
        Query {
            table: self,
            read: Read::SortKey(sk),
            forward: true,
            consistent: true,
        }
    }

    /// PutItem, unless `condition` fails. `return_old`: report whether it replaced an
    /// item.
    async fn put_item(
        &self,
        item: Item,
        condition: Option<Condition<'_>>,
        return_old: bool,
    ) -> StoreResult<Written> {
        let (cond, n, v) = condition_fields(condition);
        let result = self
            .client
            .put_item()
            .table_name(&*self.name)
            .set_item(Some(item))
            .set_condition_expression(cond)
            .set_expression_attribute_names(n)
            .set_expression_attribute_values(v)
            .set_return_values(return_old.then_some(ReturnValue::AllOld))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Written::Done {
                replaced: out.attributes.is_some_and(|a| !a.is_empty()),
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(Written::ConditionFailed)
            }
            Err(e) => Err(store_error(self.what("PutItem"), e)),
        }
    }

    /// UpdateItem with the expression `update`, unless `condition` fails; `names` and
    /// `values` serve both expressions.
    async fn update_item(
        &self,
        key: &Key,
        update: &str,
        condition: Option<&str>,
        attribute_names: &[(&str, &str)],
        values: Item,
    ) -> StoreResult<Written> {
        let result = self
            .client
            .update_item()
            .table_name(&*self.name)
            .set_key(Some(key.item()?))
            .update_expression(update)
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(Some(names(attribute_names)))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Written::Done { replaced: false }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(Written::ConditionFailed)
            }
            Err(e) => Err(store_error(self.what("UpdateItem"), e)),
        }
    }

    async fn delete_item(&self, key: &Key) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&*self.name)
            .set_key(Some(key.item()?))
            .send()
            .await
            .map_err(|e| store_error(self.what("DeleteItem"), e))?;
        Ok(())
    }

    fn put(&self, item: Item, condition: Option<Condition<'_>>) -> StoreResult<TransactWriteItem> {
        let (cond, n, v) = condition_fields(condition);
        let p = Put::builder()
            .table_name(&*self.name)
            .set_item(Some(item))
            .set_condition_expression(cond)
            .set_expression_attribute_names(n)
            .set_expression_attribute_values(v);
        Ok(TransactWriteItem::builder()
            .put(p.build().map_err(build_err)?)
            .build())
    }

    fn delete(
        &self,
        key: &Key,
        condition: Option<Condition<'_>>,
    ) -> StoreResult<TransactWriteItem> {
        let (cond, n, v) = condition_fields(condition);
        let d = Delete::builder()
            .table_name(&*self.name)
            .set_key(Some(key.item()?))
            .set_condition_expression(cond)
            .set_expression_attribute_names(n)
            .set_expression_attribute_values(v);
        Ok(TransactWriteItem::builder()
            .delete(d.build().map_err(build_err)?)
            .build())
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), TxError> {
        if items.len() > MAX_TRANSACT_ITEMS {
            return Err(TxError::Store(StoreError::TooLarge(format!(
                "a write of {} items is over DynamoDB's {MAX_TRANSACT_ITEMS} per transaction (too many labels?)",
                items.len()
            ))));
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(tce)) =
            err.as_service_error()
        {
            let reasons = tce.cancellation_reasons();
            let failed: Vec<usize> = reasons
                .iter()
                .enumerate()
                .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                .map(|(i, _)| i)
                .collect();
            if !failed.is_empty() {
                return Err(TxError::Condition(failed));
            }
            let other: Vec<String> = reasons
                .iter()
                .filter(|r| r.code().is_some_and(|c| c != "None"))
                .map(|r| format!("{}: {}", r.code().unwrap_or(""), r.message().unwrap_or("")))
                .collect();
            let joined = other.join("; ");
            if joined.contains("Item size") || joined.contains("item size") {
                return Err(TxError::Store(StoreError::TooLarge(joined)));
            }
            if other.iter().all(|r| {
                r.starts_with("TransactionConflict")
                    || r.starts_with("ThrottlingError")
                    || r.starts_with("ProvisionedThroughputExceeded")
            }) {
                return Err(TxError::Store(StoreError::unavailable(
                    format!("{}: {joined}", self.what("TransactWriteItems")),
                    err,
                )));
            }
            return Err(TxError::Store(StoreError::Corrupt(format!(
                "{}: {joined}",
                self.what("TransactWriteItems")
            ))));
        }
        Err(TxError::Store(store_error(
            self.what("TransactWriteItems"),
            err,
        )))
    }
}

/// Creates a table with the contract key schema (pk/sk, GSI gsi1, TTL on expiresAt),
/// unless it exists, and waits until it is active.
pub async fn create_table(client: &Client, name: &str) -> StoreResult<()> {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build_err)
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .map_err(build_err)
    };
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(key("gsi1pk", KeyType::Hash)?)
        .key_schema(key("gsi1sk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(build_err)?;
    let created = client
        .create_table()
        .table_name(name)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .attribute_definitions(attr("gsi1pk")?)
        .attribute_definitions(attr("gsi1sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(gsi)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(store_error(format!("DynamoDB CreateTable {name}"), e)),
    }
    for attempt in 1..=120u32 {
        let d = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| store_error(format!("DynamoDB DescribeTable {name}"), e))?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        if attempt == 120 {
            return Err(StoreError::Unavailable {
                message: format!("table {name} did not become active"),
                source: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name("expiresAt")
        .build()
        .map_err(build_err)?;
    match client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // Already enabled.
        Err(e) if e.message().is_some_and(|m| m.contains("already enabled")) => Ok(()),
        Err(e) => Err(store_error(format!("DynamoDB UpdateTimeToLive {name}"), e)),
    }
}

use aws_sdk_dynamodb::error::ProvideErrorMetadata;

// ---------------------------------------------------------------------------------------
// Twins

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TwinItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    version: u64,
    device_id: String,
    twin: Twin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    device_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabelItem {
    pk: String,
    sk: String,
    device_id: String,
}

const TWIN_SK: &str = "TWIN";
const NAME_SK: &str = "NAME";

fn twin_key(id: &str) -> Key {
    Key::new(format!("DEV#{id}"), TWIN_SK)
}

fn name_key(namespace: &str, name: &str) -> Key {
    Key::new(format!("NAME#{namespace}/{name}"), NAME_SK)
}

fn label_pk(k: &str, v: &str) -> String {
    format!("LABEL#{k}={v}")
}

impl TwinItem {
    fn new(twin: &Twin, version: u64) -> StoreResult<Self> {
        let id = twin.spec.device_id.clone();
        let size = serde_json::to_vec(twin)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .len();
        if size > MAX_ITEM_BYTES - 1024 {
            return Err(StoreError::TooLarge(format!(
                "twin {id} would be {size} bytes; DynamoDB stores at most {MAX_ITEM_BYTES} per item"
            )));
        }
        let key = twin_key(&id);
        Ok(Self {
            pk: key.pk,
            sk: key.sk,
            gsi1pk: format!("NS#{}", twin.meta.namespace),
            gsi1sk: twin.meta.name.clone(),
            version,
            device_id: id,
            twin: twin.clone(),
        })
    }
}

impl From<TwinItem> for Versioned<Twin> {
    fn from(i: TwinItem) -> Self {
        Versioned {
            version: i.version,
            value: i.twin,
        }
    }
}

fn name_item(twin: &Twin) -> NameItem {
    let key = name_key(&twin.meta.namespace, &twin.meta.name);
    NameItem {
        pk: key.pk,
        sk: key.sk,
        gsi1pk: format!("NAME#{}", twin.meta.name),
        gsi1sk: twin.meta.namespace.clone(),
        device_id: twin.spec.device_id.clone(),
    }
}

fn label_set(twin: &Twin) -> BTreeSet<(String, String)> {
    twin.meta
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Twins on DynamoDB (see the module docs for the items).
#[derive(Clone, Debug)]
pub struct DynamoTwinStore {
    table: Table,
}

impl DynamoTwinStore {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    async fn read(&self, id: &str) -> StoreResult<Option<TwinItem>> {
        match self.table.get(&twin_key(id)).await? {
            Some(item) => decode("twin", item).map(Some),
            None => Ok(None),
        }
    }

    async fn by_ids(&self, ids: impl IntoIterator<Item = String>) -> StoreResult<Vec<TwinItem>> {
        let keys: Vec<Key> = ids.into_iter().map(|id| twin_key(&id)).collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        decode_all("twin", self.table.batch_get(keys).await?)
    }
}

#[async_trait]
impl TwinStore for DynamoTwinStore {
    async fn get(&self, device_id: &str) -> StoreResult<Option<Versioned<Twin>>> {
        Ok(self.read(device_id).await?.map(Into::into))
    }

    async fn get_by_name(
        &self,
        name: &str,
        namespace: &str,
    ) -> StoreResult<Option<Versioned<Twin>>> {
        let Some(item) = self.table.get(&name_key(namespace, name)).await? else {
            return Ok(None);
        };
        let n: NameItem = decode("name reservation", item)?;
        self.get(&n.device_id).await
    }

    async fn list(&self, targets: &Targets) -> StoreResult<Vec<Versioned<Twin>>> {
        let mut found: Vec<TwinItem> = Vec::new();
        if targets.is_all() {
            found = decode_all("twin", self.table.scan_sk(TWIN_SK).all().await?)?;
        } else if targets.has_selectors() {
            let mut ids: BTreeSet<String> = targets.ids.iter().cloned().collect();
            for ns in &targets.namespaces {
                let pk = format!("NS#{ns}");
                let items = self.table.partition(&pk).index(GSI1).all().await?;
                found.extend(decode_all::<TwinItem>("twin", items)?);
            }
            for n in &targets.names {
                match &n.namespace {
                    Some(ns) => {
                        if let Some(item) = self.table.get(&name_key(ns, &n.name)).await? {
                            ids.insert(decode::<NameItem>("name reservation", item)?.device_id);
                        }
                    }
                    None => {
                        let pk = format!("NAME#{}", n.name);
                        let items = self.table.partition(&pk).index(GSI1).all().await?;
                        for n in decode_all::<NameItem>("name reservation", items)? {
                            ids.insert(n.device_id);
                        }
                    }
                }
            }
            let have: HashSet<String> = found.iter().map(|t| t.device_id.clone()).collect();
            found.extend(
                self.by_ids(ids.into_iter().filter(|i| !have.contains(i)))
                    .await?,
            );
        } else {
            // Labels only: intersect the label index partitions, then read the twins.
            let mut ids: Option<BTreeSet<String>> = None;
            for (k, v) in &targets.labels {
                let pk = label_pk(k, v);
                let items = self.table.partition(&pk).all().await?;
                let these: BTreeSet<String> = decode_all::<LabelItem>("label index", items)?
                    .into_iter()
                    .map(|l| l.device_id)
                    .collect();
                ids = Some(match ids {
                    None => these,
                    Some(prev) => prev.intersection(&these).cloned().collect(),
                });
                if ids.as_ref().is_some_and(BTreeSet::is_empty) {
                    break;
                }
            }
            found = self.by_ids(ids.unwrap_or_default()).await?;
        }
        let mut out: BTreeMap<String, Versioned<Twin>> = BTreeMap::new();
        for t in found {
            if targets.matches(&t.twin) {
                out.insert(t.device_id.clone(), t.into());
            }
        }
        Ok(out.into_values().collect())
    }

    async fn create(&self, twin: &Twin) -> StoreResult<Versioned<Twin>> {
        let item = TwinItem::new(twin, 1)?;
        let t = &self.table;
        let mut actions = vec![
            t.put(
                encode("twin", &item)?,
                Some(("attribute_not_exists(pk)", &[], None)),
            )?,
            t.put(
                encode("name reservation", &name_item(twin))?,
                Some(("attribute_not_exists(pk)", &[], None)),
            )?,
        ];
        for (k, v) in label_set(twin) {
            let l = LabelItem {
                pk: label_pk(&k, &v),
                sk: item.device_id.clone(),
                device_id: item.device_id.clone(),
            };
            actions.push(t.put(encode("label index", &l)?, None)?);
        }
        match t.transact(actions).await {
            Ok(()) => Ok(Versioned {
                version: 1,
                value: twin.clone(),
            }),
            Err(TxError::Condition(failed)) if failed.contains(&0) => Err(
                StoreError::AlreadyExists(format!("device {}", item.device_id)),
            ),
            Err(TxError::Condition(_)) => Err(StoreError::AlreadyExists(format!(
                "name {}",
                twin.display_name()
            ))),
            Err(TxError::Store(e)) => Err(e),
        }
    }

    async fn update(&self, twin: &Twin, expected_version: u64) -> StoreResult<Versioned<Twin>> {
        let id = twin.spec.device_id.clone();
        let item = TwinItem::new(twin, expected_version + 1)?;
        let Some(current) = self.read(&id).await? else {
            return Err(StoreError::NotFound(format!("device {id}")));
        };
        if current.version != expected_version {
            return Err(StoreError::Conflict(format!("device {id}")));
        }
        let t = &self.table;
        let expected = values(serde_json::json!({ ":v": expected_version }))?;
        let mut actions = vec![t.put(
            encode("twin", &item)?,
            Some(("#v = :v", &[("#v", "version")], Some(expected))),
        )?];
        let old = &current.twin;
        let mut new_name_at = None;
        if (&old.meta.namespace, &old.meta.name) != (&twin.meta.namespace, &twin.meta.name) {
            let owner = values(serde_json::json!({ ":id": id }))?;
            actions.push(t.delete(
                &name_key(&old.meta.namespace, &old.meta.name),
                Some(("#d = :id", &[("#d", "deviceId")], Some(owner))),
            )?);
            new_name_at = Some(actions.len());
            actions.push(t.put(
                encode("name reservation", &name_item(twin))?,
                Some(("attribute_not_exists(pk)", &[], None)),
            )?);
        }
        let (before, after) = (label_set(old), label_set(twin));
        for (k, v) in before.difference(&after) {
            actions.push(t.delete(&Key::new(label_pk(k, v), id.clone()), None)?);
        }
        for (k, v) in after.difference(&before) {
            let l = LabelItem {
                pk: label_pk(k, v),
                sk: id.clone(),
                device_id: id.clone(),
            };
            actions.push(t.put(encode("label index", &l)?, None)?);
        }
        match t.transact(actions).await {
            Ok(()) => Ok(Versioned {
                version: expected_version + 1,
                value: twin.clone(),
            }),
            Err(TxError::Condition(failed)) => {
                if new_name_at.is_some_and(|i| failed.contains(&i)) && !failed.contains(&0) {
                    Err(StoreError::AlreadyExists(format!(
                        "name {}",
                        twin.display_name()
                    )))
                } else {
                    Err(StoreError::Conflict(format!("device {id}")))
                }
            }
            Err(TxError::Store(e)) => Err(e),
        }
    }

    async fn delete(&self, device_id: &str) -> StoreResult<Option<Twin>> {
        for attempt in 1..=crate::service::MAX_TWIN_ATTEMPTS as u32 {
            let Some(current) = self.read(device_id).await? else {
                return Ok(None);
            };
            let t = &self.table;
            let expected = values(serde_json::json!({ ":v": current.version }))?;
            let mut actions = vec![
                t.delete(
                    &twin_key(device_id),
                    Some(("#v = :v", &[("#v", "version")], Some(expected))),
                )?,
                t.delete(
                    &name_key(&current.twin.meta.namespace, &current.twin.meta.name),
                    None,
                )?,
            ];
            for (k, v) in label_set(&current.twin) {
                actions.push(t.delete(&Key::new(label_pk(&k, &v), device_id), None)?);
            }
            match t.transact(actions).await {
                Ok(()) => return Ok(Some(current.twin)),
                Err(TxError::Condition(_)) => {
                    tokio::time::sleep(backoff(
                        attempt,
                        Duration::from_millis(10),
                        Duration::from_millis(500),
                    ))
                    .await;
                }
                Err(TxError::Store(e)) => return Err(e),
            }
        }
        Err(StoreError::Conflict(format!("device {device_id}")))
    }
}

// ---------------------------------------------------------------------------------------
// Schemas

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaItem {
    pk: String,
    sk: String,
    device_id: String,
    /// zlib-compressed FileDescriptorSet, stored as Binary.
    #[serde(with = "serde_bytes")]
    compressed: Vec<u8>,
    hash: String,
    #[serde(default)]
    package_names: Vec<String>,
    updated_at: DateTime<Utc>,
}

fn schema_key(id: &str) -> Key {
    Key::new(format!("DEV#{id}"), "SCHEMA")
}

/// Device schemas on DynamoDB (compressed bytes as a Binary attribute).
#[derive(Clone, Debug)]
pub struct DynamoSchemaStore {
    table: Table,
}

impl DynamoSchemaStore {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }
}

#[async_trait]
impl SchemaStore for DynamoSchemaStore {
    async fn get(&self, device_id: &str) -> StoreResult<Option<StoredSchema>> {
        let Some(item) = self.table.get(&schema_key(device_id)).await? else {
            return Ok(None);
        };
        let s: SchemaItem = decode("schema", item)?;
        Ok(Some(StoredSchema {
            device_id: s.device_id,
            compressed: Bytes::from(s.compressed),
            hash: s.hash,
            package_names: s.package_names,
            updated_at: s.updated_at,
        }))
    }

    async fn put(&self, schema: &StoredSchema) -> StoreResult<()> {
        let size =
            schema.compressed.len() + schema.package_names.iter().map(String::len).sum::<usize>();
        if size > MAX_ITEM_BYTES - 1024 {
            return Err(StoreError::TooLarge(format!(
                "schema of {} is {size} bytes compressed; DynamoDB stores at most {MAX_ITEM_BYTES} per item",
                schema.device_id
            )));
        }
        let key = schema_key(&schema.device_id);
        let item = SchemaItem {
            pk: key.pk,
            sk: key.sk,
            device_id: schema.device_id.clone(),
            compressed: schema.compressed.to_vec(),
            hash: schema.hash.clone(),
            package_names: schema.package_names.clone(),
            updated_at: schema.updated_at,
        };
        self.table
            .put_item(encode("schema", &item)?, None, false)
            .await?;
        Ok(())
    }

    async fn delete(&self, device_id: &str) -> StoreResult<()> {
        self.table.delete_item(&schema_key(device_id)).await
    }
}

// ---------------------------------------------------------------------------------------
// Commands

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommandItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    /// The record's status, top level for the completion condition.
    status: String,
    expires_at: i64,
    record: CommandRecord,
}

const PENDING: &str = "PENDING";

fn command_key(id: &str) -> Key {
    Key::new(format!("CMD#{id}"), "CMD")
}

fn status_name(r: &CommandRecord) -> StoreResult<String> {
    match serde_json::to_value(r.status) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(StoreError::Corrupt(format!("status of command {}", r.id))),
    }
}

/// Command records on DynamoDB. Completion is conditional on `status = PENDING`;
/// finished records expire `ttl` after they ended, pending ones `ttl` after their deadline.
#[derive(Clone, Debug)]
pub struct DynamoCommandStore {
    table: Table,
    ttl: chrono::Duration,
}

impl DynamoCommandStore {
    pub fn new(client: Client, table: &str, ttl: chrono::Duration) -> Self {
        Self {
            table: Table::new(client, table),
            ttl,
        }
    }

    fn item(&self, r: &CommandRecord) -> StoreResult<CommandItem> {
        let key = command_key(&r.id);
        let base = match r.completed_at {
            Some(t) if r.status.is_final() => t,
            _ if r.status.is_final() => r.created_at,
            _ => r.deadline.max(r.created_at),
        };
        Ok(CommandItem {
            pk: key.pk,
            sk: key.sk,
            gsi1pk: format!("DEV#{}", r.device_id),
            gsi1sk: format!(
                "{}#{}",
                r.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                r.id
            ),
            status: status_name(r)?,
            expires_at: (base + self.ttl).timestamp(),
            record: r.clone(),
        })
    }
}

#[async_trait]
impl CommandStore for DynamoCommandStore {
    async fn create(&self, record: &CommandRecord) -> StoreResult<()> {
        let item = self.item(record)?;
        let written = self
            .table
            .put_item(
                encode("command", &item)?,
                Some(("attribute_not_exists(pk)", &[], None)),
                false,
            )
            .await?;
        match written {
            Written::Done { .. } => Ok(()),
            Written::ConditionFailed => {
                Err(StoreError::AlreadyExists(format!("command {}", record.id)))
            }
        }
    }

    async fn get(&self, id: &str) -> StoreResult<Option<CommandRecord>> {
        match self.table.get(&command_key(id)).await? {
            Some(item) => Ok(Some(decode::<CommandItem>("command", item)?.record)),
            None => Ok(None),
        }
    }

    async fn complete(
        &self,
        id: &str,
        outcome: CommandOutcome,
    ) -> StoreResult<(CommandRecord, bool)> {
        let Some(mut rec) = CommandStore::get(self, id).await? else {
            return Err(StoreError::NotFound(format!("command {id}")));
        };
        if !rec.complete(outcome) {
            return Ok((rec, false));
        }
        let item = self.item(&rec)?;
        let pending = values(serde_json::json!({ ":pending": PENDING }))?;
        let written = self
            .table
            .put_item(
                encode("command", &item)?,
                Some(("#s = :pending", &[("#s", "status")], Some(pending))),
                false,
            )
            .await?;
        match written {
            Written::Done { .. } => Ok((rec, true)),
            Written::ConditionFailed => {
                // Someone else completed it first: return what is stored.
                let stored = CommandStore::get(self, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("command {id}")))?;
                Ok((stored, false))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Events

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    expires_at: i64,
    event: Event,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkerItem {
    pk: String,
    sk: String,
    expires_at: i64,
}

const DAYS_PK: &str = "DAYS";

fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn event_time_key(t: DateTime<Utc>, id: &str) -> String {
    // Offset so that times before 1970 still sort (20 digits cover the whole i64 range).
    let ns = i128::from(t.timestamp_nanos_opt().unwrap_or(i64::MIN)) - i128::from(i64::MIN);
    format!("{ns:020}:{id}")
}

/// The audit trail on DynamoDB: per-day partitions `DAY#<date>` (time order, newest
/// first), `gsi1` by device, an id guard per event for idempotent appends, and items
/// that expire `ttl` after the event.
#[derive(Debug)]
pub struct DynamoEventStore {
    table: Table,
    ttl: chrono::Duration,
    /// Days this process already registered in the `DAYS` directory.
    known_days: Mutex<HashSet<String>>,
}

impl DynamoEventStore {
    pub fn new(client: Client, table: &str, ttl: chrono::Duration) -> Self {
        Self {
            table: Table::new(client, table),
            ttl,
            known_days: Mutex::new(HashSet::new()),
        }
    }

    async fn append_one(&self, e: &Event) -> StoreResult<()> {
        let t = &self.table;
        let expires_at = (e.time + self.ttl).timestamp();
        let tk = event_time_key(e.time, &e.id);
        let day = day_of(e.time);
        let guard = MarkerItem {
            pk: format!("EVT#{}", e.id),
            sk: "EVT".into(),
            expires_at,
        };
        let item = EventItem {
            pk: format!("DAY#{day}"),
            sk: tk.clone(),
            gsi1pk: format!("DEV#{}", e.device_id),
            gsi1sk: tk,
            expires_at,
            event: e.clone(),
        };
        let mut actions = vec![
            t.put(
                encode("event guard", &guard)?,
                Some(("attribute_not_exists(pk)", &[], None)),
            )?,
            t.put(encode("event", &item)?, None)?,
        ];
        let new_day = self
            .known_days
            .lock()
            .map(|d| !d.contains(&day))
            .unwrap_or(true);
        if new_day {
            let day_end = e
                .time
                .date_naive()
                .and_hms_opt(23, 59, 59)
                .map(|d| d.and_utc())
                .unwrap_or(e.time);
            let marker = MarkerItem {
                pk: DAYS_PK.into(),
                sk: day.clone(),
                expires_at: (day_end + self.ttl).timestamp(),
            };
            actions.push(t.put(encode("day marker", &marker)?, None)?);
        }
        match t.transact(actions).await {
            // A duplicate: the event is already stored.
            Ok(()) | Err(TxError::Condition(_)) => {
                if new_day {
                    if let Ok(mut d) = self.known_days.lock() {
                        d.insert(day);
                    }
                }
                Ok(())
            }
            Err(TxError::Store(e)) => Err(e),
        }
    }

    /// Reads a partition newest first, keeping the events `filter` matches, until `out`
    /// holds `limit`.
    async fn collect(
        &self,
        index: Option<&str>,
        pk: &str,
        from: Option<&str>,
        filter: &EventFilter,
        out: &mut Vec<Event>,
    ) -> StoreResult<()> {
        let limit = filter.limit();
        let mut query = self.table.partition(pk).sk_from(from).newest_first();
        if let Some(index) = index {
            query = query.index(index);
        }
        let mut pages = query.eventually_consistent().pages()?;
        while let Some(items) = pages
            .next(Some((limit - out.len()).clamp(25, 1000)))
            .await?
        {
            for e in decode_all::<EventItem>("event", items)? {
                if filter.matches(&e.event) {
                    out.push(e.event);
                    if out.len() >= limit {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for DynamoEventStore {
    async fn append(&self, events: &[Event]) -> StoreResult<()> {
        for e in events {
            self.append_one(e).await?;
        }
        Ok(())
    }

    async fn list(&self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        let from = filter.since.map(|s| event_time_key(s, ""));
        let mut out = Vec::new();
        if let Some(dev) = &filter.device_id {
            self.collect(
                Some(GSI1),
                &format!("DEV#{dev}"),
                from.as_deref(),
                filter,
                &mut out,
            )
            .await?;
            return Ok(out);
        }
        let since_day = filter.since.map(day_of);
        let days = self
            .table
            .partition(DAYS_PK)
            .sk_from(since_day.as_deref())
            .newest_first()
            .all()
            .await?;
        let days: Vec<MarkerItem> = decode_all("day marker", days)?;
        for d in days {
            self.collect(
                None,
                &format!("DAY#{}", d.sk),
                from.as_deref(),
                filter,
                &mut out,
            )
            .await?;
            if out.len() >= filter.limit() {
                break;
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// Telemetry (the sink for accounts without Timestream)

/// A measure value with its type kept (a DOUBLE 3.0 stays a DOUBLE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum StoredValue {
    B(bool),
    I(i64),
    D(f64),
    S(String),
}

impl From<&FieldValue> for StoredValue {
    fn from(v: &FieldValue) -> Self {
        match v {
            FieldValue::Bool(b) => StoredValue::B(*b),
            FieldValue::Int(i) => StoredValue::I(*i),
            FieldValue::Double(d) => StoredValue::D(*d),
            FieldValue::Text(s) => StoredValue::S(s.clone()),
        }
    }
}

impl From<StoredValue> for FieldValue {
    fn from(v: StoredValue) -> Self {
        match v {
            StoredValue::B(b) => FieldValue::Bool(b),
            StoredValue::I(i) => FieldValue::Int(i),
            StoredValue::D(d) => FieldValue::Double(d),
            StoredValue::S(s) => FieldValue::Text(s),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PointItem {
    pk: String,
    sk: String,
    device_id: String,
    name: String,
    namespace: String,
    measure: String,
    time_ns: i64,
    seq: u64,
    #[serde(default)]
    tags: Vec<(String, String)>,
    #[serde(default)]
    values: Vec<(String, StoredValue)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeriesItem {
    pk: String,
    sk: String,
    measure: String,
    #[serde(default)]
    count: u64,
    #[serde(default)]
    last_time_ns: i64,
}

fn point_pk(device: &str, measure: &str) -> String {
    format!("TLM#{device}#{measure}")
}

/// Sort key of a point: time (offset so negative times sort) and seq, zero-padded, so
/// the same (time, seq) written again replaces the point.
fn point_sk(time_ns: i64, seq: u64) -> String {
    let t = i128::from(time_ns) - i128::from(i64::MIN);
    format!("{t:020}#{seq:020}")
}

impl TryFrom<&TelemetryRecord> for PointItem {
    type Error = StoreError;

    fn try_from(r: &TelemetryRecord) -> Result<Self, Self::Error> {
        if let Some((name, _)) = r
            .values
            .iter()
            .find(|(_, v)| matches!(v, FieldValue::Double(d) if !d.is_finite()))
        {
            return Err(StoreError::Corrupt(format!(
                "measure {name} is not a finite number, which DynamoDB cannot store"
            )));
        }
        Ok(PointItem {
            pk: point_pk(&r.device_id, &r.measure),
            sk: point_sk(r.time_ns, r.seq),
            device_id: r.device_id.clone(),
            name: r.name.clone(),
            namespace: r.namespace.clone(),
            measure: r.measure.to_string(),
            time_ns: r.time_ns,
            seq: r.seq,
            tags: r
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            values: r
                .values
                .iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect(),
        })
    }
}

impl From<PointItem> for TelemetryRecord {
    fn from(p: PointItem) -> Self {
        TelemetryRecord {
            device_id: p.device_id,
            name: p.name,
            namespace: p.namespace,
            measure: Arc::from(p.measure),
            time_ns: p.time_ns,
            seq: p.seq,
            tags: p
                .tags
                .into_iter()
                .map(|(k, v)| (Arc::from(k), Arc::from(v)))
                .collect(),
            values: p
                .values
                .into_iter()
                .map(|(k, v)| (Arc::from(k), v.into()))
                .collect(),
        }
    }
}

/// Telemetry on a DynamoDB table: one item per point, a summary item per series.
#[derive(Clone, Debug)]
pub struct DynamoTelemetry {
    table: Table,
}

/// What happened to one point.
enum PointWrite {
    New,
    Replaced,
    Rejected(String),
}

impl DynamoTelemetry {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    async fn put_point(&self, r: &TelemetryRecord) -> StoreResult<PointWrite> {
        let item = match PointItem::try_from(r).and_then(|p| encode("telemetry point", &p)) {
            Ok(i) => i,
            Err(e) => return Ok(PointWrite::Rejected(e.to_string())),
        };
        match self.table.put_item(item, None, true).await {
            Ok(Written::Done { replaced: true }) => Ok(PointWrite::Replaced),
            // Without a condition, a write cannot fail one.
            Ok(Written::Done { replaced: false } | Written::ConditionFailed) => Ok(PointWrite::New),
            Err(err) if err.is_retryable() => Err(err),
            Err(err) => Ok(PointWrite::Rejected(err.to_string())),
        }
    }

    async fn bump_series(
        &self,
        device: &str,
        measure: &str,
        added: u64,
        last: i64,
    ) -> StoreResult<()> {
        let key = Key::new(format!("SERIES#{device}"), measure);
        let with_time = self
            .table
            .update_item(
                &key,
                "ADD #c :n SET #m = :m, #l = :t",
                Some("attribute_not_exists(#l) OR #l < :t"),
                &[("#c", "count"), ("#m", "measure"), ("#l", "lastTimeNs")],
                values(serde_json::json!({ ":n": added, ":m": measure, ":t": last }))?,
            )
            .await?;
        if with_time == Written::ConditionFailed && added > 0 {
            // An older point: count it, keep the last time.
            self.table
                .update_item(
                    &key,
                    "ADD #c :n SET #m = :m",
                    None,
                    &[("#c", "count"), ("#m", "measure")],
                    values(serde_json::json!({ ":n": added, ":m": measure }))?,
                )
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl TelemetrySink for DynamoTelemetry {
    async fn write(&self, records: &[TelemetryRecord]) -> StoreResult<WriteReport> {
        let mut writes = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            writes.push(async move { self.put_point(r).await.map(|w| (i, w)) });
        }
        let results: Vec<(usize, PointWrite)> =
            stream::iter(writes).buffered(8).try_collect().await?;
        let mut report = WriteReport::default();
        let mut series: BTreeMap<(&str, &str), (u64, i64)> = BTreeMap::new();
        for (index, w) in results {
            let r = &records[index];
            let added = match w {
                PointWrite::Rejected(reason) => {
                    report.rejected.push(RejectedRecord { index, reason });
                    continue;
                }
                PointWrite::New => 1,
                PointWrite::Replaced => 0,
            };
            report.written += 1;
            let s = series
                .entry((&r.device_id, &r.measure))
                .or_insert((0, i64::MIN));
            s.0 += added;
            s.1 = s.1.max(r.time_ns);
        }
        for ((device, measure), (added, last)) in series {
            self.bump_series(device, measure, added, last).await?;
        }
        Ok(report)
    }
}

#[async_trait]
impl TelemetryReader for DynamoTelemetry {
    async fn series(&self, device_id: &str) -> StoreResult<Vec<TelemetrySeries>> {
        let pk = format!("SERIES#{device_id}");
        let items = self.table.partition(&pk).all().await?;
        Ok(decode_all::<SeriesItem>("telemetry series", items)?
            .into_iter()
            .map(|s| TelemetrySeries {
                measure: s.measure,
                count: s.count,
                last_time_ns: s.last_time_ns,
            })
            .collect())
    }

    async fn query(&self, q: &TelemetryQuery) -> StoreResult<Vec<TelemetryRecord>> {
        let from = point_sk(q.since_ns, 0);
        let pk = point_pk(&q.device_id, &q.measure);
        let items = self
            .table
            .partition(&pk)
            .sk_from(Some(&from))
            .newest_first()
            .first(q.limit.max(1))
            .await?;
        let mut out: Vec<TelemetryRecord> = decode_all::<PointItem>("telemetry point", items)?
            .into_iter()
            .map(Into::into)
            .collect();
        out.truncate(q.limit.max(1));
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_like_the_numbers() {
        assert!(point_sk(-5, 0) < point_sk(0, 0));
        assert!(point_sk(9, 0) < point_sk(10, 0));
        assert!(point_sk(10, 2) < point_sk(10, 11));
        assert!(point_sk(i64::MAX, u64::MAX) > point_sk(i64::MAX - 1, 0));
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let t1 = t0 + chrono::Duration::nanoseconds(1);
        assert!(event_time_key(t0, "z") < event_time_key(t1, "a"));
        assert_eq!(day_of(t0), "2023-11-14");
    }

    #[test]
    fn items_convert_through_serde_dynamo_and_keep_value_types() {
        let r = TelemetryRecord {
            device_id: "d".into(),
            name: "n".into(),
            namespace: "ns".into(),
            measure: Arc::from("a.B"),
            time_ns: 5,
            seq: 2,
            tags: vec![(Arc::from("k"), Arc::from("v"))],
            values: vec![
                (Arc::from("d"), FieldValue::Double(3.0)),
                (Arc::from("i"), FieldValue::Int(3)),
                (Arc::from("b"), FieldValue::Bool(true)),
                (Arc::from("s"), FieldValue::Text("x".into())),
            ],
        };
        let item = encode("p", &PointItem::try_from(&r).expect("converts")).expect("encodes");
        assert!(matches!(item.get("pk"), Some(AttributeValue::S(s)) if s == "TLM#d#a.B"));
        let back: PointItem = decode("p", item).expect("decodes");
        assert_eq!(TelemetryRecord::from(back), r);
        let mut nan = r.clone();
        nan.values[0].1 = FieldValue::Double(f64::NAN);
        assert!(PointItem::try_from(&nan).is_err());
    }

    #[test]
    fn schema_bytes_are_a_binary_attribute() {
        let item = SchemaItem {
            pk: "DEV#d".into(),
            sk: "SCHEMA".into(),
            device_id: "d".into(),
            compressed: vec![1, 2, 3],
            hash: "h".into(),
            package_names: vec![],
            updated_at: Utc::now(),
        };
        let av = encode("s", &item).expect("encodes");
        assert!(matches!(av.get("compressed"), Some(AttributeValue::B(_))));
    }
}
