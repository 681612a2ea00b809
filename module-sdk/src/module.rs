//! [`Module`]: a connection to a Mir API (a hub, or API Gateway on AWS for the client
//! operations), from the CLI's contexts or an explicit URL and token.

use std::path::PathBuf;

use mir_cli::{
    client::Client,
    context::{config_path, CliConfig},
};
use mir_shared::{
    api::{
        CommandResults, ConfigResults, DeviceList, PublishEvent, SendCommand, SendConfig,
        TelemetryQueryResult,
    },
    domain::{
        device_stream::{HEARTBEATS_WATCH_PATH, SCHEMAS_WATCH_PATH},
        feed::WATCH_PATH,
        telemetry_feed::TELEMETRY_WATCH_PATH,
        DeviceStreamFilter, Event, FeedEvent, FeedFilter, HeartbeatPoint, SchemaAnnouncement,
        Targets, TelemetryFilter, TelemetryPoint,
    },
};

use crate::{
    stream::{Stream, Subscription},
    ModuleError,
};

/// How a [`Module`] finds its API; see [`Module::builder`].
#[derive(Debug, Clone, Default)]
pub struct ModuleBuilder {
    api: Option<String>,
    token: Option<String>,
    context: Option<String>,
    config: Option<PathBuf>,
    /// `api` signed with SigV4 in this region, without the CLI's configuration.
    aws_region: Option<String>,
}

impl ModuleBuilder {
    /// The API's base URL (`http://127.0.0.1:8180`), over the context's.
    pub fn api(mut self, url: impl Into<String>) -> Self {
        self.api = Some(url.into());
        self
    }

    /// The hub's bearer token (`access.apiToken`), over the context's.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// A context of the CLI's configuration by name (else its current context).
    pub fn context(mut self, name: impl Into<String>) -> Self {
        self.context = Some(name.into());
        self
    }

    /// The CLI configuration file (else `$MIR_CONFIG`, `$XDG_CONFIG_HOME/mir/cli.yaml`,
    /// `~/.config/mir/cli.yaml`, as the CLI reads it).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = Some(path.into());
        self
    }

    /// The platform's API Gateway URL (the api stack's `ApiUrl` output), signed with
    /// SigV4 in `region` with the standard AWS credentials (a Lambda's role): no CLI
    /// configuration is read. The way a module deployed with the CDK construct
    /// `MirModule` calls the API.
    pub fn aws(mut self, api_url: impl Into<String>, region: impl Into<String>) -> Self {
        self.api = Some(api_url.into());
        self.aws_region = Some(region.into());
        self
    }

    /// Resolves the endpoint as the CLI does (an aws context signs with SigV4).
    pub fn build(self) -> Result<Module, ModuleError> {
        if let (Some(api), Some(region)) = (&self.api, &self.aws_region) {
            let endpoint = mir_cli::context::Endpoint {
                api: api.clone(),
                sigv4: Some(mir_cli::context::SigV4Config {
                    region: region.clone(),
                    profile: None,
                }),
                mqtt: None,
                token: None,
                console: None,
            };
            let client = Client::for_endpoint(&endpoint, None)?;
            return Ok(Module { client });
        }
        let path = match self.config {
            Some(p) => p,
            None => config_path().map_err(|source| ModuleError::Config { source })?,
        };
        let config = CliConfig::load(&path).map_err(|source| ModuleError::Config { source })?;
        let endpoint = config
            .resolve(self.api.as_deref(), self.context.as_deref())
            .map_err(|source| ModuleError::Config { source })?;
        let client = Client::for_endpoint(&endpoint, self.token)?;
        Ok(Module { client })
    }
}

/// A module's connection to Mir. Cloning shares the HTTP client.
#[derive(Debug, Clone)]
pub struct Module {
    client: Client,
}

impl Module {
    /// How to connect: `Module::builder().build()` takes the CLI's current context;
    /// `.context("name")`, `.api(url).token(t)` choose another.
    pub fn builder() -> ModuleBuilder {
        ModuleBuilder::default()
    }

