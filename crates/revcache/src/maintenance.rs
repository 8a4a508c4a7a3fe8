//! `revcache sweep` and `revcache inspect`: work on a data dir directly when
//! no instance holds it, or ask the running instance's admin API when one
//! does (the index allows one process at a time).

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use http::header::{AUTHORIZATION, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use revcache_core::{Cache, CacheConfig, DiskError};
use revcache_http::{InspectRow as Row, inspect_rows_reporting};

use crate::cli::{InspectArgs, MaintenanceArgs, ServeArgs};
use crate::config::{self, Purpose, Resolved};
use crate::progress::{Progress, count};

fn resolve(args: &MaintenanceArgs) -> anyhow::Result<Resolved> {
    let file = match &args.config {
        Some(path) => config::load(path)?,
        None => config::ConfigFile::default(),
    };
    let serve = ServeArgs {
        data_dir: args.data_dir.clone(),
        admin_listen: args.admin_listen,
        admin_token_file: args.admin_token_file.clone(),
        disk_limit: args.disk_limit.clone(),
        disk_max_idle: args.disk_max_idle.clone(),
        ..ServeArgs::default()
    };
    config::resolve(file, &serve, Purpose::Maintenance)
}

/// The data dir's cache, or `None` when a running instance holds it.
fn open_local(r: &Resolved) -> anyhow::Result<Option<Cache>> {
    let dir = &r.settings.data_dir;
    if !dir.join("FORMAT").exists() {
        bail!(
            "{} is not a revcache data dir (no FORMAT file); pass --data-dir",
            dir.display()
        );
    }
    revcache_core::data_dir::open(dir)?;
    match Cache::with_disk(CacheConfig::default(), r.settings.disk.config(dir)) {
        Ok(cache) => Ok(Some(cache)),
        Err(DiskError::InUse { .. }) => Ok(None),
        Err(e) => Err(e).context("cannot open the disk tier"),
    }
}

pub fn sweep(args: MaintenanceArgs) -> anyhow::Result<()> {
    let r = resolve(&args)?;
    let mut progress = Progress::on_terminal();
    match open_local(&r)? {
        Some(cache) => {
            let disk = cache.disk().ok_or_else(|| anyhow!("no disk tier"))?;
            // Step by step rather than `sweep_all`, to show each step.
            let (mut idle, mut over_budget) = (0, 0);
            loop {
                let step = disk.sweep()?;
                idle += step.idle;
                over_budget += step.over_budget;
                progress.show(|| {
                    format!(
                        "sweep: {} idle and {} over-budget entries removed, {} left",
                        count(idle),
                        count(over_budget),
                        count(disk.stats().entries)
                    )
                });
                if !step.more {
                    break;
                }
            }
            progress.finish();
            let s = disk.stats();
            println!(
                "swept {idle} idle and {over_budget} over-budget entries; {} entries, {} bytes remain",
                s.entries,
                s.bytes()
            );
        }
        None => {
            let body = admin(
                &r,
                Method::POST,
                "/sweep",
                &mut progress,
                "sweep: the running instance is sweeping",
            )?;
            progress.finish();
            let v: serde_json::Value = serde_json::from_str(&body)?;
            println!(
                "swept {} idle and {} over-budget entries (by the running instance)",
                v["idle"], v["over_budget"]
            );
        }
    }
    Ok(())
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let r = resolve(&args.common)?;
    let mut progress = Progress::on_terminal();
    let rows: Vec<Row> = match open_local(&r)? {
        Some(cache) => inspect_rows_reporting(
            &cache,
            args.url.as_deref(),
            args.tag.as_deref(),
            &mut |read, total| {
                progress.show(|| {
                    format!(
                        "inspect: {} of {} disk entries read ({}%)",
                        count(read),
                        count(total),
                        (read * 100).checked_div(total).unwrap_or(100)
                    )
                })
            },
        )?,
        None => {
            let mut query = Vec::new();
            if let Some(u) = &args.url {
                query.push(format!("url={}", percent_encode(u)));
            }
            if let Some(t) = &args.tag {
                query.push(format!("tag={}", percent_encode(t)));
            }
            // The admin API answers a page at a time; `next` is the next one.
            query.push("limit=1000".into());
            let mut path = format!("/inspect?{}", query.join("&"));
            let mut rows = Vec::new();
            loop {
                let waiting = format!(
                    "inspect: {} entries from the running instance, asking for more",
                    count(rows.len() as u64)
                );
                let body = admin(&r, Method::GET, &path, &mut progress, &waiting)?;
                let v: serde_json::Value = serde_json::from_str(&body)?;
                let page: Vec<Row> = serde_json::from_value(v["entries"].clone())?;
                rows.extend(page);
                match v["next"].as_str() {
                    Some(next) if next.starts_with("/inspect?") => path = next.to_owned(),
                    _ => break,
                }
            }
            rows
        }
    };
    progress.finish();
    if args.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
        return Ok(());
    }
    println!(
        "{:<8} {:>8} {:>10} {:<16} {:<18} {:<24} KEY",
        "TIER", "AGE", "SIZE", "VERSION", "PARTITION", "TAGS"
    );
    for row in &rows {
        let size = format!(
            "{}{}",
            human_bytes(row.size),
            if row.in_file { "*" } else { "" }
        );
        let tags = if row.tags.is_empty() {
            "-".into()
        } else {
            row.tags.join(",")
        };
        println!(
            "{:<8} {:>8} {:>10} {:<16} {:<18} {:<24} {}",
            row.tier,
            human_age(row.age_secs),
            size,
            truncate(&row.version, 16),
            row.partition,
            truncate(&tags, 24),
            row.key
        );
    }
    let bytes: u64 = rows.iter().map(|r| r.size).sum();
    let in_files = rows.iter().filter(|r| r.in_file).count();
    println!(
        "{} entries, {} of bodies ({} in files, marked *)",
        rows.len(),
        human_bytes(bytes),
        in_files
    );
    Ok(())
}

