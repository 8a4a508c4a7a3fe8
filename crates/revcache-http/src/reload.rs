//! Config reload (SIGHUP, `POST /reload`): reads the settings again from
//! their source, builds everything they describe beside what runs, and only
//! then swaps it in, so a reload applies whole or not at all.
//!
//! Swapped: routes (a route whose settings did not change keeps its client,
//! connections, dialect state and feed), limits read per request, partition
//! and forwarding settings, admin tokens and allowed hosts, and the TLS
//! listener's certificate (re-read even when its paths did not change, so
//! renewed files take effect). Kept: the caches, the disk tier, the
//! partition key. The access log's file is reopened (logrotate). Settings
//! bound at start (listen addresses, the data dir, the cache and disk
//! tiers, connection caps and timeouts of the listeners, `access_log`)
//! need a restart; a reload that changes them applies the rest and names
//! them in its report. A route a reload removes stops serving at once; its
//! entries are swept like any idle entries.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::admin_access::AdminAccess;
use crate::events::command::CommandFeeds;
use crate::listener_tls::{ListenerTls, ListenerTlsError};
use crate::proxy::{ActiveConfig, Proxy};
use crate::route::{RouteChanges, RouteError};
use crate::settings::Settings;

/// Where a reload reads the settings from: the binary re-reads its config
/// file and flags; an embedding program returns whatever it wants in force.
/// The error names the offending key, as at start-up.
pub type SettingsSource = dyn Fn() -> Result<Settings, String> + Send + Sync;

/// A reload that was refused; the settings in force stay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    ListenerTls(#[from] ListenerTlsError),
    #[error(
        "the admin API listens on {0}, which is not a loopback address, and the new config sets no admin token; set admin_token or admin.allow_remote_without_token"
    )]
    AdminUnprotected(SocketAddr),
}

/// What a reload applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub routes: RouteChanges,
    /// Changed settings that take effect only after a restart.
    pub restart_required: Vec<&'static str>,
}

pub struct Reloader {
    proxy: Arc<Proxy>,
    access: Arc<ArcSwap<AdminAccess>>,
    admin_addr: SocketAddr,
    tls: Option<Arc<ListenerTls>>,
    feeds: Arc<CommandFeeds>,
    source: Box<SettingsSource>,
    /// The settings in force; held for the whole reload, so reloads run
    /// one at a time.
    current: tokio::sync::Mutex<Settings>,
}

impl Reloader {
    pub(crate) fn new(
        proxy: Arc<Proxy>,
        access: Arc<ArcSwap<AdminAccess>>,
        admin_addr: SocketAddr,
        tls: Option<Arc<ListenerTls>>,
        feeds: Arc<CommandFeeds>,
        source: Box<SettingsSource>,
        current: Settings,
    ) -> Self {
        Reloader {
            proxy,
            access,
            admin_addr,
            tls,
            feeds,
            source,
            current: tokio::sync::Mutex::new(current),
        }
    }

    /// Reads the settings again and puts them in force, or keeps the ones
    /// in force when the new ones are refused. Logged and counted either way.
    pub async fn reload(self: &Arc<Self>) -> Result<ReloadReport, ReloadError> {
        let mut current = self.current.lock().await;
        // logrotate sends SIGHUP: the log is reopened whatever the config.
        if let Some(log) = self.proxy.access_log() {
            log.reopen();
        }
        let this = self.clone();
        let prepared = tokio::task::spawn_blocking(move || this.prepare())
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let result = prepared.map(|(settings, config, routes)| {
            let restart_required = restart_required(&current, &settings, self.tls.is_some());
            self.proxy.install(config);
            self.access
                .store(Arc::new(AdminAccess::new(&settings, self.admin_addr)));
            self.feeds.sync(&self.proxy, &self.proxy.config().router);
            *current = settings;
            ReloadReport {
                routes,
                restart_required,
            }
        });
        self.proxy.metrics().reload(result.is_ok());
        match &result {
            Ok(report) => tracing::info!(
                kept = report.routes.kept.len(),
                changed = ?report.routes.changed,
                added = ?report.routes.added,
                removed = ?report.routes.removed,
                restart_required = ?report.restart_required,
                "config reloaded"
            ),
            Err(e) => {
                tracing::error!(error = %e, "config reload refused; the previous config stays in force")
            }
        }
        result
    }

    /// Everything that can fail, with no effect on what runs except the
    /// TLS listener's certificate, which is swapped last, once nothing
    /// else can fail.
    fn prepare(&self) -> Result<(Settings, ActiveConfig, RouteChanges), ReloadError> {
        let settings = (self.source)().map_err(ReloadError::Config)?;
        if !self.admin_addr.ip().is_loopback()
            && settings.admin_token.is_none()
            && !settings.admin.allow_remote_without_token
        {
            return Err(ReloadError::AdminUnprotected(self.admin_addr));
        }
        let (config, routes) = ActiveConfig::build(
            &settings,
            Some(&self.proxy.config()),
            self.proxy.cache().clock().now(),
            self.proxy.partition_key(),
        )?;
        if let (Some(tls), Some(files)) = (&self.tls, &settings.tls) {
            tls.reload_from(&files.cert_file, &files.key_file)?;
        }
        Ok((settings, config, routes))
    }
}

/// The keys whose change needs a restart.
fn restart_required(old: &Settings, new: &Settings, tls_running: bool) -> Vec<&'static str> {
    let (ol, nl) = (&old.limits, &new.limits);
    let checks: [(&'static str, bool); 12] = [
        ("access_log", old.access_log != new.access_log),
        ("listen", old.listen != new.listen),
        ("admin.listen", old.admin_listen != new.admin_listen),
        ("data_dir", old.data_dir != new.data_dir),
        ("cache.memory_limit", old.cache != new.cache),
        ("disk", old.disk != new.disk),
        (
            "tls.listen",
            old.tls.as_ref().map(|t| t.listen) != new.tls.as_ref().map(|t| t.listen)
                || tls_running != new.tls.is_some(),
        ),
        (
            "limits.max_connections",
            ol.max_connections != nl.max_connections,
        ),
        (
            "limits.max_request_header_bytes",
            ol.max_request_header_bytes != nl.max_request_header_bytes,
        ),
        (
            "limits.request_header_timeout",
            ol.request_header_timeout != nl.request_header_timeout,
        ),
        (
            "limits.idle_connection_timeout",
            ol.idle_connection_timeout != nl.idle_connection_timeout,
        ),
        (
            "admin.max_connections",
            old.admin.max_connections != new.admin.max_connections,
        ),
    ];
    checks
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| key)
        .collect()
}
