use std::collections::HashSet;

use serde_json::json;
use storage_supabase::{Client, Error};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

#[tokio::test]
async fn bulk_delete_reports_which_names_storage_confirmed() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({ "prefixes": ["u1/a.webm", "u1/b.webm", "u2/c.webm"] }),
        ))
        .respond_with(deleted_response("audio", &["u1/a.webm", "u2/c.webm"]))
        .expect(1)
        .mount(&server)
        .await;

    let outcome = client(&server)
        .delete_objects("audio", &names(&["u1/a.webm", "u1/b.webm", "u2/c.webm"]))
        .await
        .unwrap();

    assert_eq!(outcome.deleted, ["u1/a.webm", "u2/c.webm"]);
    assert_eq!(outcome.not_returned, ["u1/b.webm"]);
    assert!(outcome.failed.is_empty());
    assert!(outcome.skipped.is_empty());
    assert!(outcome.is_complete());
}

#[tokio::test]
async fn an_empty_answer_leaves_every_name_not_returned() {
    // Also what Storage answers for a bucket that does not exist.
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/no-such-bucket"))
        .respond_with(json_response(200, &json!([])))
        .expect(1)
        .mount(&server)
        .await;

    let outcome = client(&server)
        .delete_objects("no-such-bucket", &["a.webm", "b.webm"])
        .await
        .unwrap();

    assert!(outcome.deleted.is_empty());
    assert_eq!(outcome.not_returned, ["a.webm", "b.webm"]);
    assert!(outcome.is_complete());
}

#[tokio::test]
async fn an_empty_list_sends_nothing() {
    let server = MockServer::start().await;
    let outcome = client(&server)
        .delete_objects::<String>("audio", &[])
        .await
        .unwrap();
    assert_eq!(outcome, Default::default());
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn duplicate_names_are_sent_once() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .and(body_json(json!({ "prefixes": ["a.webm", "b.webm"] })))
        .respond_with(deleted_response("audio", &["a.webm", "b.webm"]))
        .expect(1)
        .mount(&server)
        .await;

    let outcome = client(&server)
        .delete_objects("audio", &["a.webm", "b.webm", "a.webm", "b.webm"])
        .await
        .unwrap();

    assert_eq!(outcome.deleted, ["a.webm", "b.webm"]);
    assert!(outcome.not_returned.is_empty());
}

#[tokio::test]
async fn lenient_decoding_ignores_unknown_fields_and_null_metadata() {
    let server = MockServer::start().await;
    let body = json!([
        { "name": "a.webm", "owner": "", "metadata": null, "user_metadata": null, "new_field": [1, 2] },
        { "bucket_id": "audio", "id": "no-name-here" },
        { "name": "not-requested.webm", "metadata": {} }
    ]);
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(json_response(200, &body))
        .mount(&server)
        .await;

    let outcome = client(&server)
        .delete_objects("audio", &["a.webm", "b.webm"])
        .await
        .unwrap();

    assert_eq!(outcome.deleted, ["a.webm"]);
    assert_eq!(outcome.not_returned, ["b.webm"]);
}

#[tokio::test]
async fn twenty_five_hundred_names_go_in_three_calls_of_at_most_a_thousand() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(DeletesEverything)
        .expect(3)
        .mount(&server)
        .await;
    let all: Vec<String> = (0..2500)
        .map(|i| format!("user{}/{i}.webm", i % 7))
        .collect();

    let outcome = client(&server).delete_objects("audio", &all).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    let sizes: Vec<usize> = requests.iter().map(|r| prefixes(r).len()).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    let sent: Vec<String> = requests.iter().flat_map(prefixes).collect();
    assert_eq!(sent, all, "every name sent once, in order");
    assert_eq!(outcome.deleted, all);
    assert!(outcome.not_returned.is_empty());
}

#[tokio::test]
async fn the_chunk_size_is_configurable_but_never_above_a_thousand() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(DeletesEverything)
        .mount(&server)
        .await;

    let small = Client::builder(server.uri(), KEY)
        .delete_chunk_size(2)
        .build()
        .unwrap();
    let outcome = small
        .delete_objects("audio", &["a", "b", "c", "d", "e"])
        .await
        .unwrap();
    assert_eq!(outcome.deleted.len(), 5);
    let sizes: Vec<usize> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| prefixes(r).len())
        .collect();
    assert_eq!(sizes, [2, 2, 1]);

    let huge = Client::builder(server.uri(), KEY)
        .delete_chunk_size(5000)
        .build()
        .unwrap();
    assert_eq!(huge.config().delete_chunk_size, 1000);
}

