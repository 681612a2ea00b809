//! The one builder of Query and Scan requests, and the one loop over their pages,
//! that every DynamoDB adapter reads through.

use std::collections::HashMap;

use crate::adapters::aws::store_error;
use crate::ports::StoreResult;

use super::table::{names, values, Item, Table};

impl Table {
    /// A query of the partition `pk`: of the table, oldest first, with consistent reads
    /// (refine it with [`Query`]'s methods).
    pub(super) fn partition<'a>(&'a self, pk: &'a str) -> Query<'a> {
        Query {
            table: self,
            read: Read::Partition {
                index: None,
                pk,
                sk_from: None,
                sk_to: None,
            },
            forward: true,
            consistent: true,
        }
    }

    /// Every item whose sort key is `sk` (a full scan: only for "all devices").
    pub(super) fn scan_sk<'a>(&'a self, sk: &'a str) -> Query<'a> {
        Query {
            table: self,
            read: Read::SortKey(sk),
            forward: true,
            consistent: true,
        }
    }
}

/// What a [`Query`] reads.
#[derive(Debug, Clone, Copy)]
enum Read<'a> {
    /// Query: the partition `pk` of the table (`index` None) or of an index, sort keys
    /// from `sk_from` to `sk_to` (both inclusive).
    Partition {
        index: Option<&'a str>,
        pk: &'a str,
        sk_from: Option<&'a str>,
        sk_to: Option<&'a str>,
    },
    /// Scan: every item whose sort key is this.
    SortKey(&'a str),
}

/// The one builder of Query (and Scan) requests, and the one loop over their pages.
/// From [`Table::partition`] or [`Table::scan_sk`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Query<'a> {
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
    pub(super) fn index(mut self, name: &'a str) -> Self {
        if let Read::Partition { index, .. } = &mut self.read {
            *index = Some(name);
        }
        self
    }

    /// Only sort keys from `from` on (inclusive), when set.
    pub(super) fn sk_from(mut self, from: Option<&'a str>) -> Self {
        if let Read::Partition { sk_from, .. } = &mut self.read {
            *sk_from = from;
        }
        self
    }

    /// Only sort keys up to `to` (inclusive), when set.
    pub(super) fn sk_to(mut self, to: Option<&'a str>) -> Self {
        if let Read::Partition { sk_to, .. } = &mut self.read {
            *sk_to = to;
        }
        self
    }

    /// Descending sort keys.
    pub(super) fn newest_first(mut self) -> Self {
        self.forward = false;
        self
    }

    /// Eventually consistent reads on the table too.
    pub(super) fn eventually_consistent(mut self) -> Self {
        self.consistent = false;
        self
    }

    fn expression(&self) -> StoreResult<Expression> {
        Ok(match self.read {
            Read::Partition {
                index,
                pk,
                sk_from,
                sk_to,
            } => {
                let (pk_name, sk_name) = match index {
                    Some(_) => ("gsi1pk", "gsi1sk"),
                    None => ("pk", "sk"),
                };
                let (text, bound) = match (sk_from, sk_to) {
                    (Some(from), Some(to)) => (
                        "#pk = :pk AND #sk BETWEEN :from AND :to",
                        serde_json::json!({ ":pk": pk, ":from": from, ":to": to }),
                    ),
                    (Some(from), None) => (
                        "#pk = :pk AND #sk >= :from",
                        serde_json::json!({ ":pk": pk, ":from": from }),
                    ),
                    (None, Some(to)) => (
                        "#pk = :pk AND #sk <= :to",
                        serde_json::json!({ ":pk": pk, ":to": to }),
                    ),
                    (None, None) => {
                        return Ok(Expression {
                            text: "#pk = :pk",
                            names: names(&[("#pk", pk_name)]),
                            values: values(serde_json::json!({ ":pk": pk }))?,
                        })
                    }
                };
                Expression {
                    text,
                    names: names(&[("#pk", pk_name), ("#sk", sk_name)]),
                    values: values(bound)?,
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
    pub(super) fn pages(self) -> StoreResult<Pages<'a>> {
        Ok(Pages {
            expression: self.expression()?,
            query: self,
            start: None,
            done: false,
        })
    }

    /// Every item.
    pub(super) async fn all(self) -> StoreResult<Vec<Item>> {
        let mut pages = self.pages()?;
        let mut out = Vec::new();
        while let Some(items) = pages.next(None).await? {
            out.extend(items);
        }
        Ok(out)
    }

    /// The first `limit` items (at least one request).
    pub(super) async fn first(self, limit: usize) -> StoreResult<Vec<Item>> {
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
pub(super) struct Pages<'a> {
    query: Query<'a>,
    expression: Expression,
    start: Option<Item>,
    done: bool,
}

impl Pages<'_> {
    /// The next page, of at most `size` items when set; `None` after the last.
    pub(super) async fn next(&mut self, size: Option<usize>) -> StoreResult<Option<Vec<Item>>> {
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

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
