//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A version-aware caching reverse proxy for code-review servers, WebDAV
/// repositories and any HTTP API.
#[derive(Parser, Debug)]
#[command(name = "revcache", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the caching proxy and its admin API.
    #[command(after_help = "\
Examples:
  revcache serve --upstream http://127.0.0.1:8000
  revcache serve --config /etc/revcache/revcache.toml

Flags override the config file. Read Cache-Status response headers to see
what the cache did; GET /metrics on the admin listener for totals.")]
    Serve(ServeArgs),
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Upstream to forward to, e.g. http://127.0.0.1:8000 (one `http` route for every path).
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,

    /// Address to serve clients on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Address of the admin API (/metrics, /healthz, /readyz, /purge) [default: 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// Directory for the partition key and cached data [default: ./revcache-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// TOML configuration file (routes, limits, partitions ...).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Byte budget of the in-memory tier, e.g. 256MiB, 2GiB [default: 256MiB].
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<String>,

    /// Require this bearer token on the admin API (visible in `ps`; prefer --admin-token-file).
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,

    /// Read the admin bearer token from FILE (first line); keeps it out of `ps`.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Log format [default: human].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter, e.g. info, debug, revcache_http=debug [default: info; RUST_LOG also works].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}