/// One request to the running instance's admin API, showing `waiting`
/// and the seconds it has taken while it runs. The maintenance commands
/// are synchronous: the request runs on a runtime of its own.
fn admin(
    r: &Resolved,
    method: Method,
    path: &str,
    progress: &mut Progress,
    waiting: &str,
) -> anyhow::Result<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            let request = admin_request(r, method, path);
            tokio::pin!(request);
            let asked = std::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    answer = &mut request => return answer,
                    _ = tick.tick() => {
                        let secs = asked.elapsed().as_secs();
                        progress.show(|| format!("{waiting}… {secs}s"));
                    }
                }
            }
        })
}

/// [`admin`]'s request, over hyper's HTTP/1 client on one connection.
async fn admin_request(r: &Resolved, method: Method, path: &str) -> anyhow::Result<String> {
    let addr = r.settings.admin_listen;
    let no_answer = || {
        format!(
            "the data dir {} is in use by a running revcache, and its admin API at {addr} does not answer; pass --admin-listen",
            r.settings.data_dir.display()
        )
    };
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .with_context(no_answer)?
        .with_context(no_answer)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(no_answer)?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(HOST, addr.to_string());
    if let Some(token) = &r.settings.admin_token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .with_context(|| format!("cannot build the admin API request {method} {path}"))?;
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(600), exchange)
        .await
        .with_context(|| format!("admin API {method} {path} did not answer within 10 minutes"))?
        .with_context(|| format!("admin API {method} {path} failed"))?;
    let body = String::from_utf8(body.into())
        .with_context(|| format!("admin API {method} {path} answered a body that is not UTF-8"))?;
    if status != StatusCode::OK {
        bail!(
            "admin API {method} {path} answered {}: {}",
            status.as_u16(),
            body.trim()
        );
    }
    Ok(body)
}

/// What a query parameter value escapes: everything but unreserved
/// characters, `/` and `:`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/')
    .remove(b':');

fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn human_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
