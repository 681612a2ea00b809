//! [`AwsEnvironment`]: the configuration read once, one SDK configuration, and the
//! [`Ports`] of the adapters the configuration names (a function's environment only
//! holds the tables and endpoints its `access` in `routes.json` grants).

use std::sync::Arc;

use crate::adapters::{dynamodb, iot, timestream};
use crate::ports::{Ports, StoreError, TelemetryReader, TelemetrySink};

use super::{sdk_config, AwsConfig, ConfigError, TelemetryConfig};

/// One process's AWS side, built once per cold start.
#[derive(Clone)]
pub struct AwsEnvironment {
    pub config: AwsConfig,
    pub sdk: aws_config::SdkConfig,
    pub ports: Ports,
}

impl std::fmt::Debug for AwsEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsEnvironment")
            .field("config", &self.config.to_string())
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

type TelemetryPorts = (
    Option<Arc<dyn TelemetrySink>>,
    Option<Arc<dyn TelemetryReader>>,
);

impl AwsEnvironment {
    /// Reads [`AwsConfig::from_env`] and builds the adapters it names.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = AwsConfig::from_env()?;
        Ok(Self::from_config(config).await)
    }

    /// The stores of `mir local --profile localstack`: tables `<prefix>-twins`, ... and
    /// the DynamoDB telemetry sink on `endpoint_url` (see [`AwsConfig::localstack`]),
    /// events kept by `event_retention`. Creates the tables that do not exist yet. The
    /// hub keeps its own publisher and CA.
    pub async fn for_endpoint(
        endpoint_url: &str,
        prefix: &str,
        event_retention: crate::domain::EventRetention,
    ) -> Result<Self, StoreError> {
        let config = AwsConfig {
            event_retention,
            ..AwsConfig::localstack(endpoint_url, prefix)
        };
        let env = Self::from_config(config).await;
        env.ensure_tables().await?;
        Ok(env)
    }

    /// Builds the adapters `config` names, sharing one SDK configuration.
    pub async fn from_config(config: AwsConfig) -> Self {
        let sdk = sdk_config(config.endpoint_url.as_deref()).await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let mut ports = Ports::default();
        if let Some(t) = &config.twins_table {
            ports.twins = Some(Arc::new(dynamodb::DynamoTwinStore::new(ddb.clone(), t)));
        }
        if let Some(t) = &config.schemas_table {
            ports.schemas = Some(Arc::new(dynamodb::DynamoSchemaStore::new(ddb.clone(), t)));
        }
        if let Some(t) = &config.commands_table {
            ports.commands = Some(Arc::new(dynamodb::DynamoCommandStore::new(
                ddb.clone(),
                t,
                config.commands_ttl(),
            )));
        }
        if let Some(t) = &config.events_table {
            ports.events = Some(Arc::new(dynamodb::DynamoEventStore::new(
                ddb.clone(),
                t,
                config.event_retention.clone(),
            )));
        }
        let (sink, reader): TelemetryPorts = match &config.telemetry {
            None => (None, None),
            Some(TelemetryConfig::DynamoDb { table }) => {
                let t = Arc::new(dynamodb::DynamoTelemetry::new(
                    ddb.clone(),
                    table,
                    config.telemetry_retention(),
                ));
                (Some(t.clone()), Some(t))
            }
            Some(TelemetryConfig::Timestream { database, table }) => {
                let discover = config.endpoint_url.is_none();
                let w = Arc::new(timestream::TimestreamSink::new(
                    aws_sdk_timestreamwrite::Client::new(&sdk),
                    database,
                    table,
                    discover,
                ));
                let r = Arc::new(
                    timestream::TimestreamReader::new(
                        aws_sdk_timestreamquery::Client::new(&sdk),
                        database,
                        table,
                        discover,
                    )
                    .with_retention_days(config.telemetry_retention_days),
                );
                (Some(w), Some(r))
            }
        };
        ports.telemetry_sink = sink;
        ports.telemetry_reader = reader;
        ports.publisher = match (&config.iot_data_endpoint, &config.endpoint_url) {
            (_, Some(url)) => Some(Arc::new(iot::IotPublisher::new(&sdk, url))),
            (Some(host), None) => Some(Arc::new(iot::IotPublisher::new(
                &sdk,
                &format!("https://{host}"),
            ))),
            (None, None) => None,
        };
        if let Some(policy) = &config.iot_policy_name {
            ports.certificates = Some(Arc::new(
                iot::IotCertificates::new(aws_sdk_iot::Client::new(&sdk), policy)
                    .with_device_endpoint(config.iot_data_endpoint.clone()),
            ));
        }
        Self { config, sdk, ports }
    }

    /// Creates the configuration's DynamoDB tables that do not exist yet (contract key
    /// schema, see [`dynamodb::create_table`]).
    pub async fn ensure_tables(&self) -> Result<(), StoreError> {
        let ddb = aws_sdk_dynamodb::Client::new(&self.sdk);
        for t in self.config.dynamodb_tables() {
            dynamodb::create_table(&ddb, &t).await?;
        }
        Ok(())
    }
}
