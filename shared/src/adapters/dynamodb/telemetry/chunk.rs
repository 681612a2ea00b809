//! A chunk: the points of one series (device, message) in one hour, as one item.
//!
//! The points travel in the `points` attribute (B): a zlib-compressed binary encoding,
//! version 1:
//!
//! ```text
//! u8 version (1)
//! varint shapes, each: str name, str namespace, varint tags (str key, str value)*,
//!                      varint fields (str field)*
//! varint points, each: zigzag varint time delta (from the previous point; the first
//!                      from 0), varint seq, varint shape index, then one value per
//!                      field of the shape: u8 tag and payload
//!                      (0 false, 1 true, 2 zigzag varint i64, 3 varint u64,
//!                       4 f64 as 8 bytes little endian, 5 str)
//! str = varint byte length, UTF-8 bytes
//! ```
//!
//! A shape (name, namespace, tags, field names) is stored once per chunk, so a point
//! costs its time delta, seq, shape index and values: about 2 bytes per integer or
//! boolean, 9 per double, before compression. Types are kept exactly: a DOUBLE 3.0
//! stays a DOUBLE, a `uint64` above `i64::MAX` keeps every digit, a double keeps its
//! bits.

use std::{collections::HashMap, io::Write, sync::Arc};

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use crate::telemetry::{FieldValue, TelemetryRecord};

/// The encoding's version byte.
const VERSION: u8 = 1;
/// Largest compressed `points` attribute of one chunk: an item stays under DynamoDB's
/// 400 KB with its keys and numbers (a bigger batch is split into several chunks).
pub(super) const MAX_CHUNK_BYTES: usize = 350 * 1024;

/// The item of a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChunkItem {
    /// `TLM#<device>#<message>`.
    pub(super) pk: String,
    /// `<hour, yyyy-mm-ddThh>#<content hash>`.
    pub(super) sk: String,
    /// Time of the first and last point.
    pub(super) first_ns: i64,
    pub(super) last_ns: i64,
    /// When it was written: of two chunks with the same (time, seq), the later one wins.
    pub(super) written_ns: i64,
    /// The table's TTL attribute (epoch seconds).
    pub(super) expires_at: i64,
    #[serde(with = "serde_bytes")]
    pub(super) points: Vec<u8>,
}

impl ChunkItem {
    /// The hour of the chunk (its sort key up to `#`).
    pub(super) fn hour(&self) -> &str {
        self.sk.split_once('#').map_or(&self.sk, |(h, _)| h)
    }
}

/// Partition key of a series' chunks.
pub(super) fn series_pk(device: &str, measure: &str) -> String {
    format!("TLM#{device}#{measure}")
}

/// The hour of a time as the sort keys spell it (`2025-02-15T17`): every `i64` of
/// nanoseconds is a year from 1677 to 2262, so the text sorts like the times.
pub(super) fn hour_of(time_ns: i64) -> String {
    DateTime::from_timestamp_nanos(time_ns)
        .format("%Y-%m-%dT%H")
        .to_string()
}

/// Why a stored chunk does not decode.
#[derive(Debug, thiserror::Error)]
pub(super) enum ChunkError {
    #[error("it ends early")]
    Truncated,
    #[error("unknown encoding version {0}")]
    Version(u8),
    #[error("unknown value tag {0}")]
    Tag(u8),
    #[error("point refers to shape {0}, which the chunk does not have")]
    Shape(u64),
    #[error("a varint is longer than 64 bits")]
    Varint,
    #[error("text is not UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    #[error("decompressing: {0}")]
    Inflate(#[from] std::io::Error),
}

/// What the points of a chunk share: name, namespace, tags and field names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Shape<'a> {
    name: &'a str,
    namespace: &'a str,
    tags: &'a [(Arc<str>, Arc<str>)],
    fields: Vec<&'a str>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &FieldValue) {
    match v {
        FieldValue::Bool(b) => out.push(u8::from(*b)),
        FieldValue::Int(i) => {
            out.push(2);
            put_varint(out, zigzag(*i));
        }
        FieldValue::Uint(u) => {
            out.push(3);
            put_varint(out, *u);
        }
        FieldValue::Double(d) => {
            out.push(4);
            out.extend_from_slice(&d.to_le_bytes());
        }
        FieldValue::Text(s) => {
            out.push(5);
            put_str(out, s);
        }
    }
}

