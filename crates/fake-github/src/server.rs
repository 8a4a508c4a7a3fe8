//! The HTTP side: authentication, limits, conditional requests, pagination,
//! and the routes.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::Inner;
use crate::model::*;
use crate::state::{Event, Fail, Ident, State, TokenRec, fail};

pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    inner: Arc<Inner>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let stream = tokio::select! {
            a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
            _ = &mut stopped => return,
        };
        let inner = inner.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(handle(&inner, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(s), service).await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

async fn handle(inner: &Inner, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let read = parts.method == Method::GET || parts.method == Method::HEAD;
    // A write holds the order lock until its webhooks are out.
    let _order = if read {
        None
    } else {
        Some(inner.order.lock().await)
    };
    let (res, events) = {
        let mut st = inner.state.lock().unwrap();
        respond(inner, &mut st, &parts, &body)
    };
    inner.deliver(events).await;
    res
}

enum Payload {
    One(Value),
    List(Vec<Value>, Option<&'static str>),
}

struct Out {
    status: u16,
    payload: Payload,
    last_modified: Option<u64>,
    events: Vec<Event>,
}

fn one(v: Value, lm: u64) -> Out {
    Out {
        status: 200,
        payload: Payload::One(v),
        last_modified: Some(lm),
        events: vec![],
    }
}

fn one_no_lm(v: Value) -> Out {
    Out {
        status: 200,
        payload: Payload::One(v),
        last_modified: None,
        events: vec![],
    }
}

fn list(v: Vec<Value>) -> Out {
    Out {
        status: 200,
        payload: Payload::List(v, None),
        last_modified: None,
        events: vec![],
    }
}

fn wrote(status: u16, v: Value, events: Vec<Event>) -> Out {
    Out {
        status,
        payload: Payload::One(v),
        last_modified: None,
        events,
    }
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: &str) -> Query {
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn classify(method: &Method, segs: &[&str]) -> &'static str {
    if method != Method::GET && method != Method::HEAD {
        return match segs {
            ["graphql"] => "graphql",
            ["app", "installations", _, "access_tokens"] => "access-token",
            _ => "write",
        };
    }
    match segs {
        ["user"] => "user",
        ["rate_limit"] => "rate_limit",
        ["repos", _, _] => "repo",
        ["repos", _, _, rest @ ..] => match rest {
            ["pulls"] => "pulls",
            ["pulls", _] => "pull",
            ["pulls", _, "commits"] => "pull-commits",
            ["pulls", _, "files"] => "pull-files",
            ["pulls", _, "reviews"] => "reviews",
            ["pulls", _, "comments"] => "review-comments",
            ["issues"] => "issues",
            ["issues", _] => "issue",
            ["issues", _, "comments"] => "issue-comments",
            ["issues", _, "labels"] => "labels",
            ["commits", _] => "commit",
            ["commits", _, "status"] => "status",
            ["commits", _, "statuses"] => "statuses",
            ["commits", _, "check-runs"] => "check-runs",
            ["commits", _, "check-suites"] => "check-suites",
            ["check-runs", _] => "check-run",
            ["check-suites", _] => "check-suite",
            ["actions", "runs", _] => "workflow-run",
            ["branches"] => "branches",
            ["branches", ..] => "branch",
            ["git", "ref" | "refs", ..] => "ref",
            _ => "other",
        },
        _ => "other",
    }
}

fn token_of(h: &HeaderMap) -> Option<String> {
    let v = h.get("authorization")?.to_str().ok()?.trim();
    let (scheme, t) = v.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "token" | "bearer" => Some(t.trim().to_owned()),
        _ => None,
    }
}

/// Weak comparison against an `If-None-Match` list (or `*`).
fn inm_matches(h: &HeaderMap, etag: &str) -> bool {
    let opaque = etag.trim_start_matches("W/");
    h.get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == opaque)
}

