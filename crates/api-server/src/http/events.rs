//! `GET /internal/api/v1/events`: the live view's changes as Server-Sent Events.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::views::ErrorBody;
use super::{ApiError, AppState};
use crate::live::StreamRefused;

/// One event of the stream as a client reads it: the event name (`execution`, `job`), its
/// `id` (for `Last-Event-ID`), its `data` (the JSON of the matching REST answer, as text),
/// or a `retry` hint in milliseconds. Documentation only: the stream is written as text.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SseEvent {
    /// `execution` or `job`.
    event: Option<String>,
    /// The event's JSON, as text.
    data: Option<String>,
    /// The event's id, for `Last-Event-ID`.
    id: Option<String>,
    /// How long a client waits before it reconnects, in milliseconds.
    retry: Option<u64>,
}

/// How long a request that found every place taken waits between making the open streams
/// write, so that those whose clients left are noticed (see [`crate::live::LiveView::probe_streams`]).
const PROBE_PAUSES: [std::time::Duration; 2] = [
    std::time::Duration::from_millis(50),
    std::time::Duration::from_millis(150),
];

/// `Retry-After` of a refused stream.
const STREAMS_RETRY_AFTER_SECS: u64 = 5;

/// Server-Sent Events: an `execution` event (the JSON of `GET /jobs/executions/{id}`'s
/// `data`) whenever any server starts, advances or ends an execution, and a `job` event
/// (one entry of `GET /jobs`) whenever a job's entry changes. A new stream starts with a
/// `job` event per job; one that sends `Last-Event-ID` gets what it missed instead, when
/// this server still has it. An idle stream gets a `: heartbeat` comment every
/// `EVENTS_HEARTBEAT_SECS`; every stream ends when the server shuts down.
#[utoipa::path(
    get,
    path = "/internal/api/v1/events",
    tag = "jobs",
    security(("bearer" = [])),
    params(("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received, to resume after it")),
    responses(
        (status = 200, description = "An endless text/event-stream", content_type = "text/event-stream", body = SseEvent),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "Too many open streams (`too_many_streams`, with `Retry-After`), streams turned off (`events_disabled`), or the server is shutting down", body = ErrorBody),
    )
)]
pub async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok());
    let mut subscribed = state.live.subscribe(last_event_id);
    if matches!(subscribed, Err(StreamRefused::Full { .. })) {
        // Some of the places may be held by clients that left (a reload, a proxy's blip)
        // and would be noticed only at their streams' next heartbeats: make those now.
        for pause in PROBE_PAUSES {
            state.live.probe_streams();
            tokio::time::sleep(pause).await;
        }
        subscribed = state.live.subscribe(last_event_id);
    }
    let subscription = match subscribed {
        Ok(subscription) => subscription,
        // Streams are turned off: no retry can succeed, the client polls.
        Err(StreamRefused::Full { max: 0 }) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "events_disabled",
                "this server serves no event streams (EVENTS_MAX_STREAMS=0): poll \
                 GET /internal/api/v1/jobs instead",
            ));
        }
        Err(StreamRefused::Full { max }) => {
            let mut refused = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!(
                    "this server already serves {max} event streams (EVENTS_MAX_STREAMS); \
                     try again later or poll GET /internal/api/v1/jobs"
                ),
            );
            refused.retry_after = Some(STREAMS_RETRY_AFTER_SECS);
            return Err(refused);
        }
        Err(StreamRefused::Closing) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; connect again to another server",
            ))
        }
    };
    let body = futures_util::stream::unfold(subscription, |mut subscription| async move {
        let chunk = subscription.next_chunk().await?;
        Some((Ok::<_, actix_web::Error>(chunk), subscription))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        // Proxies such as nginx would otherwise hold events back.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
