//! revcache's HTTP side: the RFC 9111 policy, the caching proxy service,
//! dialects, the admin API and the server that runs them.
//!
//! Embedding: build [`Settings`], then [`Server::bind`] and
//! [`Server::run`] with a shutdown future.

pub mod admin;
mod admin_access;
pub mod credential;
pub mod dialect;
pub mod events;
pub mod inspect;
pub mod invalidator;
mod listener;
pub mod listener_tls;
pub mod metrics;
mod percent;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod request_target;
pub mod route;
pub mod server;
pub mod settings;

pub use proxy::Proxy;
pub use server::{Server, ServerError};
pub use settings::{
    AdminSettings, CacheSettings, DialectName, DiskSettings, EncodedSlashes, EventSettings,
    ForwardingSettings, Limits, ListenerTlsSettings, PartitionSettings, ProxySetting,
    RouteSettings, Settings, Sharing, UpstreamHttp2, UpstreamTls,
};