struct Ctx<'a> {
    parts: &'a Parts,
    request_id: String,
    bucket: String,
    resource: &'static str,
}

fn respond(
    inner: &Inner,
    st: &mut State,
    parts: &Parts,
    body: &[u8],
) -> (Response<Full<Bytes>>, Vec<Event>) {
    st.served.total += 1;
    st.request_seq += 1;
    let path = parts.uri.path().to_owned();
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let class = classify(&parts.method, &segs);
    *st.served.by_class.entry(class).or_default() += 1;
    let resource = if class == "graphql" {
        "graphql"
    } else {
        "core"
    };
    let mut ctx = Ctx {
        parts,
        request_id: format!(
            "{:04X}:{:05X}:{:06X}:{:07X}",
            st.request_seq % 0xFFFF,
            st.clock % 0xFFFFF,
            st.request_seq * 7919 % 0xFFFFFF,
            st.request_seq
        ),
        bucket: "anonymous".into(),
        resource,
    };
    let tok = match token_of(&parts.headers) {
        None => TokenRec {
            ident: Ident::Anonymous,
            repos: None,
            expires: None,
        },
        Some(t) if t == inner.jwt => TokenRec {
            ident: Ident::App,
            repos: None,
            expires: None,
        },
        Some(t) => match st.tokens.get(&t) {
            Some(rec) if rec.expires.is_none_or(|e| st.clock < e) => rec.clone(),
            _ => {
                return (
                    error(st, &ctx, (401, "Bad credentials".into()), &[]),
                    vec![],
                );
            }
        },
    };
    let token_text = token_of(&parts.headers).unwrap_or_default();
    ctx.bucket = match resource {
        "graphql" => format!("graphql:{}", tok.ident.bucket()),
        _ => tok.ident.bucket(),
    };
    if let Some((until, status, _)) = st.secondary {
        if st.clock < until {
            st.served.secondary_limited += 1;
            let wait = (until - st.clock).to_string();
            let msg = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID";
            let res = error(
                st,
                &ctx,
                (status, format!("{msg} {}.", ctx.request_id)),
                &[("retry-after", wait)],
            );
            return (res, vec![]);
        }
        st.secondary = None;
    }
    if segs == ["rate_limit"] && parts.method == Method::GET {
        let v = rate_limit_json(st, &tok.ident);
        return (
            build(st, &ctx, 200, Bytes::from(v.to_string()), vec![]),
            vec![],
        );
    }
    {
        let b = st.bucket(&ctx.bucket);
        if b.used >= b.limit {
            st.served.rate_limited += 1;
            let msg = format!(
                "API rate limit exceeded for {}. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)",
                tok.ident.login()
            );
            let reset = st.bucket(&ctx.bucket).reset;
            let res = error(
                st,
                &ctx,
                (403, msg),
                &[("retry-after", reset.saturating_sub(st.clock).to_string())],
            );
            return (res, vec![]);
        }
    }
    let query = Query::parse(parts.uri.query().unwrap_or(""));
    let read = parts.method == Method::GET || parts.method == Method::HEAD;
    let result = route(st, &tok, &parts.method, &segs, &query, body);
    let out = match result {
        Ok(out) => out,
        Err((301, to)) => {
            count(st, &ctx.bucket);
            let url = format!("{}/repos/{to}", st.base);
            let v = json!({"message": "Moved Permanently", "url": url, "documentation_url": "https://docs.github.com/rest"});
            return (
                build(
                    st,
                    &ctx,
                    301,
                    Bytes::from(v.to_string()),
                    vec![("location", url)],
                ),
                vec![],
            );
        }
        Err(e) => {
            count(st, &ctx.bucket);
            return (error(st, &ctx, e, &[]), vec![]);
        }
    };
    let mut headers: Vec<(&'static str, String)> = vec![];
    let body = match out.payload {
        Payload::One(v) => v,
        Payload::List(items, wrap) => {
            let per_page = query
                .get("per_page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let page = query
                .get("page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let total = items.len();
            let last = total.div_ceil(per_page).max(1);
            if let Some(l) = link(inner, &st.base, parts, &query, page, last, per_page) {
                headers.push(("link", l));
            }
            let slice: Vec<Value> = items
                .into_iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .collect();
            match wrap {
                Some(k) => json!({"total_count": total, k: slice}),
                None => Value::Array(slice),
            }
        }
    };
    let bytes = Bytes::from(body.to_string());
    if read && (200..300).contains(&out.status) {
        let accept = parts
            .headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let etag = format!(
            "W/\"{}\"",
            sha256_hex(&[token_text.as_bytes(), accept.as_bytes(), &bytes])
        );
        headers.push(("cache-control", "private, max-age=60, s-maxage=60".into()));
        headers.push(("etag", etag.clone()));
        if let Some(lm) = out.last_modified {
            headers.push(("last-modified", http_date(lm)));
        }
        if inm_matches(&parts.headers, &etag) {
            st.served.not_modified += 1;
            return (build(st, &ctx, 304, Bytes::new(), headers), vec![]);
        }
    }
    count(st, &ctx.bucket);
    if class == "graphql" {
        st.served.graphql += 1;
    }
    let bytes = if parts.method == Method::HEAD {
        Bytes::new()
    } else {
        bytes
    };
    (build(st, &ctx, out.status, bytes, headers), out.events)
}

fn count(st: &mut State, bucket: &str) {
    st.bucket(bucket).used += 1;
    *st.served.units.entry(bucket.to_owned()).or_default() += 1;
}

fn rate_limit_json(st: &mut State, ident: &Ident) -> Value {
    let core = ident.bucket();
    let mut res = |key: &str| {
        let b = st.bucket(key).clone();
        json!({"limit": b.limit, "used": b.used, "remaining": b.limit.saturating_sub(b.used), "reset": b.reset})
    };
    let c = res(&core);
    let g = res(&format!("graphql:{core}"));
    let search = json!({"limit": 30, "used": 0, "remaining": 30, "reset": st.clock + 60});
    json!({"resources": {"core": c, "graphql": g, "search": search}, "rate": c})
}

/// The `Link` header of a list page, pointing back at the request's host.
fn link(
    inner: &Inner,
    fallback: &str,
    parts: &Parts,
    q: &Query,
    page: usize,
    last: usize,
    per_page: usize,
) -> Option<String> {
    if last <= 1 && page <= 1 {
        return None;
    }
    let host = parts
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| fallback.split("://").nth(1).unwrap_or("").to_owned());
    let scheme = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(if inner.tls { "https" } else { "http" });
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let keep: String =
        q.0.iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .map(|(k, v)| format!("{}={}&", enc(k), enc(v)))
            .collect();
    let url = |p: usize| {
        format!(
            "<{scheme}://{host}{}?{keep}per_page={per_page}&page={p}>",
            parts.uri.path()
        )
    };
    let mut rels = vec![];
    if page > 1 {
        rels.push(format!("{}; rel=\"prev\"", url((page - 1).min(last))));
    }
    if page < last {
        rels.push(format!("{}; rel=\"next\"", url(page + 1)));
        rels.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        rels.push(format!("{}; rel=\"first\"", url(1)));
    }
    Some(rels.join(", "))
}

fn error(
    st: &mut State,
    ctx: &Ctx,
    (status, msg): Fail,
    extra: &[(&'static str, String)],
) -> Response<Full<Bytes>> {
    let v = json!({"message": msg, "documentation_url": "https://docs.github.com/rest", "status": status.to_string()});
    build(st, ctx, status, Bytes::from(v.to_string()), extra.to_vec())
}

fn build(
    st: &mut State,
    ctx: &Ctx,
    status: u16,
    body: Bytes,
    extra: Vec<(&'static str, String)>,
) -> Response<Full<Bytes>> {
    *st.served.by_status.entry(status).or_default() += 1;
    let b = st.bucket(&ctx.bucket).clone();
    let cacheable = extra.iter().any(|(k, _)| *k == "etag");
    let mut res = Response::new(Full::new(body));
    *res.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = res.headers_mut();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            h.append(k, v);
        }
    };
    if status != 304 {
        put("content-type", "application/json; charset=utf-8".into());
    }
    if cacheable {
        put("vary", "Accept, Authorization, Cookie, X-GitHub-OTP".into());
    }
    put("vary", "Accept-Encoding, Accept, X-Requested-With".into());
    put("x-github-media-type", "github.v3; format=json".into());
    put("x-github-api-version-selected", "2022-11-28".into());
    put("x-github-request-id", ctx.request_id.clone());
    put("x-ratelimit-limit", b.limit.to_string());
    put(
        "x-ratelimit-remaining",
        b.limit.saturating_sub(b.used).to_string(),
    );
    put("x-ratelimit-used", b.used.to_string());
    put("x-ratelimit-reset", b.reset.to_string());
    put("x-ratelimit-resource", ctx.resource.into());
    put("access-control-allow-origin", "*".into());
    for (k, v) in extra {
        put(k, v);
    }
    let _ = ctx.parts;
    res
}

fn route(
    st: &mut State,
    tok: &TokenRec,
    method: &Method,
    segs: &[&str],
    q: &Query,
    body: &[u8],
) -> Result<Out, Fail> {
    let json_body: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|_| fail(400, "Problems parsing JSON"))?
    };
    let read = *method == Method::GET || *method == Method::HEAD;
    match segs {
        ["graphql"] if *method == Method::POST => {
            if tok.ident == Ident::Anonymous {
                return Err(fail(401, "This endpoint requires you to be authenticated."));
            }
            Ok(wrote(
                200,
                json!({"data": {"viewer": {"login": tok.ident.login()}}}),
                vec![],
            ))
        }
        ["user"] if read => match &tok.ident {
            Ident::User(u) => {
                let mut v = user_json(&st.base, u);
                v["name"] = json!(u);
                v["email"] = Value::Null;
                Ok(one_no_lm(v))
            }
            Ident::Anonymous => Err(fail(401, "Requires authentication")),
            _ => Err(fail(403, "Resource not accessible by integration")),
        },
        ["app", "installations", id, "access_tokens"] if *method == Method::POST => {
            if tok.ident != Ident::App {
                return Err(fail(401, "A JSON web token could not be decoded"));
            }
            let id: u64 = id.parse().map_err(|_| fail(404, "Not Found"))?;
            access_token(st, id, &json_body)
        }
        ["repos", owner, name, rest @ ..] => {
            let full = format!("{owner}/{name}");
            let rid = match st.rid(&full) {
                Ok(r) => r,
                Err(e) => {
                    return match st.moved.get(&full.to_ascii_lowercase()) {
                        Some(r) if st.repos.contains_key(r) && st.can_read(tok, *r) => {
                            Err((301, st.repo(*r).full_name()))
                        }
                        _ => Err(e),
                    };
                }
            };
            if !st.can_read(tok, rid) {
                return Err(fail(404, "Not Found"));
            }
            if read {
                return read_repo(st, rid, rest, q);
            }
            match tok.ident {
                Ident::Anonymous => return Err(fail(401, "Requires authentication")),
                _ if !st.covers(tok, rid) => {
                    return Err(fail(403, "Resource not accessible by integration"));
                }
                _ => {}
            }
            write_repo(st, tok, rid, method, rest, &json_body)
        }
        _ => Err(fail(404, "Not Found")),
    }
}

fn access_token(st: &mut State, id: u64, body: &Value) -> Result<Out, Fail> {
    let inst = st
        .installations
        .get(&id)
        .cloned()
        .ok_or_else(|| fail(404, "Not Found"))?;
    let covered: Vec<u64> = match &inst.repos {
        Some(s) => s
            .iter()
            .copied()
            .filter(|r| st.repos.contains_key(r))
            .collect(),
        None => st.repos.keys().copied().collect(),
    };
    let bad = || {
        fail(
            422,
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
        )
    };
    let mut wanted: Option<BTreeSet<u64>> = None;
    if let Some(names) = body["repositories"].as_array() {
        let set = wanted.get_or_insert_with(BTreeSet::new);
        for n in names {
            let n = n.as_str().unwrap_or("");
            let r = covered
                .iter()
                .copied()
                .find(|r| {
                    st.repo(*r).name.eq_ignore_ascii_case(n)
                        || st.repo(*r).full_name().eq_ignore_ascii_case(n)
                })
                .ok_or_else(bad)?;
            set.insert(r);
        }
    }
    if let Some(ids) = body["repository_ids"].as_array() {
        let set = wanted.get_or_insert_with(BTreeSet::new);
        for i in ids {
            let r = i.as_u64().filter(|r| covered.contains(r)).ok_or_else(bad)?;
            set.insert(r);
        }
    }
    let level = |s: &str| match s {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => 0,
    };
    let permissions = match body["permissions"].as_object() {
        Some(want) => {
            for (k, v) in want {
                let have = inst.permissions[k].as_str().map_or(0, level);
                if level(v.as_str().unwrap_or("")) > have || have == 0 {
                    return Err(fail(
                        422,
                        "The permissions requested are not granted to this installation.",
                    ));
                }
            }
            Value::Object(want.clone())
        }
        None => inst.permissions.clone(),
    };
    let t = st.token("ghs");
    let expires = st.clock + 3600;
    st.tokens.insert(
        t.clone(),
        TokenRec {
            ident: Ident::Installation(id),
            repos: wanted.clone(),
            expires: Some(expires),
        },
    );
    let selection = if wanted.is_some() || inst.repos.is_some() {
        "selected"
    } else {
        "all"
    };
    let mut v = json!({
        "token": t,
        "expires_at": rfc3339(expires),
        "permissions": permissions,
        "repository_selection": selection,
    });
    if selection == "selected" {
        let ids: Vec<u64> = wanted.map_or(covered, |w| w.into_iter().collect());
        v["repositories"] = Value::Array(ids.iter().map(|r| st.render(*r).repo()).collect());
    }
    Ok(wrote(201, v, vec![]))
}

/// The key a read's visibility lag is tracked under.
fn lag_key(st: &State, rid: u64, rest: &[&str]) -> Option<String> {
    let repo = st.repo(rid);
    Some(match rest {
        [] => "repo".into(),
        ["pulls"] | ["issues"] => "pulls".into(),
        ["pulls" | "issues", n, ..] => format!("issue#{n}"),
        ["commits", r, ..] => {
            let sha = repo.resolve(r).unwrap_or_default();
            let cands = [
                format!("sha:{r}"),
                format!("sha:{sha}"),
                format!("branch:{r}"),
            ];
            cands
                .iter()
                .find(|k| st.has_lag(rid, k))
                .cloned()
                .unwrap_or_else(|| format!("sha:{sha}"))
        }
        ["check-runs", id] => format!("check-run:{id}"),
        ["actions", "runs", id] => format!("run:{id}"),
        ["branches", b @ ..] if !b.is_empty() => format!("branch:{}", b.join("/")),
        ["git", "ref" | "refs", "heads", b @ ..] => format!("branch:{}", b.join("/")),
        ["git", "ref" | "refs", "tags", t @ ..] => format!("tag:{}", t.join("/")),
        _ => return None,
    })
}

fn read_repo(st: &mut State, rid: u64, rest: &[&str], q: &Query) -> Result<Out, Fail> {
    let key = lag_key(st, rid, rest);
    let snap = key.as_deref().and_then(|k| st.lag_snapshot(rid, k));
    let repo: &Repo = snap.as_deref().unwrap_or_else(|| st.repo(rid));
    let r = Render {
        base: &st.base,
        repo,
    };
    let nf = || fail(404, "Not Found");
    let issue = |n: &str| -> Result<&Issue, Fail> {
        n.parse::<u64>()
            .ok()
            .and_then(|n| repo.issues.get(&n))
            .ok_or_else(nf)
    };
    let pull = |n: &str| -> Result<(&Issue, &Pull), Fail> {
        let i = issue(n)?;
        Ok((i, i.pull.as_ref().ok_or_else(nf)?))
    };
    let resolve = |rf: &str| -> Result<String, Fail> {
        repo.resolve(rf)
            .ok_or_else(|| (422, format!("No commit found for SHA: {rf}")))
    };
    let id = |s: &str| s.parse::<u64>().map_err(|_| nf());
    Ok(match rest {
        [] => one(r.repo(), repo.updated_at),
        ["pulls"] | ["issues"] => {
            let pulls = rest == ["pulls"];
            let state = q.get("state").unwrap_or("open");
            let mut v: Vec<&Issue> = repo
                .issues
                .values()
                .filter(|i| !pulls || i.pull.is_some())
                .filter(|i| match state {
                    "closed" => !i.open,
                    "all" => true,
                    _ => i.open,
                })
                .filter(|i| {
                    let p = i.pull.as_ref();
                    q.get("base").is_none_or(|b| p.is_some_and(|p| p.base_ref == b))
                        && q.get("head").is_none_or(|h| {
                            p.is_some_and(|p| h.rsplit(':').next() == Some(p.head_ref.as_str()))
                        })
                })
                .collect();
            let sort = q.get("sort").unwrap_or("created");
            if sort == "updated" {
                v.sort_by_key(|i| (i.updated_at, i.number));
            }
            let desc = q.get("direction").map_or(sort == "created", |d| d == "desc");
            if desc {
                v.reverse();
            }
            list(
                v.iter()
                    .map(|i| if pulls { r.pull(i, false) } else { r.issue(i) })
                    .collect(),
            )
        }
        ["pulls", n] => {
            let (i, _) = pull(n)?;
            one(r.pull(i, true), i.updated_at)
        }
        ["pulls", n, "commits"] => {
            let (_, p) = pull(n)?;
            list(repo.pull_commits(p).iter().map(|c| r.commit(c, false)).collect())
        }
        ["pulls", n, "files"] => {
            let (_, p) = pull(n)?;
            list(repo.pull_commits(p).iter().map(|c| r.file(c)).collect())
        }
        ["pulls", n, "reviews"] => {
            let (i, p) = pull(n)?;
            list(p.reviews.iter().map(|rv| r.review(i, rv)).collect())
        }
        ["pulls", n, "comments"] => {
            pull(n)?;
            list(vec![])
        }
        ["issues", n] => {
            let i = issue(n)?;
            one(r.issue(i), i.updated_at)
        }
        ["issues", n, "comments"] => {
            let i = issue(n)?;
            list(i.comments.iter().map(|c| r.comment(i, c)).collect())
        }
        ["issues", n, "labels"] => {
            let i = issue(n)?;
            list(i.labels.iter().map(|l| r.label(l)).collect())
        }
        ["commits", rf] => {
            let sha = resolve(rf)?;
            let c = &repo.commits[&sha];
            one(r.commit(c, true), c.date)
        }
        ["commits", rf, "status"] => one_no_lm(r.combined_status(&resolve(rf)?)),
        ["commits", rf, "statuses"] => {
            let sha = resolve(rf)?;
            list(
                repo.statuses
                    .iter()
                    .rev()
                    .filter(|s| s.sha == sha)
                    .map(|s| r.status(s))
                    .collect(),
            )
        }
        ["commits", rf, "check-runs"] => {
            let sha = resolve(rf)?;
            let runs = repo
                .check_runs
                .values()
                .rev()
                .filter(|c| c.head_sha == sha)
                .filter(|c| q.get("check_name").is_none_or(|n| c.name == n))
                .filter(|c| q.get("status").is_none_or(|s| c.status == s))
                .map(|c| r.check_run(c))
                .collect();
            let mut out = list(runs);
            out.payload = match out.payload {
                Payload::List(v, _) => Payload::List(v, Some("check_runs")),
                p => p,
            };
            out
        }
        ["commits", rf, "check-suites"] => {
            let sha = resolve(rf)?;
            let suites = repo
                .check_suites
                .values()
                .filter(|s| s.head_sha == sha)
                .map(|s| r.check_suite(s))
                .collect();
            Out {
                payload: Payload::List(suites, Some("check_suites")),
                ..list(vec![])
            }
        }
        ["check-runs", i] => {
            let c = repo.check_runs.get(&id(i)?).ok_or_else(nf)?;
            one(r.check_run(c), c.updated_at)
        }
        ["check-suites", i] => {
            let s = repo.check_suites.get(&id(i)?).ok_or_else(nf)?;
            one(r.check_suite(s), s.updated_at)
        }
        ["actions", "runs", i] => {
            let w = repo.workflow_runs.get(&id(i)?).ok_or_else(nf)?;
            one(r.workflow_run(w), w.updated_at)
        }
        ["branches"] => list(
            repo.branches
                .iter()
                .map(|(b, sha)| json!({"name": b, "commit": {"sha": sha, "url": format!("{}/repos/{}/commits/{sha}", r.base, repo.full_name())}, "protected": false}))
                .collect(),
        ),
        ["branches", b @ ..] if !b.is_empty() => {
            let b = b.join("/");
            let sha = repo
                .branches
                .get(&b)
                .ok_or_else(|| fail(404, "Branch not found"))?;
            one(r.branch(&b, sha), repo.commits[sha].date)
        }
        ["git", "ref" | "refs", kind @ ("heads" | "tags"), name @ ..] if !name.is_empty() => {
            let name = name.join("/");
            let map = if *kind == "heads" { &repo.branches } else { &repo.tags };
            let sha = map.get(&name).ok_or_else(nf)?;
            one_no_lm(r.git_ref(&format!("refs/{kind}/{name}"), sha))
        }
        _ => return Err(nf()),
    })
}

fn write_repo(
    st: &mut State,
    tok: &TokenRec,
    rid: u64,
    method: &Method,
    rest: &[&str],
    body: &Value,
) -> Result<Out, Fail> {
    let sender = tok.ident.login();
    let num = |s: &str| s.parse::<u64>().map_err(|_| fail(404, "Not Found"));
    let text = |k: &str| body[k].as_str().map(str::to_owned);
    let m = method.as_str();
    match (m, rest) {
        ("PATCH", []) => {
            let mut events = vec![];
            let mut v = st.render(rid).repo();
            if let Some(p) = body["private"].as_bool() {
                let (rv, ev) = st.set_private(rid, p, &sender)?;
                v = rv;
                events.extend(ev);
            }
            if let Some(n) = text("name").filter(|n| *n != st.repo(rid).name) {
                let (rv, ev) = st.rename(rid, &n, &sender)?;
                v = rv;
                events.extend(ev);
            }
            Ok(wrote(200, v, events))
        }
        ("POST", ["issues"]) => {
            let title = text("title").ok_or_else(|| fail(422, "Validation Failed"))?;
            let (n, ev) = st.open(
                rid,
                &title,
                &text("body").unwrap_or_default(),
                None,
                &sender,
            )?;
            let r = st.render(rid);
            Ok(wrote(201, r.issue(&r.repo.issues[&n]), ev))
        }
        ("POST", ["pulls"]) => {
            let (Some(title), Some(head), Some(base)) = (text("title"), text("head"), text("base"))
            else {
                return Err(fail(422, "Validation Failed"));
            };
            let head = head.rsplit(':').next().unwrap_or("").to_owned();
            let (n, ev) = st.open(
                rid,
                &title,
                &text("body").unwrap_or_default(),
                Some((&head, &base)),
                &sender,
            )?;
            let r = st.render(rid);
            Ok(wrote(201, r.pull(&r.repo.issues[&n], true), ev))
        }
        ("POST", ["issues", n, "comments"]) => {
            let b = text("body").ok_or_else(|| fail(422, "Validation Failed"))?;
            let (v, ev) = st.comment(rid, num(n)?, &b, &sender)?;
            Ok(wrote(201, v, ev))
        }
        ("POST" | "PUT", ["issues", n, "labels"]) => {
            let arr = body["labels"]
                .as_array()
                .or(body.as_array())
                .cloned()
                .unwrap_or_default();
            let names: Vec<String> = arr
                .iter()
                .filter_map(|l| l.as_str().or(l["name"].as_str()).map(str::to_owned))
                .collect();
            let (v, ev) = st.label(rid, num(n)?, &names, true, &sender)?;
            Ok(wrote(200, v, ev))
        }
        ("DELETE", ["issues", n, "labels", name]) => {
            let (v, ev) = st.label(rid, num(n)?, &[(*name).to_owned()], false, &sender)?;
            Ok(wrote(200, v, ev))
        }
        ("PATCH", ["issues" | "pulls", n]) => {
            let n = num(n)?;
            if rest[0] == "pulls" && st.repo(rid).issues.get(&n).is_none_or(|i| i.pull.is_none()) {
                return Err(fail(404, "Not Found"));
            }
            let open = match body["state"].as_str() {
                Some("open") => Some(true),
                Some("closed") => Some(false),
                Some(_) => return Err(fail(422, "Validation Failed")),
                None => None,
            };
            let (mut v, ev) = st.edit(rid, n, text("title"), text("body"), open, &sender)?;
            if rest[0] == "issues" {
                let r = st.render(rid);
                v = r.issue(&r.repo.issues[&n]);
            }
            Ok(wrote(200, v, ev))
        }
        ("PUT", ["pulls", n, "merge"]) => {
            let (sha, ev) = st.merge(rid, num(n)?, &sender)?;
            Ok(wrote(
                200,
                json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
                ev,
            ))
        }
        ("POST", ["pulls", n, "reviews"]) => {
            let state = text("event").unwrap_or_else(|| "COMMENT".into());
            let (v, ev) = st.review(
                rid,
                num(n)?,
                &state,
                &text("body").unwrap_or_default(),
                &sender,
            )?;
            Ok(wrote(200, v, ev))
        }
        ("POST", ["statuses", sha]) => {
            let state = text("state").ok_or_else(|| fail(422, "Validation Failed"))?;
            let ctx = text("context").unwrap_or_else(|| "default".into());
            let (v, ev) = st.set_status(rid, sha, &ctx, &state, &sender)?;
            Ok(wrote(201, v, ev))
        }
        ("POST", ["check-runs"]) => {
            let (Some(name), Some(sha)) = (text("name"), text("head_sha")) else {
                return Err(fail(422, "Validation Failed"));
            };
            let status = text("status").unwrap_or_else(|| "queued".into());
            let (v, ev) = st.create_check_run(
                rid,
                &sha,
                &name,
                &status,
                text("conclusion").as_deref(),
                &sender,
            )?;
            Ok(wrote(201, v, ev))
        }
        ("PATCH", ["check-runs", id]) => {
            let (v, ev) = st.update_check_run(
                rid,
                num(id)?,
                text("status").as_deref(),
                text("conclusion").as_deref(),
                &sender,
            )?;
            Ok(wrote(200, v, ev))
        }
        _ => Err(fail(404, "Not Found")),
    }
}
