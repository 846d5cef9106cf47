//! The client against a local mock of the Management API answering in the shapes of
//! `spec/EXTERNAL_APIS.md`, edge cases included.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use deepgram_client::{
    Client, ClientConfig, CostState, Error, ListRequestsParams, RequestStatus, TransportErrorKind,
};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "dg-test-key-5f1c0ffee";
const PROJECT: &str = "3b1fe4f2-9c3e-4e0a-8f5a-2a54c1d0b7aa";
const REQUEST: &str = "a847f427-4ad5-4d67-9b95-db801e58251c";

fn request_path() -> String {
    format!("/v1/projects/{PROJECT}/requests/{REQUEST}")
}

/// Fast retries so tests stay quick: 1–5 ms backoff, 3 attempts.
fn fast_config() -> ClientConfig {
    ClientConfig::default()
        .with_max_attempts(3)
        .with_base_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(5))
        .with_request_timeout(Duration::from_secs(5))
        .with_connect_timeout(Duration::from_secs(1))
}

fn client(server: &MockServer) -> Client {
    client_with(server, fast_config())
}

fn client_with(server: &MockServer, config: ClientConfig) -> Client {
    Client::with_config(&server.uri(), KEY, config).expect("client builds")
}

/// The documented example record, verbatim in shape.
fn documented_record() -> Value {
    json!({
        "request_id": REQUEST,
        "project_uuid": PROJECT,
        "created": "2026-10-28T02:00:15.234567Z",
        "path": "/v1/listen?model=nova-3&smart_format=true",
        "api_key_id": "0e1b5c1a-7777-4d2e-9a51-0c2f3a4b5c6d",
        "response": {
            "details": {
                "usd": 0.0043,
                "duration": 25.933,
                "total_audio": 25.933,
                "channels": 1,
                "streams": 1,
                "method": "sync",
                "tier": "nova-3",
                "models": ["1abfe86b-e047-4eed-858a-35e5625b41ee"],
                "tags": [],
                "features": ["punctuate"],
                "config": {}
            },
            "code": 200,
            "completed": "2026-10-28T02:00:17.001Z"
        },
        "callback": null
    })
}

fn record_with_response(response: Option<Value>) -> Value {
    let mut record = documented_record();
    if let Some(map) = record.as_object_mut() {
        match response {
            Some(response) => map.insert("response".to_owned(), response),
            None => map.remove("response"),
        };
    }
    record
}

/// Mounts `template` for the documented request route and returns the record fetched.
async fn fetch_with(
    template: ResponseTemplate,
) -> (MockServer, Result<deepgram_client::RequestRecord, Error>) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(request_path()))
        .respond_with(template)
        .mount(&server)
        .await;
    let result = client(&server).get_request(PROJECT, REQUEST).await;
    (server, result)
}

async fn cost_state_for(record: Value) -> CostState {
    let (_server, result) = fetch_with(ResponseTemplate::new(200).set_body_json(record)).await;
    result.expect("record is fetched").cost_state()
}

