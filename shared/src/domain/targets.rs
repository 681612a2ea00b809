//! Which devices an operation is for: ids, `name/namespace`, `/namespace`, labels.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{twin::Twin, DomainError};

/// Adds the labels of a selector `k=v,k2=v2` to `labels` (the CLI's `-l`, the API's
/// `labels` query parameter).
pub fn parse_labels(spec: &str, labels: &mut BTreeMap<String, String>) -> Result<(), DomainError> {
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| DomainError::Invalid(format!("label {pair:?} must be key=value")))?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(())
}

/// The selector `k=v,k2=v2` of `labels` (the inverse of [`parse_labels`]); `None`
/// when there are none.
pub fn labels_query(labels: &BTreeMap<String, String>) -> Option<String> {
    (!labels.is_empty()).then(|| {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// A query parameter's value, trimmed; `None` when empty.
pub fn query_value(v: &str) -> Option<String> {
    Some(v.trim().to_string()).filter(|v| !v.is_empty())
}

/// A device named in a namespace (`name/namespace`), or in any namespace (`name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRef {
    pub name: String,
    pub namespace: Option<String>,
}

/// A device selection. Ids, names and namespaces add devices (union); labels then
/// keep those that carry every label (intersection). Nothing at all selects every device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Targets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<NameRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Targets {
    pub fn all() -> Self {
        Self::default()
    }

    pub fn ids<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> Self {
        Self {
            ids: ids.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Parses the CLI's positional form: `name/namespace`, `/namespace`, `*/namespace`,
    /// or `name` (in any namespace).
    pub fn add_positional(&mut self, arg: &str) -> Result<(), DomainError> {
        let arg = arg.trim();
        if arg.is_empty() {
            return Ok(());
        }
        match arg.split_once('/') {
            Some(("" | "*", ns)) if !ns.is_empty() => self.namespaces.push(ns.to_string()),
            Some((name, ns)) if !name.is_empty() && !ns.is_empty() && !ns.contains('/') => {
                self.names.push(NameRef {
                    name: name.to_string(),
                    namespace: Some(ns.to_string()),
                })
            }
            Some(_) => {
                return Err(DomainError::Invalid(format!(
                    "target {arg:?} must be name/namespace, /namespace or name"
                )))
            }
            None => self.names.push(NameRef {
                name: arg.to_string(),
                namespace: None,
            }),
        }
        Ok(())
    }

    /// Parses `k=v,k2=v2` (see [`parse_labels`]).
    pub fn add_labels(&mut self, spec: &str) -> Result<(), DomainError> {
        parse_labels(spec, &mut self.labels)
    }

    pub fn is_all(&self) -> bool {
        self.ids.is_empty()
            && self.names.is_empty()
            && self.namespaces.is_empty()
            && self.labels.is_empty()
    }

    /// True when the selection names devices (rather than only labels or nothing).
    pub fn has_selectors(&self) -> bool {
        !(self.ids.is_empty() && self.names.is_empty() && self.namespaces.is_empty())
    }

    pub fn matches(&self, twin: &Twin) -> bool {
        let selected = !self.has_selectors()
            || self.ids.contains(&twin.spec.device_id)
            || self.namespaces.contains(&twin.meta.namespace)
            || self.names.iter().any(|n| {
                n.name == twin.meta.name
                    && n.namespace
                        .as_ref()
                        .is_none_or(|ns| *ns == twin.meta.namespace)
            });
        selected
            && self
                .labels
                .iter()
                .all(|(k, v)| twin.meta.labels.get(k) == Some(v))
    }

    /// Query string for the HTTP API (`ids=a,b&names=n/ns,m&namespaces=x&labels=k=v`).
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if !self.ids.is_empty() {
            q.push(("ids", self.ids.join(",")));
        }
        if !self.names.is_empty() {
            let names: Vec<String> = self
                .names
                .iter()
                .map(|n| match &n.namespace {
                    Some(ns) => format!("{}/{ns}", n.name),
                    None => n.name.clone(),
                })
                .collect();
            q.push(("names", names.join(",")));
        }
        if !self.namespaces.is_empty() {
            q.push(("namespaces", self.namespaces.join(",")));
        }
        if let Some(labels) = labels_query(&self.labels) {
            q.push(("labels", labels));
        }
        q
    }

    /// The inverse of [`Targets::to_query`].
    pub fn from_query<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, DomainError> {
        let mut t = Targets::default();
        for (k, v) in params {
            let items = v.split(',').map(str::trim).filter(|s| !s.is_empty());
            match k {
                "ids" | "id" | "deviceId" => t.ids.extend(items.map(String::from)),
                "names" | "name" => {
                    for item in items {
                        t.add_positional(item)?;
                    }
                }
                "namespaces" | "namespace" => t.namespaces.extend(items.map(String::from)),
                "labels" | "label" => t.add_labels(v)?,
                _ => {}
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twin(id: &str, name: &str, ns: &str, labels: &[(&str, &str)]) -> Twin {
        let mut t = Twin::default();
        t.spec.device_id = id.into();
        t.meta.name = name.into();
        t.meta.namespace = ns.into();
        for (k, v) in labels {
            t.meta.labels.insert((*k).into(), (*v).into());
        }
        t
    }

    #[test]
    fn positional_targets_follow_mirs_syntax() {
        let mut t = Targets::default();
        t.add_positional("weather/default").expect("ok");
        t.add_positional("/factory").expect("ok");
        t.add_positional("*/prod").expect("ok");
        t.add_positional("power").expect("ok");
        assert_eq!(t.namespaces, ["factory", "prod"]);
        assert_eq!(t.names.len(), 2);
        let e = t.add_positional("a/b/c").expect_err("two slashes");
        assert_eq!(
            e.to_string(),
            "target \"a/b/c\" must be name/namespace, /namespace or name"
        );
    }

    #[test]
    fn names_namespaces_and_ids_add_while_labels_narrow() {
        let a = twin("a", "a", "default", &[("type", "temp")]);
        let b = twin("b", "b", "factory", &[("type", "hvac")]);
        let mut t = Targets::default();
        t.add_positional("/factory").expect("ok");
        t.ids.push("a".into());
        assert!(t.matches(&a) && t.matches(&b));
        t.add_labels("type=temp").expect("ok");
        assert!(t.matches(&a) && !t.matches(&b));
        assert!(Targets::all().matches(&b));
        let mut by_name = Targets::default();
        by_name.add_positional("b").expect("ok");
        assert!(by_name.matches(&b) && !by_name.matches(&a));
    }

    #[test]
    fn targets_survive_the_query_string() {
        let mut t = Targets::default();
        t.add_positional("w/default").expect("ok");
        t.add_positional("x").expect("ok");
        t.namespaces.push("f".into());
        t.ids.push("id1".into());
        t.add_labels("k=v,k2=v2").expect("ok");
        let q = t.to_query();
        let back = Targets::from_query(q.iter().map(|(k, v)| (*k, v.as_str()))).expect("parses");
        assert_eq!(back, t);
        let e = Targets::default()
            .add_labels("novalue")
            .expect_err("no value");
        assert_eq!(e.to_string(), "label \"novalue\" must be key=value");
    }
}
