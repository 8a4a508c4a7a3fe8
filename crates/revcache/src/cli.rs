//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A version-aware caching reverse proxy for code-review servers, WebDAV
/// repositories and any HTTP API.
#[derive(Parser, Debug)]
#[command(
    name = "revcache",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_long_help = "\
Signals (serve): SIGHUP reloads the config and reopens the access log;
SIGUSR1 reopens the access log; SIGTERM and SIGINT stop accepting, finish
in-flight requests within limits.shutdown_grace, and exit.

The configuration file, Cache-Status values, the admin API and metrics are
described in README.md; ready-made configs are in examples/."
)]
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

    /// Sweep a data dir's disk tier now: drop idle entries, then the least
    /// recently used while it exceeds its byte budget. Works on a stopped
    /// instance's data dir, or asks the running instance that holds it.
    Sweep(MaintenanceArgs),

    /// Show the entries a data dir holds (key, partition hash, version,
    /// size, tags, age, tier) and totals.
    Inspect(InspectArgs),

    /// Validate a config file without starting anything: every key, and
    /// that the TLS files it names load. Exits 0 when revcache would start
    /// with it, 1 with the reason otherwise (run it before a reload).
    Check(CheckArgs),

    /// Print a shell completion script, e.g.
    /// `revcache completions bash > /usr/share/bash-completion/completions/revcache`.
    Completions(CompletionsArgs),

    /// Print the man page revcache(1), or write it and one page per command
    /// into a directory (`--dir /usr/share/man/man1`).
    Man(ManArgs),
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write revcache.1 and revcache-<command>.1 into DIR instead of
    /// printing revcache.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The config file to validate.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Args, Debug, Default)]
pub struct MaintenanceArgs {
    /// Data dir to work on [default: ./revcache-data, or the config's].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The instance's TOML configuration file (data dir, disk limits, admin address).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Admin address of the running instance, used when it holds the data dir [default: 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// Bearer token for that admin API, read from FILE.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Byte budget to sweep to, e.g. 10GiB [default: the config's, or 10GiB].
    #[arg(long, value_name = "SIZE")]
    pub disk_limit: Option<String>,

    /// Entries unused this long are swept, e.g. 14d [default: the config's, or 14d].
    #[arg(long, value_name = "DURATION")]
    pub disk_max_idle: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct InspectArgs {
    #[command(flatten)]
    pub common: MaintenanceArgs,

    /// Only entries of this request target (path and query), e.g. /changes/?q=topic:x
    #[arg(long, value_name = "PATH_AND_QUERY", conflicts_with = "tag")]
    pub url: Option<String>,

    /// Only entries carrying this tag.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,

    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
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

    /// Byte budget of the disk tier in the data dir, e.g. 10GiB [default: 10GiB].
    #[arg(long, value_name = "SIZE")]
    pub disk_limit: Option<String>,

    /// Sweep disk entries unused for this long, e.g. 14d, 12h [default: 14d].
    #[arg(long, value_name = "DURATION")]
    pub disk_max_idle: Option<String>,

    /// Keep nothing on disk (memory tiers only).
    #[arg(long)]
    pub no_disk: bool,

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
