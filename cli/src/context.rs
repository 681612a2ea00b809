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
    /// The devices' MQTT endpoint (aws: `mqtts://<IotDataEndpoint>:8883`), informative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<String>,
    /// Bearer token of a hub bound beyond loopback (`access.apiToken`); `MIR_API_TOKEN`
    /// overrides it. Never printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The console's address (aws: the `ConsoleUrl` output); a local hub serves it at
    /// its API's `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
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
                mqtt: None,
                token: None,
                console: None,
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
        Ok(self.resolve(api_flag, context_flag)?.api)
    }

    /// Where the API is and how to sign requests: aws contexts sign with SigV4
    /// (service `execute-api`, the context's region and profile), also with `--api`.
    pub fn resolve(
        &self,
        api_flag: Option<&str>,
        context_flag: Option<&str>,
    ) -> anyhow::Result<Endpoint> {
        let name = context_flag.unwrap_or(&self.current_context);
        let ctx = match self.get(name) {
            Some(c) => Some(c),
            None if name == DEFAULT_CONTEXT || api_flag.is_some() => None,
            None => bail!(
                "no context {name:?}; known: {}. List them with `mir ctx`",
                self.names().join(", ")
            ),
        };
        let sigv4 = match ctx {
            Some(c) if c.kind == ContextKind::Aws => {
                let Some(region) = c.region.clone().filter(|r| !r.trim().is_empty()) else {
                    bail!(
                        "context {:?} is an aws context without a region: set it with \
                         `mir ctx add {} --kind aws --region REGION --api URL` or `mir ctx import`",
                        c.name,
                        c.name
                    );
                };
                Some(SigV4Config {
                    region,
                    profile: c.profile.clone(),
                })
            }
            _ => None,
        };
        let api = match (api_flag.filter(|a| !a.trim().is_empty()), ctx) {
            (Some(api), _) => api.trim().to_string(),
            (None, Some(c)) => c.api.clone(),
            (None, None) => DEFAULT_LOCAL_API.to_string(),
        };
        let console = match ctx {
            Some(c) if c.console.is_some() => c.console.clone(),
            Some(c) if c.kind == ContextKind::Aws => None,
            _ => Some(api.clone()),
        };
        Ok(Endpoint {
            api,
            sigv4,
            mqtt: ctx.and_then(|c| c.mqtt.clone()),
            token: ctx.and_then(|c| c.token.clone()),
            console,
        })
    }
}

/// A resolved API endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub api: String,
    pub sigv4: Option<SigV4Config>,
    /// The devices' MQTT endpoint recorded in the context, if any.
    pub mqtt: Option<String>,
    /// The hub's bearer token recorded in the context, if any.
    pub token: Option<String>,
    /// Where the console is: the context's, else a hub's own API (it serves the console
    /// at `/`); unknown for an aws context without one.
    pub console: Option<String>,
}

/// How to sign requests for API Gateway's IAM auth.
#[derive(Debug, Clone, PartialEq)]
pub struct SigV4Config {
    pub region: String,
    /// AWS profile; else the standard chain (environment, profile, SSO, IMDS, ...).
    pub profile: Option<String>,
}

/// The stacks of the CDK app, named `mir-<stage>-<part>` (`infra/cdk/lib/app.ts`).
const CDK_STACK_PARTS: [&str; 5] = ["data", "functions", "iot", "api", "console"];

