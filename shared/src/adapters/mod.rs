//! Adapters: implementations of the ports.
//!
//! - [`embedded`]: one on-disk redb database (local hub, tests).
//! - [`memory`]: in-process helpers (a publisher that records, a fixed clock).

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod memory;
