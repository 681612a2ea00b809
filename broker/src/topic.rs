//! Topic names and topic filters (MQTT 3.1.1 sections 1.5.3 and 4.7), checked once
//! they are known to be UTF-8.

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TopicError {
    /// MQTT-4.7.3-1: at least one character.
    #[error("empty")]
    Empty,
    /// A UTF-8 string of MQTT is at most 65,535 bytes long.
    #[error("longer than 65535 bytes")]
    TooLong,
    /// MQTT-4.7.3-2 and MQTT-1.5.3-2: no U+0000.
    #[error("contains the character U+0000")]
    Nul,
    /// MQTT-3.3.2-2: a topic name has no wildcards.
    #[error("wildcards are not allowed in a topic name")]
    Wildcard,
    /// MQTT-4.7.1-2 and MQTT-4.7.1-3: `#` alone as the last level, `+` alone in a level.
    #[error("'#' must be alone in the last level and '+' alone in a level")]
    MisplacedWildcard,
}

/// A topic name of a PUBLISH (or a will).
pub(crate) fn check_name(topic: &str) -> Result<(), TopicError> {
    check_common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

/// A topic filter of a SUBSCRIBE or UNSUBSCRIBE.
pub(crate) fn check_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let ok = match level {
            "#" => last,
            "+" => true,
            l => !l.contains(['+', '#']),
        };
        if !ok {
            return Err(TopicError::MisplacedWildcard);
        }
    }
    Ok(())
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        Err(TopicError::Empty)
    } else if s.len() > usize::from(u16::MAX) {
        Err(TopicError::TooLong)
    } else if s.contains('\0') {
        Err(TopicError::Nul)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_have_no_wildcards_nul_or_emptiness() {
        assert_eq!(check_name("mir/d1/tlm"), Ok(()));
        assert_eq!(check_name("$aws/events/x"), Ok(()));
        assert_eq!(check_name("/"), Ok(()));
        assert_eq!(check_name(""), Err(TopicError::Empty));
        assert_eq!(check_name("mir/+/tlm"), Err(TopicError::Wildcard));
        assert_eq!(check_name("mir/#"), Err(TopicError::Wildcard));
        assert_eq!(check_name("mir/a\0b"), Err(TopicError::Nul));
        let long = "a".repeat(65_536);
        assert_eq!(check_name(&long), Err(TopicError::TooLong));
    }

    #[test]
    fn wildcards_of_a_filter_take_whole_levels_and_hash_only_the_last() {
        for ok in [
            "#",
            "+",
            "mir/#",
            "mir/+/cmd/req",
            "+/+",
            "mir/d1/+",
            "/#",
            "a//b",
        ] {
            assert_eq!(check_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["mir/#/x", "mir/a#", "mir/a+", "#/", "+a", "mir/##"] {
            assert_eq!(
                check_filter(bad),
                Err(TopicError::MisplacedWildcard),
                "{bad}"
            );
        }
        assert_eq!(check_filter(""), Err(TopicError::Empty));
        assert_eq!(check_filter("mir/\0"), Err(TopicError::Nul));
    }
}
