//! The outbox's defences: delivery attempts and the quarantine of records that keep
//! ending the connection, and the state of a store whose operations fail.

use super::{record_key, Outbox, StoreOp, Token, MAX_ATTEMPTS};

impl Outbox {
    /// A store operation failed.
    pub fn note_store_error(&mut self) {
        self.store_errors += 1;
    }

    /// Lets the next records try the store again after its writes failed.
    pub fn retry_store(&mut self) {
        self.store_failing = false;
    }

    pub fn store_failing(&self) -> bool {
        self.store_failing
    }

    pub fn store_errors(&self) -> u64 {
        self.store_errors
    }

    pub fn quarantined(&self) -> u64 {
        self.quarantined
    }

    pub fn corrupt(&self) -> u64 {
        self.corrupt
    }

    /// Bytes of records in memory.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// The records handed to the network and not acknowledged, oldest first.
    pub(super) fn records_in_flight(&self) -> Vec<Token> {
        let mut tokens: Vec<Token> = self
            .handed
            .iter()
            .chain(self.inflight.values())
            .map(|(t, _)| *t)
            .filter(|t| !matches!(t, Token::Control(_)))
            .collect();
        tokens.sort_by_key(|t| record_key(*t));
        tokens
    }

    /// The connection dropped with `in_flight` records unacknowledged: one attempt for
    /// a record that was alone (quarantined after [`MAX_ATTEMPTS`]), else the records
    /// up to the newest leave one at a time on the next connection.
    pub(super) fn count_attempts(&mut self, in_flight: &[Token]) {
        match in_flight {
            [] => {}
            [token] => {
                let key = record_key(*token);
                let attempts = self.attempts.entry(key).or_insert(0);
                *attempts += 1;
                let attempts = *attempts;
                self.suspect_upto = Some(self.suspect_upto.map_or(key, |u| u.max(key)));
                if attempts >= MAX_ATTEMPTS {
                    self.quarantine(*token, attempts);
                }
            }
            several => {
                let newest = several.iter().map(|t| record_key(*t)).max().unwrap_or(0);
                self.suspect_upto = Some(self.suspect_upto.map_or(newest, |u| u.max(newest)));
            }
        }
    }

    pub(super) fn quarantine(&mut self, token: Token, attempts: u32) {
        let key = record_key(token);
        self.attempts.remove(&key);
        self.quarantined += 1;
        tracing::error!(
            key,
            attempts,
            "a record ended the connection on each of its {attempts} delivery attempts: \
             quarantined, replay goes on"
        );
        match token {
            Token::Memory(key) => {
                if let Some(r) = self.memory.remove(&key) {
                    self.memory_bytes = self.memory_bytes.saturating_sub(r.payload.len());
                    self.memory_messages =
                        self.memory_messages.saturating_sub(u64::from(r.messages));
                    self.dropped_messages += u64::from(r.messages);
                }
            }
            Token::Disk(key) => {
                self.store.push(StoreOp::Quarantine(key));
            }
            Token::Control(_) => {}
        }
    }
}
