//! The shared core of Mir Serverless.
//!
//! Layout:
//! - [`domain`]: twins, targets, events and command records (pure rules).
//! - [`schema`]: the schema registry (prost-reflect): message kinds, JSON <-> protobuf,
//!   templates.
//! - [`telemetry`]: mapping telemetry messages to multi-measure records.
//! - [`rule_event`]: the JSON events IoT rules send (device messages, lifecycle,
//!   schedules).
//! - [`api`]: HTTP API requests/responses (API Gateway payload v2) and bodies;
//!   [`invocation`]: an HTTP invocation's deadline.
//! - [`routes`]: the routes table (`routes.json`), shared with the CDK app.
//! - [`ports`]: the traits handlers use; [`adapters`]: their implementations.
//! - [`service`]: small workflows over ports shared by several handlers.
//! - [`failure`]: the event that records an invocation a retry cannot fix.
//! - `lambda` (feature `lambda`): the wiring of every function's `main.rs`.
//! - `testing` (feature `testing`): builders and a temporary world for tests.
//!
//! Architecture: see docs/architecture.md in the repository (sections Layout, Delivery semantics).

pub mod adapters;
pub mod api;
pub mod domain;
pub mod failure;
pub mod invocation;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod ports;
pub mod routes;
pub mod rule_event;
pub mod schema;
pub mod service;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
