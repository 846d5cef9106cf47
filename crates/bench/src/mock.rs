//! Deepgram and Supabase Storage stand-ins on loopback, answering in the shapes of
//! `shared/spec/EXTERNAL_APIS.md` after a configurable per-request latency (an async sleep,
//! so thousands of requests can wait at once), and counting what they were asked.
//!
//! Besides counts, each mock keeps the sum of its requests' durations and the first start
//! and last end: their ratio is the average number of requests in flight over the run
//! (Little's law), which shows how well a job keeps its concurrency busy.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{Context, Result};

/// The key the mocks accept (Deepgram `Token …`, Storage `apikey` and `Bearer …`): shaped
/// like a legacy Supabase service-role key (a JWT whose payload has `"role":
/// "service_role"`), so that the clean-up trusts its rights without a probe.
pub const API_KEY: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZSIsInJvbGUiOiJzZXJ2aWNlX3JvbGUifQ.YmVuY2gta2V5LTAxMjM0NTY3ODlhYmNkZWY";
/// The only project the Deepgram mock knows.
pub const PROJECT_ID: &str = "3b1fe4f2-9c3e-4e0a-8f5a-2a54c1d0b7aa";
/// The only bucket the Storage mock has.
pub const BUCKET: &str = "audio";

/// Which stand-in a server plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Deepgram,
    Storage,
}

/// What a mock was asked since the last [`MockStats::reset`].
#[derive(Debug, Default)]
pub struct MockStats {
    /// Every request.
    pub requests: AtomicU64,
    /// `GET /v1/projects/{p}/requests/{r}`.
    pub request_records: AtomicU64,
    /// `GET /v1/projects`.
    pub project_lists: AtomicU64,
    /// `GET /storage/v1/bucket/{b}`.
    pub bucket_checks: AtomicU64,
    /// `DELETE /storage/v1/object/{b}` (bulk).
    pub bulk_deletes: AtomicU64,
    /// `DELETE /storage/v1/object/{b}/{path}` (one object).
    pub single_deletes: AtomicU64,
    /// Object names deleted, by either route.
    pub names_deleted: AtomicU64,
    /// Sum of `i` over deleted names `u<i>/<i>.webm`: with `names_deleted` it shows that
    /// each seeded object was deleted exactly once.
    pub name_index_sum: AtomicU64,
    /// Requests refused or not understood (bad key, unknown route, bad body, 429).
    pub rejected: AtomicU64,
    /// Requests answered 429 because the mock's capacity was in use.
    pub too_many: AtomicU64,
    /// Sum of the requests' durations, in nanoseconds.
    pub busy_ns: AtomicU64,
    /// Start of the first request since the reset, in nanoseconds after the mock started
    /// (`u64::MAX`: none yet).
    pub first_start_ns: AtomicU64,
    /// End of the last request, in nanoseconds after the mock started.
    pub last_end_ns: AtomicU64,
}

impl MockStats {
    pub fn reset(&self) {
        for counter in [
            &self.requests,
            &self.request_records,
            &self.project_lists,
            &self.bucket_checks,
            &self.bulk_deletes,
            &self.single_deletes,
            &self.names_deleted,
            &self.name_index_sum,
            &self.rejected,
            &self.too_many,
            &self.busy_ns,
            &self.last_end_ns,
        ] {
            counter.store(0, Ordering::SeqCst);
        }
        self.first_start_ns.store(u64::MAX, Ordering::SeqCst);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    /// Average requests in flight between the first request and the last answer, and
    /// that span.
    pub fn concurrency(&self) -> Option<(f64, Duration)> {
        let first = self.first_start_ns.load(Ordering::SeqCst);
        let last = self.last_end_ns.load(Ordering::SeqCst);
        if first == u64::MAX || last <= first {
            return None;
        }
        let span = last - first;
        let busy = self.busy_ns.load(Ordering::SeqCst);
        Some((busy as f64 / span as f64, Duration::from_nanos(span)))
    }

    /// When the first request of this window arrived, as an [`Instant`].
    pub fn first_start(&self, epoch: Instant) -> Option<Instant> {
        let first = self.first_start_ns.load(Ordering::SeqCst);
        (first != u64::MAX).then(|| epoch + Duration::from_nanos(first))
    }

    /// When the last answer of this window left, as an [`Instant`].
    pub fn last_end(&self, epoch: Instant) -> Option<Instant> {
        let last = self.last_end_ns.load(Ordering::SeqCst);
        (last != 0).then(|| epoch + Duration::from_nanos(last))
    }
}

struct State {
    kind: Kind,
    latency: Duration,
    /// Requests served at once; beyond, 429 at once without `Retry-After`.
    capacity: Option<u64>,
    admitted: AtomicU64,
    epoch: Instant,
    stats: MockStats,
}

/// A running mock server; stops when dropped.
pub struct Mock {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Mock {
    /// Starts a mock on a free loopback port.
    pub async fn start(kind: Kind, latency: Duration) -> Result<Self> {
        Self::start_with_capacity(kind, latency, None).await
    }

