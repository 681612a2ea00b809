//! The twins adapter's reads that scale with the fleet, and its heartbeat write:
//!
//! - pages of twins: all devices by a Scan of the twin items, a namespace by its `gsi1`
//!   partition (keys only, then BatchGetItem), other selectors by their id set, paged
//!   by id; the token is the position the page ended at;
//! - the sweep's stale devices: the sparse `gsi2` (only online twins carry it),
//!   partitions `ONLINE#<shard>`, sort key `staleAt`: a query reads only online devices
//!   past theirs;
//! - a heartbeat: one conditional UpdateItem of the twin item, no read, no transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::super::table::{decode, decode_all, encode, values, Item};
use super::super::{GSI1, GSI2};
use super::*;
use crate::domain::page::{encode_token, BadPageToken};
use crate::domain::presence::Beat;

/// Where a page ended, inside the page token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "camelCase")]
enum Position {
    /// All devices: the Scan's `LastEvaluatedKey`.
    Scan { start: HashMap<String, String> },
    /// Namespaces (sorted): the `ns`-th, from `start` in its index partition.
    Namespace {
        ns: usize,
        start: Option<HashMap<String, String>>,
    },
    /// Any other selection: ids after `id`.
    After { id: String },
    /// The sweep: index partition `ONLINE#<shard>`, from `start`.
    Stale {
        shard: u64,
        start: Option<HashMap<String, String>>,
    },
}

/// The key part of any item (what a keys-only index returns).
#[derive(Debug, Deserialize)]
struct Keys {
    pk: String,
}

fn start_of(start: Option<HashMap<String, String>>) -> StoreResult<Option<Item>> {
    start.map(|s| encode("page position", &s)).transpose()
}

fn position_of(start: Option<&Item>) -> StoreResult<Option<HashMap<String, String>>> {
    start
        .map(|s| decode("page position", s.clone()))
        .transpose()
}

fn foreign() -> StoreError {
    BadPageToken("a token of another list".into()).into()
}

/// Device ids of items read from an index.
fn ids_of_keys(items: Vec<Item>) -> StoreResult<Vec<String>> {
    Ok(decode_all::<Keys>("index keys", items)?
        .into_iter()
        .filter_map(|k| id_of_pk(&k.pk).map(str::to_string))
        .collect())
}

impl DynamoTwinStore {
    pub(super) async fn page_of(
        &self,
        targets: &Targets,
        page: &PageRequest,
    ) -> StoreResult<Page<Versioned<Twin>>> {
        let position: Option<Position> = page.position()?;
        let limit = page.limit.max(1);
        if targets.is_all() {
            let start = match position {
                None => None,
                Some(Position::Scan { start }) => Some(start),
                Some(_) => return Err(foreign()),
            };
            return self.scan_page(limit, start).await;
        }
        if targets.ids.is_empty() && targets.names.is_empty() && !targets.namespaces.is_empty() {
            let (ns, start) = match position {
                None => (0, None),
                Some(Position::Namespace { ns, start }) => (ns, start),
                Some(_) => return Err(foreign()),
            };
            return self.namespace_page(targets, limit, ns, start).await;
        }
        let after = match position {
            None => None,
            Some(Position::After { id }) => Some(id),
            Some(_) => return Err(foreign()),
        };
        let ids = self.ids_of(targets).await?;
        let rest: Vec<String> = match &after {
            Some(a) => ids
                .range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                .cloned()
                .collect(),
            None => ids.into_iter().collect(),
        };
        let more = rest.len() > limit;
        let chunk: Vec<String> = rest.into_iter().take(limit).collect();
        let next_token = more
            .then(|| chunk.last().cloned())
            .flatten()
            .map(|id| encode_token(&Position::After { id }));
        Ok(Page {
            items: self.matching(targets, chunk).await?,
            next_token,
        })
    }

