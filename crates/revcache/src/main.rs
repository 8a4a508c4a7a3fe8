//! The `revcache` binary: command line, config file, logging, signals.
//! Everything else lives in `revcache-http` and `revcache-core`.

mod logging;
mod maintenance;
mod manual;
mod progress;

use std::process::ExitCode;

use revcache::{cli, config};

use anyhow::Context;
use clap::Parser;

use crate::cli::{CheckArgs, Cli, Command, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Sweep(args) => maintenance::sweep(args),
        Command::Inspect(args) => maintenance::inspect(args),
        Command::Check(args) => check(args),
        Command::Completions(args) => manual::completions(args),
        Command::Man(args) => manual::man(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("revcache: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `revcache check`: what `serve` would refuse, without binding or opening
/// anything but the TLS files the config names.
fn check(args: CheckArgs) -> anyhow::Result<()> {
    let file = config::load(&args.config)?;
    let serve = ServeArgs {
        config: Some(args.config.clone()),
        ..ServeArgs::default()
    };
    let settings = config::resolve(file, &serve, config::Purpose::Serve)?.settings;
    revcache_http::Router::new(&settings.routes, &settings.limits)?;
    if let Some(tls) = &settings.tls {
        revcache_http::ListenerTls::load(&tls.cert_file, &tls.key_file)?;
    }
    println!(
        "revcache: {} is valid ({} route{})",
        args.config.display(),
        settings.routes.len(),
        if settings.routes.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The settings `args` and the config file they name describe, read now.
fn read_settings(args: &ServeArgs) -> anyhow::Result<config::Resolved> {
    let file = match &args.config {
        Some(path) => config::load(path)?,
        None => config::ConfigFile::default(),
    };
    config::resolve(file, args, config::Purpose::Serve)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let resolved = read_settings(&args)?;
    logging::init(resolved.log_format, resolved.log_level.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("revcache")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // A reload reads the config file again, with the same flags.
        let source = move || {
            read_settings(&args)
                .map(|r| r.settings)
                .map_err(|e| format!("{e:#}"))
        };
        let server =
            revcache_http::Server::bind_reloadable(resolved.settings, Box::new(source)).await?;
        tokio::spawn(reload_on_sighup(server.reloader()));
        if let Some(log) = server.access_log() {
            tokio::spawn(reopen_on_sigusr1(log));
        }
        server.run(shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// Reloads the config on every SIGHUP (the reloader logs and counts the
/// result; a refused config leaves the previous one in force).
async fn reload_on_sighup(reloader: std::sync::Arc<revcache_http::Reloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; reload with POST /reload");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        let _ = reloader.reload().await;
    }
}

/// Reopens the access log on every SIGUSR1 (logrotate's `postrotate`),
/// without reloading the config.
async fn reopen_on_sigusr1(log: std::sync::Arc<revcache_http::AccessLog>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        tracing::warn!("cannot install the SIGUSR1 handler; reopen the access log with SIGHUP");
        return;
    };
    while usr1.recv().await.is_some() {
        tracing::info!("SIGUSR1: reopening the access log");
        log.reopen();
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop revcache with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
