//! `mir event ls`.

use std::process::ExitCode;

use anyhow::bail;

use mir_shared::domain::{page::collect_up_to, Event, EventReason, Page};

use super::{out, resolve_one, Connection, ResolveError};
use crate::args::{EventArgs, EventCommand, EventListArgs, Output};
use crate::client::EventQuery;
use crate::output::{self, Table};

pub(super) async fn run(conn: &Connection, args: EventArgs) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    let EventCommand::Ls(a) = args.command;
    list(&client, a).await
}

async fn list(client: &crate::client::Client, a: EventListArgs) -> anyhow::Result<ExitCode> {
    let reason = match &a.reason {
        Some(r) => match EventReason::parse(r) {
            Some(r) => Some(r.as_str().to_string()),
            None => {
                let known: Vec<&str> = EventReason::ALL.iter().map(|r| r.as_str()).collect();
                bail!("unknown reason {r:?}; known: {}", known.join(", "));
            }
        },
        None => None,
    };
    let device_id = match &a.device {
        None => None,
        // A deleted device keeps its events: fall back to the argument as an id.
        Some(d) => match resolve_one(client, d).await {
            Ok(t) => Some(t.spec.device_id),
            Err(ResolveError::NoDevice(_)) if !d.contains('/') => Some(d.clone()),
            Err(e) => return Err(e.into()),
        },
    };
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

/// TIME, REASON, DEVICE, MESSAGE.
pub(crate) fn event_table(events: &[Event]) -> String {
    let mut t = Table::new(["TIME", "REASON", "DEVICE", "MESSAGE"]);
    for e in events {
        let device = if e.name.is_empty() {
            e.device_id.clone()
        } else {
            format!("{}/{}", e.name, e.namespace)
        };
        t.row([
            output::timestamp(e.time),
            e.reason.as_str().to_string(),
            device,
            e.message.clone(),
        ]);
    }
    t.render()
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
