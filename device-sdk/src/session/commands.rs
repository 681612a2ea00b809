//! Commands: decoding a request, its deadline, the handler it needs, and delivery by
//! id. [`Commands`] remembers the last [`REMEMBERED`] command ids: a command delivered
//! again (QoS 1 redelivery after a reconnect, a retry of the cloud) does not run its
//! handler again; each delivery gets the response of the first one, sent once the
//! handler finished.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use mir_proto::{
    wire::{CommandRequest, CommandResponse, CommandResponseStatus},
    MAX_PAYLOAD_BYTES,
};
use prost::Message;

use super::{outbox::Kind, Action, HandlerNames, Now, Publish, Request, Session};

/// Command ids remembered for deduplication.
pub(crate) const REMEMBERED: usize = 256;

/// What a delivery of a command id is.
#[derive(Debug)]
pub(super) enum Delivery {
    First,
    /// Its handler runs: the response goes to every delivery when it finishes.
    Running,
    Answered(CommandResponse),
}

#[derive(Debug)]
enum Seen {
    /// Deliveries waiting for the response.
    Running(u32),
    Answered(CommandResponse),
}

/// The recent command ids and what became of them.
#[derive(Debug, Default)]
pub(super) struct Commands {
    seen: HashMap<String, Seen>,
    order: VecDeque<String>,
}

impl Commands {
    /// One delivery of command `id`.
    pub fn delivered(&mut self, id: &str) -> Delivery {
        if id.is_empty() {
            return Delivery::First; // Nothing to tell deliveries apart by.
        }
        match self.seen.get_mut(id) {
            Some(Seen::Running(n)) => {
                *n = n.saturating_add(1);
                Delivery::Running
            }
            Some(Seen::Answered(r)) => Delivery::Answered(r.clone()),
            None => {
                if self.order.len() >= REMEMBERED {
                    if let Some(old) = self.order.pop_front() {
                        self.seen.remove(&old);
                    }
                }
                self.order.push_back(id.to_string());
                self.seen.insert(id.to_string(), Seen::Running(1));
                Delivery::First
            }
        }
    }

    /// The response of command `id`: how many deliveries wait for it (1 for an id not
    /// remembered).
    pub fn answered(&mut self, response: &CommandResponse) -> u32 {
        let waiting = match self.seen.get(&response.id) {
            Some(Seen::Running(n)) => *n,
            Some(Seen::Answered(_)) | None => 1,
        };
        if self.seen.contains_key(&response.id) {
            self.seen
                .insert(response.id.clone(), Seen::Answered(response.clone()));
        }
        waiting
    }
}

impl Session {
    pub(super) fn on_command(
        &mut self,
        payload: &Bytes,
        handlers: &dyn HandlerNames,
        now: Now,
    ) -> Option<Action> {
        let req = match CommandRequest::decode(payload.clone()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("dropping an undecodable command request: {e}");
                return None;
            }
        };
        // A redelivery (QoS 1 after a reconnect, or the cloud's retry) never runs the
        // handler again: it gets the response of the first delivery.
        match self.commands.delivered(&req.id) {
            Delivery::First => {}
            Delivery::Answered(response) => {
                tracing::info!(id = req.id, "command delivered again: the same response");
                self.publish_response(&response);
                return None;
            }
            Delivery::Running => {
                tracing::info!(id = req.id, "command delivered again while it runs");
                return None;
            }
        }
        // An unset clock cannot judge a deadline: the command limit runs from receipt.
        if now.synced && req.deadline_unix_ms > 0 && now.unix_ns / 1_000_000 > req.deadline_unix_ms
        {
            tracing::warn!(
                id = req.id,
                name = req.name,
                "command received after its deadline"
            );
            self.respond(CommandResponse {
                id: req.id,
                status: CommandResponseStatus::Timeout as i32,
                error: format!(
                    "command {} reached device {} after its deadline",
                    req.name, self.cfg.device_id
                ),
                ..Default::default()
            });
            return None;
        }
        if !handlers.has_command(&req.name) {
            tracing::warn!(name = req.name, "no handler for command");
            let error = format!(
                "no handler for command {} on device {}",
                req.name, self.cfg.device_id
            );
            self.respond(error_response(req.id, error));
            return None;
        }
        Some(Action::RunCommand(req))
    }

    /// Queues the response of a finished command (refusing one too large to send).
    pub fn command_finished(&mut self, response: CommandResponse) {
        // AWS IoT Core counts the topic with the payload.
        let size = response.encoded_len() + self.topics.command_response.len();
        if size > MAX_PAYLOAD_BYTES {
            let error = format!(
                "response {} is {size} bytes, over the {MAX_PAYLOAD_BYTES}-byte payload limit",
                response.name
            );
            tracing::error!(id = response.id, "{error}");
            self.respond(error_response(response.id, error));
        } else {
            self.respond(response);
        }
    }

    /// Sends the response of a command once for each of its deliveries so far, and
    /// keeps it for later ones.
    pub(super) fn respond(&mut self, response: CommandResponse) {
        let times = self.commands.answered(&response);
        for _ in 0..times {
            self.publish_response(&response);
        }
    }

    fn publish_response(&mut self, response: &CommandResponse) {
        let publish = Request::Publish(Publish {
            topic: self.topics.command_response.clone(),
            payload: response.encode_to_vec().into(),
        });
        self.outbox.push_control(Kind::Durable, publish);
    }
}

pub(crate) fn error_response(id: String, error: String) -> CommandResponse {
    CommandResponse {
        id,
        status: CommandResponseStatus::Error as i32,
        error,
        ..Default::default()
    }
}
