//! Output: tables, relative times, YAML/JSON documents, Mir-style result lines and a
//! plain-text line chart. Functions build strings; commands print them.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use mir_shared::api::{CommandResult, ConfigResult, ConfigStatus};
use mir_shared::domain::CommandStatus;

/// A plain table: columns padded to the widest cell, separated by three spaces.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(headers: I) -> Self {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let cols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; cols];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in line.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = line.get(i).map(String::as_str).unwrap_or("");
                if i + 1 == cols {
                    text.push_str(cell);
                } else {
                    let pad = width - cell.chars().count();
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad + 3));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `3s ago`, `5m ago`, `2h ago`, `4d ago`; `in 3s` for the future.
pub fn relative_time(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (abs, future) = if secs < 0 {
        (-secs, true)
    } else {
        (secs, false)
    };
    let text = if abs < 60 {
        format!("{abs}s")
    } else if abs < 3600 {
        format!("{}m", abs / 60)
    } else if abs < 86_400 {
        format!("{}h", abs / 3600)
    } else {
        format!("{}d", abs / 86_400)
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Relative time of an optional instant (`never` when absent).
pub fn relative_opt(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(|| "never".to_string(), |t| relative_time(t, now))
}

/// A timestamp for tables: `2025-02-15 17:01:25` (UTC).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Time from nanoseconds since the epoch.
pub fn from_nanos(ns: i64) -> Option<DateTime<Utc>> {
    (ns > 0).then(|| DateTime::from_timestamp_nanos(ns))
}

/// `k=v,k2=v2`.
pub fn labels(map: &std::collections::BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Pretty JSON (two spaces), without a trailing newline.
pub fn pretty_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// Documents as multi-document YAML (`---` between documents).
pub fn yaml_docs<T: Serialize>(docs: &[T]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(doc)?);
    }
    Ok(out)
}

/// One serializable value in YAML or JSON.
pub fn document<T: Serialize + ?Sized>(value: &T, yaml: bool) -> anyhow::Result<String> {
    if yaml {
        Ok(serde_yaml::to_string(value)?)
    } else {
        Ok(format!("{}\n", pretty_json(value)?))
    }
}

/// Mir's result block: `1. weather/default COMMAND_RESPONSE_STATUS_SUCCESS`, then the
/// response name and pretty JSON, or the error.
pub fn command_result(index: usize, r: &CommandResult) -> anyhow::Result<String> {
    let mut out = format!(
        "{index}. {}/{} {}\n",
        r.name,
        r.namespace,
        r.status.mir_name()
    );
    if let Some(name) = &r.response_name {
        let _ = writeln!(out, "{name}");
    }
    if let Some(resp) = &r.response {
        let _ = writeln!(out, "{}", pretty_json(resp)?);
    }
    if r.status == CommandStatus::Pending {
        if let Some(id) = &r.command_id {
            let _ = writeln!(
                out,
                "command id {id}: see the result with `mir cmd get {id}`"
            );
        }
    }
    if let Some(err) = &r.error {
        let _ = writeln!(out, "{err}");
    }
    Ok(out)
}

pub fn config_status_name(s: ConfigStatus) -> &'static str {
    match s {
        ConfigStatus::Sent => "SENT",
        ConfigStatus::Stored => "STORED",
        ConfigStatus::Validated => "VALIDATED",
        ConfigStatus::Error => "ERROR",
    }
}

/// `1. weather/default SENT`, then the message name and the desired value, or the error.
pub fn config_result(index: usize, message: &str, r: &ConfigResult) -> anyhow::Result<String> {
    let mut out = format!(
        "{index}. {}/{} {}\n",
        r.name,
        r.namespace,
        config_status_name(r.status)
    );
    if let Some(desired) = &r.desired {
        let _ = writeln!(out, "{message}");
        let _ = writeln!(out, "{}", pretty_json(desired)?);
    }
    if let Some(err) = &r.error {
        let _ = writeln!(out, "{err}");
    }
    Ok(out)
}

/// How Mir lists a message a device accepts: `schema.v1.ActivateHVACCmd{}`.
pub fn message_line(name: &str) -> String {
    format!("{name}{{}}")
}

