//! How long events are kept, per reason: [`EventRetention`], a default number of days
//! and overrides per [`EventReason`]. Each stored event expires `days` after its time
//! (`expiresAt`, the DynamoDB TTL attribute; the embedded store prunes by it).
//!
//! Defaults ([`EventRetention::default`]): 90 days, except `DeviceOnline` and
//! `DeviceOffline` (presence changes, the most frequent and least interesting later):
//! 7 days.
//!
//! Written as text for an environment variable (`MIR_EVENT_RETENTION`):
//! `default=90,DeviceOnline=7`, entries applied over the defaults, reasons case
//! insensitive. In a config file: `{defaultDays: 90, byReason: {DeviceOnline: 7}}`.

use std::{collections::BTreeMap, fmt};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::{Event, EventReason};

/// The longest retention a policy accepts (about 100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// Days an event is kept when no override names its reason.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// Days presence events (`DeviceOnline`, `DeviceOffline`) are kept.
pub const PRESENCE_RETENTION_DAYS: u32 = 7;

/// Days each event is kept: `default_days` unless `by_reason` names its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventRetention {
    pub default_days: u32,
    #[serde(default)]
    pub by_reason: BTreeMap<EventReason, u32>,
}

/// A retention policy that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error("retention of {what} is {days} days; it must be from 1 to {MAX_RETENTION_DAYS}")]
    OutOfRange { what: String, days: u32 },
    #[error("{entry:?} is not <reason or default>=<days>")]
    Malformed { entry: String },
    #[error("{value:?} is not a number of days (in {entry:?})")]
    NotDays { entry: String, value: String },
    #[error("unknown reason {name:?}; known: default, {known}")]
    UnknownReason { name: String, known: String },
    #[error("{name} is given twice")]
    Twice { name: String },
}

impl Default for EventRetention {
    fn default() -> Self {
        Self::uniform(DEFAULT_RETENTION_DAYS)
            .with(EventReason::DeviceOnline, PRESENCE_RETENTION_DAYS)
            .with(EventReason::DeviceOffline, PRESENCE_RETENTION_DAYS)
    }
}

impl EventRetention {
    /// The same `days` for every reason.
    pub fn uniform(days: u32) -> Self {
        Self {
            default_days: days,
            by_reason: BTreeMap::new(),
        }
    }

    /// This policy with `reason` kept `days`.
    pub fn with(mut self, reason: EventReason, days: u32) -> Self {
        self.by_reason.insert(reason, days);
        self
    }

    /// Every number of days within 1..=[`MAX_RETENTION_DAYS`].
    pub fn validate(&self) -> Result<(), RetentionError> {
        let check = |what: String, days: u32| {
            if (1..=MAX_RETENTION_DAYS).contains(&days) {
                Ok(())
            } else {
                Err(RetentionError::OutOfRange { what, days })
            }
        };
        check("default".into(), self.default_days)?;
        for (reason, days) in &self.by_reason {
            check(reason.as_str().into(), *days)?;
        }
        Ok(())
    }

    /// Days events of `reason` are kept.
    pub fn days(&self, reason: EventReason) -> u32 {
        self.by_reason
            .get(&reason)
            .copied()
            .unwrap_or(self.default_days)
    }

    /// The longest retention of any reason (no event outlives it).
    pub fn max_days(&self) -> u32 {
        self.by_reason
            .values()
            .copied()
            .fold(self.default_days, u32::max)
    }

    /// When `event` expires: its time plus its reason's retention.
    pub fn expires_at(&self, event: &Event) -> DateTime<Utc> {
        event.time + chrono::Duration::days(self.days(event.reason).into())
    }

    /// This policy with the entries of `text` (`default=90,DeviceOnline=7`) applied over
    /// it, validated. Empty entries are skipped; a name given twice is refused.
    pub fn overridden_by(mut self, text: &str) -> Result<Self, RetentionError> {
        let mut seen = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, value) = entry
                .split_once('=')
                .map(|(n, v)| (n.trim(), v.trim()))
                .ok_or_else(|| RetentionError::Malformed {
                    entry: entry.into(),
                })?;
            let days: u32 = value.parse().map_err(|_| RetentionError::NotDays {
                entry: entry.into(),
                value: value.into(),
            })?;
            let key = if name.eq_ignore_ascii_case("default") {
                None
            } else {
                Some(
                    EventReason::parse(name).ok_or_else(|| RetentionError::UnknownReason {
                        name: name.into(),
                        known: EventReason::ALL.map(EventReason::as_str).join(", "),
                    })?,
                )
            };
            if seen.contains(&key) {
                return Err(RetentionError::Twice {
                    name: key.map_or("default", EventReason::as_str).into(),
                });
            }
            seen.push(key);
            match key {
                None => self.default_days = days,
                Some(r) => {
                    self.by_reason.insert(r, days);
                }
            }
        }
        self.validate()?;
        Ok(self)
    }
}