    /// Starts a mock that serves at most `capacity` requests at once and answers any
    /// beyond that with an immediate 429 without `Retry-After` (Deepgram's concurrency
    /// limit); `None` serves everything.
    pub async fn start_with_capacity(
        kind: Kind,
        latency: Duration,
        capacity: Option<u64>,
    ) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a mock server on 127.0.0.1")?;
        let addr = listener
            .local_addr()
            .context("reading the mock's address")?;
        let state = Arc::new(State {
            kind,
            latency,
            capacity,
            admitted: AtomicU64::new(0),
            epoch: Instant::now(),
            stats: MockStats::default(),
        });
        state.stats.reset();
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> &MockStats {
        &self.state.stats
    }

    /// The instant the mock's nanosecond timestamps count from.
    pub fn epoch(&self) -> Instant {
        self.state.epoch
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(Arc::clone(&state), request));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Adds a request's duration to the totals when it ends (or is cancelled).
struct InFlight<'a> {
    state: &'a State,
    start: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let end = nanos_since(self.state.epoch);
        let stats = &self.state.stats;
        stats
            .busy_ns
            .fetch_add(end.saturating_sub(self.start), Ordering::SeqCst);
        stats.last_end_ns.fetch_max(end, Ordering::SeqCst);
    }
}

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let start = nanos_since(state.epoch);
    let stats = &state.stats;
    stats.requests.fetch_add(1, Ordering::SeqCst);
    stats.first_start_ns.fetch_min(start, Ordering::SeqCst);
    let _in_flight = InFlight {
        state: &state,
        start,
    };
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let _admitted = match state.capacity {
        None => None,
        Some(capacity) => {
            if state.admitted.fetch_add(1, Ordering::SeqCst) >= capacity {
                state.admitted.fetch_sub(1, Ordering::SeqCst);
                stats.too_many.fetch_add(1, Ordering::SeqCst);
                stats.rejected.fetch_add(1, Ordering::SeqCst);
                return Ok(too_many_requests());
            }
            Some(Admitted(&state.admitted))
        }
    };
    tokio::time::sleep(state.latency).await;
    let response = match state.kind {
        Kind::Deepgram => deepgram(stats, &parts),
        Kind::Storage => storage(stats, &parts, &body),
    };
    if !response.status().is_success() {
        stats.rejected.fetch_add(1, Ordering::SeqCst);
    }
    Ok(response)
}

/// Frees a slot of the mock's capacity when the answer is ready.
struct Admitted<'a>(&'a AtomicU64);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Deepgram's answer beyond its concurrency limit (no `Retry-After`).
fn too_many_requests() -> Response<Full<Bytes>> {
    json(
        StatusCode::TOO_MANY_REQUESTS,
        r#"{"err_code":"TOO_MANY_REQUESTS","err_msg":"Too many requests. Please try again later.","request_id":"00000000-0000-0000-0000-000000000000"}"#.to_owned(),
    )
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn header<'a>(parts: &'a hyper::http::request::Parts, name: &str) -> &'a str {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The Deepgram Management API: `GET /v1/projects` and
/// `GET /v1/projects/{project}/requests/{request}` (a priced, bare record).
fn deepgram(stats: &MockStats, parts: &hyper::http::request::Parts) -> Response<Full<Bytes>> {
    if header(parts, "authorization") != format!("Token {API_KEY}") {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"00000000-0000-0000-0000-000000000000"}"#.to_owned(),
        );
    }
    let path = parts.uri.path();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["v1", "projects"]) => {
            stats.project_lists.fetch_add(1, Ordering::SeqCst);
            json(
                StatusCode::OK,
                format!(r#"{{"projects":[{{"project_id":"{PROJECT_ID}","name":"bench"}}]}}"#),
            )
        }
        (&Method::GET, ["v1", "projects", project, "requests", request]) => {
            stats.request_records.fetch_add(1, Ordering::SeqCst);
            json(StatusCode::OK, request_record(project, request))
        }
        _ => json(
            StatusCode::NOT_FOUND,
            format!(
                r#"{{"err_code":"NOT_FOUND","err_msg":"no route {} {path}","request_id":"00000000-0000-0000-0000-000000000000"}}"#,
                parts.method
            ),
        ),
    }
}

