//! The README's commands for local use, run as written: each line of the `sh` blocks
//! of its "Local hub", "CLI", "Device credentials" and "Swarm" sections, in order, from
//! a scratch working directory: `mir local` itself as a process (the binary is under
//! test here), the other sections against a hub in-process.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::quickstart::words;
use crate::support::*;

const README: &str = include_str!("../../README.md");

/// The lines of the first `sh` block under `## {section}`, comments removed.
pub fn block(section: &str) -> Vec<String> {
    let heading = format!("\n## {section}");
    let start = README
        .match_indices(&heading)
        .map(|(i, _)| i)
        .find(|i| matches!(README.as_bytes().get(i + heading.len()), Some(b'\n' | b':')))
        .unwrap_or_else(|| panic!("README has no section {section:?}"));
    let rest = &README[start..];
    let open = rest.find("```sh\n").expect("an sh block") + "```sh\n".len();
    let close = rest[open..].find("```").expect("a closed block") + open;
    rest[open..close]
        .lines()
        .map(strip_comment)
        .filter(|l| !l.is_empty())
        .collect()
}

/// `mir x  # comment` -> `mir x` (a `#` outside single quotes, after a space).
fn strip_comment(line: &str) -> String {
    let mut quoted = false;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '#' if !quoted && prev.is_whitespace() => return line[..i].trim().to_string(),
            _ => {}
        }
        prev = c;
    }
    line.trim().to_string()
}

/// One README line: `mir ...`, `cargo run -p mir-cli -- ...`, with `cat FILE |`,
/// `| mir ...` or `> FILE` around it.
#[derive(Debug, PartialEq)]
struct Line {
    args: Vec<String>,
    stdin_file: Option<String>,
    stdout_file: Option<String>,
    /// `mir a | mir b`: `b`'s arguments.
    piped_into: Option<Vec<String>>,
}

fn mir_args(words: &[String]) -> Vec<String> {
    match words {
        [mir, rest @ ..] if mir == "mir" => rest.to_vec(),
        [cargo, run, p, krate, dashes, rest @ ..]
            if cargo == "cargo"
                && run == "run"
                && p == "-p"
                && krate == "mir-cli"
                && dashes == "--" =>
        {
            rest.to_vec()
        }
        other => panic!("not a mir command line: {other:?}"),
    }
}

fn parse(line: &str) -> Line {
    let mut parts: Vec<&str> = line.split(" | ").collect();
    let mut stdin_file = None;
    if parts[0].starts_with("cat ") {
        stdin_file = Some(parts.remove(0)["cat ".len()..].trim().to_string());
    }
    let (first, stdout_file) = match parts[0].split_once(" > ") {
        Some((cmd, file)) => (cmd, Some(file.trim().to_string())),
        None => (parts[0], None),
    };
    Line {
        args: mir_args(&words(first)),
        stdin_file,
        stdout_file,
        piped_into: parts.get(1).map(|p| mir_args(&words(p))),
    }
}

/// Where the lines run: a scratch folder, a private HOME and a no-op `$EDITOR`.
struct Shell {
    cli: Cli,
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
    editor: std::path::PathBuf,
}

impl Shell {
    fn new() -> Shell {
        let dir = tempfile::tempdir().unwrap();
        let editor = editor_script(dir.path(), ".editor", "true");
        Shell {
            cli: cli(),
            dir,
            home: tempfile::tempdir().unwrap(),
            editor,
        }
    }

    /// `mir ARGS --api API` in the scratch folder, with the shell's HOME and `$EDITOR`.
    fn cmd(&self, api: &str, args: &[String], stdin: Option<&str>) -> Invocation {
        let cmd = self
            .cli
            .cmd(args)
            .api(api)
            .current_dir(self.dir.path())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path())
            .editor(&self.editor);
        match stdin {
            Some(text) => cmd.stdin(text),
            None => cmd,
        }
    }

    /// What `cat FILE |` gives the line, if anything.
    fn stdin_file(&self, line: &Line) -> Option<String> {
        line.stdin_file
            .as_ref()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap())
    }

    /// Runs a line to completion; panics with its output when it fails.
    fn run(&self, api: &str, text: &str) -> String {
        let line = parse(text);
        let stdin = self.stdin_file(&line);
        let out = self.cmd(api, &line.args, stdin.as_deref()).run();
        assert!(
            out.ok,
            "README line `{text}` failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        if let Some(f) = &line.stdout_file {
            std::fs::write(self.dir.path().join(f), &out.stdout).unwrap();
        }
        out.stdout
    }

    /// Starts a long-running line (its input from `cat FILE |` or `mir ... |`), its
    /// stdout piped.
    fn start(&self, api: &str, text: &str, extra_env: &[(&str, &str)]) -> Background {
        let line = parse(text);
        let (args, input) = match &line.piped_into {
            Some(second) => {
                let out = self.cmd(api, &line.args, None).run();
                assert!(out.ok, "`{text}`: {out:?}");
                (second.clone(), Some(out.stdout))
            }
            None => (line.args.clone(), self.stdin_file(&line)),
        };
        self.cmd(api, &args, input.as_deref())
            .envs(extra_env.iter().copied())
            .stderr(Stdio::null())
            .spawn()
    }
}

