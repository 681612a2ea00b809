//! The routes table (`shared/routes.json`): one entry per Lambda function, with its
//! IoT rules, HTTP routes, schedules and store access. The CDK app reads the same file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The file, embedded at build time.
pub const ROUTES_JSON: &str = include_str!("../routes.json");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesTable {
    #[serde(rename = "$comment", default)]
    pub comment: String,
    pub version: u32,
    pub functions: Vec<FunctionRoute>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FunctionRoute {
    pub name: String,
    #[serde(rename = "crate")]
    pub crate_name: String,
    pub path: String,
    pub description: String,
    /// Store -> "r" | "w" | "rw"; `publish` -> its topics; `certificates` / `feed`
    /// (puts events on the EventBridge bus) -> true.
    pub access: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub rules: Vec<TopicRule>,
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// DynamoDB streams that invoke the function (the table's store name).
    #[serde(default)]
    pub streams: Vec<StreamTrigger>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicRule {
    pub topic_filter: String,
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    pub method: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    pub rate_minutes: u32,
}

/// A DynamoDB stream trigger: the new items of the table of store `table` (`events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamTrigger {
    pub table: String,
}

impl RoutesTable {
    pub fn load() -> Result<Self, serde_json::Error> {
        serde_json::from_str(ROUTES_JSON)
    }

    pub fn function(&self, name: &str) -> Option<&FunctionRoute> {
        self.functions.iter().find(|f| f.name == name)
    }
}

impl HttpRoute {
    /// API Gateway's route key: `GET /v1/devices/{deviceId}`.
    pub fn route_key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Path parameters when `path` matches this route's template.
    pub fn match_path(&self, method: &str, path: &str) -> Option<BTreeMap<String, String>> {
        if !self.method.eq_ignore_ascii_case(method) {
            return None;
        }
        let mut params = BTreeMap::new();
        let mut want = self.path.trim_end_matches('/').split('/');
        let mut got = path.trim_end_matches('/').split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return Some(params),
                (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                    params.insert(w[1..w.len() - 1].to_string(), g.to_string());
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir_proto::topics::{DeviceTopic, Direction};

    #[test]
    fn the_routes_file_parses_and_names_fourteen_functions() {
        let t = RoutesTable::load().expect("routes.json parses");
        assert_eq!(t.functions.len(), 14);
        for f in &t.functions {
            assert_eq!(f.crate_name, format!("mir-fn-{}", f.name));
            assert_eq!(f.path, format!("functions/{}", f.name));
            assert!(
                !f.rules.is_empty()
                    || !f.http.is_empty()
                    || !f.schedules.is_empty()
                    || !f.streams.is_empty(),
                "{} has no trigger",
                f.name
            );
        }
    }

    #[test]
    fn every_device_to_cloud_topic_has_exactly_one_rule_whose_sql_reads_it() {
        let t = RoutesTable::load().expect("parses");
        for topic in DeviceTopic::ALL
            .into_iter()
            .filter(|t| t.direction() == Direction::DeviceToCloud)
        {
            let rules: Vec<&TopicRule> = t
                .functions
                .iter()
                .flat_map(|f| &f.rules)
                .filter(|r| r.topic_filter == topic.filter())
                .collect();
            assert_eq!(rules.len(), 1, "{topic:?}");
            assert!(rules[0]
                .sql
                .ends_with(&format!("FROM '{}'", topic.filter())));
        }
    }

    #[test]
    fn route_templates_match_paths_and_extract_parameters() {
        let r = HttpRoute {
            method: "GET".into(),
            path: "/v1/devices/{deviceId}".into(),
        };
        let p = r.match_path("get", "/v1/devices/weather").expect("matches");
        assert_eq!(p["deviceId"], "weather");
        assert!(r.match_path("GET", "/v1/devices").is_none());
        assert!(r.match_path("GET", "/v1/devices/a/b").is_none());
        assert!(r.match_path("PUT", "/v1/devices/a").is_none());
    }

    #[test]
    fn every_function_folder_in_the_routes_table_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let t = RoutesTable::load().expect("parses");
        for f in &t.functions {
            assert!(
                root.join(&f.path).join("Cargo.toml").exists(),
                "{} missing",
                f.path
            );
        }
    }
}