async fn received(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

fn assert_key_absent(text: &str) {
    assert!(!text.contains(KEY), "the API key leaked into: {text}");
}

// --- the record and its cost ---------------------------------------------------------

#[tokio::test]
async fn get_request_sends_the_token_header_and_decodes_the_bare_record() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(request_path()))
        .and(header("Authorization", format!("Token {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(documented_record()))
        .expect(1)
        .mount(&server)
        .await;

    let record = client(&server)
        .get_request(PROJECT, REQUEST)
        .await
        .expect("record is fetched");

    assert_eq!(record.request_id, REQUEST);
    assert_eq!(record.project_uuid.as_deref(), Some(PROJECT));
    assert_eq!(
        record.path.as_deref(),
        Some("/v1/listen?model=nova-3&smart_format=true")
    );
    let created = record.created.expect("created parses");
    assert_eq!(
        created,
        Utc.with_ymd_and_hms(2026, 10, 28, 2, 0, 15)
            .single()
            .expect("date")
            + chrono::Duration::microseconds(234_567)
    );
    let response = record.response.clone().expect("response");
    assert_eq!(response.code, Some(200));
    let details = response.details.expect("details");
    assert_eq!(details.tier.as_deref(), Some("nova-3"));
    assert_eq!(details.features, vec!["punctuate".to_owned()]);
    assert_eq!(details.duration, Some(25.933));

    let state = record.cost_state();
    assert_eq!(
        state.usd().map(ToString::to_string).as_deref(),
        Some("0.0043")
    );
    assert_eq!(state.usd_f64(), Some(0.0043));

    let sent = server.received_requests().await.expect("recording is on");
    let user_agent = sent[0]
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        user_agent.starts_with("background-jobs-deepgram-client/"),
        "user agent was {user_agent:?}"
    );
}

#[tokio::test]
async fn old_style_ids_are_sent_as_they_are_and_each_part_is_percent_encoded() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "category": "PROJECT_NOT_FOUND",
            "message": "Project not found.",
            "details": "",
        })))
        .mount(&server)
        .await;
    let c = client(&server);
    for (project, request, expected) in [
        (
            "abc123def456",
            "7890xyz",
            "/v1/projects/abc123def456/requests/7890xyz",
        ),
        // Nothing in an id changes the route: separators and escapes are encoded.
        (
            "a/../b",
            "c?d#e%2F",
            "/v1/projects/a%2F..%2Fb/requests/c%3Fd%23e%252F",
        ),
        ("%2e%2e", "r\\s", "/v1/projects/%252e%252e/requests/r%5Cs"),
    ] {
        let before = received(&server).await;
        let result = c.get_request(project, request).await;
        assert!(
            matches!(result, Err(Error::ProjectNotFound { .. })),
            "{result:?}"
        );
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), before + 1);
        assert_eq!(
            requests[before].url.path(),
            expected,
            "{project:?} {request:?}"
        );
    }
}

#[tokio::test]
async fn get_request_accepts_the_request_envelope() {
    let state = cost_state_for(json!({ "request": documented_record() })).await;
    assert_eq!(state.usd_f64(), Some(0.0043));
}

#[tokio::test]
async fn response_null_is_pending() {
    assert_eq!(
        cost_state_for(record_with_response(Some(Value::Null))).await,
        CostState::Pending
    );
}

#[tokio::test]
async fn response_empty_object_is_pending() {
    assert_eq!(
        cost_state_for(record_with_response(Some(json!({})))).await,
        CostState::Pending
    );
}

#[tokio::test]
async fn response_missing_is_pending() {
    assert_eq!(
        cost_state_for(record_with_response(None)).await,
        CostState::Pending
    );
}

#[tokio::test]
async fn details_without_usd_is_no_price() {
    let response = json!({
        "details": {"duration": 25.933, "channels": 1, "method": "sync", "tier": "nova-3"},
        "code": 200,
        "completed": "2026-10-28T02:00:17.001Z"
    });
    assert_eq!(
        cost_state_for(record_with_response(Some(response))).await,
        CostState::NoPrice
    );
}

#[tokio::test]
async fn failed_original_request_is_request_failed() {
    let response = json!({"code": 400, "message": "Bad Request: failed to process audio: corrupt or unsupported data"});
    assert_eq!(
        cost_state_for(record_with_response(Some(response))).await,
        CostState::RequestFailed {
            code: Some(400),
            message: Some(
                "Bad Request: failed to process audio: corrupt or unsupported data".to_owned()
            ),
        }
    );
}

#[tokio::test]
async fn usd_zero_is_priced_zero_not_pending() {
    let response = json!({"details": {"usd": 0, "duration": 0.0}, "code": 200});
    let state = cost_state_for(record_with_response(Some(response))).await;
    assert_eq!(state, CostState::Priced(serde_json::Number::from(0)));
    assert_eq!(state.usd_f64(), Some(0.0));
}

#[tokio::test]
async fn non_numeric_usd_is_an_invalid_price_state() {
    let response = json!({"details": {"usd": "abc"}, "code": 200});
    assert_eq!(
        cost_state_for(record_with_response(Some(response))).await,
        CostState::InvalidPrice { raw: json!("abc") }
    );
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let mut record = documented_record();
    if let Some(map) = record.as_object_mut() {
        map.insert("deployment".to_owned(), json!("hosted"));
        map.insert("new_thing".to_owned(), json!({"nested": [1, 2, 3]}));
    }
    assert_eq!(cost_state_for(record).await.usd_f64(), Some(0.0043));
}