/// The encoding of `points` (of one series, sorted by (time, seq)), uncompressed.
pub(super) fn encode_points(points: &[&TelemetryRecord]) -> Vec<u8> {
    let mut shapes: Vec<Shape<'_>> = Vec::new();
    let mut index: HashMap<Shape<'_>, u64> = HashMap::new();
    let mut of_point = Vec::with_capacity(points.len());
    for r in points {
        let shape = Shape {
            name: &r.name,
            namespace: &r.namespace,
            tags: &r.tags,
            fields: r.values.iter().map(|(k, _)| &**k).collect(),
        };
        let i = *index.entry(shape.clone()).or_insert_with(|| {
            shapes.push(shape);
            shapes.len() as u64 - 1
        });
        of_point.push(i);
    }
    let mut out = vec![VERSION];
    put_varint(&mut out, shapes.len() as u64);
    for s in &shapes {
        put_str(&mut out, s.name);
        put_str(&mut out, s.namespace);
        put_varint(&mut out, s.tags.len() as u64);
        for (k, v) in s.tags {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        put_varint(&mut out, s.fields.len() as u64);
        for f in &s.fields {
            put_str(&mut out, f);
        }
    }
    put_varint(&mut out, points.len() as u64);
    let mut prev = 0i64;
    for (r, shape) in points.iter().zip(of_point) {
        put_varint(&mut out, zigzag(r.time_ns.wrapping_sub(prev)));
        prev = r.time_ns;
        put_varint(&mut out, r.seq);
        put_varint(&mut out, shape);
        for (_, v) in &r.values {
            put_value(&mut out, v);
        }
    }
    out
}

/// `bytes` zlib-compressed.
pub(super) fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// The content hash of an encoding: 96 bits of its SHA-256, in hex.
pub(super) fn content_hash(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A reader over an encoding.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> Result<u8, ChunkError> {
        let (&b, rest) = self.0.split_first().ok_or(ChunkError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ChunkError> {
        if n > self.0.len() {
            return Err(ChunkError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, ChunkError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ChunkError::Varint)
    }

    /// A count of items that take at least one byte each (so a corrupt count cannot
    /// allocate more than the chunk holds).
    fn count(&mut self) -> Result<usize, ChunkError> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.0.len())
            .ok_or(ChunkError::Truncated)
    }

    fn str(&mut self) -> Result<&'a str, ChunkError> {
        let n = self.count()?;
        Ok(std::str::from_utf8(self.take(n)?)?)
    }

    fn value(&mut self) -> Result<FieldValue, ChunkError> {
        Ok(match self.u8()? {
            0 => FieldValue::Bool(false),
            1 => FieldValue::Bool(true),
            2 => FieldValue::Int(unzigzag(self.varint()?)),
            3 => FieldValue::Uint(self.varint()?),
            4 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(self.take(8)?);
                FieldValue::Double(f64::from_le_bytes(b))
            }
            5 => FieldValue::Text(self.str()?.to_string()),
            t => return Err(ChunkError::Tag(t)),
        })
    }
}

/// A decoded shape, with shared names.
struct OwnedShape {
    name: String,
    namespace: String,
    tags: Vec<(Arc<str>, Arc<str>)>,
    fields: Vec<Arc<str>>,
}

/// The points of a compressed chunk of the series (`device`, `measure`).
pub(super) fn decode_points(
    compressed: &[u8],
    device: &str,
    measure: &Arc<str>,
) -> Result<Vec<TelemetryRecord>, ChunkError> {
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(compressed), &mut raw)?;
    let mut b = Input(&raw);
    match b.u8()? {
        VERSION => {}
        v => return Err(ChunkError::Version(v)),
    }
    let mut shapes = Vec::new();
    for _ in 0..b.count()? {
        let name = b.str()?.to_string();
        let namespace = b.str()?.to_string();
        let mut tags = Vec::new();
        for _ in 0..b.count()? {
            tags.push((Arc::from(b.str()?), Arc::from(b.str()?)));
        }
        let mut fields = Vec::new();
        for _ in 0..b.count()? {
            fields.push(Arc::from(b.str()?));
        }
        shapes.push(OwnedShape {
            name,
            namespace,
            tags,
            fields,
        });
    }
    let n = b.count()?;
    let mut out = Vec::with_capacity(n);
    let mut time = 0i64;
    for _ in 0..n {
        time = time.wrapping_add(unzigzag(b.varint()?));
        let seq = b.varint()?;
        let i = b.varint()?;
        let shape = usize::try_from(i)
            .ok()
            .and_then(|i| shapes.get(i))
            .ok_or(ChunkError::Shape(i))?;
        let mut values = Vec::with_capacity(shape.fields.len());
        for f in &shape.fields {
            values.push((f.clone(), b.value()?));
        }
        out.push(TelemetryRecord {
            device_id: device.to_string(),
            name: shape.name.clone(),
            namespace: shape.namespace.clone(),
            measure: measure.clone(),
            time_ns: time,
            seq,
            tags: shape.tags.clone(),
            values,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
