//! Where the shared tier lives: one Redis or Valkey server (`redis://`,
//! `rediss://`), or a Redis Cluster given by its seed nodes. Either way
//! the tier sees one connection type.
//!
//! In a cluster every key of one cache carries the hash tag of its key
//! prefix (`{revcache}:…`, see `codec::Names`), so one cache lives in one
//! hash slot: the scripts stay atomic (they touch keys they find in index
//! sets), and the cluster gives failover and room for several caches, not
//! a cache spread over its masters.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::settings::SharedSettings;

/// How to reach the shared tier (one per tier: its size does not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Source {
    Server(redis::Client),
    Cluster(ClusterClient),
}

/// A connection to it.
#[derive(Clone)]
pub(crate) enum Conn {
    /// The request path's: reconnects by itself.
    Managed(ConnectionManager),
    /// The stream reader's own (a blocking read must not hold up others).
    Plain(redis::aio::MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Source {
    /// The source `settings` name; TLS material is read now. Errors are
    /// messages for the operator.
    pub fn open(settings: &SharedSettings) -> Result<Source, String> {
        let certificates = certificates(settings)?;
        if !settings.cluster_nodes.is_empty() {
            let mut builder =
                ClusterClient::builder(settings.cluster_nodes.iter().map(String::as_str))
                    .connection_timeout(settings.timeout)
                    .response_timeout(settings.timeout);
            if let Some(certs) = certificates {
                builder = builder.certs(certs);
            }
            return builder
                .build()
                .map(Source::Cluster)
                .map_err(|e| e.to_string());
        }
        match certificates {
            None => redis::Client::open(settings.url.as_str()),
            Some(certs) => redis::Client::build_with_tls(settings.url.as_str(), certs),
        }
        .map(Source::Server)
        .map_err(|e| e.to_string())
    }

    /// The request path's connection, made lazily (Redis may be down at
    /// start-up): every command gives up after `timeout`.
    pub fn request_path(&self, timeout: Duration) -> redis::RedisResult<Conn> {
        match self {
            Source::Server(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(2));
                ConnectionManager::new_lazy_with_config(client.clone(), config).map(Conn::Managed)
            }
            Source::Cluster(client) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                Ok(Conn::Cluster(
                    client.get_pending_async_connection_with_config(config),
                ))
            }
        }
    }

    /// A connection of its own whose answers may take `response`.
    pub async fn dedicated(
        &self,
        connect: Duration,
        response: Duration,
    ) -> redis::RedisResult<Conn> {
        match self {
            Source::Server(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(Some(response));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Plain)
            }
            Source::Cluster(client) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(connect)
                    .set_response_timeout(response);
                client
                    .get_async_connection_with_config(config)
                    .await
                    .map(Conn::Cluster)
            }
        }
    }
}

/// `rediss://`'s CAs (else the system's) and client certificate.
fn certificates(settings: &SharedSettings) -> Result<Option<redis::TlsCertificates>, String> {
    if settings.ca_file.is_none() && settings.client_cert.is_none() {
        return Ok(None);
    }
    let tls = std::iter::once(&settings.url)
        .chain(&settings.cluster_nodes)
        .all(|u| u.starts_with("rediss://"));
    if !tls {
        return Err("ca_file, client_cert and client_key are for rediss:// URLs".into());
    }
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let root_cert = settings.ca_file.as_ref().map(read).transpose()?;
    let client_tls = match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        (None, None) => None,
        _ => return Err("client_cert and client_key go together".into()),
    };
    Ok(Some(redis::TlsCertificates {
        client_tls,
        root_cert,
    }))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Managed(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
