//! Input: device targets from flags, `k=v` lists, durations, and payloads from a flag,
//! piped stdin or `$EDITOR`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;

use mir_shared::domain::Targets;

use crate::args::TargetArgs;

/// The selection described by positional targets and flags.
pub fn targets(args: &TargetArgs) -> anyhow::Result<Targets> {
    let mut t = Targets::default();
    for arg in args.targets.iter().chain(&args.target_flags) {
        t.add_positional(arg)?;
    }
    for spec in &args.labels {
        t.add_labels(spec)?;
    }
    t.ids.extend(
        args.ids
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    );
    t.namespaces.extend(
        args.namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    );
    Ok(t)
}

/// Targets from positional arguments only.
pub fn positional_targets<S: AsRef<str>>(args: &[S]) -> anyhow::Result<Targets> {
    let mut t = Targets::default();
    for a in args {
        t.add_positional(a.as_ref())?;
    }
    Ok(t)
}

/// `k=v` items, each possibly `k=v,k2=v2`.
pub fn key_values(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        for pair in item.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                bail!("{what} {pair:?} must be key=value");
            };
            let k = k.trim();
            if k.is_empty() {
                bail!("{what} {pair:?} has an empty key");
            }
            map.insert(k.to_string(), v.trim().to_string());
        }
    }
    Ok(map)
}

/// `500ms`, `10s`, `2m`, or a number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n
        .parse()
        .with_context(|| format!("duration {s:?} must be like 500ms, 10s or 2m"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => bail!("duration {s:?}: unknown unit {other:?} (use ms, s, m or h)"),
    };
    if !secs.is_finite() || secs < 0.0 {
        bail!("duration {s:?} must be positive");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a JSON payload, saying where it comes from when it is wrong.
pub fn parse_json(text: &str, source: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text)
        .with_context(|| format!("the payload from {source} is not valid JSON"))
}

/// Where a payload comes from, in order: `-p`, `-e` (editor on `initial`), piped stdin,
/// else `{}` (every field at its default).
pub fn payload(
    flag: Option<&str>,
    edit: bool,
    initial: impl FnOnce() -> anyhow::Result<Value>,
) -> anyhow::Result<Value> {
    if let Some(text) = flag {
        return parse_json(text, "-p");
    }
    if edit {
        let start = pretty(&initial()?)?;
        let edited = edit_text(&start, "json")?;
        if edited.trim().is_empty() {
            bail!("the payload is empty: nothing sent");
        }
        return parse_json(&edited, "the editor");
    }
    if let Some(text) = piped_stdin()? {
        if !text.trim().is_empty() {
            return parse_json(&text, "stdin");
        }
    }
    Ok(Value::Object(Default::default()))
}

fn pretty(v: &Value) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// All of stdin when it is not a terminal.
pub fn piped_stdin() -> anyhow::Result<Option<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .context("cannot read stdin")?;
    Ok(Some(text))
}

/// A file's text, or stdin for `-`.
pub fn read_file_or_stdin(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// The editor command: `$VISUAL`, `$EDITOR`, else `vi`.
pub fn editor() -> String {
    ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string())
}

/// A temporary file that is removed when dropped, unless kept.
#[derive(Debug)]
pub struct TempFile {
    pub path: PathBuf,
    keep: bool,
}

impl TempFile {
    pub fn create(text: &str, extension: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("mir-{}.{extension}", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self { path, keep: false })
    }

    /// Keeps the file (e.g. so the user does not lose an edit that failed).
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Opens the editor on `file` and waits for it.
pub fn run_editor(file: &Path) -> anyhow::Result<()> {
    let editor = editor();
    let mut parts = editor.split_whitespace();
    let Some(program) = parts.next() else {
        bail!("no editor: set $EDITOR")
    };
    let status = std::process::Command::new(program)
        .args(parts)
        .arg(file)
        .status()
        .with_context(|| {
            format!("cannot start the editor {editor:?}: set $EDITOR to one you have")
        })?;
    if !status.success() {
        bail!("the editor {editor:?} exited with {status}: nothing done");
    }
    Ok(())
}

/// Writes `text` to a temporary file, opens the editor, returns what was saved.
pub fn edit_text(text: &str, extension: &str) -> anyhow::Result<String> {
    let file = TempFile::create(text, extension)?;
    run_editor(&file.path)?;
    std::fs::read_to_string(&file.path)
        .with_context(|| format!("cannot read {}", file.path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_combine_positionals_and_flags() {
        let args = TargetArgs {
            targets: vec!["weather/default".into(), "/lab".into()],
            target_flags: vec!["power".into()],
            labels: vec!["type=hvac,floor=2".into()],
            ids: vec!["id1".into(), " ".into()],
            namespaces: vec!["prod".into()],
        };
        let t = targets(&args).expect("ok");
        assert_eq!(t.names.len(), 2);
        assert_eq!(t.namespaces, ["lab", "prod"]);
        assert_eq!(t.ids, ["id1"]);
        assert_eq!(t.labels["floor"], "2");
        let q = t.to_query();
        assert!(
            q.contains(&("names", "weather/default,power".to_string())),
            "{q:?}"
        );
        let bad = TargetArgs {
            targets: vec!["a/b/c".into()],
            ..Default::default()
        };
        let e = targets(&bad).expect_err("two slashes");
        assert!(e.to_string().contains("must be name/namespace"), "{e}");
        assert!(positional_targets(&["x/y"]).expect("ok").names[0]
            .namespace
            .is_some());
    }

    #[test]
    fn key_values_accept_repeats_and_commas() {
        let m = key_values(&["a=1,b=2".into(), "c=".into()], "label").expect("ok");
        assert_eq!(m.len(), 3);
        assert_eq!(m["c"], "");
        let e = key_values(&["novalue".into()], "label").expect_err("no value");
        assert_eq!(e.to_string(), "label \"novalue\" must be key=value");
        let e = key_values(&["=v".into()], "label").expect_err("no key");
        assert_eq!(e.to_string(), "label \"=v\" has an empty key");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s").expect("ok"), Duration::from_secs(10));
        assert_eq!(
            parse_duration("500ms").expect("ok"),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("2m").expect("ok"), Duration::from_secs(120));
        assert_eq!(parse_duration("3").expect("ok"), Duration::from_secs(3));
        assert_eq!(
            parse_duration("1.5s").expect("ok"),
            Duration::from_millis(1500)
        );
        let e = parse_duration("soon").expect_err("no number");
        assert_eq!(
            e.to_string(),
            "duration \"soon\" must be like 500ms, 10s or 2m"
        );
        let e = parse_duration("3w").expect_err("weeks");
        assert_eq!(
            e.to_string(),
            "duration \"3w\": unknown unit \"w\" (use ms, s, m or h)"
        );
    }

    #[test]
    fn a_payload_flag_must_be_json() {
        let v = payload(Some(r#"{"durationSec": 5}"#), false, || unreachable!()).expect("ok");
        assert_eq!(v["durationSec"], 5);
        let err = payload(Some("{durationSec: 5"), false, || unreachable!()).expect_err("bad");
        assert!(err.to_string().contains("-p"), "{err}");
    }

    #[test]
    fn temp_files_are_removed_unless_kept() {
        let f = TempFile::create("x", "txt").expect("create");
        let p = f.path.clone();
        drop(f);
        assert!(!p.exists());
        let f = TempFile::create("x", "txt").expect("create");
        let p = f.keep();
        assert!(p.exists());
        let _ = std::fs::remove_file(p);
    }
}
