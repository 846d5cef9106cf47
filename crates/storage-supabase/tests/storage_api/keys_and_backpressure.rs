//! What a key may do, proving it when the key does not say, and the shared back-off on
//! `SlowDown`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use storage_supabase::{Client, Error, KeyRights};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{client, deleted_response, json_response, storage_error, DeletesEverything};

fn jwt(claims: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2lnbmF0dXJl",
        engine.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        engine.encode(claims)
    )
}

#[test]
fn keys_that_cannot_delete_are_refused_before_anything_is_sent() {
    for key in [
        jwt(r#"{"role":"anon","iss":"supabase"}"#),
        "sb_publishable_0123456789abcdef".to_owned(),
    ] {
        let error = Client::new("https://abc.supabase.co", key.as_str()).unwrap_err();
        assert!(matches!(error, Error::KeyCannotDelete { .. }), "{error}");
        assert!(error.is_configuration());
        assert!(!error.to_string().contains(&key));
    }
    let service = Client::new(
        "https://abc.supabase.co",
        jwt(r#"{"role":"service_role"}"#).as_str(),
    )
    .unwrap();
    assert_eq!(service.key_rights(), &KeyRights::ServiceRole);
    let secret = Client::new("https://abc.supabase.co", "sb_secret_abc").unwrap();
    assert_eq!(secret.key_rights(), &KeyRights::Secret);
    let opaque = Client::new("https://abc.supabase.co", "opaque").unwrap();
    assert!(opaque.key_rights().must_be_proven());
}

async fn accepts_uploads(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path_regex("^/storage/v1/object/audio/probe/.+"))
        .respond_with(json_response(
            200,
            &json!({"Key": "audio/probe/p.txt", "Id": "1"}),
        ))
        .mount(server)
        .await;
}

#[tokio::test]
async fn delete_rights_are_proven_by_a_probe_that_comes_back_deleted() {
    let server = MockServer::start().await;
    accepts_uploads(&server).await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(DeletesEverything)
        .mount(&server)
        .await;

    client(&server)
        .prove_delete_rights("audio", "probe/p.txt")
        .await
        .unwrap();

    let received = server.received_requests().await.unwrap();
    assert_eq!(received[0].method.as_str(), "POST");
    assert_eq!(
        received[0].headers.get("x-upsert").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
}

#[tokio::test]
async fn an_empty_answer_to_the_probe_delete_does_not_prove_anything() {
    let server = MockServer::start().await;
    accepts_uploads(&server).await;
    // Row-level security hides what the key may not delete: 200 [].
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(deleted_response("audio", &[]))
        .mount(&server)
        .await;

    let error = client(&server)
        .prove_delete_rights("audio", "probe/p.txt")
        .await
        .unwrap_err();

    assert!(
        matches!(&error, Error::RightsNotProven { bucket, .. } if bucket == "audio"),
        "{error}"
    );
}

#[tokio::test]
async fn a_probe_refused_by_row_level_security_does_not_prove_anything() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(storage_error(
            400,
            "403",
            "Unauthorized",
            "Unauthorized",
            "new row violates row-level security policy",
        ))
        .mount(&server)
        .await;

    let error = client(&server)
        .prove_delete_rights("audio", "probe/p.txt")
        .await
        .unwrap_err();

    assert!(matches!(error, Error::RightsNotProven { .. }), "{error}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

/// Serves `capacity` requests at once (each taking `latency`) and answers the others with
/// Storage's overload error.
struct Capacity {
    capacity: usize,
    latency: Duration,
    admitted: Mutex<Vec<Instant>>,
    slow_downs: Arc<AtomicUsize>,
}

impl Respond for Capacity {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let now = Instant::now();
        let mut ends = self.admitted.lock().unwrap();
        ends.retain(|end| *end > now);
        if ends.len() >= self.capacity {
            self.slow_downs.fetch_add(1, Ordering::SeqCst);
            return storage_error(
                429,
                "429",
                "SlowDown",
                "slow_down",
                "Please reduce your request rate",
            );
        }
        ends.push(now + self.latency);
        json_response(
            200,
            &json!({"id": "audio", "name": "audio", "public": false}),
        )
        .set_delay(self.latency)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_lowers_the_requests_in_flight_for_every_caller() {
    let server = MockServer::start().await;
    let slow_downs = Arc::new(AtomicUsize::new(0));
    Mock::given(method("GET"))
        .respond_with(Capacity {
            capacity: 2,
            latency: Duration::from_millis(30),
            admitted: Mutex::new(Vec::new()),
            slow_downs: Arc::clone(&slow_downs),
        })
        .mount(&server)
        .await;
    let client = Client::builder(server.uri(), "opaque-key")
        .max_concurrency(8)
        .max_attempts(6)
        .base_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(100))
        .build()
        .unwrap();

    let calls = (0..40).map(|_| client.get_bucket("audio"));
    let results = futures_util::future::join_all(calls).await;

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let limit = client.concurrency_limit();
    assert!(limit.decreases() >= 1);
    assert!(limit.current() < 8, "{limit:?}");
    // Alone, each of 40 callers would bounce off a capacity of 2 again and again.
    let bounced = slow_downs.load(Ordering::SeqCst);
    assert!(bounced < 40, "{bounced} SlowDown answers");
}
