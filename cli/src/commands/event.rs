//! `mir event ls` (this module) and `mir event watch` ([`watch`]).

mod watch;

use std::process::ExitCode;

use mir_shared::domain::{page::collect_up_to, Event, EventReason, Page};

use super::{out, resolve_one, Connection, ResolveError};
use crate::args::{EventArgs, EventCommand, EventListArgs, Output};
use crate::client::{Client, EventQuery};
use crate::output::{self, Table};

pub(super) async fn run(conn: &Connection, args: EventArgs) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    match args.command {
        EventCommand::Ls(a) => list(&client, a).await,
        EventCommand::Watch(a) => watch::watch(&client, a).await,
    }
}

/// `--reason`, checked against the known reasons.
fn reason(arg: Option<&str>) -> anyhow::Result<Option<EventReason>> {
    Ok(arg.map(EventReason::from_name).transpose()?)
}

/// `--device` as a device id. A deleted device keeps its events: a name that matches
/// no device is taken as an id.
async fn device_id(client: &Client, arg: Option<&str>) -> anyhow::Result<Option<String>> {
    match arg {
        None => Ok(None),
        Some(d) => match resolve_one(client, d).await {
            Ok(t) => Ok(Some(t.spec.device_id)),
            Err(ResolveError::NoDevice(_)) if !d.contains('/') => Ok(Some(d.to_string())),
            Err(e) => Err(e.into()),
        },
    }
}

async fn list(client: &Client, a: EventListArgs) -> anyhow::Result<ExitCode> {
    let reason = reason(a.reason.as_deref())?.map(|r| r.as_str().to_string());
    let device_id = device_id(client, a.device.as_deref()).await?;
    let q = EventQuery {
        device_id,
        reason,
        since: a.since.clone(),
        until: a.until.clone(),
        ..EventQuery::default()
    };
    let events = collect_up_to(a.limit, |page| {
        let q = EventQuery {
            limit: Some(page.limit),
            next_token: page.token,
            ..q.clone()
        };
        async move {
            let list = client.list_events(&q).await?;
            Ok::<_, crate::client::ClientError>(Page {
                items: list.events,
                next_token: list.next_token,
            })
        }
    })
    .await?;
    match a.output.output {
        Output::Yaml => out(&output::yaml_docs(&events)?)?,
        Output::Json => out(&format!("{}\n", output::pretty_json(&events)?))?,
        Output::Table => {
            if events.is_empty() {
                eprintln!("no events");
            } else {
                out(&event_table(&events))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The columns of an event list.
const COLUMNS: [&str; 4] = ["TIME", "REASON", "DEVICE", "MESSAGE"];

/// TIME, REASON, DEVICE, MESSAGE.
pub(crate) fn event_table(events: &[Event]) -> String {
    let mut t = Table::new(COLUMNS);
    for e in events {
        t.row(event_cells(e));
    }
    t.render()
}

/// One event's cells of [`COLUMNS`].
fn event_cells(e: &Event) -> [String; 4] {
    let device = if e.name.is_empty() {
        e.device_id.clone()
    } else {
        format!("{}/{}", e.name, e.namespace)
    };
    [
        output::timestamp(e.time),
        e.reason.as_str().to_string(),
        device,
        e.message.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn events_print_as_a_table() {
        let t = Utc
            .with_ymd_and_hms(2025, 2, 15, 17, 1, 25)
            .single()
            .expect("time");
        let mut a = Event::new(
            EventReason::DeviceOnline,
            "weather",
            t,
            "s1",
            "device online",
        );
        a.name = "weather".into();
        a.namespace = "default".into();
        let b = Event::new(EventReason::CommandFailed, "gone", t, "c1", "timeout");
        assert_eq!(
            event_table(&[a, b]),
            "TIME                  REASON          DEVICE            MESSAGE\n\
             2025-02-15 17:01:25   DeviceOnline    weather/default   device online\n\
             2025-02-15 17:01:25   CommandFailed   gone              timeout\n"
        );
    }
}