// --- error answers -------------------------------------------------------------------

#[tokio::test]
async fn invalid_auth_is_unauthorized_with_a_readable_message_and_no_key() {
    let (server, result) = fetch_with(ResponseTemplate::new(401).set_body_json(json!({
        "err_code": "INVALID_AUTH",
        "err_msg": "Invalid credentials.",
        "request_id": "2f1e7c2a-2b7e-4d86-9d1a-6a6e1c1d0a11"
    })))
    .await;

    let err = result.expect_err("401 is an error");
    match &err {
        Error::Unauthorized { code, message } => {
            assert_eq!(code.as_deref(), Some("INVALID_AUTH"));
            assert!(message.contains("Invalid credentials."), "{message}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(err.is_auth() && !err.is_retryable());
    assert!(err.to_string().contains("INVALID_AUTH"), "{err}");
    assert_key_absent(&err.to_string());
    assert_key_absent(&format!("{err:?}"));
    assert_eq!(received(&server).await, 1, "401 must not be retried");
}

#[tokio::test]
async fn a_body_echoing_the_key_is_scrubbed() {
    let (_server, result) =
        fetch_with(ResponseTemplate::new(401).set_body_string(format!("bad token: Token {KEY}")))
            .await;
    let err = result.expect_err("401 is an error");
    assert_key_absent(&err.to_string());
    assert!(err.to_string().contains("bad token: Token ***"), "{err}");
}

#[tokio::test]
async fn a_failed_request_message_echoing_the_key_is_scrubbed_too() {
    let response = json!({"code": 400, "message": format!("failed for {KEY}")});
    let state = cost_state_for(record_with_response(Some(response))).await;
    assert_eq!(
        state,
        CostState::RequestFailed {
            code: Some(400),
            message: Some("failed for ***".to_owned()),
        }
    );
}

#[tokio::test]
async fn an_html_page_is_no_answer_of_deepgrams_and_is_worth_asking_again() {
    let page = "<!DOCTYPE html><html><body>Welcome to nginx</body></html>";
    for (status, content_type) in [
        (200, "text/html"),
        (404, "text/html; charset=utf-8"),
        (403, "text/plain"),
    ] {
        let (_server, result) = fetch_with(
            ResponseTemplate::new(status).set_body_raw(page.as_bytes().to_vec(), content_type),
        )
        .await;
        let err = result.expect_err("an HTML page is an error");
        assert!(
            matches!(err, Error::NotDeepgram { status: s, .. } if s == status),
            "{status}: {err:?}"
        );
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("DEEPGRAM_API_URL"), "{err}");
    }
    // Deepgram's own plain-text 404 (a project id that is not a UUID) is still not found.
    let (_server, result) =
        fetch_with(ResponseTemplate::new(404).set_body_string("Project not found")).await;
    assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(documented_record()))
        .mount(&elsewhere)
        .await;
    let (_server, result) = fetch_with(
        ResponseTemplate::new(302)
            .insert_header("location", format!("{}{}", elsewhere.uri(), request_path())),
    )
    .await;
    let err = result.expect_err("a redirect is an error");
    assert!(
        matches!(err, Error::NotDeepgram { status: 302, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable(), "a redirect is an outage, not an answer");
    assert!(err.to_string().contains(&elsewhere.uri()), "{err}");
    assert_eq!(received(&elsewhere).await, 0);
}

#[tokio::test]
async fn answers_that_are_not_deepgrams_json_are_outages_not_answers() {
    let cases = [
        ResponseTemplate::new(301).insert_header("location", "https://portal.example/login"),
        ResponseTemplate::new(200),
        ResponseTemplate::new(200).set_body_raw("   \n", "application/json"),
        ResponseTemplate::new(200).set_body_raw("OK", "text/plain"),
        ResponseTemplate::new(407)
            .insert_header("proxy-authenticate", "Basic realm=\"proxy\"")
            .set_body_string("Proxy Authentication Required"),
    ];
    for template in cases {
        let (server, result) = fetch_with(template).await;
        let err = result.expect_err("not Deepgram's answer");
        assert!(matches!(err, Error::NotDeepgram { .. }), "{err:?}");
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("DEEPGRAM_API_URL"), "{err}");
        assert_eq!(received(&server).await, 1, "not retried at once");
    }
}

#[tokio::test]
async fn an_answer_longer_than_the_cap_is_not_read_and_is_an_outage() {
    let huge = vec![b' '; deepgram_client::MAX_RESPONSE_BYTES + 1];
    let (_server, result) =
        fetch_with(ResponseTemplate::new(200).set_body_raw(huge, "application/json")).await;
    let err = result.expect_err("too long");
    assert!(
        matches!(err, Error::TooLarge { status: 200, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());

    // Without a Content-Length the body is read chunk by chunk and dropped at the cap.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await;
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[";
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'1'; 64 * 1024];
        // At most 64 MiB: the client must hang up long before.
        for _ in 0..1024 {
            if socket.write_all(&chunk).await.is_err() {
                return;
            }
            counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    let client = Client::with_config(&format!("http://{address}"), KEY, fast_config())
        .expect("client builds");
    let err = client
        .get_request(PROJECT, REQUEST)
        .await
        .expect_err("an endless answer");
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
    let written = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(written < 32 * 1024 * 1024, "read {written} bytes");
}

#[tokio::test]
async fn a_401_for_a_missing_permission_is_forbidden_and_a_bad_key_is_unauthorized() {
    let (_server, result) = fetch_with(ResponseTemplate::new(401).set_body_json(json!({
        "err_code": "INSUFFICIENT_PERMISSIONS",
        "err_msg": "User does not have sufficient permissions.",
        "request_id": "9d0c8a4e-0000-4000-8000-000000000009"
    })))
    .await;
    let err = result.expect_err("401 is an error");
    assert!(
        matches!(err, Error::Forbidden { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(401));
    let (_server, result) = fetch_with(ResponseTemplate::new(401).set_body_json(json!({
        "err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "r"
    })))
    .await;
    assert!(
        matches!(result, Err(Error::Unauthorized { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_key_spelled_with_json_escapes_is_scrubbed_from_errors_and_records() {
    // KEY with its first character written as a JSON escape, as a JSON encoder may.
    let escaped = format!("\\u{:04x}{}", u32::from(KEY.as_bytes()[0]), &KEY[1..]);
    let body =
        format!(r#"{{"err_code":"BAD_REQUEST","err_msg":"bad key {escaped}","request_id":"r"}}"#);
    let (_server, result) =
        fetch_with(ResponseTemplate::new(400).set_body_raw(body.clone(), "application/json")).await;
    let err = result.expect_err("400");
    assert_key_absent(&err.to_string());
    assert!(err.to_string().contains("bad key ***"), "{err}");
    // Bodies quoted whole (5xx, plain JSON without a message) too.
    let (_server, result) =
        fetch_with(ResponseTemplate::new(503).set_body_raw(body, "application/json")).await;
    let err = result.expect_err("503");
    assert_key_absent(&err.to_string());
    assert!(!err.to_string().contains(&escaped), "{err}");
    // And a record's own text.
    let record = record_with_response(Some(json!({"code": 400, "message": "x"})))
        .to_string()
        .replace(
            "\"message\":\"x\"",
            &format!("\"message\":\"failed for {escaped}\""),
        );
    let (_server, result) =
        fetch_with(ResponseTemplate::new(200).set_body_raw(record, "application/json")).await;
    assert_eq!(
        result.expect("record").cost_state(),
        CostState::RequestFailed {
            code: Some(400),
            message: Some("failed for ***".to_owned()),
        }
    );
}

#[tokio::test]
async fn insufficient_permissions_is_forbidden() {
    let (server, result) = fetch_with(ResponseTemplate::new(403).set_body_json(json!({
        "category": "INSUFFICIENT_PERMISSIONS",
        "message": "User does not have sufficient permissions.",
        "details": "Missing scope usage:read",
        "request_id": "9d0c8a4e-0000-4000-8000-000000000003"
    })))
    .await;
    match result.expect_err("403 is an error") {
        Error::Forbidden { code, message, .. } => {
            assert_eq!(code.as_deref(), Some("INSUFFICIENT_PERMISSIONS"));
            assert!(message.starts_with("User does not have sufficient permissions."));
            assert!(message.contains("usage:read"), "{message}");
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    assert_eq!(received(&server).await, 1);
}

#[tokio::test]
async fn project_not_found_json_is_project_not_found() {
    let (server, result) = fetch_with(ResponseTemplate::new(404).set_body_json(json!({
        "category": "PROJECT_NOT_FOUND",
        "message": "Project not found.",
        "details": "",
        "request_id": "c3b0e6a1-0000-4000-8000-000000000004"
    })))
    .await;
    let err = result.expect_err("404 is an error");
    assert_eq!(err.code(), Some("PROJECT_NOT_FOUND"));
    assert_eq!(err.status(), Some(404));
    match err {
        Error::ProjectNotFound { message } => assert!(message.starts_with("Project not found.")),
        other => panic!("expected ProjectNotFound, got {other:?}"),
    }
    assert_eq!(received(&server).await, 1);
}

#[tokio::test]
async fn plain_text_404_is_not_found_with_the_text() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/not-a-uuid/requests/{REQUEST}")))
        .respond_with(
            ResponseTemplate::new(404).set_body_raw("Not Found", "text/plain; charset=utf-8"),
        )
        .mount(&server)
        .await;
    let err = client(&server)
        .get_request("not-a-uuid", REQUEST)
        .await
        .expect_err("404 is an error");
    assert_eq!(
        err,
        Error::NotFound {
            code: None,
            message: "Not Found".to_owned()
        }
    );
}

#[tokio::test]
async fn other_4xx_is_http_and_not_retried() {
    let (server, result) = fetch_with(ResponseTemplate::new(400).set_body_json(json!({
        "err_code": "Bad Request",
        "err_msg": "Invalid query parameters.",
        "request_id": "r-400"
    })))
    .await;
    match result.expect_err("400 is an error") {
        Error::Http {
            status, message, ..
        } => {
            assert_eq!(status, 400);
            assert!(message.contains("Invalid query parameters."));
        }
        other => panic!("expected Http, got {other:?}"),
    }
    assert_eq!(received(&server).await, 1);
}

#[tokio::test]
async fn truncated_json_is_not_deepgrams_answer_and_keeps_the_body() {
    let (server, result) = fetch_with(
        ResponseTemplate::new(200).set_body_raw(r#"{"request_id": "a847f4"#, "application/json"),
    )
    .await;
    match result.expect_err("truncated JSON is an error") {
        Error::NotDeepgram { status, body, .. } => {
            assert_eq!(status, 200);
            assert_eq!(body, r#"{"request_id": "a847f4"#);
        }
        other => panic!("expected NotDeepgram, got {other:?}"),
    }
    assert_eq!(received(&server).await, 1, "not retried at once");
}

#[tokio::test]
async fn a_record_without_request_id_is_a_decode_error() {
    let (_server, result) =
        fetch_with(ResponseTemplate::new(200).set_body_json(json!({"project_uuid": PROJECT})))
            .await;
    assert!(matches!(result, Err(Error::Decode { .. })), "{result:?}");
}

// --- retries -------------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_with_retry_after_waits_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(request_path()))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(json!({"err_code": "TOO_MANY_REQUESTS", "err_msg": "Too many requests.", "request_id": "r-429"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(request_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(documented_record()))
        .mount(&server)
        .await;
    // Backoff alone would wait at most 5 ms, and max_backoff must allow the 1 s asked.
    let config = fast_config().with_max_backoff(Duration::from_secs(2));
    let config = config.with_base_backoff(Duration::from_millis(1));
    let client = client_with(&server, config);

    let started = Instant::now();
    let record = client
        .get_request(PROJECT, REQUEST)
        .await
        .expect("succeeds after the 429");
    let waited = started.elapsed();

    assert_eq!(record.request_id, REQUEST);
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn retry_after_is_capped_by_max_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(documented_record()))
        .mount(&server)
        .await;
    let started = Instant::now();
    client(&server)
        .get_request(PROJECT, REQUEST)
        .await
        .expect("succeeds after a capped wait");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn rate_limit_without_retry_after_is_rate_limited_when_attempts_run_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(request_path()))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "err_code": "TOO_MANY_REQUESTS", "err_msg": "Too many requests.", "request_id": "r"
        })))
        .expect(3)
        .mount(&server)
        .await;
    let err = client(&server)
        .get_request(PROJECT, REQUEST)
        .await
        .expect_err("429 every time");
    assert_eq!(err, Error::RateLimited { retry_after: None });
    assert!(err.is_retryable());
    assert_eq!(received(&server).await, 3);
}

#[tokio::test]
async fn exhausted_rate_limit_reports_the_last_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "2"))
        .mount(&server)
        .await;
    let err = client_with(&server, fast_config().with_max_attempts(2))
        .get_request(PROJECT, REQUEST)
        .await
        .expect_err("429 every time");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn a_retry_after_of_zero_negative_or_in_the_past_keeps_the_backoff() {
    for value in ["0", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", value))
            .mount(&server)
            .await;
        // Backoff ceilings 200, 400 and 800 ms: the three waits (full jitter) add up to
        // less than 20 ms with a probability of about 2e-5.
        let config = fast_config()
            .with_max_attempts(4)
            .with_base_backoff(Duration::from_millis(200))
            .with_max_backoff(Duration::from_secs(1));
        let started = Instant::now();
        let err = client_with(&server, config)
            .get_request(PROJECT, REQUEST)
            .await
            .expect_err("429 every time");
        assert_eq!(err.retry_after(), None, "{value}");
        assert!(
            started.elapsed() >= Duration::from_millis(20),
            "Retry-After {value} spent every attempt at once: {:?}",
            started.elapsed()
        );
        assert_eq!(received(&server).await, 4);
    }
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(request_path()))
        .respond_with(ResponseTemplate::new(500).set_body_string("Internal Server Error"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(request_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(documented_record()))
        .mount(&server)
        .await;
    let record = client(&server)
        .get_request(PROJECT, REQUEST)
        .await
        .expect("succeeds on the second attempt");
    assert_eq!(record.cost_state().usd_f64(), Some(0.0043));
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn persistent_503_is_a_server_error_with_a_truncated_body() {
    let server = MockServer::start().await;
    let long_body = format!("Service Unavailable {}", "x".repeat(10_000));
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string(long_body))
        .expect(3)
        .mount(&server)
        .await;
    let err = client(&server)
        .get_request(PROJECT, REQUEST)
        .await
        .expect_err("503 every time");
    match &err {
        Error::Server { status, body } => {
            assert_eq!(*status, 503);
            assert!(body.starts_with("Service Unavailable"));
            assert!(body.chars().count() <= 513, "body has {} chars", body.len());
        }
        other => panic!("expected Server, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(received(&server).await, 3);
}

#[tokio::test]
async fn a_slow_answer_past_the_request_timeout_is_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(documented_record())
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let config = fast_config()
        .with_max_attempts(2)
        .with_request_timeout(Duration::from_millis(100));

    let started = Instant::now();
    let err = client_with(&server, config)
        .get_request(PROJECT, REQUEST)
        .await
        .expect_err("times out");

    assert!(err.is_timeout(), "{err:?}");
    assert!(matches!(
        err,
        Error::Transport {
            kind: TransportErrorKind::Timeout,
            ..
        }
    ));
    assert!(err.to_string().contains("timed out"), "{err}");
    // Without the timeout the first attempt would have waited the full 2 s.
    assert!(started.elapsed() < Duration::from_millis(1_900));
    assert_eq!(received(&server).await, 2, "timeouts are retried");
}

#[tokio::test]
async fn connection_refused_is_a_transport_error_after_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let client = Client::with_config(&format!("http://{address}"), KEY, fast_config())
        .expect("client builds");
    let err = client
        .get_request(PROJECT, REQUEST)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportErrorKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable() && !err.is_timeout());
    assert_key_absent(&err.to_string());
}

// --- routes --------------------------------------------------------------------------

#[tokio::test]
async fn odd_ids_are_percent_encoded_and_keep_the_route() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/v1/projects/proj%20one/requests/a%2Fb%3Fc%23d%20e%5Cf%25",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"request_id": "a/b?c#d e\\f%"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let record = client(&server)
        .get_request("proj one", "a/b?c#d e\\f%")
        .await
        .expect("the route is kept");
    assert_eq!(record.request_id, "a/b?c#d e\\f%");
    let sent = server.received_requests().await.expect("recording is on");
    assert_eq!(sent[0].url.query(), None, "no query may leak from the id");
}

#[tokio::test]
async fn dot_ids_are_rejected_without_a_request() {
    let server = MockServer::start().await;
    let client = client(&server);
    for bad in ["..", ".", ""] {
        let err = client
            .get_request(PROJECT, bad)
            .await
            .expect_err("dot segments would change the route");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    }
    assert_eq!(received(&server).await, 0);
}

#[tokio::test]
async fn list_projects_returns_the_projects() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/projects"))
        .and(header("Authorization", format!("Token {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "projects": [
                {"project_id": PROJECT, "name": "Production", "company": "Acme"},
                {"project_id": "7a9c0d2e-1111-4222-8333-444455556666", "name": "Staging"}
            ]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let projects = client(&server).list_projects().await.expect("projects");
    let summary: Vec<(&str, &str)> = projects
        .iter()
        .map(|p| (p.project_id.as_str(), p.name.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (PROJECT, "Production"),
            ("7a9c0d2e-1111-4222-8333-444455556666", "Staging")
        ]
    );
}

fn listed(id: &str, usd: f64) -> Value {
    let mut record = documented_record();
    record["request_id"] = json!(id);
    record["response"]["details"]["usd"] = json!(usd);
    record
}

#[tokio::test]
async fn list_requests_sends_the_query_and_decodes_the_page() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{PROJECT}/requests")))
        .and(query_param("start", "2026-10-01T00:00:00"))
        .and(query_param("end", "2026-10-28T23:59:59"))
        .and(query_param("limit", "2"))
        .and(query_param("page", "0"))
        .and(query_param("status", "succeeded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "page": 0,
            "limit": 2,
            "requests": [listed("r-1", 0.01), {"request": listed("r-2", 0.0)}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let params = ListRequestsParams {
        start: Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).single(),
        end: Utc.with_ymd_and_hms(2026, 10, 28, 23, 59, 59).single(),
        limit: Some(2),
        page: Some(0),
        status: Some(RequestStatus::Succeeded),
    };
    let page = client(&server)
        .list_requests(PROJECT, &params)
        .await
        .expect("page");
    assert_eq!((page.page, page.limit), (0, 2));
    let costs: Vec<(&str, Option<f64>)> = page
        .requests
        .iter()
        .map(|r| (r.request_id.as_str(), r.cost_state().usd_f64()))
        .collect();
    assert_eq!(costs, vec![("r-1", Some(0.01)), ("r-2", Some(0.0))]);
    assert!(!page.is_last_page(), "a full page is not the last");
}

#[tokio::test]
async fn list_all_requests_pages_until_a_short_page() {
    let server = MockServer::start().await;
    let requests_path = format!("/v1/projects/{PROJECT}/requests");
    for (page, records) in [
        (0, vec![listed("r-1", 0.1), listed("r-2", 0.2)]),
        (1, vec![listed("r-3", 0.3), listed("r-4", 0.4)]),
        (2, vec![listed("r-5", 0.5)]),
    ] {
        Mock::given(method("GET"))
            .and(path(requests_path.as_str()))
            .and(query_param("page", page.to_string().as_str()))
            .and(query_param("limit", "2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "page": page, "limit": 2, "requests": records
            })))
            .expect(1)
            .mount(&server)
            .await;
    }
    let params = ListRequestsParams {
        limit: Some(2),
        ..ListRequestsParams::default()
    };
    let records = client(&server)
        .list_all_requests(PROJECT, &params)
        .await
        .expect("all pages");
    let ids: Vec<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["r-1", "r-2", "r-3", "r-4", "r-5"]);
    assert_eq!(received(&server).await, 3, "stops after the short page");
}

#[tokio::test]
async fn list_all_requests_stops_when_the_server_ignores_the_page() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "page": 0, "limit": 1, "requests": [listed("r-1", 0.1)]
        })))
        .mount(&server)
        .await;
    let params = ListRequestsParams {
        limit: Some(1),
        ..ListRequestsParams::default()
    };
    let err = client(&server)
        .list_all_requests(PROJECT, &params)
        .await
        .expect_err("the same full page forever must not loop");
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn list_requests_page_without_page_or_limit_uses_the_requested_ones() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"requests": []})))
        .mount(&server)
        .await;
    let params = ListRequestsParams {
        limit: Some(50),
        page: Some(3),
        ..ListRequestsParams::default()
    };
    let page = client(&server)
        .list_requests(PROJECT, &params)
        .await
        .expect("page");
    assert_eq!((page.page, page.limit), (3, 50));
    assert!(page.is_last_page());
}

