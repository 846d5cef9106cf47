use std::time::{Duration, Instant};

use serde_json::json;
use storage_supabase::{Client, Error};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer};

use crate::support::*;

#[tokio::test]
async fn the_key_is_sent_as_apikey_and_bearer_token_with_the_user_agent() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/storage/v1/bucket/audio"))
        .and(header("apikey", KEY))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header(
            "user-agent",
            format!(
                "background-jobs-storage-supabase/{}",
                env!("CARGO_PKG_VERSION")
            )
            .as_str(),
        ))
        .respond_with(json_response(
            200,
            &json!({ "id": "audio", "name": "audio", "public": false }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    // Anything else gets the gateway's answer to a missing key.
    Mock::given(method("GET"))
        .respond_with(json_response(
            401,
            &json!({ "message": "No API key found in request" }),
        ))
        .mount(&server)
        .await;

    let bucket = client(&server).get_bucket("audio").await.unwrap();
    assert_eq!(bucket.id, "audio");
}

#[tokio::test]
async fn bulk_deletes_carry_both_headers_too() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(header("apikey", KEY))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(deleted_response("audio", &["a.webm"]))
        .expect(1)
        .mount(&server)
        .await;

    let outcome = client(&server)
        .delete_objects("audio", &["a.webm"])
        .await
        .unwrap();
    assert_eq!(outcome.deleted, ["a.webm"]);
}

#[tokio::test]
async fn object_and_bucket_names_are_percent_encoded_segment_by_segment() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path(
            "/storage/v1/object/audio/user%201/a%23b%3Fc%25/%C3%BCber%20%E2%9C%93.webm",
        ))
        .respond_with(json_response(
            200,
            &json!({ "message": "Successfully deleted" }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/storage/v1/bucket/my%20bucket%23"))
        .respond_with(json_response(
            200,
            &json!({ "id": "my bucket#", "name": "my bucket#", "public": false }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/my%20bucket%23"))
        .respond_with(json_response(200, &json!([])))
        .expect(1)
        .mount(&server)
        .await;

    let client = client(&server);
    client
        .delete_object("audio", "user 1/a#b?c%/über ✓.webm")
        .await
        .unwrap();
    assert_eq!(
        client.get_bucket("my bucket#").await.unwrap().id,
        "my bucket#"
    );
    client.delete_objects("my bucket#", &["x"]).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    assert!(requests
        .iter()
        .all(|r| r.url.query().is_none() && r.url.fragment().is_none()));
}

#[tokio::test]
async fn debug_output_and_errors_never_show_the_key() {
    let server = MockServer::start().await;
    // A server that echoes the token back must not leak it through our errors.
    Mock::given(method("GET"))
        .respond_with(storage_error(
            400,
            "403",
            "AccessDenied",
            "Unauthorized",
            &format!("invalid token {KEY}"),
        ))
        .mount(&server)
        .await;
    let client = client(&server);

    let debug = format!("{client:?}");
    assert!(debug.contains("key: SecretBox<str>([REDACTED])"), "{debug}");
    assert!(!debug.contains(KEY));
    assert!(!format!("{:?}", Client::builder(server.uri(), KEY)).contains(KEY));

    let err = client.get_bucket("audio").await.unwrap_err();
    assert_eq!(
        err,
        Error::Unauthorized {
            message: "invalid token ***".into()
        }
    );
    assert!(!format!("{err} {err:?}").contains(KEY));
}

#[tokio::test]
async fn a_successful_answer_that_cannot_be_read_never_shows_the_key() {
    let server = MockServer::start().await;
    // A captive portal or a debugging proxy answers 200 with the request's headers in its
    // page: unreadable as Storage's answer, and the error quotes the page's start.
    let echo = format!("<html>apikey: {KEY}<br>authorization: Bearer {KEY}</html>");
    Mock::given(method("GET"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string(echo.clone()))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_string(format!("{{\"echo\": \"{KEY}\", \"not\": \"an array\"}}")),
        )
        .mount(&server)
        .await;
    let client = client(&server);

    let err = client.get_bucket("audio").await.unwrap_err();
    let Error::Decode { body, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        body.contains("apikey: ***<br>authorization: Bearer ***"),
        "{body}"
    );
    assert!(!format!("{err} {err:?}").contains(KEY));

    let outcome = client.delete_objects("audio", &["a.webm"]).await.unwrap();
    let failed = &outcome.failed[0].error;
    assert!(matches!(failed, Error::Decode { .. }), "{failed:?}");
    assert!(!format!("{failed} {failed:?}").contains(KEY), "{failed:?}");
}

#[tokio::test]
async fn clones_share_the_concurrency_limit() {
    let server = MockServer::start().await;
    let delay = Duration::from_millis(150);
    Mock::given(method("GET"))
        .respond_with(
            json_response(
                200,
                &json!({ "id": "audio", "name": "audio", "public": false }),
            )
            .set_delay(delay),
        )
        .mount(&server)
        .await;
    let client = Client::builder(server.uri(), KEY)
        .max_concurrency(1)
        .build()
        .unwrap();
    let other = client.clone();

    let started = Instant::now();
    let (a, b) = tokio::join!(client.get_bucket("audio"), other.get_bucket("audio"));

    a.unwrap();
    b.unwrap();
    assert!(started.elapsed() >= delay * 2, "{:?}", started.elapsed());
}

#[tokio::test]
async fn the_project_url_may_carry_a_path_prefix() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/self-hosted/storage/v1/bucket/audio"))
        .respond_with(json_response(
            200,
            &json!({ "id": "audio", "name": "audio", "public": false }),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let client = Client::new(&format!("{}/self-hosted/", server.uri()), KEY).unwrap();
    assert_eq!(client.get_bucket("audio").await.unwrap().id, "audio");
}

#[test]
fn a_project_url_that_would_be_read_otherwise_is_refused() {
    for (url, says) in [
        ("https://abc.supabase.co/storage/v1", "without /storage/v1"),
        ("https://abc.supabase.co/storage/v1/", "without /storage/v1"),
        ("https://gw.example.com/%73upabase", "%-escapes"),
        ("https://abc.supabase.co:0", "port 0"),
    ] {
        let err = Client::new(url, KEY).unwrap_err();
        assert!(err.to_string().contains(says), "{url}: {err}");
    }
    // Dot segments, escaped or not, are resolved by the URL parser: what is sent is what
    // the client shows.
    for url in [
        "https://gw.example.com/a/../supabase/",
        "https://gw.example.com/a/%2e%2e/supabase/",
    ] {
        let client = Client::new(url, KEY).unwrap();
        assert!(
            format!("{client:?}").contains("\"https://gw.example.com/supabase/\""),
            "{client:?}"
        );
    }
}
