//! The server: binds the proxy and admin listeners, serves HTTP/1.1 and
//! HTTP/2 (prior knowledge) connections, and shuts down gracefully: stop
//! accepting, report not-ready, let in-flight requests finish within the
//! grace period, then close what remains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use revcache_core::PartitionKeyError;
use revcache_core::data_dir::{self, DataDirError, Opened};
use revcache_core::{Cache, CacheConfig, Clock, DiskError, PartitionKey};
use revcache_shared::{SharedTier, StreamEvent};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::admin::Admin;
use crate::admin_access::AdminAccess;
use crate::events::command::CommandFeeds;
use crate::listener::{ConnectionLimits, Handler, Listener, Phase};
use crate::listener_tls::ListenerTls;
use crate::proxy::Proxy;
use crate::proxy::body::ProxyBody;
use crate::reload::{Reloader, SettingsSource};
use crate::route::RouteError;
use crate::settings::Settings;
use crate::stats_history::StatsHistory;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    PartitionKey(#[from] PartitionKeyError),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(
        "the admin API would listen on {0}, which is not a loopback address, without a token; set an admin token, listen on loopback, or allow it explicitly (admin.allow_remote_without_token)"
    )]
    AdminUnprotected(SocketAddr),
    #[error(transparent)]
    ListenerTls(#[from] crate::listener_tls::ListenerTlsError),
    #[error(transparent)]
    Shared(#[from] revcache_shared::SharedError),
    #[error(transparent)]
    AccessLog(#[from] crate::access_log::AccessLogError),
}

pub struct Server {
    proxy: Arc<Proxy>,
    listener: TcpListener,
    admin_listener: TcpListener,
    /// The TLS listener and its certificate, when `[tls]` is configured.
    tls: Option<(TcpListener, Arc<ListenerTls>)>,
    admin: Arc<Admin>,
    ready: Arc<AtomicBool>,
    feeds: Arc<CommandFeeds>,
    reloader: Arc<Reloader>,
    history: Arc<StatsHistory>,
    settings: Settings,
}

impl Server {
    /// Opens the data dir (partition key, disk tier), builds the proxy and
    /// binds both listeners. A reload puts `settings` in force again
    /// (re-reading TLS files); see [`Server::bind_reloadable`].
    pub async fn bind(settings: Settings) -> Result<Self, ServerError> {
        let again = settings.clone();
        Self::bind_reloadable(settings, Box::new(move || Ok(again.clone()))).await
    }

    /// As [`Server::bind`]; a reload (SIGHUP in the binary, `POST /reload`)
    /// puts in force what `source` returns then.
    pub async fn bind_reloadable(
        settings: Settings,
        source: Box<SettingsSource>,
    ) -> Result<Self, ServerError> {
        Self::bind_with_clock(settings, source, Clock::system()).await
    }

    /// As [`Server::bind_reloadable`], with every freshness, trust and
    /// sweep decision read from `clock` (a test drives it instead of
    /// sleeping).
    pub async fn bind_with_clock(
        settings: Settings,
        source: Box<SettingsSource>,
        clock: Clock,
    ) -> Result<Self, ServerError> {
        if !settings.admin_listen.ip().is_loopback()
            && settings.admin_token.is_none()
            && !settings.admin.allow_remote_without_token
        {
            return Err(ServerError::AdminUnprotected(settings.admin_listen));
        }
        let cache = tokio::task::spawn_blocking({
            let settings = settings.clone();
            move || open_cache(&settings, clock)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        let key = match &settings.partition.key_file {
            Some(file) => Ok(PartitionKey::load_or_create_file(file)?),
            None => PartitionKey::load_or_create(&settings.data_dir),
        };
        let key = match key {
            Ok(key) => key,
            Err(e) if e.is_disk_fault() => {
                tracing::warn!(
                    error = %e,
                    "cannot keep the partition key in the data dir (disk failure); using a key for this run only: private entries cached on disk by other runs are not served"
                );
                PartitionKey::ephemeral()?
            }
            Err(e) => return Err(e.into()),
        };
        let listener_tls = match &settings.tls {
            Some(t) => Some(ListenerTls::load(&t.cert_file, &t.key_file)?),
            None => None,
        };
        let shared = match &settings.shared {
            Some(s) => Some(SharedTier::connect(s.clone(), &key.fingerprint()).await?),
            None => None,
        };
        let access_log = match &settings.access_log {
            Some(log) => Some(AccessLog::open(log)?),
            None => None,
        };
        let proxy = Proxy::new(&settings, key, Arc::new(cache), shared.clone(), access_log)?;
        if let Some(shared) = &shared {
            shared.spawn_reader(stream_applier(&proxy));
        }
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { what, addr, source })
        };
        let listener = bind("proxy listener", settings.listen).await?;
        let admin_listener = bind("admin listener", settings.admin_listen).await?;
        let tls = match (&settings.tls, listener_tls) {
            (Some(t), Some(certs)) => Some((bind("TLS listener", t.listen).await?, certs)),
            _ => None,
        };
        let ready = Arc::new(AtomicBool::new(true));
        let admin_addr = admin_listener.local_addr().unwrap_or(settings.admin_listen);
        let access = Arc::new(ArcSwap::from_pointee(AdminAccess::new(
            &settings, admin_addr,
        )));
        let feeds = Arc::new(CommandFeeds::default());
        let reloader = Arc::new(Reloader::new(
            proxy.clone(),
            access.clone(),
            admin_addr,
            tls.as_ref().map(|(_, certs)| certs.clone()),
            feeds.clone(),
            source,
            settings.clone(),
        ));
        let history = Arc::new(StatsHistory::default());
        let admin = Arc::new(
            Admin::new(
                proxy.clone(),
                access,
                reloader.clone(),
                ready.clone(),
                history.clone(),
            )
            .disk_required(settings.disk.enabled && settings.disk.required),
        );
        Ok(Server {
            proxy,
            listener,
            admin_listener,
            tls,
            admin,
            ready,
            feeds,
            reloader,
            history,
            settings,
        })
    }

    /// Reloads the config (what SIGHUP does in the binary).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// The access log, to reopen on SIGUSR1 (logrotate), when configured.
    pub fn access_log(&self) -> Option<Arc<AccessLog>> {
        self.proxy.access_log().cloned()
    }

    /// The TLS listener's address, when there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The TLS listener's certificate, to re-read on SIGHUP.
    pub fn listener_tls(&self) -> Option<Arc<ListenerTls>> {
        self.tls.as_ref().map(|(_, t)| t.clone())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.listen)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or(self.settings.admin_listen)
    }

    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Serves until `shutdown` resolves, then drains within the grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let limits = &self.settings.limits;
        let header_limit = limits.max_request_header_bytes;
        builder
            .http1()
            .timer(TokioTimer::new())
            // Counts from when hyper waits for a head, so it also bounds an
            // idle keep-alive connection.
            .header_read_timeout(limits.request_header_timeout)
            // Larger than our own limit, so the proxy's 431 (which says
            // which limit) answers first.
            .max_buf_size((header_limit * 2).max(16 << 10));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(header_limit * 2).unwrap_or(u32::MAX));
        self.feeds.sync(&self.proxy, &self.proxy.config().router);
        let (local, admin_addr) = (self.local_addr(), self.admin_addr());
        let connection_limits = |max_connections| ConnectionLimits {
            max_connections,
            header_timeout: limits.request_header_timeout,
            idle_timeout: limits.idle_connection_timeout,
        };
        let metrics = self.proxy.metrics().clone();
        let proxy = Listener::new(
            "proxy",
            self.listener,
            connection_limits(limits.max_connections),
            ProxyHandler(self.proxy.clone()),
            builder.clone(),
            metrics.listener("proxy"),
        );
        let admin = Listener::new(
            "admin",
            self.admin_listener,
            connection_limits(self.settings.admin.max_connections),
            AdminHandler(self.admin.clone()),
            builder.clone(),
            metrics.listener("admin"),
        );
        let tls = self.tls.map(|(listener, certs)| {
            Listener::new(
                "tls",
                listener,
                connection_limits(limits.max_connections),
                ProxyHandler(self.proxy.clone()),
                builder.clone(),
                metrics.listener("tls"),
            )
            .with_tls(certs)
        });
        let (proxy_closed, admin_closed) = (proxy.all_closed(), admin.all_closed());
        let tls_closed = tls.as_ref().map(|t| t.all_closed());
        let (phase, watch_phase) = watch::channel(Phase::Serving);
        let mut accepting = vec![
            tokio::spawn(proxy.run(watch_phase.clone())),
            tokio::spawn(admin.run(watch_phase.clone())),
        ];
        if let Some(tls) = tls {
            accepting.push(tokio::spawn(tls.run(watch_phase)));
        }
        let sampler = self.history.spawn_sampler(self.proxy.clone());
        tracing::info!(listen = %local, admin = %admin_addr, "revcache serving");
        shutdown.await;
        sampler.abort();
        self.ready.store(false, Ordering::SeqCst);
        self.feeds.stop();
        let _ = phase.send(Phase::Draining);
        // The accept loops own the listening sockets: once they return,
        // new connections are refused.
        for task in accepting {
            let _ = task.await;
        }
        let grace = self.proxy.config().limits.shutdown_grace;
        tracing::info!(?grace, "shutting down: finishing in-flight requests");
        let all_closed = async {
            tokio::join!(proxy_closed, admin_closed, async {
                if let Some(t) = tls_closed {
                    t.await;
                }
            })
        };
        match tokio::time::timeout(grace, all_closed).await {
            Ok(_) => tracing::info!("all connections closed"),
            Err(_) => {
                tracing::warn!(?grace, "grace period over; closing remaining connections");
                let _ = phase.send(Phase::Closing);
            }
        }
        if tokio::time::timeout(grace, self.proxy.fills_idle())
            .await
            .is_err()
        {
            tracing::warn!("cache fills still running after the grace period; they are not stored");
        }
        // Closed, not only flushed: a task that outlives the server (a
        // background revalidation, a disk lookup) must not keep the data
        // dir from opening again at once.
        let cache = self.proxy.cache().clone();
        let _ = tokio::task::spawn_blocking(move || cache.close()).await;
        Ok(())
    }
}

