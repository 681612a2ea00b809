//! Property tests of mir-proto ("fuzzing on stable Rust", issue 15): the wire envelopes
//! (`envelopes`), device ids (`device_ids`) and topic names (`topics`). The key property
//! of each is that no input panics.
//!
//! CI runs [`CI_CASES`] cases per property; a longer run sets `PROPTEST_CASES`
//! (docs/architecture.md, Property tests):
//! `PROPTEST_CASES=1000000 cargo test --release -p mir-proto --test properties`.

mod device_ids;
mod envelopes;
mod topics;

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
