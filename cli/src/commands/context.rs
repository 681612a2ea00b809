//! `mir context` and `mir tools config`.

use anyhow::Context as _;
use std::process::ExitCode;

use crate::args::{ContextArgs, ContextCommand, ToolsArgs, ToolsCommand, ToolsConfigCommand};
use crate::context::{config_path, CliConfig, Context};
use crate::output::Table;

use super::{out, Connection};

pub(super) fn context(_conn: &Connection, args: ContextArgs) -> anyhow::Result<ExitCode> {
    let path = config_path()?;
    let mut cfg = CliConfig::load(&path)?;
    match (args.command, args.name) {
        (
            Some(ContextCommand::Add {
                name,
                api,
                kind,
                region,
                profile,
                token,
                console,
                use_it,
            }),
            _,
        ) => {
            crate::client::Client::new(&api)?;
            cfg.upsert(Context {
                name: name.clone(),
                api,
                kind,
                region,
                profile,
                mqtt: None,
                token,
                console,
            });
            if use_it {
                cfg.switch(&name)?;
            }
            cfg.save(&path)?;
            let note = if use_it { " and switched to it" } else { "" };
            out(&format!("context {name} added{note}\n"))?;
        }
        (
            Some(ContextCommand::Import {
                outputs,
                name,
                stage,
                profile,
                no_use,
            }),
            _,
        ) => {
            let text = std::fs::read_to_string(&outputs)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", outputs.display()))?;
            let ctx = crate::context::context_from_cdk_outputs(
                &text,
                name.as_deref(),
                stage.as_deref(),
                profile,
            )?;
            let name = ctx.name.clone();
            let summary = format!(
                "context {name} imported: API {} (SigV4, region {}){}",
                ctx.api,
                ctx.region.as_deref().unwrap_or("?"),
                ctx.mqtt
                    .as_deref()
                    .map(|m| format!(", devices connect to {m}"))
                    .unwrap_or_default()
            );
            cfg.upsert(ctx);
            if !no_use {
                cfg.switch(&name)?;
            }
            cfg.save(&path)?;
            let note = if no_use {
                ""
            } else {
                "; it is now the current context"
            };
            out(&format!("{summary}{note}\n"))?;
        }
        (Some(ContextCommand::Remove { name }), _) => {
            cfg.remove(&name)?;
            cfg.save(&path)?;
            out(&format!("context {name} removed\n"))?;
        }
        (None, Some(name)) => {
            cfg.switch(&name)?;
            cfg.save(&path)?;
            out(&format!("switched to context {name}\n"))?;
        }
        (None, None) => out(&context_table(&cfg))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// NAME (`*` marks the current one), API, KIND, REGION.
pub(crate) fn context_table(cfg: &CliConfig) -> String {
    let mut t = Table::new(["NAME", "API", "KIND", "REGION"]);
    let mut rows = cfg.contexts.clone();
    if cfg.get(crate::context::DEFAULT_CONTEXT).is_none() {
        rows.insert(0, CliConfig::default().contexts.remove(0));
    }
    for c in rows {
        let mark = if c.name == cfg.current_context {
            "*"
        } else {
            ""
        };
        let kind = serde_json::to_value(c.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        t.row([
            format!("{mark}{}", c.name),
            c.api,
            kind,
            c.region.unwrap_or_default(),
        ]);
    }
    t.render()
}

pub(super) fn tools(args: ToolsArgs) -> anyhow::Result<ExitCode> {
    let ToolsCommand::Config { command } = args.command else {
        anyhow::bail!("internal: only `mir tools config` is handled here");
    };
    let path = config_path()?;
    match command {
        ToolsConfigCommand::Path => out(&format!("{}\n", path.display()))?,
        ToolsConfigCommand::Edit => {
            let current = CliConfig::load(&path)?;
            let before = serde_yaml::to_string(&current)?;
            let after = crate::input::edit_text(&before, "yaml")?;
            if after == before {
                out("no change\n")?;
            } else {
                let edited: CliConfig = serde_yaml::from_str(&after)
                    .context("the edited configuration is invalid; nothing saved")?;
                edited.save(&path)?;
                out(&format!("saved {}\n", path.display()))?;
            }
        }
        ToolsConfigCommand::Print => {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
                    "# {} does not exist yet: these are the defaults\n{}",
                    path.display(),
                    serde_yaml::to_string(&CliConfig::default())?
                ),
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("cannot read {}", path.display()))
                    )
                }
            };
            out(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_context_is_marked() {
        let cfg = CliConfig::default();
        assert_eq!(context_table(&cfg), "NAME     API                     KIND    REGION\n*local   http://127.0.0.1:8180   local\n");
    }
}