#[derive(Clone)]
struct ProxyHandler(Arc<Proxy>);

impl Handler for ProxyHandler {
    fn serve(
        &self,
        req: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
        interims: Option<crate::interim::InterimConnection>,
    ) -> impl Future<Output = http::Response<ProxyBody>> + Send {
        let proxy = self.0.clone();
        async move { proxy.serve_client(req, peer, interims).await }
    }
}

#[derive(Clone)]
struct AdminHandler(Arc<Admin>);

impl Handler for AdminHandler {
    fn serve(
        &self,
        req: http::Request<hyper::body::Incoming>,
        _peer: SocketAddr,
        _interims: Option<crate::interim::InterimConnection>,
    ) -> impl Future<Output = http::Response<ProxyBody>> + Send {
        let admin = self.0.clone();
        async move { admin.handle(req).await }
    }
}

/// The data dir's cache: memory tiers, and the disk tier unless disabled.
/// A disk that fails (full, read-only, I/O errors) leaves a memory-only
/// cache with a warning, `/readyz` and a metric saying so, unless
/// `disk.required`; a data dir that is refused (not revcache's, not
/// private, in use) stops the start.
fn open_cache(settings: &Settings, clock: Clock) -> Result<Cache, ServerError> {
    let config = CacheConfig {
        memory_limit: settings.cache.memory_limit,
        max_entry_bytes: settings.limits.max_cacheable_body_bytes + (64 << 10),
        clock,
    };
    let required = settings.disk.enabled && settings.disk.required;
    let memory_only = |reason: String| {
        tracing::warn!(
            data_dir = %settings.data_dir.display(), error = %reason,
            "the data dir's disk fails; running memory-only (nothing is kept across restarts) until revcache restarts on a working disk"
        );
        if settings.disk.enabled {
            Cache::without_failed_disk(config.clone(), reason)
        } else {
            Cache::new(config.clone())
        }
    };
    let opened = match data_dir::open(&settings.data_dir) {
        Ok(opened) => opened,
        Err(e) if e.is_disk_fault() && !required => return Ok(memory_only(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    if !settings.disk.enabled {
        return Ok(Cache::new(config));
    }
    if let Opened::Older(version) = opened {
        tracing::warn!(
            version,
            "data dir had an older format; its cached entries were dropped"
        );
    }
    let cache = match Cache::with_disk(config.clone(), settings.disk.config(&settings.data_dir)) {
        Ok(cache) => cache,
        Err(e) if e.is_disk_fault() && !required => return Ok(memory_only(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    // An index the disk failed to open leaves the tier disabled (it
    // reopens by itself); a required tier must work from the start.
    if let (true, revcache_core::DiskState::Disabled { reason }) = (required, cache.disk_state()) {
        return Err(DiskError::Unavailable { reason }.into());
    }
    if let Some(stats) = cache.stats().disk {
        tracing::info!(
            entries = stats.entries,
            bytes = stats.bytes(),
            load_ms = stats.load_time.as_millis() as u64,
            "disk tier opened"
        );
    }
    Ok(cache)
}

/// What the shared tier's stream reader does on this node: applies the
/// other nodes' invalidations to this node's tiers, and suspends trust
/// while it cannot read them (it starts over once it can).
fn stream_applier(proxy: &Arc<Proxy>) -> revcache_shared::Applier {
    let invalidator = Arc::downgrade(proxy.invalidator());
    let weak_proxy = Arc::downgrade(proxy);
    Arc::new(move |event| {
        let (Some(invalidator), Some(proxy)) = (invalidator.upgrade(), weak_proxy.upgrade()) else {
            return Box::pin(std::future::ready(()));
        };
        match event {
            StreamEvent::Ledger(records) => {
                // Records of a route this node does not have are dropped.
                let config = proxy.config();
                for record in records {
                    if let Some(ledger) = config
                        .router
                        .routes()
                        .iter()
                        .find(|r| r.id == record.scope)
                        .and_then(|r| r.dialect.ledger())
                    {
                        ledger.record_shared(record);
                    }
                }
                Box::pin(std::future::ready(()))
            }
            StreamEvent::Invalidations(invalidations) => Box::pin(async move {
                let _ = invalidator
                    .invalidate(invalidations, crate::metrics::InvalidationSource::Shared)
                    .await;
            }),
            StreamEvent::Lost => {
                tracing::warn!("the shared tier's invalidations cannot be read; trust suspended");
                invalidator.suspend_trust();
                Box::pin(std::future::ready(()))
            }
            StreamEvent::Resumed => {
                tracing::info!(
                    "the shared tier's invalidations can be read again; trust starts over"
                );
                invalidator.resume_trust();
                Box::pin(std::future::ready(()))
            }
        }
    })
}