#[tokio::test]
async fn a_failing_chunk_after_a_successful_one_keeps_the_confirmed_names() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(body_json(json!({ "prefixes": ["a", "b"] })))
        .respond_with(deleted_response("audio", &["a"]))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(body_json(json!({ "prefixes": ["c", "d"] })))
        .respond_with(storage_error(
            500,
            "500",
            "InternalError",
            "Internal Server Error",
            "Internal Server Error",
        ))
        .expect(3)
        .mount(&server)
        .await;

    let client = Client::builder(server.uri(), KEY)
        .delete_chunk_size(2)
        .max_attempts(3)
        .base_backoff(std::time::Duration::from_millis(1))
        .build()
        .unwrap();
    let outcome = client
        .delete_objects("audio", &["a", "b", "c", "d", "e"])
        .await
        .unwrap();

    assert_eq!(outcome.deleted, ["a"]);
    assert_eq!(outcome.not_returned, ["b"]);
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].names, ["c", "d"]);
    assert!(matches!(
        outcome.failed[0].error,
        Error::Server { status: 500, .. }
    ));
    // A server error would fail the next chunk too, so it is not sent.
    assert_eq!(outcome.skipped, ["e"]);
    assert!(!outcome.is_complete());
    let unconfirmed: Vec<&String> = outcome.unconfirmed().collect();
    assert_eq!(unconfirmed, ["c", "d", "e"]);
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_chunk_refused_for_itself_does_not_stop_the_others() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(body_json(json!({ "prefixes": ["c", "d"] })))
        .respond_with(storage_error(
            400,
            "400",
            "InvalidRequest",
            "Error",
            "body/prefixes/0 must NOT have more than 1024 characters",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(DeletesEverything)
        .mount(&server)
        .await;

    let client = Client::builder(server.uri(), KEY)
        .delete_chunk_size(2)
        .build()
        .unwrap();
    let outcome = client
        .delete_objects("audio", &["a", "b", "c", "d", "e"])
        .await
        .unwrap();

    assert_eq!(outcome.deleted, ["a", "b", "e"]);
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].names, ["c", "d"]);
    assert_eq!(
        outcome.failed[0].error,
        Error::InvalidRequest {
            status: 400,
            code: "InvalidRequest".into(),
            message: "body/prefixes/0 must NOT have more than 1024 characters".into(),
        }
    );
    assert!(outcome.skipped.is_empty());
}

#[tokio::test]
async fn a_bad_key_stops_the_bulk_delete_after_one_call() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(storage_error(
            400,
            "403",
            "AccessDenied",
            "Unauthorized",
            "signature verification failed",
        ))
        .expect(1)
        .mount(&server)
        .await;

    let client = Client::builder(server.uri(), KEY)
        .delete_chunk_size(2)
        .build()
        .unwrap();
    let outcome = client
        .delete_objects("audio", &["a", "b", "c"])
        .await
        .unwrap();

    assert!(outcome.deleted.is_empty());
    assert_eq!(outcome.failed.len(), 1);
    assert!(outcome.first_error().unwrap().is_auth_error());
    assert_eq!(outcome.skipped, ["c"]);
}

#[tokio::test]
async fn malformed_json_on_success_is_a_decode_error_with_the_body() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("[{\"name\": \"a\"", ERROR_CONTENT_TYPE),
        )
        .expect(1)
        .mount(&server)
        .await;

    let outcome = client(&server)
        .delete_objects("audio", &["a"])
        .await
        .unwrap();

    assert!(outcome.deleted.is_empty());
    assert_eq!(outcome.failed[0].names, ["a"]);
    match &outcome.failed[0].error {
        Error::Decode { message, body } => {
            assert!(message.contains("EOF"), "{message}");
            assert_eq!(body, "[{\"name\": \"a\"");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    let names_seen: HashSet<String> = outcome.unconfirmed().cloned().collect();
    assert!(names_seen.contains("a"));
}

#[tokio::test]
async fn an_invalid_bucket_name_is_refused_before_sending() {
    let server = MockServer::start().await;
    let err = client(&server)
        .delete_objects("", &["a"])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
}
