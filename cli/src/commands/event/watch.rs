//! `mir event watch`: the hub's event feed (`GET /v1/events/watch`, server-sent
//! events), one line per event as it is recorded; on an aws context the same stream
//! polls `GET /v1/events` ([`crate::client::poll`]).
//!
//! Layout: [`watch`] (the filter, Ctrl-C), the [`Watcher`] loop (connections, notices,
//! dedup, printing), the table row, unit tests.
//!
//! Delivery is at least once, so the command drops an id it printed among the last
//! [`RECENT_IDS`]. A dropped connection (or the hub telling it lagged) is reopened with
//! `Last-Event-ID`, after a backoff from [`FIRST_BACKOFF`] doubling to [`MAX_BACKOFF`];
//! the first connection failing is an error. The poller's notices (it fell behind, a
//! request is retried) go to stderr. Ctrl-C stops it with status 0.

use std::{process::ExitCode, time::Duration};

use futures::StreamExt;

use mir_shared::domain::{feed::LAGGED, targets::parse_labels, FeedEvent, FeedFilter, RecentIds};

use super::{device_id, event_cells, out, reason, COLUMNS};
use crate::args::{EventWatchArgs, Output};
use crate::client::{poll, Client, ClientError};
use crate::output;

/// How many printed ids are remembered to drop duplicates.
pub const RECENT_IDS: usize = 10_000;
/// The wait before the first reconnect.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between reconnects.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) async fn watch(client: &Client, a: EventWatchArgs) -> anyhow::Result<ExitCode> {
    let mut filter = FeedFilter {
        device_id: device_id(client, a.device.as_deref()).await?,
        reason: reason(a.reason.as_deref())?,
        namespace: a.namespace.filter(|n| !n.trim().is_empty()),
        ..FeedFilter::default()
    };
    for spec in &a.labels {
        parse_labels(spec, &mut filter.labels)?;
    }
    let mut watcher = Watcher {
        client,
        filter,
        output: a.output.output,
        seen: RecentIds::new(RECENT_IDS),
        last_id: None,
        connected: false,
    };
    tokio::select! {
        r = watcher.run() => r.map(|()| ExitCode::SUCCESS),
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
    }
}

struct Watcher<'a> {
    client: &'a Client,
    filter: FeedFilter,
    output: Output,
    seen: RecentIds,
    /// The id of the last event received: where a reconnect resumes.
    last_id: Option<String>,
    /// Whether a connection was ever opened (before that, a failure is an error).
    connected: bool,
}

impl Watcher<'_> {
    /// Runs until an error that reconnecting cannot fix.
    async fn run(&mut self) -> anyhow::Result<()> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.session().await {
                Ok(()) => backoff = FIRST_BACKOFF,
                Err(e) if !self.connected || !retryable(&e) => return Err(e.into()),
                Err(e) => {
                    eprintln!("event stream: {e}; reconnecting in {backoff:?}");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection, until the hub ends it (Ok) or it breaks.
    async fn session(&mut self) -> Result<(), ClientError> {
        let mut stream = self
            .client
            .watch_events(&self.filter, self.last_id.as_deref())
            .await?;
        if !self.connected && self.output == Output::Table {
            print_line(&row(COLUMNS.map(String::from)));
        }
        self.connected = true;
        while let Some(item) = stream.next().await {
            let message = item?;
            if message.event == LAGGED {
                eprintln!(
                    "event stream: the hub could not replay {} missed events; reconnecting",
                    message.data
                );
                return Ok(());
            }
            if message.id.is_empty() {
                if let Some(notice) = notice(&message) {
                    eprintln!("{notice}");
                }
                continue;
            }
            self.last_id = Some(message.id.clone());
            if !self.seen.insert(&message.id) {
                continue;
            }
            match serde_json::from_str::<FeedEvent>(&message.data) {
                Ok(e) => self.print(&e),
                Err(err) => eprintln!("event stream: skipping event {}: {err}", message.id),
            }
        }
        Ok(())
    }

    fn print(&self, e: &FeedEvent) {
        let text = match self.output {
            Output::Table => row(event_cells(&e.to_event())),
            Output::Json => serde_json::to_string(e)
                .map(|j| j + "\n")
                .unwrap_or_default(),
            Output::Yaml => output::yaml_docs(std::slice::from_ref(e)).unwrap_or_default(),
        };
        print_line(&text);
    }
}

/// A closed stdout ends nothing here: the next event tries again.
fn print_line(text: &str) {
    if let Err(e) = out(text) {
        eprintln!("cannot write: {e}");
    }
}

/// One table row, padded to the widest value of each column (a stream cannot measure
/// the rows to come): a time, the longest reason, a name/namespace of 24 characters.
fn row(cells: [String; 4]) -> String {
    let [time, reason, device, message] = cells;
    format!("{time:<19}   {reason:<25}   {device:<24}   {message}\n")
}

/// The stderr line of a poller's notice (a message without an id).
fn notice(message: &eventsource_stream::Event) -> Option<String> {
    [poll::SKIPPED, poll::RETRYING]
        .contains(&message.event.as_str())
        .then(|| format!("event stream: {}", message.data))
}

/// Whether reconnecting may help ([`ClientError::is_retryable`]).
fn retryable(e: &ClientError) -> bool {
    e.is_retryable()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_event_prints_in_the_columns_of_evt_ls() {
        let header = row(COLUMNS.map(String::from));
        assert_eq!(
            header,
            "TIME                  REASON                      DEVICE                     MESSAGE\n"
        );
        let cells = [
            "2025-02-15 17:01:25".to_string(),
            "DeviceOnline".to_string(),
            "weather/default".to_string(),
            "device online".to_string(),
        ];
        assert_eq!(
            row(cells),
            "2025-02-15 17:01:25   DeviceOnline                weather/default            device online\n"
        );
    }

    #[test]
    fn only_network_and_server_failures_reconnect() {
        assert!(retryable(&ClientError::Unreachable { url: "u".into() }));
        assert!(retryable(&ClientError::Stream("eof".into())));
        assert!(retryable(&ClientError::Api {
            status: 503,
            message: "m".into()
        }));
        assert!(!retryable(&ClientError::Api {
            status: 401,
            message: "m".into()
        }));
        assert!(retryable(&ClientError::Api {
            status: 429,
            message: "throttled".into()
        }));
        assert!(!retryable(&ClientError::Unsupported(
            crate::client::AwsUnsupported::WorkerGroup
        )));
    }

    #[test]
    fn the_pollers_notices_print_and_other_messages_without_an_id_do_not() {
        let message = |event: &str| eventsource_stream::Event {
            event: event.into(),
            data: "fell behind: events between a and b may be missing".into(),
            id: String::new(),
            retry: None,
        };
        assert_eq!(
            notice(&message(poll::SKIPPED)).as_deref(),
            Some("event stream: fell behind: events between a and b may be missing")
        );
        assert!(notice(&message(poll::RETRYING)).is_some());
        assert_eq!(notice(&message("message")), None);
    }
}
