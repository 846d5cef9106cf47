//! A local Supabase Storage with the bucket `audio`, answering as the real one does.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A `service_role` key (its signature is not checked by the mocks).
pub const SERVICE_ROLE_KEY: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZSIsInJvbGUiOiJzZXJ2aWNlX3JvbGUifQ.dGVzdC1zaWduYXR1cmU";

/// A Storage that knows the bucket `audio` and answers nothing else yet.
pub async fn audio_bucket() -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/storage/v1/bucket/audio"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "audio", "name": "audio", "owner": "", "public": false,
            "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z"
        })))
        .mount(&mock)
        .await;
    mock
}

/// A bulk delete in `audio` that answers `[]` after `delay`.
pub fn deletes_after(delay: Duration) -> Mock {
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([]))
                .set_delay(delay),
        )
}

/// A Storage with bucket `audio`; deletes answer after `delete_delay`.
pub async fn storage(delete_delay: Duration) -> MockServer {
    let mock = audio_bucket().await;
    deletes_after(delete_delay).mount(&mock).await;
    mock
}
