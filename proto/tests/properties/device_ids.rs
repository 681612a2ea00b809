//! `DeviceId`: any string is accepted or refused without a panic, and exactly the ones
//! its documentation says are accepted (`^[a-zA-Z0-9:_-]{1,128}$`, AWS thing names),
//! with the error naming the first rule broken (empty, then length, then character).

use proptest::prelude::*;

use mir_proto::{DeviceId, InvalidDeviceId};

use crate::{config, CI_CASES};

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':' || c == '_' || c == '-'
}

/// The expected answer for `s`, written from the documented rule.
fn expected(s: &str) -> Result<(), InvalidDeviceId> {
    let len = s.chars().count();
    if len == 0 {
        Err(InvalidDeviceId::Empty)
    } else if len > DeviceId::MAX_LEN {
        Err(InvalidDeviceId::TooLong(len))
    } else if let Some(ch) = s.chars().find(|c| !allowed(*c)) {
        Err(InvalidDeviceId::BadChar { id: s.into(), ch })
    } else {
        Ok(())
    }
}

/// Strings near the rule: mostly allowed characters, some not, lengths around 128.
fn near_ids() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9:_-]{0,140}",
        "[a-zA-Z0-9:_-]{120,135}",
        "[a-zA-Z0-9:_/+#. -]{0,20}",
        "[a-z0-9]{0,10}[^a-zA-Z0-9:_-][a-z0-9]{0,10}",
        "[é日ß0-9a-z]{125,130}",
    ]
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn any_string_is_judged_by_the_documented_rule(s in any::<String>()) {
        prop_assert_eq!(DeviceId::check(&s), expected(&s));
        prop_assert_eq!(DeviceId::new(s.clone()).map(DeviceId::into_string), expected(&s).map(|()| s));
    }

    #[test]
    fn strings_near_the_rule_are_judged_by_it(s in near_ids()) {
        prop_assert_eq!(DeviceId::check(&s), expected(&s));
        prop_assert_eq!(s.parse::<DeviceId>().map(|id| id.to_string()), expected(&s).map(|()| s.clone()));
        prop_assert_eq!(DeviceId::try_from(s.as_str()).is_ok(), expected(&s).is_ok());
    }

    #[test]
    fn every_thing_name_is_accepted_unchanged(s in "[a-zA-Z0-9:_-]{1,128}") {
        let id = DeviceId::new(s.as_str());
        prop_assert_eq!(id.as_ref().map(DeviceId::as_str), Ok(s.as_str()));
        prop_assert_eq!(id.map(String::from), Ok(s));
    }
}