fn rows(v: &Value) -> usize {
    v.as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readmes_local_commands_run_as_written() {
    let shell = Shell::new();

    // "Local hub": the defaults print as YAML, and `mir local` serves on the ports the
    // README names (when they are free on this machine).
    let local = block("Local hub");
    assert_eq!(local.len(), 2, "{local:?}");
    let config = shell.run("http://127.0.0.1:9", &local[1]);
    let config: serde_yaml::Value = serde_yaml::from_str(&config).unwrap();
    assert_eq!(config["httpPort"], 8180, "{config:?}");
    assert_eq!(config["mqttPort"], 1883, "{config:?}");
    assert_eq!(config["mqttsPort"], 8883, "{config:?}");
    let defaults_free = [8180u16, 1883, 8883]
        .iter()
        .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err());
    if defaults_free {
        let mut local_hub = shell.start("http://127.0.0.1:8180", &local[0], &[]);
        let stdout = local_hub.take_stdout().unwrap();
        let ready = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut first = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut first);
            first
        });
        eventually(
            Duration::from_secs(30),
            "the ready line of `mir local`",
            || ready.is_finished(),
        )
        .await;
        let first = ready.join().unwrap();
        let v: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
        assert_eq!(v["event"], "ready");
        assert_eq!(v["endpoints"]["http"], "http://127.0.0.1:8180");
        assert_eq!(v["endpoints"]["mqtt"], "mqtt://127.0.0.1:1883");
        assert_eq!(v["endpoints"]["mqtts"], "mqtts://127.0.0.1:8883");
    }

    // "CLI" against a hub of its own, with the weather device connecting once created.
    let hub = hub();
    let api = hub.api();
    std::fs::write(
        shell.dir.path().join("payload.json"),
        r#"{"durationSec": 1}"#,
    )
    .unwrap();
    let mut device = None;
    for text in block("CLI") {
        let out = shell.run(&api, &text);
        if text.starts_with("mir dev create --id weather") {
            let dev = TestDevice::start(&hub, "weather", Behaviour::Succeed).await;
            dev.mir
                .send_telemetry(&mir_proto::examples::weather::Env {
                    ts: chrono::Utc::now().timestamp_nanos_opt().unwrap(),
                    temperature: 21,
                    ..Default::default()
                })
                .await
                .unwrap();
            eventually(Duration::from_secs(10), "a stored reading", || {
                rows(&hub.json(&["tlm", "query", "weather", "-n", "schema.v1.Env"])["rows"]) == 1
            })
            .await;
            device = Some(dev);
        }
        if text.contains("-p '{\"durationSec\": 5}'") || text.starts_with("cat payload.json") {
            assert!(
                out.contains("COMMAND_RESPONSE_STATUS_SUCCESS"),
                "{text}: {out}"
            );
        }
        if text.starts_with("mir cmd send --all") {
            assert_eq!(
                out.trim(),
                "1. weather/default COMMAND_RESPONSE_STATUS_VALIDATED",
                "{text}"
            );
        }
        if text.starts_with("mir tlm query") {
            assert!(out.contains("TEMPERATURE"), "{text}: {out}");
            assert!(out.contains("21"), "{text}: {out}");
        }
        if text.starts_with("mir evt ls") {
            assert!(out.contains("CommandCompleted"), "{text}: {out}");
        }
        if text.starts_with("mir ctx") {
            assert!(out.contains("local"), "{text}: {out}");
        }
    }
    let twin = hub.twin("weather/default");
    assert_eq!(twin["meta"]["labels"]["floor"], "2", "{twin}");

    // "Device credentials": the files are written (provision.rs connects with them).
    for text in block("Device credentials") {
        shell.run(&api, &text);
    }
    let written: Vec<String> = std::fs::read_dir(shell.dir.path().join("sensor-1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for f in ["tls.crt", "tls.key", "ca.crt", "device.yaml"] {
        assert!(written.iter().any(|w| w == f), "{f} missing in {written:?}");
    }

    // "Swarm": each line deploys its devices, which come online (the swarm's own
    // `weather` takes over from the test device).
    drop(device);
    let swarm = block("Swarm");
    let target = [("MIR_SWARM_TARGET", hub.mqtt())];
    let target: Vec<(&str, &str)> = target.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for text in &swarm {
        let line = parse(text);
        if line.stdout_file.is_some() {
            shell.run(&api, text);
            continue;
        }
        let running = shell.start(&api, text, &target);
        let (selector, expected) = if text.contains("--ids power,weather") {
            ("--ids", 2)
        } else {
            ("/swarm", 4)
        };
        eventually(
            Duration::from_secs(60),
            &format!("the devices of `{text}` online"),
            || {
                let v = if selector == "--ids" {
                    hub.json(&["device", "ls", "--ids", "power,weather"])
                } else {
                    hub.json(&["device", "ls", selector])
                };
                v.as_array().is_some_and(|a| {
                    a.len() == expected && a.iter().all(|t| t["status"]["online"] == true)
                })
            },
        )
        .await;
        drop(running);
        // The next line may deploy the same devices: wait until these are gone.
        eventually(
            Duration::from_secs(30),
            "the swarm's devices offline",
            || {
                hub.json(&["device", "ls"])
                    .as_array()
                    .is_some_and(|a| a.iter().all(|t| t["status"]["online"] == false))
            },
        )
        .await;
    }
}

#[test]
fn readme_lines_parse_into_arguments_files_and_pipes() {
    let l = parse("cat payload.json | mir cmd send /default -n x.Cmd");
    assert_eq!(l.stdin_file.as_deref(), Some("payload.json"));
    assert_eq!(l.args, ["cmd", "send", "/default", "-n", "x.Cmd"]);
    let l = parse("mir swarm -j > my-swarm.yaml");
    assert_eq!(l.stdout_file.as_deref(), Some("my-swarm.yaml"));
    let l = parse("mir swarm -j | mir swarm");
    assert_eq!(l.piped_into, Some(vec!["swarm".to_string()]));
    let l = parse("cargo run -p mir-cli -- local --print-config");
    assert_eq!(l.args, ["local", "--print-config"]);
    assert_eq!(
        strip_comment("mir x -p '{\"a\": \"#\"}'  # c"),
        "mir x -p '{\"a\": \"#\"}'"
    );
}
