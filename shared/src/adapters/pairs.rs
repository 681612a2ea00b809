//! A telemetry record's tags and values as the stores' rows keep them (owned names),
//! and back (shared names), for the embedded telemetry store.

use std::sync::Arc;

/// The pairs with owned names, each value mapped by `f`.
pub(crate) fn owned<V, W>(pairs: &[(Arc<str>, V)], f: impl Fn(&V) -> W) -> Vec<(String, W)> {
    pairs.iter().map(|(k, v)| (k.to_string(), f(v))).collect()
}

/// The pairs with shared names again, each value mapped by `f`.
pub(crate) fn shared<W, V>(pairs: Vec<(String, W)>, f: impl Fn(W) -> V) -> Vec<(Arc<str>, V)> {
    pairs
        .into_iter()
        .map(|(k, v)| (Arc::from(k), f(v)))
        .collect()
}