// --- limits --------------------------------------------------------------------------

/// Answers after `delay`, recording when each request arrived.
struct RecordingResponder {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    delay: Duration,
}

impl Respond for RecordingResponder {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        self.arrivals
            .lock()
            .expect("arrivals lock")
            .push(Instant::now());
        ResponseTemplate::new(200)
            .set_body_json(documented_record())
            .set_delay(self.delay)
    }
}

async fn run_concurrently(client: &Client, calls: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..calls {
        let client = client.clone();
        tasks.spawn(async move { client.get_request(PROJECT, REQUEST).await });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task ran").expect("request succeeded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_concurrency_bounds_requests_in_flight_across_clones() {
    let server = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let delay = Duration::from_millis(200);
    Mock::given(method("GET"))
        .respond_with(RecordingResponder {
            arrivals: Arc::clone(&arrivals),
            delay,
        })
        .mount(&server)
        .await;
    let client = client_with(&server, fast_config().with_max_concurrency(2));

    let started = Instant::now();
    run_concurrently(&client, 6).await;
    let elapsed = started.elapsed();

    // Six 200 ms answers, two at a time: three waves.
    assert!(
        elapsed >= Duration::from_millis(590),
        "took only {elapsed:?}"
    );
    let mut arrivals = arrivals.lock().expect("arrivals lock").clone();
    arrivals.sort();
    assert_eq!(arrivals.len(), 6);
    for window in arrivals.windows(3) {
        // A third request can only start once one of the two before it has finished.
        let gap = window[2].duration_since(window[0]);
        assert!(
            gap >= delay - Duration::from_millis(10),
            "three requests in flight together ({gap:?} apart)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_tight_limit_requests_run_in_parallel() {
    // The counterpart of the test above: with room for six, all six are in flight
    // together, i.e. every one arrives before the first answer (2 s later) comes back.
    // The slack is wide on purpose so a busy machine cannot make it flake.
    let server = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let delay = Duration::from_secs(2);
    Mock::given(method("GET"))
        .respond_with(RecordingResponder {
            arrivals: Arc::clone(&arrivals),
            delay,
        })
        .mount(&server)
        .await;
    let client = client_with(&server, fast_config().with_max_concurrency(6));
    run_concurrently(&client, 6).await;
    let mut arrivals = arrivals.lock().expect("arrivals lock").clone();
    arrivals.sort();
    assert_eq!(arrivals.len(), 6);
    let spread = arrivals[5].duration_since(arrivals[0]);
    assert!(
        spread < delay,
        "requests were serialised: spread {spread:?}"
    );
}

#[tokio::test]
async fn requests_per_second_spaces_request_starts() {
    let server = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("GET"))
        .respond_with(RecordingResponder {
            arrivals: Arc::clone(&arrivals),
            delay: Duration::ZERO,
        })
        .mount(&server)
        .await;
    let client = client_with(&server, fast_config().with_requests_per_second(Some(20.0)));

    let started = Instant::now();
    run_concurrently(&client, 5).await;

    // 20 per second: starts 50 ms apart, the first at once.
    assert!(
        started.elapsed() >= Duration::from_millis(195),
        "took only {:?}",
        started.elapsed()
    );
    let mut arrivals = arrivals.lock().expect("arrivals lock").clone();
    arrivals.sort();
    for pair in arrivals.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= Duration::from_millis(40),
            "starts only {gap:?} apart"
        );
    }
}

// --- secrets -------------------------------------------------------------------------

#[tokio::test]
async fn debug_of_the_client_hides_the_key() {
    let server = MockServer::start().await;
    let client = client(&server);
    let debug = format!("{client:?}");
    assert_key_absent(&debug);
    assert!(debug.contains("[REDACTED]"), "{debug}");
    assert!(debug.contains(&server.uri()), "{debug}");
}
