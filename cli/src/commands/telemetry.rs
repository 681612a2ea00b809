//! `mir telemetry list|query`.

use std::process::ExitCode;

use anyhow::bail;

use mir_shared::api::{TelemetryList, TelemetryQueryResult};
use mir_shared::domain::page::MAX_PAGE_LIMIT;
use mir_shared::telemetry::FieldValue;

use super::{message::refresh, no_device, out, resolve_one, Connection};
use crate::args::{MessageListArgs, Output, TelemetryArgs, TelemetryCommand, TelemetryQueryArgs};
use crate::client::Client;
use crate::input;
use crate::output::{self, Table};

/// Rows of `--chart`.
const CHART_HEIGHT: usize = 10;
/// Widest `--chart`, in columns.
const CHART_WIDTH: usize = 72;

pub(super) async fn run(conn: &Connection, args: TelemetryArgs) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    match args.command {
        TelemetryCommand::List(a) => list(&client, a, conn.console().as_deref()).await,
        TelemetryCommand::Query(a) => query(&client, a).await,
    }
}

async fn list(
    client: &Client,
    a: MessageListArgs,
    console: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let targets = input::targets(&a.targets)?;
    if a.refresh {
        refresh(client, &targets).await?;
    }
    let list = client.list_telemetry(&targets).await?;
    match a.output.output {
        Output::Yaml => out(&output::document(&list, true)?)?,
        Output::Json => out(&output::document(&list, false)?)?,
        Output::Table => {
            if list.devices.is_empty() {
                bail!("{}", no_device(&targets));
            }
            out(&list_text(&list, chrono::Utc::now(), console))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The console page of one telemetry message (as Mir links each to its dashboard).
pub(crate) fn console_link(console: &str, device_id: &str, measure: &str) -> String {
    // form encoding writes a space as `+` (and a `+` as `%2B`): a path wants `%20`.
    let enc = |s: &str| {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    format!(
        "{}/#/devices/{}/telemetry/{}",
        console.trim_end_matches('/'),
        enc(device_id),
        enc(measure)
    )
}

/// `1. weather/default` then one line per telemetry message: stored count, last time and,
/// when the console's address is known, the message's console link.
pub(crate) fn list_text(
    list: &TelemetryList,
    now: chrono::DateTime<chrono::Utc>,
    console: Option<&str>,
) -> String {
    let mut text = String::new();
    for (i, d) in list.devices.iter().enumerate() {
        text.push_str(&format!("{}. {}/{}\n", i + 1, d.name, d.namespace));
        if d.messages.is_empty() {
            let why = d
                .error
                .clone()
                .unwrap_or_else(|| "no telemetry messages; use -r to refresh the schema".into());
            text.push_str(&format!("   ({why})\n"));
            continue;
        }
        let mut header = vec!["TELEMETRY", "FIELDS", "STORED", "LAST"];
        header.extend(console.map(|_| "CONSOLE"));
        let mut t = Table::new(header);
        for m in &d.messages {
            let mut row = vec![
                m.measure.clone(),
                d.fields
                    .get(&m.measure)
                    .map(|f| f.join(", "))
                    .unwrap_or_default(),
                m.count.to_string(),
                output::relative_opt(output::from_nanos(m.last_time_ns), now),
            ];
            row.extend(console.map(|c| console_link(c, &d.device_id, &m.measure)));
            t.row(row);
        }
        for line in t.render().lines() {
            text.push_str("   ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

async fn query(client: &Client, a: TelemetryQueryArgs) -> anyhow::Result<ExitCode> {
    let device = resolve_one(client, a.target.get()).await?;
    let result = newest_rows(client, &device.spec.device_id, &a.name, &a.since, a.limit).await?;
    match a.output.output {
        Output::Yaml => out(&output::document(&result, true)?)?,
        Output::Json => out(&output::document(&result, false)?)?,
        Output::Table => {
            if result.rows.is_empty() {
                eprintln!(
                    "no {} from {} since {}",
                    a.name,
                    device.display_name(),
                    a.since
                );
            } else {
                out(&query_table(&result))?;
            }
        }
    }
    if let Some(field) = &a.chart {
        out(&chart(&result, field)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The newest `limit` rows since `since` (one page of the API's default size when
/// `None`), oldest first: pages of at most [`MAX_PAGE_LIMIT`] rows, each one older than
/// the one before, followed until there are `limit` rows or no more. The result's
/// `next_token` is where older rows go on, if any.
async fn newest_rows(
    client: &Client,
    device: &str,
    name: &str,
    since: &str,
    limit: Option<usize>,
) -> anyhow::Result<TelemetryQueryResult> {
    let Some(limit) = limit else {
        return Ok(client
            .query_telemetry(device, name, since, None, None)
            .await?);
    };
    let mut pages: Vec<TelemetryQueryResult> = Vec::new();
    let mut rows = 0;
    let mut token: Option<String> = None;
    loop {
        let size = (limit - rows).clamp(1, MAX_PAGE_LIMIT);
        let page = client
            .query_telemetry(device, name, since, Some(size), token.as_deref())
            .await?;
        rows += page.rows.len();
        token = page.next_token.clone();
        pages.push(page);
        if rows >= limit || token.is_none() {
            break;
        }
    }
    Ok(join_pages(pages))
}

/// Pages newest first as one result, oldest row first; the last page's token.
pub(crate) fn join_pages(pages: Vec<TelemetryQueryResult>) -> TelemetryQueryResult {
    let mut pages = pages.into_iter().rev();
    let Some(mut out) = pages.next() else {
        return TelemetryQueryResult {
            device_id: String::new(),
            measure: String::new(),
            columns: vec![],
            rows: vec![],
            next_token: None,
        };
    };
    for page in pages {
        for c in page.columns {
            if !out.columns.contains(&c) {
                out.columns.push(c);
            }
        }
        out.rows.extend(page.rows);
    }
    out
}

fn cell(v: Option<&FieldValue>) -> String {
    match v {
        None => String::new(),
        Some(FieldValue::Bool(b)) => b.to_string(),
        Some(FieldValue::Int(i)) => i.to_string(),
        Some(FieldValue::Uint(u)) => u.to_string(),
        Some(FieldValue::Double(d)) => d.to_string(),
        Some(FieldValue::Text(s)) => s.clone(),
    }
}

/// TIME then one column per field.
pub(crate) fn query_table(r: &TelemetryQueryResult) -> String {
    let mut columns = r.columns.clone();
    if columns.is_empty() {
        let mut all: Vec<String> = r
            .rows
            .iter()
            .flat_map(|row| row.values.keys().cloned())
            .collect();
        all.sort();
        all.dedup();
        columns = all;
    }
    let mut t = Table::new(
        std::iter::once("TIME".to_string()).chain(columns.iter().map(|c| c.to_uppercase())),
    );
    for row in &r.rows {
        t.row(
            std::iter::once(output::timestamp(row.time))
                .chain(columns.iter().map(|c| cell(row.values.get(c)))),
        );
    }
    t.render()
}

/// The line chart of a numeric field.
pub(crate) fn chart(r: &TelemetryQueryResult, field: &str) -> anyhow::Result<String> {
    let known = r.columns.iter().any(|c| c == field)
        || r.rows.iter().any(|row| row.values.contains_key(field));
    if !known && !r.rows.is_empty() {
        bail!(
            "no field {field:?} in {}; fields: {}",
            r.measure,
            r.columns.join(", ")
        );
    }
    let points: Vec<(chrono::DateTime<chrono::Utc>, f64)> = r
        .rows
        .iter()
        .filter_map(|row| match row.values.get(field) {
            Some(FieldValue::Int(i)) => Some((row.time, *i as f64)),
            Some(FieldValue::Double(d)) => Some((row.time, *d)),
            Some(FieldValue::Bool(b)) => Some((row.time, if *b { 1.0 } else { 0.0 })),
            _ => None,
        })
        .collect();
    Ok(format!(
        "\n{field}\n{}",
        output::line_chart(&points, CHART_HEIGHT, CHART_WIDTH)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use mir_shared::api::{DeviceTelemetry, TelemetryRow};
    use mir_shared::ports::TelemetrySeries;

    fn result() -> TelemetryQueryResult {
        let t0 = Utc
            .with_ymd_and_hms(2025, 2, 15, 17, 1, 25)
            .single()
            .expect("time");
        TelemetryQueryResult {
            device_id: "weather".into(),
            measure: "schema.v1.Env".into(),
            columns: vec!["temperature".into(), "humidity".into()],
            rows: (0..3)
                .map(|i| TelemetryRow {
                    time: t0 + chrono::Duration::seconds(i),
                    values: [
                        (
                            "temperature".to_string(),
                            FieldValue::Double(20.5 + i as f64),
                        ),
                        ("humidity".to_string(), FieldValue::Int(40 + i)),
                    ]
                    .into_iter()
                    .collect(),
                })
                .collect(),
            next_token: None,
        }
    }

    #[test]
    fn query_rows_become_a_table_with_one_column_per_field() {
        assert_eq!(
            query_table(&result()),
            "TIME                  TEMPERATURE   HUMIDITY\n\
             2025-02-15 17:01:25   20.5          40\n\
             2025-02-15 17:01:26   21.5          41\n\
             2025-02-15 17:01:27   22.5          42\n"
        );
    }

    #[test]
    fn pages_newest_first_join_oldest_row_first_with_the_oldest_pages_token() {
        let all = result();
        let page = |rows: std::ops::Range<usize>, token: Option<&str>| TelemetryQueryResult {
            rows: all.rows[rows].to_vec(),
            next_token: token.map(str::to_string),
            ..all.clone()
        };
        let joined = join_pages(vec![page(2..3, Some("a")), page(0..2, Some("b"))]);
        assert_eq!(joined.rows, all.rows);
        assert_eq!(joined.next_token.as_deref(), Some("b"));
        assert_eq!(joined.columns, all.columns);
    }

    #[test]
    fn the_chart_needs_a_known_field() {
        let c = chart(&result(), "humidity").expect("chart");
        assert_eq!(c.matches('*').count(), 3, "{c}");
        assert_eq!(c.lines().count(), 2 + 10 + 2, "{c}");
        let err = chart(&result(), "pressure").expect_err("unknown");
        assert!(err.to_string().contains("temperature, humidity"), "{err}");
    }

    #[test]
    fn the_list_shows_counts_and_last_times() {
        let now = Utc
            .with_ymd_and_hms(2025, 2, 15, 17, 0, 0)
            .single()
            .expect("time");
        let list = TelemetryList {
            devices: vec![DeviceTelemetry {
                device_id: "weather".into(),
                name: "weather".into(),
                namespace: "default".into(),
                messages: vec![TelemetrySeries {
                    measure: "schema.v1.Env".into(),
                    count: 120,
                    last_time_ns: (now - chrono::Duration::seconds(4))
                        .timestamp_nanos_opt()
                        .unwrap_or(0),
                }],
                fields: [(
                    "schema.v1.Env".to_string(),
                    vec!["temperature".to_string(), "humidity".to_string()],
                )]
                .into(),
                error: None,
            }],
        };
        assert_eq!(
            list_text(&list, now, None),
            "1. weather/default\n   TELEMETRY       FIELDS                  STORED   LAST\n   schema.v1.Env   temperature, humidity   120      4s ago\n"
        );
        let linked = list_text(&list, now, Some("http://127.0.0.1:8180/"));
        assert!(
            linked.contains("   CONSOLE\n")
                && linked.contains(
                    "   http://127.0.0.1:8180/#/devices/weather/telemetry/schema.v1.Env\n"
                ),
            "{linked}"
        );
    }

    #[test]
    fn console_links_encode_the_device_and_message() {
        assert_eq!(
            console_link("https://d1.cloudfront.net", "a b+", "x.y/z"),
            "https://d1.cloudfront.net/#/devices/a%20b%2B/telemetry/x.y%2Fz"
        );
    }
}
