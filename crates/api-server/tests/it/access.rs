//! The access boundary (README "Security"), against the real server process over a raw TCP
//! socket: an HTTP client library would normalise the hostile spellings of a path before
//! sending them and so hide exactly the bug these tests are about.

use std::time::Duration;

use db::testing::TestDatabase;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::server::ServerProcess;

const ADMIN: &str = "access-admin-token-0123456789";
const VIEWER: &str = "access-viewer-token-0123456789";
const METRICS: &str = "access-metrics-token-0123456789";

/// A response as read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    raw: String,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Reads the whole answer; of an event stream (`GET /events`, which never ends by itself)
/// the head and what came with it.
async fn read_answer(
    stream: &mut tokio::net::TcpStream,
    bytes: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        bytes.extend_from_slice(&chunk[..n]);
        let raw = String::from_utf8_lossy(bytes).to_ascii_lowercase();
        if let Some((head, _)) = raw.split_once("\r\n\r\n") {
            if head.contains("\r\ncontent-type: text/event-stream") {
                return Ok(());
            }
        }
    }
}

/// Sends `method target` exactly as written, with `headers`, and reads the whole answer.
async fn send(port: u16, method: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut request = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        read_answer(&mut stream, &mut bytes),
    )
    .await
    .expect("the server answers")
    .unwrap();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        raw,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

