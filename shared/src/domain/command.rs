//! Command records: one per device a command was sent to.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use mir_proto::wire::CommandResponseStatus;

/// Result of a command for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandStatus {
    Pending,
    Success,
    Error,
    Timeout,
    Validated,
}

impl CommandStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, CommandStatus::Pending)
    }

    /// Mir's spelling: `COMMAND_RESPONSE_STATUS_SUCCESS`.
    pub fn mir_name(self) -> &'static str {
        self.to_wire().as_str_name()
    }

    pub fn to_wire(self) -> CommandResponseStatus {
        match self {
            CommandStatus::Pending => CommandResponseStatus::Pending,
            CommandStatus::Success => CommandResponseStatus::Success,
            CommandStatus::Error => CommandResponseStatus::Error,
            CommandStatus::Timeout => CommandResponseStatus::Timeout,
            CommandStatus::Validated => CommandResponseStatus::Validated,
        }
    }

    pub fn from_wire(s: CommandResponseStatus) -> Self {
        match s {
            CommandResponseStatus::Success => CommandStatus::Success,
            CommandResponseStatus::Timeout => CommandStatus::Timeout,
            CommandResponseStatus::Validated => CommandStatus::Validated,
            CommandResponseStatus::Pending => CommandStatus::Pending,
            CommandResponseStatus::Error | CommandResponseStatus::Unspecified => {
                CommandStatus::Error
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandRecord {
    pub id: String,
    pub device_id: String,
    #[serde(default)]
    pub device_name: String,
    #[serde(default)]
    pub namespace: String,
    /// Full name of the command message.
    pub name: String,
    /// The request as JSON.
    pub request: Value,
    pub status: CommandStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// How a pending command ends.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome {
    pub status: CommandStatus,
    pub response_name: Option<String>,
    pub response: Option<Value>,
    pub error: Option<String>,
    pub completed_at: DateTime<Utc>,
}

impl CommandRecord {
    /// Applies `outcome` if the command is still pending. Returns false (and changes
    /// nothing) when it already ended: duplicates and late responses are harmless.
    pub fn complete(&mut self, outcome: CommandOutcome) -> bool {
        if self.status.is_final() {
            return false;
        }
        self.status = outcome.status;
        self.response_name = outcome.response_name;
        self.response = outcome.response;
        self.error = outcome.error;
        self.completed_at = Some(outcome.completed_at);
        true
    }
}
