use serde_json::json;
use storage_supabase::Error;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::support::*;

#[tokio::test]
async fn get_bucket_reads_the_bucket() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/storage/v1/bucket/audio"))
        .respond_with(json_response(
            200,
            &json!({
                "id": "audio", "name": "audio", "owner": "", "public": true, "type": "STANDARD",
                "file_size_limit": 52428800, "allowed_mime_types": ["audio/webm", "audio/mpeg"],
                "created_at": "2025-01-01T00:00:00.000Z", "updated_at": "2025-02-01T00:00:00.000Z"
            }),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let bucket = client(&server).get_bucket("audio").await.unwrap();

    assert_eq!(bucket.id, "audio");
    assert_eq!(bucket.name, "audio");
    assert!(bucket.public);
    assert_eq!(bucket.file_size_limit, Some(52_428_800));
    assert_eq!(
        bucket.allowed_mime_types.as_deref(),
        Some(&["audio/webm".to_owned(), "audio/mpeg".to_owned()][..])
    );
    assert_eq!(
        bucket.updated_at.as_deref(),
        Some("2025-02-01T00:00:00.000Z")
    );
}

#[tokio::test]
async fn delete_object_succeeds_on_storages_message() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio/user1/a.webm"))
        .respond_with(json_response(
            200,
            &json!({ "message": "Successfully deleted" }),
        ))
        .expect(1)
        .mount(&server)
        .await;

    client(&server)
        .delete_object("audio", "user1/a.webm")
        .await
        .unwrap();
}

#[tokio::test]
async fn deleting_a_missing_object_is_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio/user1/gone.webm"))
        .respond_with(storage_error(
            400,
            "404",
            "NoSuchKey",
            "not_found",
            "Object not found",
        ))
        .mount(&server)
        .await;

    let err = client(&server)
        .delete_object("audio", "user1/gone.webm")
        .await
        .unwrap_err();

    assert_eq!(
        err,
        Error::NotFound {
            code: "NoSuchKey".into(),
            message: "Object not found".into()
        }
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn object_paths_that_url_normalisation_would_change_are_refused_before_sending() {
    let server = MockServer::start().await;
    let client = client(&server);
    for bad in ["", "a/../b", "./a", "a//b", "/a", "a/"] {
        let err = client.delete_object("audio", bad).await.unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{bad:?}: {err:?}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}