/// Every spelling of `path` (a routable `/internal/...` path) that a client might send to
/// get around a check on the raw string: percent-encoded letters (both hex cases) and
/// slashes, doubled slashes, dot segments, trailing slashes, `;` parameters, upper case,
/// the absolute form.
fn hostile_spellings(path: &str, port: u16) -> Vec<String> {
    let rest = path.strip_prefix("/internal").expect("an internal path");
    let encode_all = |s: &str, upper: bool| -> String {
        s.bytes()
            .map(|b| {
                if b == b'/' {
                    "/".to_owned()
                } else if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect()
    };
    let last = path.rfind('/').unwrap();
    let (dir, leaf) = path.split_at(last + 1);
    vec![
        path.to_owned(),
        format!("/%69nternal{rest}"),
        format!("/%69%6E%74%65%72%6E%61%6C{rest}"),
        format!("/in%74ern%61l{rest}"),
        encode_all(path, true),
        encode_all(path, false),
        format!("{dir}{}", encode_all(leaf, false)),
        format!("//internal{rest}"),
        format!(
            "///internal//{}",
            rest.trim_start_matches('/').replace('/', "//")
        ),
        format!("{path}/"),
        format!("{path}//"),
        format!("/%69nternal{rest}/"),
        format!("/./internal{rest}"),
        format!("/internal/.{rest}"),
        format!("/nothing/../internal{rest}"),
        format!("/internal/api/../api{}", rest.trim_start_matches("/api")),
        format!("/%2e/internal{rest}"),
        format!("/internal/%2e%2e/internal{rest}"),
        format!("/internal{}", rest.replace('/', "%2F")),
        format!("/internal{}", rest.replacen('/', "%2f", 1)),
        format!("/internal;a=b{rest}"),
        format!("{path};a=b"),
        format!("{dir};x/{leaf}"),
        format!("{path}?x=1"),
        format!("{path}%3Fx=1"),
        format!("{path}%00"),
        format!("{path}%20"),
        format!("/%2569nternal{rest}"),
        format!("/INTERNAL{rest}"),
        format!("/Internal{rest}"),
        format!("http://127.0.0.1:{port}{path}"),
        format!("http://127.0.0.1:{port}/%69nternal{rest}"),
    ]
}

/// The routes of the server's own OpenAPI description under `/internal`, with their
/// methods and path parameters filled in, so a route added later is covered too.
async fn internal_routes(server: &ServerProcess) -> Vec<(String, String)> {
    let doc = send(
        server.port,
        "GET",
        "/internal/api/v1/openapi.json",
        &[(bearer(ADMIN).0, &bearer(ADMIN).1)],
    )
    .await;
    assert_eq!(doc.status, 200, "{}", doc.raw);
    let mut routes = vec![("GET".to_owned(), "/internal/api/v1/openapi.json".to_owned())];
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        if !path.starts_with("/internal/") {
            continue;
        }
        let concrete = path
            .replace("{job_name}", "cost_update")
            .replace("{job}", "cost_update")
            .replace("{id}", "1");
        assert!(!concrete.contains('{'), "fill in the parameter of {path}");
        for method in item.as_object().unwrap().keys() {
            routes.push((method.to_ascii_uppercase(), concrete.clone()));
        }
    }
    assert!(routes.len() >= 6, "{routes:?}");
    routes
}

async fn start(db: &TestDatabase, extra: &[(&str, &str)]) -> ServerProcess {
    let mut vars = vec![
        ("DATABASE_URL", db.url()),
        ("RUST_LOG", "warn"),
        // cost_update is enabled, its Deepgram unreachable: a run that starts ends fast.
        ("DEEPGRAM_API_KEY", "access-deepgram-key"),
        ("DEEPGRAM_API_URL", "http://127.0.0.1:9"),
    ];
    vars.extend_from_slice(extra);
    ServerProcess::start(&vars).await
}

async fn executions_count(db: &TestDatabase) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.connect().await;
    diesel::sql_query("SELECT count(*) AS n FROM job_executions")
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_an_internal_path_gets_past_the_token_check() {
    let db = TestDatabase::new().await;
    let server = start(&db, &[("ADMIN_TOKEN", ADMIN), ("VIEWER_TOKEN", VIEWER)]).await;
    let port = server.port;
    let routes = internal_routes(&server).await;

    let mut checked = 0;
    for (method, path) in &routes {
        for target in hostile_spellings(path, port) {
            for verb in ["GET", "POST", method.as_str()] {
                for headers in [
                    vec![],
                    vec![("Authorization", "Bearer wrong-token".to_owned())],
                    vec![("Authorization", format!("Basic {ADMIN}"))],
                ] {
                    let headers: Vec<(&str, &str)> =
                        headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let answer = send(port, verb, &target, &headers).await;
                    let refused = (answer.status == 401 && answer.code() == "unauthorized")
                        || (answer.status == 404 && answer.code() == "not_found");
                    assert!(
                        refused,
                        "{verb} {target} {headers:?} was not refused:\n{}",
                        answer.raw
                    );
                    checked += 1;
                }
            }
            // A viewer may read but never write, however the path is spelled.
            let answer = send(
                port,
                "POST",
                &target,
                &[("Authorization", &bearer(VIEWER).1)],
            )
            .await;
            assert!(
                (answer.status == 403 && answer.code() == "forbidden")
                    || (answer.status == 404 && answer.code() == "not_found"),
                "viewer POST {target} was not refused:\n{}",
                answer.raw
            );
        }
    }
    assert!(checked > 1000, "{checked}");
    assert_eq!(executions_count(&db).await, 0, "a run was started");

    // The spellings do reach the handlers with the token: the refusals above are the
    // check's doing, not the router's.
    for target in [
        "/%69nternal/api/v1/jobs/status",
        "//internal//api/v1/jobs/",
        "/internal/api/v1/jobs/status/",
        "/in%74ernal/api/v1/jobs/executions",
    ] {
        let answer = send(port, "GET", target, &[("Authorization", &bearer(ADMIN).1)]).await;
        assert_eq!(answer.status, 200, "{target}: {}", answer.raw);
        let answer = send(port, "GET", target, &[("Authorization", &bearer(VIEWER).1)]).await;
        assert_eq!(answer.status, 200, "viewer {target}: {}", answer.raw);
    }
    // Unknown routes still answer 404 JSON, inside /internal once the token is valid.
    for target in ["/nope", "/internal/api/v1/nope", "/internal%2Fapi/v1/jobs"] {
        let answer = send(port, "GET", target, &[("Authorization", &bearer(ADMIN).1)]).await;
        assert_eq!(
            (answer.status, answer.code()),
            (404, "not_found"),
            "{target}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_reads_everything_and_starts_nothing_while_the_admin_run_records_admin() {
    let db = TestDatabase::new().await;
    let server = start(&db, &[("ADMIN_TOKEN", ADMIN), ("VIEWER_TOKEN", VIEWER)]).await;
    let port = server.port;
    let viewer = [("Authorization", bearer(VIEWER).1)];
    let viewer: Vec<(&str, &str)> = viewer.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (method, path) in internal_routes(&server).await {
        let answer = send(port, &method, &path, &viewer).await;
        if method == "GET" {
            assert!(
                answer.status == 200 || answer.status == 404,
                "viewer {path}: {}",
                answer.raw
            );
        } else {
            assert_eq!(
                (answer.status, answer.code()),
                (403, "forbidden"),
                "viewer {method} {path}"
            );
        }
    }
    assert_eq!(executions_count(&db).await, 0);

    let admin = bearer(ADMIN);
    let answer = send(
        port,
        "POST",
        "/internal/api/v1/jobs/cost_update/run",
        &[(admin.0, &admin.1)],
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.raw);
    let id = answer.body["data"]["execution_id"].as_i64().unwrap();
    let detail = send(
        port,
        "GET",
        &format!("/internal/api/v1/jobs/executions/{id}"),
        &viewer,
    )
    .await;
    assert_eq!(detail.body["data"]["actor"], "admin", "{}", detail.raw);
    let history = send(port, "GET", "/internal/api/v1/jobs/executions", &viewer).await;
    assert_eq!(history.body["data"][0]["actor"], "admin", "{}", history.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_foreign_hosts_and_cross_origin_writes_are_refused() {
    let db = TestDatabase::new().await;
    let server = start(&db, &[]).await;
    let port = server.port;
    let own = format!("http://127.0.0.1:{port}");

    // DNS rebinding: a hostile name that resolves to 127.0.0.1.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("0.0.0.0:{port}"),
        String::new(),
    ] {
        for (method, path) in [
            ("GET", "/internal/api/v1/jobs/status"),
            ("GET", "/"),
            ("GET", "/metrics"),
            ("POST", "/internal/api/v1/jobs/cost_update/run"),
        ] {
            let answer = send(port, method, path, &[("Host", &host)]).await;
            assert_eq!(
                (answer.status, answer.code()),
                (403, "forbidden_host"),
                "{method} {path} Host: {host:?}\n{}",
                answer.raw
            );
        }
    }
    let absolute = format!("http://evil.example:{port}/internal/api/v1/jobs/status");
    let answer = send(port, "GET", &absolute, &[]).await;
    assert_eq!((answer.status, answer.code()), (403, "forbidden_host"));
    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let answer = send(
            port,
            "GET",
            "/internal/api/v1/jobs/status",
            &[("Host", &host)],
        )
        .await;
        assert_eq!(answer.status, 200, "Host: {host}\n{}", answer.raw);
    }

    // CSRF: a page elsewhere makes the operator's browser post.
    let run = "/internal/api/v1/jobs/cost_update/run";
    for headers in [
        vec![("Origin", "http://evil.example".to_owned())],
        vec![("Origin", format!("http://127.0.0.1:{}", port + 1))],
        vec![("Origin", format!("http://localhost:{port}"))],
        vec![("Origin", "null".to_owned())],
        vec![("Origin", format!("{own}.evil.example"))],
        vec![("Sec-Fetch-Site", "cross-site".to_owned())],
        vec![
            ("Origin", own.clone()),
            ("Sec-Fetch-Site", "cross-site".to_owned()),
        ],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for target in [run, "/%69nternal/api/v1/jobs/cost_update/run", "/nope"] {
            let answer = send(port, "POST", target, &headers).await;
            assert_eq!(
                (answer.status, answer.code()),
                (403, "cross_origin"),
                "POST {target} {headers:?}\n{}",
                answer.raw
            );
        }
    }
    assert_eq!(executions_count(&db).await, 0, "a cross-origin run started");

    // The dashboard's own fetch, and a script without Origin, may start a run.
    let answer = send(
        port,
        "POST",
        run,
        &[("Origin", &own), ("Sec-Fetch-Site", "same-origin")],
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.raw);
    let id = answer.body["data"]["execution_id"].as_i64().unwrap();
    let detail = send(
        port,
        "GET",
        &format!("/internal/api/v1/jobs/executions/{id}"),
        &[],
    )
    .await;
    assert_eq!(detail.body["data"]["actor"], "local", "{}", detail.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_open_unless_metrics_token_is_set_then_any_token_reads_them() {
    let db = TestDatabase::new().await;
    let open = start(&db, &[("ADMIN_TOKEN", ADMIN)]).await;
    let answer = send(open.port, "GET", "/metrics", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.raw);
    drop(open);

    let server = start(
        &db,
        &[
            ("ADMIN_TOKEN", ADMIN),
            ("VIEWER_TOKEN", VIEWER),
            ("METRICS_TOKEN", METRICS),
        ],
    )
    .await;
    for target in ["/metrics", "/%6Detrics", "//metrics/", "/metrics?x=1"] {
        for token in [None, Some("wrong-token")] {
            let header = token.map(bearer);
            let headers: Vec<(&str, &str)> = header.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let answer = send(server.port, "GET", target, &headers).await;
            assert_eq!(
                (answer.status, answer.code()),
                (401, "unauthorized"),
                "{target} {token:?}"
            );
        }
        for token in [METRICS, ADMIN, VIEWER] {
            let (k, v) = bearer(token);
            let answer = send(server.port, "GET", target, &[(k, &v)]).await;
            assert_eq!(answer.status, 200, "{target}: {}", answer.raw);
            assert!(answer.raw.contains("job_enabled"), "{}", answer.raw);
        }
    }
    // The metrics token opens nothing else.
    let (k, v) = bearer(METRICS);
    let answer = send(server.port, "GET", "/internal/api/v1/jobs", &[(k, &v)]).await;
    assert_eq!(answer.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_from_clients_get_400_and_no_error_lines_in_the_log() {
    let db = TestDatabase::new().await;
    let server = start(&db, &[]).await;
    let port = server.port;
    // A space in the target, a byte that is not a token character, a header line with no
    // name: each refused by the HTTP parser before any route.
    for (method, target) in [("GET", "/a b"), ("GET", "/\u{7f}"), ("G\u{1}T", "/healthz")] {
        let answer = send(port, method, target, &[]).await;
        assert_eq!(answer.status, 400, "{method} {target}: {}", answer.raw);
    }
    // The server still answers, and logged nothing an operator would have to look at.
    let answer = send(port, "GET", "/healthz", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.raw);
    let log = server.log();
    assert!(!log.contains("ERROR"), "{log}");
}
