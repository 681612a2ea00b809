//! The store conformance suite: the same test bodies run against the embedded adapters
//! (always) and against the AWS adapters (feature `aws`) on an AWS-compatible endpoint
//! given by `MIR_TEST_AWS_ENDPOINT` (moto's server: `scripts/moto.sh start`), each test
//! on tables of its own with random names.
//!
//! The AWS half is `#[ignore]`d, so that a run without an endpoint reports it as
//! ignored rather than passed; with an endpoint, run it with `--include-ignored`:
//!
//! ```sh
//! cargo test -p mir-shared --test conformance                       # embedded; AWS ignored
//! scripts/moto.sh start
//! MIR_TEST_AWS_ENDPOINT=http://127.0.0.1:4566 \
//!   cargo test -p mir-shared --features aws --test conformance -- --include-ignored
//! scripts/moto.sh stop
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

mod commands;
mod events;
mod handlers;
mod schemas;
mod telemetry;
mod twins;

#[cfg(feature = "aws")]
mod aws_only;
#[cfg(all(feature = "aws", feature = "lambda"))]
mod event_feed;
#[cfg(feature = "aws")]
mod events_burst;