/// Reads `cdk deploy --outputs-file` JSON: merges the outputs of the stacks named
/// `mir-<stage>-*` (one stage, or `stage` when the file holds several) into an aws
/// context named `name` (default `mir-<stage>`).
pub fn context_from_cdk_outputs(
    text: &str,
    name: Option<&str>,
    stage: Option<&str>,
    profile: Option<String>,
) -> anyhow::Result<Context> {
    let json: serde_json::Value =
        serde_json::from_str(text).context("the CDK outputs file is not JSON")?;
    let stacks = json
        .as_object()
        .context("the CDK outputs file must map stack names to outputs")?;
    // `mir-<stage>-<part>`: the stage may itself hold hyphens (`mir-dev-eu-data`), the
    // part never does.
    let stage_of = |stack: &str| {
        let (stage, part) = stack.strip_prefix("mir-")?.rsplit_once('-')?;
        (!stage.is_empty() && CDK_STACK_PARTS.contains(&part)).then(|| stage.to_string())
    };
    let mut stages: Vec<String> = stacks.keys().filter_map(|k| stage_of(k)).collect();
    stages.sort();
    stages.dedup();
    let stage = match (stage, stages.as_slice()) {
        (Some(s), _) if stages.iter().any(|x| x == s) => s.to_string(),
        (Some(s), _) => bail!(
            "no stack mir-{s}-* in the outputs; stages found: {}",
            if stages.is_empty() { "none".to_string() } else { stages.join(", ") }
        ),
        (None, [one]) => one.clone(),
        (None, []) => bail!("no stack named mir-<stage>-* in the outputs: is this the file of `cdk deploy --outputs-file`?"),
        (None, many) => bail!(
            "the outputs hold several stages ({}): choose one with --stage",
            many.join(", ")
        ),
    };
    let mut outputs = serde_json::Map::new();
    for (stack, values) in stacks {
        if stage_of(stack).as_deref() == Some(stage.as_str()) {
            if let Some(v) = values.as_object() {
                outputs.extend(v.clone());
            }
        }
    }
    let get = |key: &str| {
        outputs
            .get(key)
            .and_then(|v| v.as_str())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let api = get("ApiUrl").with_context(|| {
        format!("no ApiUrl output in the stacks mir-{stage}-*: is the api stack deployed?")
    })?;
    let region = get("Region")
        .or_else(|| region_from_url(&api))
        .with_context(|| format!("no Region output in the stacks mir-{stage}-*"))?;
    Ok(Context {
        name: name
            .map(str::to_string)
            .unwrap_or_else(|| format!("mir-{stage}")),
        api,
        kind: ContextKind::Aws,
        region: Some(region),
        profile,
        mqtt: get("IotDataEndpoint").map(|e| format!("mqtts://{e}:8883")),
        token: None,
        console: get("ConsoleUrl"),
    })
}

/// `https://abc.execute-api.eu-west-1.amazonaws.com/` -> `eu-west-1`.
fn region_from_url(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split(['/', ':']).next()?;
    let mut parts = host.split('.');
    let _id = parts.next()?;
    (parts.next()? == "execute-api").then(|| parts.next().map(str::to_string))?
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
        let e = config_path_from(|_| None).expect_err("no HOME");
        assert_eq!(
            e.to_string(),
            "cannot find the CLI configuration: set MIR_CONFIG or HOME"
        );
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
            mqtt: None,
            token: None,
            console: None,
        });
        cfg.switch("ls").expect("switch");
        assert_eq!(cfg.resolve_api(None, None).expect("ok"), "http://ls:8180");
        assert_eq!(
            cfg.resolve_api(None, Some("local")).expect("ok"),
            DEFAULT_LOCAL_API
        );
        let e = cfg.switch("nope").expect_err("unknown");
        assert!(
            e.to_string()
                .starts_with("no context \"nope\"; known: local"),
            "{e}"
        );
        cfg.upsert(Context {
            name: "prod".into(),
            api: "https://a".into(),
            kind: ContextKind::Aws,
            region: Some("eu-west-1".into()),
            profile: None,
            mqtt: None,
            token: None,
            console: None,
        });
        let e = cfg.resolve(None, Some("prod")).expect("aws");
        assert_eq!(e.api, "https://a");
        assert_eq!(e.console, None, "an aws API does not serve the console");
        assert_eq!(
            cfg.resolve(None, Some("ls"))
                .expect("ls")
                .console
                .as_deref(),
            Some("http://ls:8180"),
            "a hub serves the console at its API's /"
        );
        assert_eq!(
            e.sigv4,
            Some(SigV4Config {
                region: "eu-west-1".into(),
                profile: None
            })
        );
        // --api keeps the context's signing; local contexts never sign.
        let e = cfg.resolve(Some("https://b"), Some("prod")).expect("aws");
        assert_eq!((e.api.as_str(), e.sigv4.is_some()), ("https://b", true));
        assert_eq!(cfg.resolve(None, Some("local")).expect("local").sigv4, None);
    }

    #[test]
    fn cdk_outputs_become_an_aws_context() {
        let text = r#"{
            "mir-dev-data": {"TwinsTable": "mir-dev-twins", "TelemetrySink": "timestream"},
            "mir-dev-api": {"ApiUrl": "https://abc123.execute-api.eu-west-1.amazonaws.com/", "Region": "eu-west-1"},
            "mir-dev-console": {"ConsoleUrl": "https://d111111abcdef8.cloudfront.net/"},
            "mir-dev-functions": {"IotDataEndpoint": "a1b2c3-ats.iot.eu-west-1.amazonaws.com"},
            "mir-dev-iot": {"DevicePolicyName": "mir-dev-device"},
            "other-stack": {"ApiUrl": "https://wrong"}
        }"#;
        let ctx = context_from_cdk_outputs(text, None, None, Some("ops".into())).expect("ok");
        assert_eq!(ctx.name, "mir-dev");
        assert_eq!(
            ctx.api,
            "https://abc123.execute-api.eu-west-1.amazonaws.com/"
        );
        assert_eq!(ctx.kind, ContextKind::Aws);
        assert_eq!(ctx.region.as_deref(), Some("eu-west-1"));
        assert_eq!(ctx.profile.as_deref(), Some("ops"));
        assert_eq!(
            ctx.mqtt.as_deref(),
            Some("mqtts://a1b2c3-ats.iot.eu-west-1.amazonaws.com:8883")
        );
        assert_eq!(
            ctx.console.as_deref(),
            Some("https://d111111abcdef8.cloudfront.net/")
        );
        // The region also comes from the URL; several stages need --stage.
        let two = r#"{"mir-dev-api": {"ApiUrl": "https://x.execute-api.us-east-2.amazonaws.com/"},
                      "mir-prod-api": {"ApiUrl": "https://y.execute-api.eu-west-3.amazonaws.com/"}}"#;
        let e = context_from_cdk_outputs(two, None, None, None).expect_err("two stages");
        assert!(
            e.to_string().contains("dev, prod") && e.to_string().contains("--stage"),
            "{e}"
        );
        let ctx = context_from_cdk_outputs(two, Some("p"), Some("prod"), None).expect("ok");
        assert_eq!(
            (ctx.name.as_str(), ctx.region.as_deref()),
            ("p", Some("eu-west-3"))
        );
        let e = context_from_cdk_outputs(r#"{"mir-dev-data": {}}"#, None, None, None)
            .expect_err("no api");
        assert!(e.to_string().contains("no ApiUrl"), "{e}");
        let e = context_from_cdk_outputs("[]", None, None, None).expect_err("a list");
        assert_eq!(
            e.to_string(),
            "the CDK outputs file must map stack names to outputs"
        );
        assert!(context_from_cdk_outputs("{}", None, None, None)
            .expect_err("empty")
            .to_string()
            .contains("mir-<stage>-*"));
    }

    #[test]
    fn an_outputs_file_of_a_stage_with_hyphens_imports_that_stage() {
        // As `cdk deploy --all -c mir:stage=dev-eu --outputs-file cdk-outputs.json` writes it,
        // next to another stage whose name is a prefix of it.
        let text = r#"{
          "mir-dev-eu-data": {
            "TwinsTable": "mir-dev-eu-data-Twins2B076AFC-1ABC",
            "TelemetrySink": "dynamodb",
            "TelemetryTable": "mir-dev-eu-data-Telemetry1B1C5A07-2DEF",
            "ExportsOutputRefTwins2B076AFCA99FDA64": "mir-dev-eu-data-Twins2B076AFC-1ABC"
          },
          "mir-dev-eu-functions": {"IotDataEndpoint": "a1b2c3-ats.iot.eu-central-1.amazonaws.com"},
          "mir-dev-eu-iot": {"DevicePolicyName": "mir-dev-eu-device"},
          "mir-dev-eu-api": {
            "ApiUrl": "https://eu1234.execute-api.eu-central-1.amazonaws.com/",
            "Region": "eu-central-1"
          },
          "mir-dev-api": {"ApiUrl": "https://us5678.execute-api.us-east-1.amazonaws.com/", "Region": "us-east-1"}
        }"#;
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("cdk-outputs.json");
        std::fs::write(&file, text).expect("write");
        let text = std::fs::read_to_string(&file).expect("read");

        let e = context_from_cdk_outputs(&text, None, None, None).expect_err("two stages");
        assert!(e.to_string().contains("(dev, dev-eu)"), "{e}");
        let ctx = context_from_cdk_outputs(&text, None, Some("dev-eu"), None).expect("dev-eu");
        assert_eq!(ctx.name, "mir-dev-eu");
        assert_eq!(
            ctx.api,
            "https://eu1234.execute-api.eu-central-1.amazonaws.com/"
        );
        assert_eq!(ctx.region.as_deref(), Some("eu-central-1"));
        assert_eq!(
            ctx.mqtt.as_deref(),
            Some("mqtts://a1b2c3-ats.iot.eu-central-1.amazonaws.com:8883")
        );
        let dev = context_from_cdk_outputs(&text, None, Some("dev"), None).expect("dev");
        assert_eq!(
            (
                dev.name.as_str(),
                dev.region.as_deref(),
                dev.mqtt.as_deref()
            ),
            ("mir-dev", Some("us-east-1"), None),
            "dev must not take dev-eu's outputs"
        );
        let e = context_from_cdk_outputs(&text, None, Some("eu"), None).expect_err("no such");
        assert!(e.to_string().contains("stages found: dev, dev-eu"), "{e}");

        // Alone in its file, the hyphenated stage needs no --stage; a stack that is not
        // one of the app's four parts is not a stage.
        let alone = r#"{"mir-prod-eu-west-api": {"ApiUrl": "https://p.execute-api.eu-west-1.amazonaws.com/"},
                        "mir-prod-eu-west-data": {"TwinsTable": "t"},
                        "mir-tools": {"ApiUrl": "https://wrong"}}"#;
        let ctx = context_from_cdk_outputs(alone, None, None, None).expect("one stage");
        assert_eq!(
            (ctx.name.as_str(), ctx.region.as_deref()),
            ("mir-prod-eu-west", Some("eu-west-1"))
        );
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
            mqtt: None,
            token: None,
            console: None,
        });
        cfg.switch("b").expect("switch");
        cfg.save(&path).expect("save");
        assert_eq!(CliConfig::load(&path).expect("load"), cfg);
        cfg.remove("b").expect("remove");
        assert_eq!(cfg.current_context, DEFAULT_CONTEXT);
    }
}
