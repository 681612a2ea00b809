//! [`AwsEnvironment`]: the configuration read once, one SDK configuration, and the
//! [`Ports`] of the adapters the configuration names (a function's environment only
//! holds the tables and endpoints its `access` in `routes.json` grants).
//!
//! DynamoDB is always built in; the IoT clients (feature `iot`), Timestream (feature
//! `timestream`) and EventBridge (feature `eventbridge`) only in the binaries whose
//! `access` needs them. [`AwsEnvironment::from_env`]
//! refuses a configuration that names an adapter the binary lacks
//! ([`ConfigError::NotBuiltIn`]).

use std::sync::Arc;

use crate::adapters::dynamodb;
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
    /// Reads [`AwsConfig::from_env`] and builds the adapters it names. Fails when it
    /// names one this binary was built without.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = AwsConfig::from_env()?;
        config.check_built_in()?;
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

    /// Builds the adapters `config` names, sharing one SDK configuration. An adapter this
    /// binary lacks is left out (see [`AwsConfig::check_built_in`]).
    pub async fn from_config(config: AwsConfig) -> Self {
        let sdk = sdk_config(config.endpoint_url.as_deref(), config.timeouts).await;
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
        ports.certificate_grace =
            chrono::Duration::hours(i64::from(config.certificate_grace_hours));
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
            #[cfg(not(feature = "timestream"))]
            Some(TelemetryConfig::Timestream { .. }) => (None, None),
            #[cfg(feature = "timestream")]
            Some(TelemetryConfig::Timestream { database, table }) => {
                use crate::adapters::timestream;
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
        #[cfg(feature = "iot")]
        Self::iot_ports(&config, &sdk, &mut ports);
        #[cfg(feature = "eventbridge")]
        if let Some(bus) = &config.event_bus {
            use crate::adapters::eventbridge::{aws_sdk_eventbridge::Client, EventBridgeFeed};
            ports.feed = Some(Arc::new(EventBridgeFeed::new(Client::new(&sdk), bus)));
        }
        Self { config, sdk, ports }
    }

    /// The publisher and the certificate authority (AWS IoT).
    #[cfg(feature = "iot")]
    fn iot_ports(config: &AwsConfig, sdk: &aws_config::SdkConfig, ports: &mut Ports) {
        use crate::adapters::iot;
        ports.publisher = match (&config.iot_data_endpoint, &config.endpoint_url) {
            (_, Some(url)) => Some(Arc::new(iot::IotPublisher::new(sdk, url))),
            (Some(host), None) => Some(Arc::new(iot::IotPublisher::new(
                sdk,
                &format!("https://{host}"),
            ))),
            (None, None) => None,
        };
        if let Some(policy) = &config.iot_policy_name {
            ports.certificates = Some(Arc::new(
                iot::IotCertificates::new(aws_sdk_iot::Client::new(sdk), policy)
                    .with_device_endpoint(config.iot_data_endpoint.clone())
                    .allowing_generated_keys(config.allow_generated_keys),
            ));
        }
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
