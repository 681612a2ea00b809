//! Property tests of mir-shared ("fuzzing on stable Rust", issue 15). The key property
//! of each is that no input panics; each module says what else it checks:
//! - `descriptors`: the schema registry built from arbitrary descriptor-set bytes,
//!   damaged real ones and generated descriptor sets; hello schema decompression.
//! - `payloads`: arbitrary payloads for valid schemas (the weather example and a schema
//!   of every field kind) to JSON and telemetry records; arbitrary JSON to protobuf; a
//!   JSON object the schema accepts survives protobuf.
//! - `rule_events`: rule, lifecycle, schedule and presence events from any JSON.
//! - `api`: API Gateway v2 requests, query and body parsing, page tokens, `parse_since`.
//! - `twins`: twin documents in YAML and JSON.
//!
//! CI runs [`CI_CASES`] cases per property (fewer for the slowest); a longer run sets
//! `PROPTEST_CASES` (docs/architecture.md, Property tests):
//! `PROPTEST_CASES=1000000 cargo test --release -p mir-shared --test properties`.

mod api;
mod descriptors;
mod fixtures;
mod json;
mod payloads;
mod rule_events;
mod twins;

use proptest::test_runner::Config;

/// Cases per property when `PROPTEST_CASES` is not set.
pub const CI_CASES: u32 = 1_000;

/// The runner's configuration: `PROPTEST_CASES` when set, else `default_cases`.
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        ..Config::default()
    }
}
