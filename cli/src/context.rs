//! The CLI configuration (`cli.yaml`): contexts and the current one.
//!
//! The file is `$MIR_CONFIG`, else `$XDG_CONFIG_HOME/mir/cli.yaml`, else
//! `~/.config/mir/cli.yaml`. Without a file, one context `local` points to the local hub.
//! The API URL is `--api`, else `MIR_API`, else the context's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::args::ContextKind;

/// The local hub's default HTTP address.
pub const DEFAULT_LOCAL_API: &str = "http://127.0.0.1:8180";
pub const DEFAULT_CONTEXT: &str = "local";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CliConfig {
    #[serde(default = "default_context_name")]
    pub current_context: String,
    #[serde(default)]
    pub contexts: Vec<Context>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub name: String,
    pub api: String,
    #[serde(default)]
    pub kind: ContextKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

fn default_context_name() -> String {
    DEFAULT_CONTEXT.to_string()
}

impl Default for CliConfig {
    fn default() -> Self {
        Self {
            current_context: default_context_name(),
            contexts: vec![Context {
                name: DEFAULT_CONTEXT.to_string(),
                api: DEFAULT_LOCAL_API.to_string(),
                kind: ContextKind::Local,
                region: None,
                profile: None,
            }],
        }
    }
}

/// Where the configuration file is, from the environment.
pub fn config_path() -> anyhow::Result<PathBuf> {
    config_path_from(|k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

fn config_path_from(env: impl Fn(&str) -> Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = env("MIR_CONFIG") {
        return Ok(p);
    }
    if let Some(xdg) = env("XDG_CONFIG_HOME") {
        return Ok(xdg.join("mir").join("cli.yaml"));
    }
    match env("HOME") {
        Some(home) => Ok(home.join(".config").join("mir").join("cli.yaml")),
        None => bail!("cannot find the CLI configuration: set MIR_CONFIG or HOME"),
    }
}

impl CliConfig {
    /// Reads the file; a missing file gives the defaults.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(&text)
            .with_context(|| format!("invalid CLI configuration {}", path.display()))
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = serde_yaml::to_string(self)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn get(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    pub fn switch(&mut self, name: &str) -> anyhow::Result<()> {
        if self.get(name).is_none() {
            bail!(
                "no context {name:?}; known: {}. Add it with `mir ctx add {name} --api URL`",
                self.names().join(", ")
            );
        }
        self.current_context = name.to_string();
        Ok(())
    }

    /// Adds a context, replacing one of the same name.
    pub fn upsert(&mut self, ctx: Context) {
        match self.contexts.iter_mut().find(|c| c.name == ctx.name) {
            Some(existing) => *existing = ctx,
            None => self.contexts.push(ctx),
        }
    }

    pub fn remove(&mut self, name: &str) -> anyhow::Result<()> {
        let before = self.contexts.len();
        self.contexts.retain(|c| c.name != name);
        if self.contexts.len() == before {
            bail!("no context {name:?}");
        }
        if self.current_context == name {
            self.current_context = DEFAULT_CONTEXT.to_string();
        }
        Ok(())
    }

    pub fn names(&self) -> Vec<String> {
        self.contexts.iter().map(|c| c.name.clone()).collect()
    }

    /// The API base URL: `api_flag` (from --api or MIR_API) first, else the context
    /// `context_flag` or the current one.
    pub fn resolve_api(
        &self,
        api_flag: Option<&str>,
        context_flag: Option<&str>,
    ) -> anyhow::Result<String> {
        if let Some(api) = api_flag.filter(|a| !a.trim().is_empty()) {
            return Ok(api.trim().to_string());
        }
        let name = context_flag.unwrap_or(&self.current_context);
        let ctx = match self.get(name) {
            Some(c) => c,
            None if name == DEFAULT_CONTEXT => return Ok(DEFAULT_LOCAL_API.to_string()),
            None => bail!(
                "no context {name:?}; known: {}. List them with `mir ctx`",
                self.names().join(", ")
            ),
        };
        if ctx.kind == ContextKind::Aws {
            bail!(
                "context {:?} is an aws context: signing requests with SigV4 is not yet supported. \
                 Use a local or localstack context, or pass --api for an endpoint without IAM auth",
                ctx.name
            );
        }
        Ok(ctx.api.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_api_is_the_local_hubs_port() {
        let port = crate::local::config::DEFAULT_HTTP_PORT;
        assert_eq!(DEFAULT_LOCAL_API, format!("http://127.0.0.1:{port}"));
    }

    #[test]
    fn the_path_follows_mir_config_then_xdg_then_home() {
        let p = config_path_from(|k| match k {
            "MIR_CONFIG" => Some("/x/cli.yaml".into()),
            "HOME" => Some("/home/u".into()),
            _ => None,
        });
        assert_eq!(p.expect("path"), PathBuf::from("/x/cli.yaml"));
        let p = config_path_from(|k| match k {
            "XDG_CONFIG_HOME" => Some("/xdg".into()),
            "HOME" => Some("/home/u".into()),
            _ => None,
        });
        assert_eq!(p.expect("path"), PathBuf::from("/xdg/mir/cli.yaml"));
        let p = config_path_from(|k| (k == "HOME").then(|| PathBuf::from("/home/u")));
        assert_eq!(
            p.expect("path"),
            PathBuf::from("/home/u/.config/mir/cli.yaml")
        );
        assert!(config_path_from(|_| None).is_err());
    }

    #[test]
    fn api_resolution_prefers_the_flag_then_the_context() {
        let mut cfg = CliConfig::default();
        assert_eq!(cfg.resolve_api(None, None).expect("ok"), DEFAULT_LOCAL_API);
        assert_eq!(
            cfg.resolve_api(Some("http://x:1"), None).expect("ok"),
            "http://x:1"
        );
        cfg.upsert(Context {
            name: "ls".into(),
            api: "http://ls:8180".into(),
            kind: ContextKind::Localstack,
            region: None,
            profile: None,
        });
        cfg.switch("ls").expect("switch");
        assert_eq!(cfg.resolve_api(None, None).expect("ok"), "http://ls:8180");
        assert_eq!(
            cfg.resolve_api(None, Some("local")).expect("ok"),
            DEFAULT_LOCAL_API
        );
        assert!(cfg.switch("nope").is_err());
        cfg.upsert(Context {
            name: "prod".into(),
            api: "https://a".into(),
            kind: ContextKind::Aws,
            region: Some("eu-west-1".into()),
            profile: None,
        });
        let err = cfg.resolve_api(None, Some("prod")).expect_err("aws");
        assert!(err.to_string().contains("not yet supported"), "{err}");
    }

    #[test]
    fn the_file_round_trips_and_a_missing_file_gives_defaults() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sub").join("cli.yaml");
        assert_eq!(
            CliConfig::load(&path).expect("defaults"),
            CliConfig::default()
        );
        let mut cfg = CliConfig::default();
        cfg.upsert(Context {
            name: "b".into(),
            api: "http://b".into(),
            kind: ContextKind::Local,
            region: None,
            profile: None,
        });
        cfg.switch("b").expect("switch");
        cfg.save(&path).expect("save");
        assert_eq!(CliConfig::load(&path).expect("load"), cfg);
        cfg.remove("b").expect("remove");
        assert_eq!(cfg.current_context, DEFAULT_CONTEXT);
    }
}
