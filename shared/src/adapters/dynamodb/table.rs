//! The table helper every DynamoDB adapter uses: items to and from attribute maps
//! through serde_dynamo, keys, single-item reads and writes, batched puts, and
//! transactions.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use aws_sdk_dynamodb::{
    error::{ProvideErrorMetadata, SdkError},
    operation::{
        transact_write_items::TransactWriteItemsError,
        update_item::{builders::UpdateItemFluentBuilder, UpdateItemError},
    },
    types::{
        AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, PutRequest, ReturnValue,
        ReturnValuesOnConditionCheckFailure, TransactWriteItem, WriteRequest,
    },
    Client,
};
use futures::TryStreamExt;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::adapters::aws::{backoff, store_error};
use crate::ports::{StoreError, StoreResult};

/// Most actions in one TransactWriteItems call.
const MAX_TRANSACT_ITEMS: usize = 100;
/// Most puts in one BatchWriteItem call.
pub(super) const MAX_BATCH_WRITE_ITEMS: usize = 25;
/// BatchWriteItem calls of one [`Table::batch_put`] in flight at once.
const BATCH_WRITE_CONCURRENCY: usize = 8;
/// Rounds of a batch's unprocessed items before giving up (as unavailable).
const BATCH_WRITE_ATTEMPTS: u32 = 8;
/// The error code of a write whose condition failed.
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn encode<T: Serialize>(what: &str, v: &T) -> StoreResult<Item> {
    serde_dynamo::to_item(v).map_err(|e| StoreError::Corrupt(format!("encoding {what}: {e}")))
}

pub(super) fn decode<T: DeserializeOwned>(what: &str, item: Item) -> StoreResult<T> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("decoding {what}: {e}")))
}

pub(super) fn decode_all<T: DeserializeOwned>(what: &str, items: Vec<Item>) -> StoreResult<Vec<T>> {
    items.into_iter().map(|i| decode(what, i)).collect()
}

/// Expression attribute values from a JSON object (`{":v": 3}`), through serde_dynamo.
pub(super) fn values(v: serde_json::Value) -> StoreResult<Item> {
    encode("expression values", &v)
}

pub(super) fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) struct Key {
    pub(super) pk: String,
    pub(super) sk: String,
}

impl Key {
    pub(super) fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }

    pub(super) fn item(&self) -> StoreResult<Item> {
        encode("key", self)
    }
}

pub(super) fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Corrupt(format!("building a DynamoDB request: {e}"))
}

/// A condition expression with its attribute names and values.
pub(super) type Condition<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<Item>);

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
pub(super) struct Table {
    pub(super) client: Client,
    pub(super) name: Arc<str>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// How a transaction failed.
pub(super) enum TxError {
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
pub(super) enum Written {
    /// Written; `replaced`: an item was there before (only known when asked for).
    Done { replaced: bool },
    /// The condition failed: nothing was written.
    ConditionFailed,
}

/// A single-item write's result as [`Written`] (`replaced` from the output), a failed
/// condition included; any other error as a [`StoreError`] about `what`.
fn written<T, E>(
    what: String,
    result: Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>,
    replaced: impl FnOnce(T) -> bool,
) -> StoreResult<Written>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Written::Done {
            replaced: replaced(out),
        }),
        Err(e) if e.as_service_error().and_then(|s| s.code()) == Some(CONDITION_FAILED) => {
            Ok(Written::ConditionFailed)
        }
        Err(e) => Err(store_error(what, e)),
    }
}

impl Table {
    pub(super) fn new(client: Client, name: &str) -> Self {
        Self {
            client,
            name: Arc::from(name),
        }
    }

    pub(super) fn what(&self, op: &str) -> String {
        format!("DynamoDB {op} on {}", self.name)
    }

