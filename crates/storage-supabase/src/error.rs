//! The one error type of this crate, and how Storage's answers map onto it.
//!
//! Storage answers most errors with HTTP 400 and the real status as a *string* in the body
//! (`{"statusCode": "404", "code": "NoSuchBucket", …}`), so the body decides the variant,
//! not the HTTP status alone.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;

/// How many bytes of a response body an error keeps.
pub(crate) const MAX_ERROR_BODY: usize = 512;

/// Everything that can go wrong talking to Supabase Storage.
///
/// Variants are chosen so a caller can act on them: [`Error::NotFound`] means Storage says
/// the bucket or object does not exist; [`Error::Unauthorized`] means the key is wrong,
/// expired or missing (retrying will not help); [`Error::RateLimited`], [`Error::Server`]
/// and [`Error::Transport`] are worth retrying later (see [`Error::is_retryable`]).
///
/// No variant ever contains the service key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Storage says the bucket or object does not exist (body `statusCode` `"404"`,
    /// e.g. `code` `NoSuchBucket` or `NoSuchKey`).
    #[error("not found ({code}): {message}")]
    NotFound {
        /// Storage's error code, e.g. `NoSuchBucket`, `NoSuchKey`.
        code: String,
        /// Storage's human-readable message.
        message: String,
    },
    /// The key was refused: the gateway's HTTP 401 (no or unknown API key) or Storage's
    /// `statusCode` `"403"`/`"401"` (`AccessDenied`: bad signature, expired token, …).
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// What the server said.
        message: String,
    },
    /// Too many requests (HTTP 429 or `code` `SlowDown`), after the client's own retries.
    #[error("rate limited by Storage{}", match .retry_after {
        Some(after) => format!(" (retry after {}s)", after.as_secs()),
        None => String::new(),
    })]
    RateLimited {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// A 5xx answer (HTTP status, or `statusCode` in the body), after the client's retries.
    #[error("Storage server error {status}: {body}")]
    Server {
        /// The HTTP status, or the body's `statusCode` when that says 5xx.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// Any other 4xx: the request itself was refused (e.g. `code` `InvalidRequest`,
    /// `InvalidKey`, an invalid bucket name). Retrying the same request will not help.
    #[error("invalid request ({status} {code}): {message}")]
    InvalidRequest {
        /// The effective status: the body's `statusCode` when present, else the HTTP status.
        status: u16,
        /// Storage's error code (empty when the body had none).
        code: String,
        /// Storage's message, or the start of the body.
        message: String,
    },
    /// The server has no such route (a real HTTP 404 without a Storage error code):
    /// almost always a wrong `SUPABASE_URL`. Never to be read as "object already gone".
    #[error("no such Storage route (is the project URL right?): {message}")]
    UnknownRoute {
        /// What the server said.
        message: String,
    },
    /// A success answer whose body could not be read.
    #[error("could not decode Storage's answer: {message}; body: {body}")]
    Decode {
        /// What was wrong.
        message: String,
        /// The start of the body.
        body: String,
    },
    /// The request did not complete: connection refused, TLS, reset, or timeout.
    #[error("transport error{}: {message}", if *.timeout { " (timeout)" } else { "" })]
    Transport {
        /// The error chain, as text.
        message: String,
        /// Whether the connect or request timeout fired.
        timeout: bool,
    },
    /// The client was misconfigured (missing environment variable, HTTP client) or called
    /// with an argument Storage could never accept (empty bucket name, `..` segment).
    #[error("invalid configuration or argument: {message}")]
    Config {
        /// What is wrong, naming the variable or argument.
        message: String,
    },
    /// The project URL cannot be used (not `http(s)://host`, user info, query…).
    #[error("invalid Supabase project URL: {message}")]
    InvalidProjectUrl {
        /// What is wrong with it (the URL itself carries no secret).
        message: String,
    },
    /// The key cannot be sent at all: empty, or characters not allowed in a header.
    #[error("unusable Supabase service key: {reason}")]
    InvalidKey {
        /// What is wrong with it (never the key itself).
        reason: &'static str,
    },
    /// The key says it cannot delete objects: a legacy JWT whose `role` is not
    /// `service_role` (e.g. the anon key), or a `sb_publishable_…` key. Storage would answer
    /// every delete with `200 []`, indistinguishable from "already gone".
    #[error("the Supabase key is {kind}, which cannot delete objects; a service-role key (a JWT with role service_role, or a sb_secret_… key) is needed")]
    KeyCannotDelete {
        /// What the key is, e.g. `a JWT with role "anon"` (never the key itself).
        kind: String,
    },
    /// The key's delete rights could not be proven on this bucket: a probe object written
    /// by the client was not confirmed deleted (Storage hides what row-level security does
    /// not let the key delete), or could not be written at all.
    #[error(
        "could not prove that the Supabase key may delete objects in bucket {bucket:?}: {detail}"
    )]
    RightsNotProven {
        /// The bucket probed.
        bucket: String,
        /// What happened.
        detail: String,
    },
}

impl Error {
    /// Whether the key was refused (missing, wrong, expired). Retrying will not help;
    /// whoever configures the service must act.
    pub fn is_auth_error(&self) -> bool {
        matches!(self, Error::Unauthorized { .. })
    }

