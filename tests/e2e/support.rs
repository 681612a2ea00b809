//! The e2e suite's binding of `mir-test-support` to this package's `mir` binary (only
//! mir-cli's test targets know its path).

pub use mir_test_support::*;

/// The `mir` binary under test.
pub const MIR: &str = env!("CARGO_BIN_EXE_mir");

pub fn cli() -> Cli {
    Cli::new(MIR)
}

/// A hub in-process with the stores `MIR_E2E_PROFILE` names, the CLI pointed at it.
pub fn hub() -> TestHub {
    TestHub::start(cli())
}