/// The text form `default=<days>,<Reason>=<days>,...`, which
/// [`EventRetention::overridden_by`] reads back.
impl fmt::Display for EventRetention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "default={}", self.default_days)?;
        for (reason, days) in &self.by_reason {
            write!(f, ",{}={days}", reason.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::at_ms;

    #[test]
    fn presence_events_are_kept_a_week_and_the_others_ninety_days_by_default() {
        let p = EventRetention::default();
        assert_eq!(p.days(EventReason::DeviceOnline), 7);
        assert_eq!(p.days(EventReason::DeviceOffline), 7);
        for r in EventReason::ALL {
            if !matches!(r, EventReason::DeviceOnline | EventReason::DeviceOffline) {
                assert_eq!(p.days(r), 90, "{r:?}");
            }
        }
        assert_eq!(p.max_days(), 90);
        let e = Event::new(EventReason::DeviceOnline, "d", at_ms(0), "c", "on");
        assert_eq!(p.expires_at(&e).timestamp(), 7 * 86_400);
    }

    #[test]
    fn text_entries_apply_over_the_policy_and_print_back() {
        let p = EventRetention::default()
            .overridden_by(" default=30, deviceonline=1 ,CommandSent=400,")
            .expect("valid");
        assert_eq!(p.days(EventReason::DeviceOnline), 1);
        assert_eq!(p.days(EventReason::DeviceOffline), 7);
        assert_eq!(p.days(EventReason::CommandSent), 400);
        assert_eq!(p.days(EventReason::DeviceCreated), 30);
        assert_eq!(p.max_days(), 400);
        assert_eq!(
            p.to_string(),
            "default=30,DeviceOnline=1,DeviceOffline=7,CommandSent=400"
        );
        let back = EventRetention::uniform(1)
            .overridden_by(&p.to_string())
            .expect("reads back");
        assert_eq!(back, p);
        assert_eq!(
            EventRetention::default().overridden_by("").expect("empty"),
            EventRetention::default()
        );
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        let bad = |text: &str| {
            EventRetention::default()
                .overridden_by(text)
                .expect_err(text)
        };
        assert!(matches!(bad("default"), RetentionError::Malformed { .. }));
        assert!(matches!(
            bad("default=-1"),
            RetentionError::NotDays { value, .. } if value == "-1"
        ));
        let e = bad("Exploded=3");
        assert!(
            matches!(&e, RetentionError::UnknownReason { name, .. } if name == "Exploded"),
            "{e}"
        );
        assert!(e.to_string().contains("DeviceOnline"), "{e}");
        assert_eq!(
            bad("DeviceOnline=3,deviceonline=4"),
            RetentionError::Twice {
                name: "DeviceOnline".into()
            }
        );
        assert_eq!(
            bad("default=0"),
            RetentionError::OutOfRange {
                what: "default".into(),
                days: 0
            }
        );
        assert!(matches!(
            bad("CommandSent=36501"),
            RetentionError::OutOfRange { days: 36_501, .. }
        ));
    }

    #[test]
    fn a_policy_reads_from_yaml_and_refuses_unknown_keys_and_reasons() {
        let p: EventRetention =
            serde_yaml::from_str("defaultDays: 60\nbyReason:\n  CommandFailed: 365\n")
                .expect("parses");
        assert_eq!(
            p,
            EventRetention::uniform(60).with(EventReason::CommandFailed, 365)
        );
        let back: EventRetention =
            serde_yaml::from_str(&serde_yaml::to_string(&p).expect("yaml")).expect("back");
        assert_eq!(back, p);
        assert!(serde_yaml::from_str::<EventRetention>("defaultDays: 1\nbyReasons: {}").is_err());
        assert!(
            serde_yaml::from_str::<EventRetention>("defaultDays: 1\nbyReason: {Exploded: 2}")
                .is_err()
        );
    }
}