/// A plain-text line chart of `points` (time order), `height` rows tall and at most
/// `width` columns wide: the y axis on the left, one `*` per column (the mean of the
/// points that fall in it), the first and last time below.
pub fn line_chart(points: &[(DateTime<Utc>, f64)], height: usize, width: usize) -> String {
    let points: Vec<(DateTime<Utc>, f64)> = points
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    if points.is_empty() || height == 0 || width == 0 {
        return "(no numeric values to chart)\n".to_string();
    }
    let cols = points.len().min(width);
    // Bucket the points into columns by index (rows come evenly spaced in practice).
    let mut buckets: Vec<(f64, usize)> = vec![(0.0, 0); cols];
    for (i, (_, v)) in points.iter().enumerate() {
        let c = i * cols / points.len();
        buckets[c].0 += v;
        buckets[c].1 += 1;
    }
    let values: Vec<f64> = buckets
        .iter()
        .map(|(sum, n)| if *n == 0 { f64::NAN } else { sum / *n as f64 })
        .collect();
    let min = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    let max = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    let span = if max > min { max - min } else { 1.0 };
    let row_of = |v: f64| -> usize {
        if max > min {
            (((v - min) / span) * (height - 1) as f64).round() as usize
        } else {
            (height - 1) / 2
        }
    };
    let label = |v: f64| format_number(v);
    let mid = if max > min {
        min + span * ((height - 1) / 2) as f64 / (height - 1).max(1) as f64
    } else {
        min
    };
    let label_width = [min, mid, max]
        .iter()
        .map(|v| label(*v).len())
        .max()
        .unwrap_or(1);
    let mut out = String::new();
    for r in (0..height).rev() {
        let axis_value = if height > 1 {
            min + span * r as f64 / (height - 1) as f64
        } else {
            min
        };
        let text = if r == height - 1 || r == 0 || r == (height - 1) / 2 {
            label(if max > min { axis_value } else { min })
        } else {
            String::new()
        };
        let mut line = format!("{text:>label_width$} |");
        for v in &values {
            line.push(if v.is_finite() && row_of(*v) == r {
                '*'
            } else {
                ' '
            });
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let _ = writeln!(out, "{} +{}", " ".repeat(label_width), "-".repeat(cols));
    let first = points.first().map(|p| p.0).unwrap_or_default();
    let last = points.last().map(|p| p.0).unwrap_or_default();
    let left = first.format("%H:%M:%S").to_string();
    let right = last.format("%H:%M:%S").to_string();
    let gap = (cols + 1).saturating_sub(left.len() + right.len()).max(1);
    let _ = writeln!(
        out,
        "{} {left}{}{right}",
        " ".repeat(label_width),
        " ".repeat(gap)
    );
    out
}

/// Compact number for axis labels.
fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let mut t = Table::new(["NAME", "ONLINE"]);
        t.row(["weather/default", "true"]);
        t.row(["a/b", "false"]);
        assert_eq!(
            t.render(),
            "NAME              ONLINE\nweather/default   true\na/b               false\n"
        );
        let mut t = Table::new(["A", "B", "C"]);
        t.row(["x", "", ""]);
        assert_eq!(t.render(), "A   B   C\nx\n");
    }

    #[test]
    fn relative_times_read_like_kubectl() {
        let now = Utc
            .with_ymd_and_hms(2025, 1, 2, 12, 0, 0)
            .single()
            .expect("time");
        let ago = |s: i64| relative_time(now - chrono::Duration::seconds(s), now);
        assert_eq!(ago(3), "3s ago");
        assert_eq!(ago(59), "59s ago");
        assert_eq!(ago(60), "1m ago");
        assert_eq!(ago(3 * 3600 + 5), "3h ago");
        assert_eq!(ago(2 * 86_400), "2d ago");
        assert_eq!(ago(-5), "in 5s");
        assert_eq!(relative_opt(None, now), "never");
    }

    #[test]
    fn command_results_print_like_mir() {
        let r = CommandResult {
            device_id: "weather".into(),
            name: "weather".into(),
            namespace: "default".into(),
            command_id: Some("c1".into()),
            status: CommandStatus::Success,
            response_name: Some("schema.v1.ActivateHVACResp".into()),
            response: Some(serde_json::json!({"success": true})),
            error: None,
        };
        assert_eq!(
            command_result(1, &r).expect("ok"),
            "1. weather/default COMMAND_RESPONSE_STATUS_SUCCESS\nschema.v1.ActivateHVACResp\n{\n  \"success\": true\n}\n"
        );
        let c = ConfigResult {
            device_id: "w".into(),
            name: "w".into(),
            namespace: "default".into(),
            status: ConfigStatus::Error,
            desired: None,
            error: Some("device is disabled".into()),
        };
        assert_eq!(
            config_result(2, "x.P", &c).expect("ok"),
            "2. w/default ERROR\ndevice is disabled\n"
        );
        assert_eq!(
            message_line("schema.v1.ActivateHVACCmd"),
            "schema.v1.ActivateHVACCmd{}"
        );
    }

    #[test]
    fn yaml_documents_are_separated() {
        let docs = vec![serde_json::json!({"a": 1}), serde_json::json!({"b": 2})];
        assert_eq!(yaml_docs(&docs).expect("yaml"), "a: 1\n---\nb: 2\n");
    }

    #[test]
    fn the_chart_has_a_fixed_height_and_marks_min_and_max() {
        let t0 = Utc
            .with_ymd_and_hms(2025, 1, 2, 12, 0, 0)
            .single()
            .expect("time");
        let points: Vec<_> = (0..20)
            .map(|i| (t0 + chrono::Duration::seconds(i), f64::from(i as i32 % 10)))
            .collect();
        let chart = line_chart(&points, 10, 60);
        let lines: Vec<&str> = chart.lines().collect();
        assert_eq!(lines.len(), 12, "{chart}");
        assert!(lines[0].starts_with("9 |"), "{chart}");
        assert!(lines[9].starts_with("0 |"), "{chart}");
        assert_eq!(lines[0].matches('*').count(), 2, "{chart}");
        assert_eq!(chart.matches('*').count(), 20, "{chart}");
        assert!(lines[10].contains("+--------------------"), "{chart}");
        assert!(
            lines[11].contains("12:00:00") && lines[11].contains("12:00:19"),
            "{chart}"
        );
        // More points than columns are averaged into the width.
        let many: Vec<_> = (0..200).map(|i| (t0, f64::from(i))).collect();
        let chart = line_chart(&many, 10, 50);
        assert_eq!(chart.matches('*').count(), 50, "{chart}");
        // A flat series sits in the middle; no values says so.
        let flat = line_chart(&[(t0, 3.0), (t0, 3.0)], 10, 50);
        assert_eq!(
            flat.lines().filter(|l| l.contains('*')).count(),
            1,
            "{flat}"
        );
        assert_eq!(line_chart(&[], 10, 50), "(no numeric values to chart)\n");
    }
}