    pub(super) async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
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
    pub(super) async fn batch_get(&self, keys: Vec<Key>) -> StoreResult<Vec<Item>> {
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

    /// Puts every item, unconditionally: BatchWriteItem, [`MAX_BATCH_WRITE_ITEMS`] per
    /// call and a few calls at once, unprocessed items retried with backoff. The items'
    /// keys must differ (DynamoDB refuses a batch with one key twice).
    pub(super) async fn batch_put(&self, items: Vec<Item>) -> StoreResult<()> {
        let mut batches = Vec::with_capacity(items.len().div_ceil(MAX_BATCH_WRITE_ITEMS));
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let batch: Vec<WriteRequest> = items
                .by_ref()
                .take(MAX_BATCH_WRITE_ITEMS)
                .map(|item| {
                    let put = PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map_err(build_err)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<StoreResult<_>>()?;
            batches.push(batch);
        }
        futures::stream::iter(batches.into_iter().map(Ok))
            .try_for_each_concurrent(BATCH_WRITE_CONCURRENCY, |batch| self.write_batch(batch))
            .await
    }

    /// One BatchWriteItem call, then its unprocessed items again until none is left.
    async fn write_batch(&self, mut pending: Vec<WriteRequest>) -> StoreResult<()> {
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let resp = self
                .client
                .batch_write_item()
                .request_items(&*self.name, std::mem::take(&mut pending))
                .send()
                .await
                .map_err(|e| store_error(self.what("BatchWriteItem"), e))?;
            if let Some(mut u) = resp.unprocessed_items {
                pending = u.remove(&*self.name).unwrap_or_default();
            }
            if !pending.is_empty() {
                if attempt >= BATCH_WRITE_ATTEMPTS {
                    return Err(StoreError::Unavailable {
                        message: format!(
                            "{}: {} items left unprocessed",
                            self.what("BatchWriteItem"),
                            pending.len()
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
        Ok(())
    }

    /// PutItem, unless `condition` fails. `return_old`: report whether it replaced an
    /// item.
    pub(super) async fn put_item(
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
        written(self.what("PutItem"), result, |out| {
            out.attributes.is_some_and(|a| !a.is_empty())
        })
    }

    /// An UpdateItem request of `update`, conditional on `condition` when set; `names`
    /// and `values` serve both expressions.
    fn update_request(
        &self,
        key: &Key,
        update: &str,
        condition: Option<&str>,
        attribute_names: &[(&str, &str)],
        values: Item,
    ) -> StoreResult<UpdateItemFluentBuilder> {
        Ok(self
            .client
            .update_item()
            .table_name(&*self.name)
            .set_key(Some(key.item()?))
            .update_expression(update)
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(Some(names(attribute_names)))
            .set_expression_attribute_values(Some(values)))
    }

    /// UpdateItem with the expression `update`, unless `condition` fails; `names` and
    /// `values` serve both expressions.
    pub(super) async fn update_item(
        &self,
        key: &Key,
        update: &str,
        condition: Option<&str>,
        attribute_names: &[(&str, &str)],
        values: Item,
    ) -> StoreResult<Written> {
        let request = self.update_request(key, update, condition, attribute_names, values)?;
        written(self.what("UpdateItem"), request.send().await, |_| false)
    }

    /// [`update_item`](Self::update_item) that, when the condition fails, returns the
    /// item as it is stored (`Err(None)`: there is none, or the endpoint did not say),
    /// at no extra read.
    pub(super) async fn update_item_or_stored(
        &self,
        key: &Key,
        update: &str,
        condition: &str,
        attribute_names: &[(&str, &str)],
        values: Item,
    ) -> StoreResult<Result<(), Option<Item>>> {
        let result = self
            .update_request(key, update, Some(condition), attribute_names, values)?
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Err(failed.item.clone().filter(|i| !i.is_empty())))
                }
                _ => Err(store_error(self.what("UpdateItem"), e)),
            },
        }
    }

    pub(super) async fn delete_item(&self, key: &Key) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&*self.name)
            .set_key(Some(key.item()?))
            .send()
            .await
            .map_err(|e| store_error(self.what("DeleteItem"), e))?;
        Ok(())
    }

    pub(super) fn put(
        &self,
        item: Item,
        condition: Option<Condition<'_>>,
    ) -> StoreResult<TransactWriteItem> {
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

    pub(super) fn delete(
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

    /// A transaction's condition on an item it does not write.
    pub(super) fn check(
        &self,
        key: &Key,
        condition: Condition<'_>,
    ) -> StoreResult<TransactWriteItem> {
        let (cond, n, v) = condition_fields(Some(condition));
        let c = ConditionCheck::builder()
            .table_name(&*self.name)
            .set_key(Some(key.item()?))
            .set_condition_expression(cond)
            .set_expression_attribute_names(n)
            .set_expression_attribute_values(v);
        Ok(TransactWriteItem::builder()
            .condition_check(c.build().map_err(build_err)?)
            .build())
    }

    pub(super) async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), TxError> {
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