/// The price the mock gives a request: its first four hex digits, in millionths of a
/// dollar. [`expected_cost_sql`] computes the same in SQL, so the bench can check that
/// every row got its own request's price.
pub fn cost_of(request_id: &str) -> String {
    let micros = request_id
        .get(..4)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .unwrap_or(0);
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// SQL for [`cost_of`] of the request part of `column` (`<project>.<request>`).
pub fn expected_cost_sql(column: &str) -> String {
    format!(
        "(('x' || lpad(substr(split_part({column}, '.', 2), 1, 4), 8, '0'))::bit(32)::int / 1000000.0)::numeric(12,6)"
    )
}

fn request_record(project: &str, request: &str) -> String {
    let usd = cost_of(request);
    format!(
        concat!(
            r#"{{"request_id":"{request}","project_uuid":"{project}","created":"2026-10-28T02:00:15.234567Z","#,
            r#""path":"/v1/listen?model=nova-3&smart_format=true","api_key_id":"0e1b5a3c-bench","#,
            r#""response":{{"details":{{"usd":{usd},"duration":25.933,"total_audio":25.933,"channels":1,"#,
            r#""streams":1,"method":"sync","tier":"nova-3","models":["30089e05-99d1-4376-b32e-c263170674af"],"#,
            r#""tags":[],"features":["punctuate"],"config":{{}}}},"code":200,"completed":"2026-10-28T02:00:17.001Z"}},"#,
            r#""callback":null}}"#
        ),
        request = request,
        project = project,
        usd = usd
    )
}

#[derive(serde::Deserialize)]
struct Prefixes {
    prefixes: Vec<String>,
}

/// Supabase Storage: `GET /storage/v1/bucket/{b}`, bulk `DELETE /storage/v1/object/{b}`
/// and single `DELETE /storage/v1/object/{b}/{path}`. Every named object exists (and is
/// deleted); only [`BUCKET`] exists.
fn storage(
    stats: &MockStats,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
) -> Response<Full<Bytes>> {
    let bearer = format!("Bearer {API_KEY}");
    if header(parts, "apikey") != API_KEY {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"message":"No API key found in request","hint":"No `apikey` request header or url param was found."}"#.to_owned(),
        );
    }
    if header(parts, "authorization") != bearer {
        return storage_error("403", "AccessDenied", "signature verification failed");
    }
    let path = parts.uri.path();
    let Some(rest) = path.strip_prefix("/storage/v1/") else {
        return unknown_route(parts);
    };
    let (route, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match (&parts.method, route) {
        (&Method::GET, "bucket") if !tail.contains('/') => {
            stats.bucket_checks.fetch_add(1, Ordering::SeqCst);
            if tail == BUCKET {
                json(
                    StatusCode::OK,
                    format!(
                        r#"{{"id":"{BUCKET}","name":"{BUCKET}","owner":"","public":false,"file_size_limit":null,"allowed_mime_types":null,"created_at":"2026-01-01T00:00:00.000Z","updated_at":"2026-01-01T00:00:00.000Z"}}"#
                    ),
                )
            } else {
                storage_error("404", "NoSuchBucket", "Bucket not found")
            }
        }
        (&Method::DELETE, "object") => match tail.split_once('/') {
            None => {
                stats.bulk_deletes.fetch_add(1, Ordering::SeqCst);
                let Ok(Prefixes { prefixes }) = serde_json::from_slice::<Prefixes>(body) else {
                    return storage_error(
                        "400",
                        "InvalidRequest",
                        "body must have property prefixes",
                    );
                };
                if prefixes.is_empty() {
                    return storage_error(
                        "400",
                        "InvalidRequest",
                        "body/prefixes must NOT have fewer than 1 items",
                    );
                }
                if tail != BUCKET {
                    return json(StatusCode::OK, "[]".to_owned());
                }
                let mut out = String::with_capacity(prefixes.len() * 480 + 2);
                out.push('[');
                for (n, name) in prefixes.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    count_deleted(stats, name);
                    deleted_object(&mut out, tail, name, n);
                }
                out.push(']');
                json(StatusCode::OK, out)
            }
            Some((bucket, name)) => {
                stats.single_deletes.fetch_add(1, Ordering::SeqCst);
                if bucket != BUCKET {
                    return storage_error("404", "NoSuchBucket", "Bucket not found");
                }
                count_deleted(stats, name);
                json(
                    StatusCode::OK,
                    r#"{"message":"Successfully deleted"}"#.to_owned(),
                )
            }
        },
        _ => unknown_route(parts),
    }
}

