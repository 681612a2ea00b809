//! The real `mir` binary: each run with a private HOME, none of the caller's `MIR_*` or
//! editor variables, its output captured, and a deadline.

use std::{
    ffi::OsStr,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::blocking;

/// How long one run may take before it is killed and the test fails (commands wait at
/// most 25 s on the server, the CLI's requests at most 60 s).
const RUN_DEADLINE: Duration = Duration::from_secs(90);

/// Variables of the caller's environment that would change what `mir` does.
const CLEARED: [&str; 8] = [
    "MIR_API",
    "MIR_CONTEXT",
    "MIR_CONFIG",
    "MIR_DATA_DIR",
    "MIR_SWARM_TARGET",
    "XDG_DATA_HOME",
    "EDITOR",
    "VISUAL",
];

/// The `mir` binary under test.
#[derive(Debug, Clone)]
pub struct Cli {
    bin: PathBuf,
}

impl Cli {
    /// `bin`: the binary's path, `env!("CARGO_BIN_EXE_mir")` in mir-cli's test targets.
    pub fn new(bin: impl Into<PathBuf>) -> Cli {
        Cli { bin: bin.into() }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `mir ARGS`, to set up further and then [`Invocation::run`] or
    /// [`Invocation::spawn`].
    pub fn cmd<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Invocation {
        let home = tempfile::tempdir().expect("a temporary HOME");
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path());
        for var in CLEARED {
            cmd.env_remove(var);
        }
        Invocation {
            cmd,
            _home: home,
            stdin: None,
            stdout: None,
            stderr: None,
            deadline: RUN_DEADLINE,
        }
    }
}

/// One run of `mir`. Later settings win over earlier ones (an `env("HOME", ..)` replaces
/// the private HOME).
#[derive(Debug)]
pub struct Invocation {
    cmd: Command,
    _home: tempfile::TempDir,
    stdin: Option<String>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    deadline: Duration,
}

impl Invocation {
    /// Appends `--api URL`.
    pub fn api(mut self, url: &str) -> Self {
        self.cmd.args(["--api", url]);
        self
    }

    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_string());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.cmd.envs(vars);
        self
    }

    /// `$EDITOR` (and an empty `$VISUAL`, which would win over it).
    pub fn editor(self, editor: &Path) -> Self {
        self.env("EDITOR", editor).env("VISUAL", "")
    }

    /// The working directory (relative paths in the arguments land there).
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Where the output of a [`spawn`](Self::spawn)ed process goes (piped by default).
    pub fn stdout(mut self, to: Stdio) -> Self {
        self.stdout = Some(to);
        self
    }

    /// See [`stdout`](Self::stdout).
    pub fn stderr(mut self, to: Stdio) -> Self {
        self.stderr = Some(to);
        self
    }

    /// Runs to completion; panics when it takes longer than the deadline.
    pub fn run(mut self) -> CliOutput {
        self.stdout = None;
        self.stderr = None;
        let deadline = self.deadline;
        let what = format!("{:?}", self.cmd);
        let child = self.start();
        blocking(|| collect(child, deadline, &what))
    }

    /// Starts a long-running command (`mir swarm`, `mir local`), killed on drop.
    pub fn spawn(mut self) -> Background {
        let what = format!("{:?}", self.cmd);
        let child = self.start();
        Background {
            child: Some(child),
            what,
            deadline: self.deadline,
            _home: Some(self._home),
        }
    }

    fn start(&mut self) -> Child {
        let stdin = self.stdin.take();
        self.cmd
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(self.stdout.take().unwrap_or_else(Stdio::piped))
            .stderr(self.stderr.take().unwrap_or_else(Stdio::piped));
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.cmd));
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // On its own thread: a large input must not wait for the output to be read.
            std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        child
    }
}

/// What a run of `mir` printed, and how it ended.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit code 0.
    pub ok: bool,
    /// The exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A process running in the background (`mir` or, [`From`] a [`Child`], any other);
/// killed on drop.
#[derive(Debug)]
pub struct Background {
    child: Option<Child>,
    what: String,
    deadline: Duration,
    /// The private HOME, kept while the process runs.
    _home: Option<tempfile::TempDir>,
}

/// Any other process (a generated device, say), killed on drop just the same.
impl From<Child> for Background {
    fn from(child: Child) -> Background {
        Background {
            what: format!("process {}", child.id()),
            child: Some(child),
            deadline: RUN_DEADLINE,
            _home: None,
        }
    }
}

impl Background {
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The process's stdout, when it was piped and not taken yet.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process to end; panics when it does not
    /// within the deadline.
    pub fn interrupt(mut self) -> CliOutput {
        let child = self.child.take().expect("a running process");
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("run kill -INT");
        assert!(sent.success(), "kill -INT {} failed", child.id());
        let (deadline, what) = (self.deadline, self.what.clone());
        blocking(|| collect(child, deadline, &what))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` (polling, so that it can be killed at the deadline) while reading
/// its piped output.
fn collect(mut child: Child, deadline: Duration, what: &str) -> CliOutput {
    fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mir") {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    CliOutput {
        ok: status.success(),
        code: status.code(),
        stdout: stdout.join().expect("read stdout"),
        stderr: stderr.join().expect("read stderr"),
    }
}
