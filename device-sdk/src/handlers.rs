//! Command and property handlers, type-erased and registered by message full name.

use std::{
    collections::HashMap,
    fmt::Display,
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use bytes::Bytes;

use crate::session::HandlerNames;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A successful command result, encoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub name: String,
    pub payload: Bytes,
}

/// Decodes the request, runs the handler, encodes the response; `Err` is the message
/// sent back in an ERROR response.
pub(crate) type CommandFn = Arc<dyn Fn(Bytes) -> BoxFuture<Result<Reply, String>> + Send + Sync>;

/// Decodes a desired value and calls the handler.
pub(crate) type PropertyFn = Arc<dyn Fn(Bytes) -> Result<(), String> + Send + Sync>;

pub(crate) fn command_fn<Req, Resp, F, Fut, E>(handler: F) -> CommandFn
where
    Req: prost::Message + prost::Name + Default + Send + 'static,
    Resp: prost::Message + prost::Name + Send + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |payload: Bytes| {
        let handler = Arc::clone(&handler);
        Box::pin(async move {
            let request = Req::decode(payload)
                .map_err(|e| format!("cannot decode the payload as {}: {e}", Req::full_name()))?;
            let fut = handler(request);
            let response = fut.await.map_err(|e| e.to_string())?;
            Ok(Reply {
                name: Resp::full_name(),
                payload: response.encode_to_vec().into(),
            })
        })
    })
}

pub(crate) fn property_fn<P, F>(handler: F) -> PropertyFn
where
    P: prost::Message + prost::Name + Default + 'static,
    F: Fn(P) + Send + Sync + 'static,
{
    Arc::new(move |payload: Bytes| {
        let value = P::decode(payload)
            .map_err(|e| format!("cannot decode the desired value as {}: {e}", P::full_name()))?;
        handler(value);
        Ok(())
    })
}

/// A command handler over encoded bytes (messages known only at run time).
pub(crate) fn raw_command_fn<F, Fut, E>(handler: F) -> CommandFn
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(String, Bytes), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |payload: Bytes| {
        let fut = handler(payload);
        Box::pin(async move {
            let (name, payload) = fut.await.map_err(|e| e.to_string())?;
            Ok(Reply { name, payload })
        })
    })
}

/// A property handler over encoded bytes.
pub(crate) fn raw_property_fn<F>(handler: F) -> PropertyFn
where
    F: Fn(Bytes) + Send + Sync + 'static,
{
    Arc::new(move |payload: Bytes| {
        handler(payload);
        Ok(())
    })
}

/// Handlers by message full name.
#[derive(Default)]
pub(crate) struct Registry {
    commands: HashMap<String, CommandFn>,
    properties: HashMap<String, PropertyFn>,
}

impl Registry {
    pub fn add_command(&mut self, name: String, f: CommandFn) {
        if self.commands.insert(name.clone(), f).is_some() {
            tracing::warn!(name, "replaced the command handler");
        }
    }

    pub fn add_property(&mut self, name: String, f: PropertyFn) {
        if self.properties.insert(name.clone(), f).is_some() {
            tracing::warn!(name, "replaced the property handler");
        }
    }

    pub fn command(&self, name: &str) -> Option<CommandFn> {
        self.commands.get(name).cloned()
    }

    pub fn property(&self, name: &str) -> Option<PropertyFn> {
        self.properties.get(name).cloned()
    }

    /// Names of the properties with a handler.
    pub fn property_names(&self) -> Vec<String> {
        self.properties.keys().cloned().collect()
    }
}

impl HandlerNames for Registry {
    fn has_command(&self, name: &str) -> bool {
        self.commands.contains_key(name)
    }

    fn has_property(&self, name: &str) -> bool {
        self.properties.contains_key(name)
    }
}

/// The registry shared by the device handle and the event loop. User code never runs
/// under the lock (handlers are cloned out first), so a poisoned lock still holds a
/// consistent map and is used as is.
#[derive(Clone, Default)]
pub(crate) struct SharedRegistry(Arc<RwLock<Registry>>);

impl SharedRegistry {
    pub fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_raw_command_handler_answers_with_the_name_and_bytes_it_chose() {
        let f = raw_command_fn(|payload: Bytes| async move {
            Ok::<_, String>(("swarm.local.Echo".to_string(), payload))
        });
        let reply = f(Bytes::from_static(b"\x08\x01")).await.expect("ok");
        assert_eq!(reply.name, "swarm.local.Echo");
        assert_eq!(reply.payload, Bytes::from_static(b"\x08\x01"));
        let failing = raw_command_fn(|_: Bytes| async { Err::<(String, Bytes), _>("jammed") });
        assert_eq!(failing(Bytes::new()).await, Err("jammed".to_string()));
    }

    #[test]
    fn a_raw_property_handler_gets_the_encoded_value() {
        let seen = Arc::new(RwLock::new(Vec::new()));
        let s = Arc::clone(&seen);
        let f = raw_property_fn(move |b: Bytes| s.write().map(|mut v| v.push(b)).unwrap_or(()));
        f(Bytes::from_static(b"\x08\x05")).expect("ok");
        assert_eq!(seen.read().map(|v| v.len()).unwrap_or(0), 1);
    }
}