fn count_deleted(stats: &MockStats, name: &str) {
    stats.names_deleted.fetch_add(1, Ordering::SeqCst);
    if let Some(index) = name_index(name) {
        stats.name_index_sum.fetch_add(index, Ordering::SeqCst);
    }
}

/// `i` of an object name `u<i>/<i>.webm`.
pub fn name_index(name: &str) -> Option<u64> {
    let (user, file) = name.strip_prefix('u')?.split_once('/')?;
    let index = file.strip_suffix(".webm")?;
    (user == index).then(|| index.parse().ok()).flatten()
}

/// One element of a bulk delete's answer, as Storage writes it.
fn deleted_object(out: &mut String, bucket: &str, name: &str, n: usize) {
    let _ = write!(
        out,
        concat!(
            r#"{{"bucket_id":"{bucket}","name":"{name}","owner":"","owner_id":"","#,
            r#""version":"7d3c{n:08x}-0000-4000-8000-000000000000","id":"9a1b{n:08x}-0000-4000-8000-000000000000","#,
            r#""updated_at":"2026-10-01T12:00:00.000Z","created_at":"2026-10-01T12:00:00.000Z","#,
            r#""last_accessed_at":"2026-10-01T12:00:00.000Z","metadata":{{"eTag":"\"5d41402abc4b2a76b9719d911017c592\"","#,
            r#""size":48213,"mimetype":"audio/webm","cacheControl":"max-age=3600","#,
            r#""lastModified":"2026-10-01T12:00:00.000Z","contentLength":48213,"httpStatusCode":200}},"#,
            r#""user_metadata":{{}}}}"#
        ),
        bucket = bucket,
        name = name,
        n = n
    );
}

fn storage_error(status: &str, code: &str, message: &str) -> Response<Full<Bytes>> {
    // Storage answers its errors with HTTP 400 and the real status as a string.
    json(
        StatusCode::BAD_REQUEST,
        format!(
            r#"{{"statusCode":"{status}","code":"{code}","error":"{code}","message":"{message}"}}"#
        ),
    )
}

fn unknown_route(parts: &hyper::http::request::Parts) -> Response<Full<Bytes>> {
    json(
        StatusCode::NOT_FOUND,
        format!(
            r#"{{"message":"Route {}:{} not found","error":"Not Found","statusCode":404}}"#,
            parts.method,
            parts.uri.path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_come_from_the_request_ids_first_hex_digits() {
        assert_eq!(cost_of("a847f427-4ad5"), "0.043079");
        assert_eq!(cost_of("0000aaaa"), "0.000000");
        assert_eq!(cost_of("ffff"), "0.065535");
        let record: serde_json::Value = serde_json::from_str(&request_record(
            PROJECT_ID,
            "a847f427-4ad5-4d67-9b95-db801e58251c",
        ))
        .expect("the record is JSON");
        assert_eq!(
            record["response"]["details"]["usd"],
            serde_json::json!(0.043079)
        );
        assert_eq!(record["request_id"], "a847f427-4ad5-4d67-9b95-db801e58251c");
    }

    #[test]
    fn deleted_objects_are_json_with_the_storage_fields() {
        let mut out = String::from("[");
        deleted_object(&mut out, "audio", "u7/7.webm", 3);
        out.push(']');
        let value: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(value[0]["name"], "u7/7.webm");
        assert_eq!(value[0]["bucket_id"], "audio");
        assert_eq!(value[0]["metadata"]["mimetype"], "audio/webm");
    }

    #[test]
    fn name_indices_are_read_only_from_seeded_names() {
        assert_eq!(name_index("u12/12.webm"), Some(12));
        assert_eq!(name_index("u12/13.webm"), None);
        assert_eq!(name_index("x/12.webm"), None);
    }
}
