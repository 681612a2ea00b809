//! Credential files read again at every connection attempt: a certificate renewed
//! on disk (or a CA rotated) is used by the next connection, without a restart. A
//! read or parse that fails keeps the last good configuration (and says so).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use rustls::ClientConfig;

use super::{validate::read, Credentials};
use crate::BuildError;

/// The files of a device's TLS material.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// Client certificate and key.
    client: Option<(PathBuf, PathBuf)>,
    ca: Option<PathBuf>,
    /// The CA when no file names one (the aws profile's Amazon root).
    ca_default: Option<Vec<u8>>,
    port: u16,
    /// The last configuration built.
    last: Option<Arc<Mutex<Arc<ClientConfig>>>>,
}

impl TlsFiles {
    pub fn new(
        client: Option<(PathBuf, PathBuf)>,
        ca: Option<PathBuf>,
        ca_default: Option<Vec<u8>>,
        port: u16,
    ) -> Self {
        Self {
            client,
            ca,
            ca_default,
            port,
            last: None,
        }
    }

    /// Whether there is any file to read.
    pub fn has_any(&self) -> bool {
        self.client.is_some() || self.ca.is_some()
    }

    /// These files, with the configuration built from them at build time.
    pub fn starting_with(mut self, initial: Arc<ClientConfig>) -> Self {
        self.last = Some(Arc::new(Mutex::new(initial)));
        self
    }

    /// Reads the client credentials and the CA.
    pub fn read(&self) -> Result<(Option<Credentials>, Option<Vec<u8>>), BuildError> {
        let ca = match &self.ca {
            Some(path) => Some(read("CA certificate", path)?),
            None => self.ca_default.clone(),
        };
        let client = match &self.client {
            Some((cert, key)) => Some(Credentials {
                client_cert_pem: read("client certificate", cert)?,
                client_key_pem: read("client key", key)?,
                ca_pem: ca.clone(),
            }),
            None => None,
        };
        Ok((client, ca))
    }

    /// The configuration for the next connection: built from the files as they are
    /// now, or the last good one if they cannot be read or parsed.
    pub fn current(&self) -> Option<Arc<ClientConfig>> {
        let last = self.last.as_ref()?;
        let fresh = self.read().and_then(|(client, ca)| {
            crate::tls::client_config(client.as_ref(), ca.as_deref(), self.port)
        });
        let mut kept = last.lock().unwrap_or_else(|e| e.into_inner());
        match fresh {
            Ok(config) => *kept = Arc::clone(&config),
            Err(e) => tracing::warn!(
                "cannot reload the TLS credentials ({e}): connecting with the last good ones"
            ),
        }
        Some(Arc::clone(&kept))
    }
}
