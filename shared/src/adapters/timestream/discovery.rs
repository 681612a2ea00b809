//! Timestream's endpoint discovery, for the write and the query client alike: run once,
//! on first use, unless an endpoint override is configured.

use std::future::Future;

use aws_smithy_runtime_api::box_error::BoxError;
use tokio::sync::OnceCell;

use crate::ports::{StoreError, StoreResult};

/// A Timestream client that can discover its endpoint (both SDKs have the same call).
pub(super) trait Discover: Clone + Send + Sync + 'static {
    /// This client with endpoint discovery on, its reload task spawned.
    fn discover(self) -> impl Future<Output = Result<Self, BoxError>> + Send;
}

impl Discover for aws_sdk_timestreamwrite::Client {
    async fn discover(self) -> Result<Self, BoxError> {
        let (client, reload) = self.with_endpoint_discovery_enabled().await?;
        tokio::spawn(reload.reload_task());
        Ok(client)
    }
}

impl Discover for aws_sdk_timestreamquery::Client {
    async fn discover(self) -> Result<Self, BoxError> {
        let (client, reload) = self.with_endpoint_discovery_enabled().await?;
        tokio::spawn(reload.reload_task());
        Ok(client)
    }
}

/// A client whose endpoint is discovered on first use (`discover`), or used as is.
pub(super) struct Endpoint<C> {
    base: C,
    discover: bool,
    discovered: OnceCell<C>,
}

impl<C: Discover> Endpoint<C> {
    /// `discover`: run Timestream's endpoint discovery (AWS); false with an endpoint
    /// override (moto, LocalStack), which is then used as is.
    pub(super) fn new(base: C, discover: bool) -> Self {
        Self {
            base,
            discover,
            discovered: OnceCell::new(),
        }
    }

    /// The client to call, discovering the endpoint the first time.
    pub(super) async fn client(&self) -> StoreResult<&C> {
        self.discovered
            .get_or_try_init(|| async {
                if !self.discover {
                    return Ok(self.base.clone());
                }
                self.base
                    .clone()
                    .discover()
                    .await
                    .map_err(|e| StoreError::Unavailable {
                        message: format!("Timestream endpoint discovery: {e}"),
                        source: Some(e),
                    })
            })
            .await
    }
}