    /// The CLI's client, for the operations this type does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The events `filter` selects, live, deduplicated, reconnecting with
    /// `Last-Event-ID`. Subscribed when this returns. On an aws context, polled from
    /// `GET /v1/events` (`mir_cli::client::poll`).
    pub async fn events(&self, filter: &FeedFilter) -> Result<Stream<FeedEvent>, ModuleError> {
        Subscription::open(self.client.clone(), WATCH_PATH, filter.to_query(), true).await
    }

    /// Worker mode: this instance's share of the events of the group `group`: each event
    /// goes to one connected member (see the hub's `feed::group`). Joined when this
    /// returns. Refused on an aws context (`ClientError::Unsupported`: use `MirModule`'s
    /// worker mode, an SQS queue).
    pub async fn worker(
        &self,
        group: &str,
        filter: &FeedFilter,
    ) -> Result<Stream<FeedEvent>, ModuleError> {
        let mut query = filter.to_query();
        query.push(("group", group.to_string()));
        Subscription::open(self.client.clone(), WATCH_PATH, query, false).await
    }

    /// The decoded telemetry points `filter` selects, live, deduplicated. Subscribed
    /// when this returns. Refused on an aws context (`ClientError::Unsupported`).
    pub async fn telemetry(
        &self,
        filter: &TelemetryFilter,
    ) -> Result<Stream<TelemetryPoint>, ModuleError> {
        Subscription::open(
            self.client.clone(),
            TELEMETRY_WATCH_PATH,
            filter.to_query(),
            false,
        )
        .await
    }

    /// Each heartbeat of the devices `filter` selects (with its status fields when the
    /// heartbeat carries any), live, deduplicated. Subscribed when this returns.
    pub async fn heartbeats(
        &self,
        filter: &DeviceStreamFilter,
    ) -> Result<Stream<HeartbeatPoint>, ModuleError> {
        Subscription::open(
            self.client.clone(),
            HEARTBEATS_WATCH_PATH,
            filter.to_query(),
            false,
        )
        .await
    }

    /// Each schema the devices `filter` selects announce (their hello: package and
    /// message names), live, deduplicated. Subscribed when this returns.
    pub async fn schemas(
        &self,
        filter: &DeviceStreamFilter,
    ) -> Result<Stream<SchemaAnnouncement>, ModuleError> {
        Subscription::open(
            self.client.clone(),
            SCHEMAS_WATCH_PATH,
            filter.to_query(),
            false,
        )
        .await
    }

    /// Records a custom event (reason `Custom`, `name` its [`CustomName`](
    /// mir_shared::domain::CustomName)), which the feed fans out like Mir's own.
    pub async fn publish_event(&self, event: &PublishEvent) -> Result<Event, ModuleError> {
        Ok(self.client.publish_event(event).await?)
    }

    /// The devices `targets` select (`Targets::default()`: all).
    pub async fn list_devices(&self, targets: &Targets) -> Result<DeviceList, ModuleError> {
        Ok(self.client.list_devices(targets).await?)
    }

    /// Sends a command, as `mir cmd send` does.
    pub async fn send_command(&self, command: &SendCommand) -> Result<CommandResults, ModuleError> {
        Ok(self.client.send_command(command).await?)
    }

    /// Sets a desired property, as `mir cfg send` does.
    pub async fn send_config(&self, config: &SendConfig) -> Result<ConfigResults, ModuleError> {
        Ok(self.client.send_config(config).await?)
    }

    /// The recent points of one telemetry message of one device, oldest first, since
    /// `since` (`15m` or an RFC 3339 time).
    pub async fn query_telemetry(
        &self,
        device_id: &str,
        message: &str,
        since: &str,
    ) -> Result<TelemetryQueryResult, ModuleError> {
        Ok(self
            .client
            .query_telemetry(device_id, message, since, None, None)
            .await?)
    }
}
