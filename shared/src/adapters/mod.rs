//! Adapters: implementations of the ports.
//!
//! - [`embedded`]: one on-disk redb database (local hub, tests).
//! - [`memory`]: in-process helpers (a publisher that records, a fixed clock).
//! - `aws` (feature `aws-core`): configuration from the environment, SDK error mapping
//!   and `AwsEnvironment`, the builder of the AWS adapters this build has;
//!   `dynamodb`, `timestream`, `iot`, `eventbridge` (features of the same names, all with
//!   `aws`): the adapters themselves. A Lambda binary has DynamoDB and only what its
//!   `access` needs.

#[cfg(feature = "aws-core")]
pub mod aws;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "eventbridge")]
pub mod eventbridge;
#[cfg(feature = "iot")]
pub mod iot;
pub mod memory;
#[cfg(feature = "embedded")]
mod pairs;
#[cfg(feature = "timestream")]
pub mod timestream;