    /// Whether the same request may succeed later: rate limits, 5xx and transport errors.
    /// 4xx answers (including HTTP 400 carrying `"404"`) are never retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Server { .. } | Error::Transport { .. }
        )
    }

    /// Whether the problem is the configuration (URL or key) rather than Storage: retrying
    /// will not help until someone changes a setting.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Error::InvalidProjectUrl { .. }
                | Error::InvalidKey { .. }
                | Error::KeyCannotDelete { .. }
        )
    }

    /// Whether the service said it is overloaded (429, `SlowDown`, 503): the whole job
    /// should slow down, not only this request.
    pub fn is_overload(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Server { status: 503, .. }
        )
    }

    /// Whether Storage said the bucket or object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether a timeout (connect or whole request) fired.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Transport { timeout: true, .. })
    }

    pub(crate) fn invalid_url(message: impl Into<String>) -> Self {
        Error::InvalidProjectUrl {
            message: message.into(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }
}

/// Storage's error body. Every field optional: the gateway, Storage and fastify's own
/// 404 each send a different subset, and `statusCode` is a string or a number.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(rename = "statusCode", default)]
    status_code: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl ErrorBody {
    /// The body's `statusCode`, whether sent as `"404"` or `404`.
    fn status(&self) -> Option<u16> {
        match self.status_code.as_ref()? {
            serde_json::Value::String(s) => s.trim().parse().ok(),
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            _ => None,
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Reads `Retry-After` (see [`backpressure::parse_retry_after`]).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    backpressure::parse_retry_after(value)
}

/// Maps a non-success answer to an [`Error`]. `body` must already be redacted.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Error {
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let http = status.as_u16();
    let code = parsed.code.clone().unwrap_or_default();
    let message = parsed
        .message
        .clone()
        .or_else(|| parsed.error.clone())
        .unwrap_or_else(|| truncate(body.trim(), MAX_ERROR_BODY));
    let message = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        message
    };
    // The body's status wins when it is a sensible HTTP error status.
    let effective = parsed
        .status()
        .filter(|s| (400..=599).contains(s))
        .unwrap_or(http);

    if http == 429 || effective == 429 || code == "SlowDown" {
        return Error::RateLimited {
            retry_after: retry_after(headers),
        };
    }
    if http >= 500 || effective >= 500 {
        return Error::Server {
            status: if http >= 500 { http } else { effective },
            body: truncate(body, MAX_ERROR_BODY),
        };
    }
    if http == 401 || effective == 401 || effective == 403 {
        return Error::Unauthorized { message };
    }
    if http == 404 && parsed.code.is_none() {
        return Error::UnknownRoute { message };
    }
    if effective == 404 {
        return Error::NotFound { code, message };
    }
    Error::InvalidRequest {
        status: effective,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn classify_body(http: u16, body: &str) -> Error {
        classify(StatusCode::from_u16(http).unwrap(), &HeaderMap::new(), body)
    }

    #[test]
    fn http_400_with_string_404_is_not_found() {
        let err = classify_body(
            400,
            r#"{"statusCode":"404","code":"NoSuchBucket","error":"Bucket not found","message":"Bucket not found"}"#,
        );
        assert_eq!(
            err,
            Error::NotFound {
                code: "NoSuchBucket".into(),
                message: "Bucket not found".into()
            }
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn http_400_with_string_403_is_unauthorized() {
        let err = classify_body(
            400,
            r#"{"statusCode":"403","code":"AccessDenied","error":"Unauthorized","message":"signature verification failed"}"#,
        );
        assert_eq!(
            err,
            Error::Unauthorized {
                message: "signature verification failed".into()
            }
        );
        assert!(err.is_auth_error());
    }

    #[test]
    fn fastify_404_with_numeric_status_is_an_unknown_route() {
        let err = classify_body(
            404,
            r#"{"message":"Route GET:/x not found","error":"Not Found","statusCode":404}"#,
        );
        assert_eq!(
            err,
            Error::UnknownRoute {
                message: "Route GET:/x not found".into()
            }
        );
    }

    #[test]
    fn http_400_with_string_500_is_a_server_error() {
        let body =
            r#"{"statusCode":"500","code":"DatabaseError","error":"internal","message":"boom"}"#;
        let err = classify_body(400, body);
        assert_eq!(
            err,
            Error::Server {
                status: 500,
                body: body.into()
            }
        );
        assert!(err.is_retryable());
    }

    #[test]
    fn non_json_bodies_are_kept_truncated() {
        let html = format!("<html>{}</html>", "x".repeat(2000));
        match classify_body(502, &html) {
            Error::Server { status, body } => {
                assert_eq!(status, 502);
                assert!(body.len() <= MAX_ERROR_BODY + '…'.len_utf8());
                assert!(body.starts_with("<html>xx"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            classify_body(418, "teapot"),
            Error::InvalidRequest { status: 418, ref message, .. } if message == "teapot"
        ));
    }

    #[test]
    fn slow_down_code_is_rate_limited_with_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let err = classify(
            StatusCode::BAD_REQUEST,
            &headers,
            r#"{"statusCode":"429","code":"SlowDown","error":"slow_down","message":"Please reduce your request rate"}"#,
        );
        assert_eq!(
            err,
            Error::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn retry_after_accepts_http_dates_in_the_past_as_zero() {
        let mut headers = HeaderMap::new();
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
