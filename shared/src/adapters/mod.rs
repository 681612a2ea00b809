//! Adapters: implementations of the ports.
//!
//! - [`embedded`]: one on-disk redb database (local hub, tests).
//! - [`memory`]: in-process helpers (a publisher that records, a fixed clock).
//! - `aws` (features `dynamodb`, `timestream`, `iot`; all with `aws`): configuration
//!   from the environment, SDK error mapping and `AwsPorts`, the builder of every AWS
//!   adapter; `dynamodb`, `timestream`, `iot`: the adapters themselves.

#[cfg(feature = "aws-core")]
pub mod aws;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "iot")]
pub mod iot;
pub mod memory;
#[cfg(any(feature = "dynamodb", feature = "embedded"))]
mod pairs;
#[cfg(feature = "timestream")]
pub mod timestream;
