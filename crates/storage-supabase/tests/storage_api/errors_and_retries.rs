use std::time::{Duration, Instant};

use serde_json::json;
use storage_supabase::{Client, Error};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

fn bucket_json() -> serde_json::Value {
    json!({
        "id": "audio", "name": "audio", "owner": "", "public": false, "type": "STANDARD",
        "file_size_limit": null, "allowed_mime_types": null,
        "created_at": "2025-01-01T00:00:00.000Z", "updated_at": "2025-01-01T00:00:00.000Z"
    })
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn a_missing_bucket_is_not_found_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/storage/v1/bucket/gone"))
        .respond_with(storage_error(
            400,
            "404",
            "NoSuchBucket",
            "Bucket not found",
            "Bucket not found",
        ))
        .mount(&server)
        .await;

    let err = client(&server).get_bucket("gone").await.unwrap_err();

    assert_eq!(
        err,
        Error::NotFound {
            code: "NoSuchBucket".into(),
            message: "Bucket not found".into()
        }
    );
    assert!(err.is_not_found());
    assert!(!err.is_retryable());
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn a_bad_signature_is_unauthorized_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(storage_error(
            400,
            "403",
            "AccessDenied",
            "Unauthorized",
            "signature verification failed",
        ))
        .mount(&server)
        .await;

    let err = client(&server).get_bucket("audio").await.unwrap_err();

    assert_eq!(
        err,
        Error::Unauthorized {
            message: "signature verification failed".into()
        }
    );
    assert!(err.is_auth_error());
    assert!(!err.is_retryable());
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn an_expired_key_is_unauthorized() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(storage_error(
            400,
            "403",
            "AccessDenied",
            "Unauthorized",
            "\"exp\" claim timestamp check failed",
        ))
        .mount(&server)
        .await;

    let err = client(&server).get_bucket("audio").await.unwrap_err();
    assert!(err.is_auth_error());
    assert_eq!(
        err.to_string(),
        "unauthorized: \"exp\" claim timestamp check failed"
    );
}

#[tokio::test]
async fn the_gateways_missing_api_key_answer_is_unauthorized() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json_response(
            401,
            &json!({ "message": "No API key found in request", "hint": "No `apikey` request header or url param was found." }),
        ))
        .mount(&server)
        .await;

    let err = client(&server).get_bucket("audio").await.unwrap_err();
    assert_eq!(
        err,
        Error::Unauthorized {
            message: "No API key found in request".into()
        }
    );
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn a_request_storage_refuses_is_an_invalid_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(storage_error(
            400,
            "400",
            "InvalidRequest",
            "Error",
            "headers must have required property 'authorization'",
        ))
        .mount(&server)
        .await;

    let err = client(&server).get_bucket("audio").await.unwrap_err();
    assert_eq!(
        err,
        Error::InvalidRequest {
            status: 400,
            code: "InvalidRequest".into(),
            message: "headers must have required property 'authorization'".into()
        }
    );
    assert!(!err.is_retryable());
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn an_unknown_route_is_not_mistaken_for_a_missing_object() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(json_response(
            404,
            &json!({ "message": "Route DELETE:/object/audio/a.webm not found", "error": "Not Found", "statusCode": 404 }),
        ))
        .mount(&server)
        .await;

    let err = client(&server)
        .delete_object("audio", "a.webm")
        .await
        .unwrap_err();

    assert_eq!(
        err,
        Error::UnknownRoute {
            message: "Route DELETE:/object/audio/a.webm not found".into()
        }
    );
    assert!(!err.is_not_found());
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn rate_limiting_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            storage_error(
                429,
                "429",
                "SlowDown",
                "slow_down",
                "Please reduce your request rate",
            )
            .insert_header("retry-after", "0"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(json_response(200, &bucket_json()))
        .mount(&server)
        .await;

    let bucket = client(&server).get_bucket("audio").await.unwrap();

    assert_eq!(bucket.id, "audio");
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn slow_down_in_a_400_body_is_rate_limiting_too() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(storage_error(
            400,
            "429",
            "SlowDown",
            "slow_down",
            "Please reduce your request rate",
        ))
        .mount(&server)
        .await;

    let err = client(&server).get_bucket("audio").await.unwrap_err();
    assert_eq!(err, Error::RateLimited { retry_after: None });
    assert_eq!(requests(&server).await, 3, "retried up to max_attempts");
}

#[tokio::test]
async fn a_retry_after_longer_than_the_limit_is_returned_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            storage_error(
                429,
                "429",
                "SlowDown",
                "slow_down",
                "Please reduce your request rate",
            )
            .insert_header("retry-after", "120"),
        )
        .mount(&server)
        .await;

    let err = client(&server).get_bucket("audio").await.unwrap_err();

    assert_eq!(
        err,
        Error::RateLimited {
            retry_after: Some(Duration::from_secs(120))
        }
    );
    assert!(err.is_retryable());
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn a_server_error_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(storage_error(
            500,
            "500",
            "InternalError",
            "Internal Server Error",
            "Internal Server Error",
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(json_response(200, &bucket_json()))
        .mount(&server)
        .await;

    let bucket = client(&server).get_bucket("audio").await.unwrap();

    assert_eq!(bucket.name, "audio");
    assert!(!bucket.public);
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn server_errors_are_returned_once_attempts_run_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(503).set_body_raw("upstream connect error", "text/plain"),
        )
        .mount(&server)
        .await;

    let err = client(&server).get_bucket("audio").await.unwrap_err();

    assert_eq!(
        err,
        Error::Server {
            status: 503,
            body: "upstream connect error".into()
        }
    );
    assert!(err.is_retryable());
    assert_eq!(requests(&server).await, 3);
}

#[tokio::test]
async fn a_slow_server_times_out_on_every_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json_response(200, &bucket_json()).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let client = Client::builder(server.uri(), KEY)
        .request_timeout(Duration::from_millis(100))
        .max_attempts(2)
        .base_backoff(Duration::from_millis(1))
        .build()
        .unwrap();

    let started = Instant::now();
    let err = client.get_bucket("audio").await.unwrap_err();

    assert!(err.is_timeout(), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = Client::builder(format!("http://127.0.0.1:{port}"), KEY)
        .max_attempts(2)
        .base_backoff(Duration::from_millis(1))
        .build()
        .unwrap();

    let err = client.get_bucket("audio").await.unwrap_err();

    match &err {
        Error::Transport { message, timeout } => {
            assert!(!timeout);
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_success_answer_that_is_not_json_is_a_decode_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("<html>maintenance</html>", "text/html"),
        )
        .mount(&server)
        .await;

    let err = client(&server).get_bucket("audio").await.unwrap_err();

    match err {
        Error::Decode { body, .. } => assert_eq!(body, "<html>maintenance</html>"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(requests(&server).await, 1, "decode errors are not retried");
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "https://elsewhere.example/"),
        )
        .mount(&server)
        .await;

    let err = client(&server).get_bucket("audio").await.unwrap_err();

    assert!(
        matches!(err, Error::InvalidRequest { status: 302, .. }),
        "{err:?}"
    );
    assert_eq!(requests(&server).await, 1);
}
