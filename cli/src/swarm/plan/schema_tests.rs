//! Tests of the schema writer's names (the schema as a whole is tested with the plan).

use super::{package_segment, pascal};

#[test]
fn names_are_sanitized_into_packages_and_type_names() {
    assert_eq!(package_segment("My Fleet", "x"), "my_fleet");
    assert_eq!(package_segment("9lives", "x"), "_9lives");
    assert_eq!(package_segment("", "swarm"), "swarm");
    assert_eq!(pascal("power_usage"), "PowerUsage");
}
