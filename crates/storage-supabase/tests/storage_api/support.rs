//! Shared fixtures: a fast client and response bodies shaped like the real Storage server's.

use std::time::Duration;

use serde_json::{json, Value};
use storage_supabase::Client;
use wiremock::{MockServer, Request, Respond, ResponseTemplate};

pub const KEY: &str = "test-service-role-key.eyJzdXBhYmFzZSJ9.sig";
pub const ERROR_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A client for `server` with millisecond backoff and 3 attempts.
pub fn client(server: &MockServer) -> Client {
    Client::builder(server.uri(), KEY)
        .max_attempts(3)
        .base_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(5))
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A JSON answer with Storage's content type.
pub fn json_response(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), ERROR_CONTENT_TYPE)
}

/// Storage's error answer: HTTP 400 unless given, the real status as a string in the body.
pub fn storage_error(
    http: u16,
    status: &str,
    code: &str,
    error: &str,
    message: &str,
) -> ResponseTemplate {
    json_response(
        http,
        &json!({ "statusCode": status, "code": code, "error": error, "message": message }),
    )
}

/// One element of the bulk-delete answer, with every field the real server sends.
pub fn deleted_object(bucket: &str, name: &str) -> Value {
    json!({
        "bucket_id": bucket,
        "name": name,
        "owner": "",
        "owner_id": "",
        "version": "0f0c9c7e-4a3b-4a51-9d39-6a1c5a8d2e11",
        "id": "5b8f1c1e-7d4a-4a9e-9a57-2f1f6d0c8e42",
        "updated_at": "2025-06-01T10:00:00.000Z",
        "created_at": "2025-06-01T10:00:00.000Z",
        "last_accessed_at": "2025-06-01T10:00:00.000Z",
        "metadata": {
            "eTag": "\"c4ca4238a0b923820dcc509a6f75849b\"",
            "size": 48213,
            "mimetype": "audio/webm",
            "cacheControl": "max-age=3600",
            "lastModified": "2025-06-01T10:00:00.000Z",
            "contentLength": 48213,
            "httpStatusCode": 200
        },
        "user_metadata": {}
    })
}

/// The answer to a bulk delete where `names` were deleted.
pub fn deleted_response(bucket: &str, names: &[&str]) -> ResponseTemplate {
    let items: Vec<Value> = names.iter().map(|n| deleted_object(bucket, n)).collect();
    json_response(200, &Value::Array(items))
}

/// Answers a bulk delete as if every requested name existed.
pub struct DeletesEverything;

impl Respond for DeletesEverything {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let names = prefixes(request);
        let items: Vec<Value> = names.iter().map(|n| deleted_object("audio", n)).collect();
        json_response(200, &Value::Array(items))
    }
}

/// The `prefixes` of a bulk-delete request.
pub fn prefixes(request: &Request) -> Vec<String> {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    body["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

pub fn names(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
