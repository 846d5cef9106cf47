use serde_json::{json, Value};
use storage_supabase::Error;
use wiremock::matchers::{body_json, body_partial_json, method, path};
use wiremock::{Mock, MockServer};

use crate::support::*;

fn file(name: &str) -> Value {
    json!({
        "name": name,
        "id": "5b8f1c1e-7d4a-4a9e-9a57-2f1f6d0c8e42",
        "updated_at": "2025-06-01T10:00:00.000Z",
        "created_at": "2025-06-01T10:00:00.000Z",
        "last_accessed_at": "2025-06-01T10:00:00.000Z",
        "metadata": {
            "eTag": "\"c4ca4238a0b923820dcc509a6f75849b\"", "size": 48213, "mimetype": "audio/webm",
            "cacheControl": "max-age=3600", "lastModified": "2025-06-01T10:00:00.000Z",
            "contentLength": 48213, "httpStatusCode": 200
        }
    })
}

fn folder(name: &str) -> Value {
    json!({
        "name": name, "id": null, "updated_at": null, "created_at": null,
        "last_accessed_at": null, "metadata": null
    })
}

#[tokio::test]
async fn list_objects_sends_the_documented_body_and_tells_folders_from_files() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/storage/v1/object/list/audio"))
        .and(body_json(json!({
            "prefix": "user1", "limit": 10, "offset": 20,
            "sortBy": { "column": "name", "order": "asc" }
        })))
        .respond_with(json_response(
            200,
            &json!([folder("drafts"), file("a.webm")]),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let entries = client(&server)
        .list_objects("audio", "user1", 10, 20)
        .await
        .unwrap();

    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].name, "drafts");
    assert!(entries[0].is_folder());
    assert_eq!(entries[1].name, "a.webm");
    assert!(!entries[1].is_folder());
    assert_eq!(entries[1].size(), Some(48213));
    assert_eq!(
        entries[1].id.as_deref(),
        Some("5b8f1c1e-7d4a-4a9e-9a57-2f1f6d0c8e42")
    );
}

#[tokio::test]
async fn list_all_objects_pages_until_a_short_page() {
    let server = MockServer::start().await;
    let pages = [
        (0, vec![file("a"), file("b")]),
        (2, vec![file("c"), folder("d")]),
        (4, vec![file("e")]),
    ];
    for (offset, page) in pages {
        Mock::given(method("POST"))
            .and(path("/storage/v1/object/list/audio"))
            .and(body_partial_json(
                json!({ "prefix": "", "limit": 2, "offset": offset }),
            ))
            .respond_with(json_response(200, &Value::Array(page)))
            .expect(1)
            .mount(&server)
            .await;
    }

    let entries = client(&server)
        .list_all_objects("audio", "", 2)
        .await
        .unwrap();

    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn list_all_objects_stops_on_an_empty_page_after_full_ones() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "offset": 0 })))
        .respond_with(json_response(200, &json!([file("a"), file("b")])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "offset": 2 })))
        .respond_with(json_response(200, &json!([])))
        .mount(&server)
        .await;

    let entries = client(&server)
        .list_all_objects("audio", "dir", 2)
        .await
        .unwrap();

    assert_eq!(entries.len(), 2);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn listing_a_missing_bucket_is_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(storage_error(
            400,
            "404",
            "NoSuchBucket",
            "Bucket not found",
            "Bucket not found",
        ))
        .mount(&server)
        .await;

    let err = client(&server)
        .list_all_objects("gone", "", 100)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn a_zero_limit_is_refused_before_sending() {
    let server = MockServer::start().await;
    let err = client(&server)
        .list_objects("audio", "", 0, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }));
    assert!(server.received_requests().await.unwrap().is_empty());
}
