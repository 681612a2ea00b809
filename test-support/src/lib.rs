//! `mir-test-support`: the launch helpers the tests share, one copy of each.
//!
//! - [`TestHub`]: the hub ([`mir_hub::Hub::start`]) in-process on port 0 over a
//!   temporary data dir, on a runtime of its own; `MIR_E2E_PROFILE=localstack` puts it on
//!   the AWS adapters at `MIR_TEST_AWS_ENDPOINT` with tables of its own; it runs with
//!   chaos on (duplicated, delayed, reordered invocations) unless `MIR_E2E_CHAOS=off`;
//! - [`Cli`]: the real `mir` binary, run with a private HOME, a deadline, and its output
//!   captured. The binary's path comes from the caller (`env!("CARGO_BIN_EXE_mir")`
//!   exists only in mir-cli's own test targets);
//! - [`TestDevice`]: an SDK device of the weather schema with a scripted behaviour;
//! - [`RecordingProxy`]: a TCP proxy in front of the hub's HTTP API that records what the
//!   CLI sent and what came back, and parses the HTTP requests;
//! - [`eventually`]: polls a condition until a deadline (no fixed sleeps);
//! - [`editor_script`]: a shell script to use as `$EDITOR`.

mod cli;
mod device;
mod hub;
mod proxy;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub use cli::{Background, Cli, CliOutput, Invocation};
pub use device::{Behaviour, DeviceOptions, TestDevice};
pub use hub::{chaos_from_env, TestHub};
pub use proxy::{HttpRequest, RecordingProxy};

/// How often [`eventually`] checks.
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` (a blocking CLI call is fine) until it returns true; panics naming
/// `what` when `deadline` has passed first.
pub async fn eventually(deadline: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !check() {
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A shell script usable as `$EDITOR`: runs `body` (with `set -e`) with the file to edit
/// as `$1`. Written into `dir` as `name`, executable.
pub fn editor_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).expect("write the editor script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make the editor script executable");
    path
}

/// Runs `f`, which blocks, without holding up the other tasks of a multi-threaded tokio
/// runtime the caller may be on (its worker is handed over first).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn eventually_returns_once_the_check_holds() {
        let mut calls = 0;
        eventually(Duration::from_secs(5), "the third call", || {
            calls += 1;
            calls == 3
        })
        .await;
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: a check that never holds")]
    async fn eventually_fails_naming_what_it_waited_for() {
        eventually(
            Duration::from_millis(250),
            "a check that never holds",
            || false,
        )
        .await;
    }

    #[test]
    fn the_editor_script_runs_its_body_on_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let editor = editor_script(dir.path(), "edit.sh", "printf edited > \"$1\"");
        let file = dir.path().join("f.txt");
        std::fs::write(&file, "before").expect("write");
        let status = std::process::Command::new(&editor)
            .arg(&file)
            .status()
            .expect("run the script");
        assert!(status.success(), "{status}");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "edited");
    }
}
