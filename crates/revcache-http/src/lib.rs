//! revcache's HTTP side: the RFC 9111 policy, the caching proxy service,
//! dialects, the admin API with its dashboard, and the server that runs
//! them.
//!
//! Embedding: build [`Settings`], then [`Server::bind`] and
//! [`Server::run`] with a shutdown future.

mod access_log;
mod admin;
mod admin_access;
mod admin_query;
mod credential;
mod dashboard;
mod dialect;
mod events;
#[doc(hidden)]
pub mod fuzzing;
mod inspect;
mod interim;
mod invalidator;
mod listener;
mod listener_tls;
mod metrics;
mod percent;
mod policy;
mod proxy;
mod reload;
mod request_target;
mod route;
mod server;
mod settings;
mod stats;
mod stats_history;

pub use access_log::AccessLog;
pub use inspect::{
    Row as InspectRow, rows as inspect_rows, rows_reporting as inspect_rows_reporting,
};
pub use listener_tls::{ListenerTls, ListenerTlsError};
pub use proxy::Proxy;
pub use proxy::egress::without_credentials;
pub use reload::{ReloadError, ReloadReport, Reloader, SettingsSource};
pub use request_target::normalize_path;
pub use revcache_shared::SharedSettings;
pub use route::{RouteError, Router};
pub use server::{Server, ServerError};
pub use settings::{
    AccessLogDestination, AccessLogFormat, AccessLogSettings, AdminSettings, CacheSettings,
    DialectName, DiskSettings, EncodedSlashes, EventSettings, ForwardingSettings, Limits,
    ListenerTlsSettings, PartitionSettings, ProxySetting, RangeMiss, RouteSettings, Settings,
    Sharing, UpstreamHttp2, UpstreamTls,
};

/// What the webdav dialect parses and bounds, for programs (and tests)
/// that check its answers.
pub mod webdav {
    pub use crate::dialect::webdav::xml::{MAX_PROPFIND_BODY, interned_bytes, members};
}
