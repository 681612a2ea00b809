use std::{fmt, str::FromStr};

/// A device id: `^[a-zA-Z0-9:_-]{1,128}$`, the rule for AWS IoT thing names.
///
/// The device id is also the MQTT client id and the thing name, so every topic a
/// device may use is derived from it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

/// Why a string is not a device id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDeviceId {
    #[error("device id is empty")]
    Empty,
    #[error("device id is {0} characters long; at most 128 are allowed")]
    TooLong(usize),
    #[error(
        "device id {id:?} has the character {ch:?}; only letters, digits, ':', '_' and '-' are allowed"
    )]
    BadChar { id: String, ch: char },
}

impl DeviceId {
    pub const MAX_LEN: usize = 128;

    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidDeviceId> {
        let id = id.into();
        Self::check(&id)?;
        Ok(Self(id))
    }

    /// Checks a candidate without allocating.
    pub fn check(id: &str) -> Result<(), InvalidDeviceId> {
        if id.is_empty() {
            return Err(InvalidDeviceId::Empty);
        }
        let len = id.chars().count();
        if len > Self::MAX_LEN {
            return Err(InvalidDeviceId::TooLong(len));
        }
        if let Some(ch) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')))
        {
            return Err(InvalidDeviceId::BadChar {
                id: id.to_string(),
                ch,
            });
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

impl AsRef<str> for DeviceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeviceId {
    type Err = InvalidDeviceId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for DeviceId {
    type Error = InvalidDeviceId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for DeviceId {
    type Error = InvalidDeviceId;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_name_characters_are_accepted() {
        for ok in ["weather", "a", "dev-1_x:y", &"a".repeat(128)] {
            assert_eq!(DeviceId::new(ok).expect(ok).as_str(), ok);
        }
    }

    #[test]
    fn empty_long_and_topic_breaking_ids_are_refused() {
        assert_eq!(DeviceId::new(""), Err(InvalidDeviceId::Empty));
        assert_eq!(
            DeviceId::new("a".repeat(129)),
            Err(InvalidDeviceId::TooLong(129))
        );
        for bad in ["a/b", "+", "#", "dev ice", "é", "a.b"] {
            assert!(
                matches!(DeviceId::new(bad), Err(InvalidDeviceId::BadChar { .. })),
                "{bad}"
            );
        }
    }
}
