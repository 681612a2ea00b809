//! Telemetry batching: items accumulate into one [`TelemetryBatch`] until the linger
//! expires or the next item would push the encoded batch over [`BATCH_LIMIT`].

use std::time::{Duration, Instant};

use mir_proto::{
    wire::{TelemetryBatch, TelemetryItem},
    MAX_PAYLOAD_BYTES,
};
use prost::Message;

use crate::SdkError;

/// Bytes kept free under [`MAX_PAYLOAD_BYTES`] when filling a telemetry batch.
pub const BATCH_SAFETY_MARGIN: usize = 1024;

/// Largest encoded [`TelemetryBatch`] the SDK publishes.
pub const BATCH_LIMIT: usize = MAX_PAYLOAD_BYTES - BATCH_SAFETY_MARGIN;

/// The longest telemetry topic: `mir/` + a 128-character device id + `/tlm`.
const MAX_TELEMETRY_TOPIC: usize = 4 + 128 + 4;
// A full batch and its topic fit under the payload limit (AWS counts both).
const _: () = assert!(BATCH_SAFETY_MARGIN >= MAX_TELEMETRY_TOPIC);

/// Size of `item` as one entry of a [`TelemetryBatch`] (tag + length + message). An
/// item whose clock was not set counts with the largest time, as it may be given its
/// real time at publish.
pub(crate) fn batch_entry_len(item: &TelemetryItem) -> usize {
    let len = if item.clock_unsynced {
        TelemetryItem {
            sent_at_ns: i64::MAX,
            ..item.clone()
        }
        .encoded_len()
    } else {
        item.encoded_len()
    };
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Refuses an item that could never fit in a batch, whatever its sequence number.
pub(crate) fn check_item_fits(item: &TelemetryItem) -> Result<(), SdkError> {
    let worst = TelemetryItem {
        seq: u64::MAX,
        ..item.clone()
    };
    let size = batch_entry_len(&worst);
    if size > BATCH_LIMIT {
        return Err(SdkError::PayloadTooLarge {
            name: item.name.clone(),
            size,
            limit: BATCH_LIMIT,
        });
    }
    Ok(())
}

/// Accumulates telemetry items until the linger expires or the next item would not fit.
#[derive(Debug)]
pub(super) struct Batcher {
    items: Vec<TelemetryItem>,
    encoded_len: usize,
    opened_at: Option<Instant>,
    linger: Duration,
    limit: usize,
}

impl Batcher {
    pub fn new(linger: Duration, limit: usize) -> Self {
        Self {
            items: Vec::new(),
            encoded_len: 0,
            opened_at: None,
            linger,
            limit,
        }
    }

    /// Adds an item; returns the batch that had to be closed first to make room.
    pub fn push(
        &mut self,
        item: TelemetryItem,
        now: Instant,
    ) -> Result<Option<TelemetryBatch>, SdkError> {
        let len = batch_entry_len(&item);
        if len > self.limit {
            return Err(SdkError::PayloadTooLarge {
                name: item.name,
                size: len,
                limit: self.limit,
            });
        }
        let closed = if self.encoded_len + len > self.limit {
            self.take()
        } else {
            None
        };
        if self.items.is_empty() {
            self.opened_at = Some(now);
        }
        self.encoded_len += len;
        self.items.push(item);
        Ok(closed)
    }

    /// Closes the open batch, if any.
    pub fn take(&mut self) -> Option<TelemetryBatch> {
        self.opened_at = None;
        self.encoded_len = 0;
        if self.items.is_empty() {
            return None;
        }
        Some(TelemetryBatch {
            items: std::mem::take(&mut self.items),
        })
    }

    /// When the open batch got its first item.
    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at
    }

    /// When the open batch must leave.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.linger)
    }

    /// Items in the open batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }
}