    /// Twins of `ids` that `targets` matches, by id.
    async fn matching(
        &self,
        targets: &Targets,
        ids: Vec<String>,
    ) -> StoreResult<Vec<Versioned<Twin>>> {
        let mut out: BTreeMap<String, Versioned<Twin>> = BTreeMap::new();
        for t in self.by_ids(ids).await? {
            if targets.matches(&t.twin) {
                out.insert(t.device_id.clone(), t.into());
            }
        }
        Ok(out.into_values().collect())
    }

    async fn scan_page(
        &self,
        limit: usize,
        start: Option<HashMap<String, String>>,
    ) -> StoreResult<Page<Versioned<Twin>>> {
        let mut pages = self.table.scan_sk(TWIN_SK).pages_from(start_of(start)?)?;
        let mut items: Vec<Versioned<Twin>> = Vec::new();
        while items.len() < limit {
            let Some(batch) = pages.next(Some(limit - items.len())).await? else {
                break;
            };
            items.extend(
                decode_all::<TwinItem>("twin", batch)?
                    .into_iter()
                    .map(Into::into),
            );
        }
        let next_token =
            position_of(pages.next_start())?.map(|start| encode_token(&Position::Scan { start }));
        Ok(Page { items, next_token })
    }

    async fn namespace_page(
        &self,
        targets: &Targets,
        limit: usize,
        ns: usize,
        start: Option<HashMap<String, String>>,
    ) -> StoreResult<Page<Versioned<Twin>>> {
        let namespaces: Vec<&String> = targets
            .namespaces
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let partitions: Vec<String> = namespaces.iter().map(|n| format!("NS#{n}")).collect();
        let (ids, at, start) = self
            .ids_across(&partitions, GSI1, None, limit, (ns, start))
            .await?;
        let ns = at;
        let next_token =
            (ns < namespaces.len()).then(|| encode_token(&Position::Namespace { ns, start }));
        Ok(Page {
            items: self.matching(targets, ids).await?,
            next_token,
        })
    }

    /// The ids a selection of ids, names, namespaces and labels may hold (a superset:
    /// the twins read are matched against `targets` again).
    async fn ids_of(&self, targets: &Targets) -> StoreResult<BTreeSet<String>> {
        if !targets.has_selectors() {
            // Labels only: intersect the label index partitions.
            let mut ids: Option<BTreeSet<String>> = None;
            for (k, v) in &targets.labels {
                let items = self.table.partition(&label_pk(k, v)).all().await?;
                let these: BTreeSet<String> = decode_all::<LabelItem>("label index", items)?
                    .into_iter()
                    .map(|l| l.device_id)
                    .collect();
                let both = match ids {
                    None => these,
                    Some(prev) => prev.intersection(&these).cloned().collect(),
                };
                let empty = both.is_empty();
                ids = Some(both);
                if empty {
                    break;
                }
            }
            return Ok(ids.unwrap_or_default());
        }
        let mut ids: BTreeSet<String> = targets.ids.iter().cloned().collect();
        for ns in &targets.namespaces {
            let items = self
                .table
                .partition(&format!("NS#{ns}"))
                .index(GSI1)
                .all()
                .await?;
            ids.extend(ids_of_keys(items)?);
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
                    for reservation in decode_all::<NameItem>("name reservation", items)? {
                        ids.insert(reservation.device_id);
                    }
                }
            }
        }
        Ok(ids)
    }

    /// Device ids from the index `partitions` in order, from `(partition, start)` on,
    /// at most `limit` (sort keys before `before`, when set). Returns them and where the
    /// next read starts: the partition and its position (`None` at its beginning).
    async fn ids_across(
        &self,
        partitions: &[String],
        index: &str,
        before: Option<&str>,
        limit: usize,
        (mut at, mut start): (usize, Option<HashMap<String, String>>),
    ) -> StoreResult<(Vec<String>, usize, Option<HashMap<String, String>>)> {
        let mut ids = Vec::new();
        while at < partitions.len() && ids.len() < limit {
            let mut query = self.table.partition(&partitions[at]).index(index);
            if let Some(b) = before {
                query = query.sk_before(b);
            }
            let mut pages = query.pages_from(start_of(start.take())?)?;
            while ids.len() < limit {
                let Some(batch) = pages.next(Some(limit - ids.len())).await? else {
                    break;
                };
                ids.extend(ids_of_keys(batch)?);
            }
            start = position_of(pages.next_start())?;
            if start.is_none() {
                at += 1;
            }
        }
        Ok((ids, at, start))
    }

    pub(super) async fn stale_page(
        &self,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> StoreResult<Page<String>> {
        let (shard, start) = match page.position()? {
            None => (0, None),
            Some(Position::Stale { shard, start }) => (shard, start),
            Some(_) => return Err(foreign()),
        };
        let limit = page.limit.max(1);
        let before = stale_sk(now);
        let partitions: Vec<String> = (0..ONLINE_SHARDS).map(|s| format!("ONLINE#{s}")).collect();
        let (ids, at, start) = self
            .ids_across(
                &partitions,
                GSI2,
                Some(&before),
                limit,
                (shard as usize, start),
            )
            .await?;
        let shard = at as u64;
        let next_token =
            (shard < ONLINE_SHARDS).then(|| encode_token(&Position::Stale { shard, start }));
        Ok(Page {
            items: ids,
            next_token,
        })
    }

    /// The heartbeat write (see [`TwinStore::beat`]).
    pub(super) async fn heartbeat(&self, device_id: &str, beat: &Beat) -> StoreResult<BeatWrite> {
        let mut update = String::from(
            "SET #t.#s.#hb = :at, #t.#s.#st = :st, heartbeatMs = :atMs, \
             gsi2pk = :g2pk, gsi2sk = :g2sk, #v = #v + :one",
        );
        let mut attribute_names = vec![
            ("#t", "twin"),
            ("#s", "status"),
            ("#hb", "lastHeartbeat"),
            ("#st", "staleAt"),
            ("#on", "online"),
            ("#v", "version"),
        ];
        let mut v = serde_json::json!({
            ":at": beat.at,
            ":st": beat.stale_at,
            ":atMs": beat.at.timestamp_millis(),
            ":g2pk": online_pk(device_id),
            ":g2sk": stale_sk(beat.stale_at),
            ":one": 1,
            ":true": true,
            ":refresh": beat.refresh_before.timestamp_millis(),
        });
        if let Some(interval) = beat.interval_sec {
            update.push_str(", #t.#s.#iv = :iv");
            attribute_names.push(("#iv", "heartbeatIntervalSec"));
            v[":iv"] = interval.into();
        }
        let written = self
            .table
            .update_item_or_stored(
                &twin_key(device_id),
                &update,
                "attribute_exists(pk) AND #t.#s.#on = :true \
                 AND (attribute_not_exists(heartbeatMs) OR heartbeatMs < :refresh)",
                &attribute_names,
                values(v)?,
            )
            .await?;
        Ok(match written {
            Ok(()) => BeatWrite::Written,
            Err(Some(stored)) => {
                let stored: TwinItem = decode("twin", stored)?;
                if stored.twin.status.online {
                    BeatWrite::Fresh
                } else {
                    BeatWrite::NotApplied
                }
            }
            Err(None) => BeatWrite::NotApplied,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_online_twins_carry_the_sweep_index_and_one_without_stale_at_is_due_at_once() {
        let mut t = Twin::default();
        t.spec.device_id = "d1".into();
        let offline = TwinItem::new(&t, 1).expect("item");
        assert_eq!((offline.gsi2pk, offline.gsi2sk), (None, None));
        t.status.online = true;
        let legacy = TwinItem::new(&t, 1).expect("item");
        assert!(legacy.gsi2pk.is_some_and(|pk| pk.starts_with("ONLINE#")));
        assert_eq!(legacy.gsi2sk, Some(stale_sk(DateTime::<Utc>::UNIX_EPOCH)));
        let due = Utc::now();
        t.status.stale_at = Some(due);
        assert_eq!(
            TwinItem::new(&t, 1).expect("item").gsi2sk,
            Some(stale_sk(due))
        );
        assert!(
            stale_sk(due) > stale_sk(DateTime::<Utc>::UNIX_EPOCH),
            "sorts by time"
        );
    }
}
