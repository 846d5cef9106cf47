//! The crate's one error type and the parser for Deepgram's error bodies.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// Longest body text (in characters) kept in an error; longer text is cut and ends in `…`.
pub(crate) const MAX_BODY_CHARS: usize = 512;

/// Everything that can go wrong talking to the Deepgram Management API.
///
/// Each variant is something a caller can act on: fix the key ([`Error::Unauthorized`],
/// [`Error::Forbidden`]), skip the item ([`Error::NotFound`]), try again on a later run
/// ([`Error::is_retryable`]), or report a bug ([`Error::Decode`]). No message ever contains
/// the API key: bodies are scrubbed of it before they are stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// HTTP 401 other than `INSUFFICIENT_PERMISSIONS`: the key is invalid or revoked
    /// (`INVALID_AUTH`). Never retried.
    #[error("Deepgram rejected the API key (HTTP 401{}): {message}", code_suffix(.code))]
    Unauthorized {
        /// `err_code` or `category` from the body, e.g. `INVALID_AUTH`.
        code: Option<String>,
        /// Readable text from the body.
        message: String,
    },
    /// HTTP 403, or 401 with `INSUFFICIENT_PERMISSIONS` (Deepgram answers a missing
    /// permission with either): the key is valid but may not do this, e.g. read this
    /// project. Never retried.
    #[error("Deepgram refused access (HTTP {status}{}): {message}", code_suffix(.code))]
    Forbidden {
        /// 403 or 401.
        status: u16,
        /// `err_code` or `category` from the body.
        code: Option<String>,
        /// Readable text from the body.
        message: String,
    },
    /// HTTP 404 `PROJECT_NOT_FOUND`: the project asked for does not exist for this key.
    /// Says nothing about the request: every request of that project gets the same answer.
    /// Never retried.
    #[error("Deepgram does not know the project (HTTP 404 PROJECT_NOT_FOUND): {message}")]
    ProjectNotFound {
        /// Readable text from the body.
        message: String,
    },
    /// Any other HTTP 404: unknown or expired request (records are kept 90 days), or a
    /// project id that is not a UUID (plain-text body).
    #[error("Deepgram found nothing there (HTTP 404{}): {message}", code_suffix(.code))]
    NotFound {
        /// `err_code` or `category` from the body; `None` for plain-text bodies.
        code: Option<String>,
        /// Readable text from the body.
        message: String,
    },
    /// HTTP 429 on every attempt. `retry_after` is the last `Retry-After` Deepgram sent, if
    /// any: wait at least that long before calling again.
    #[error("Deepgram kept rate-limiting (HTTP 429) after all attempts{}", retry_after_suffix(.retry_after))]
    RateLimited {
        /// The last `Retry-After` received, uncapped.
        retry_after: Option<Duration>,
    },
    /// HTTP 5xx on every attempt.
    #[error("Deepgram server error (HTTP {status}) after all attempts: {body}")]
    Server {
        /// The last status received.
        status: u16,
        /// The last body received, cut to a few hundred characters.
        body: String,
    },
    /// Any other non-success status (400, 405, 409, 3xx…). Never retried.
    #[error("Deepgram answered HTTP {status}{}: {message}", code_suffix(.code))]
    Http {
        /// The status received.
        status: u16,
        /// `err_code` or `category` from the body.
        code: Option<String>,
        /// Readable text from the body.
        message: String,
    },
    /// An answer Deepgram never gives, so not Deepgram's: an HTML page, a redirect (3xx;
    /// Deepgram's API does not redirect, and redirects are not followed), a proxy's 407, or
    /// a success whose body is empty or not JSON. A proxy, a captive portal or a
    /// `DEEPGRAM_API_URL` that is not Deepgram answered: it says nothing about the request,
    /// so a later run tries again ([`Error::is_retryable`]). Never retried at once.
    #[error("the answer (HTTP {status}) is not Deepgram's ({what}): is DEEPGRAM_API_URL right, or is a proxy in the way? body: {body}")]
    NotDeepgram {
        /// The status received.
        status: u16,
        /// What gave it away, e.g. `an HTML page` or `a redirect to https://…`.
        what: String,
        /// The body received, cut to a few hundred characters.
        body: String,
    },
    /// An answer longer than [`crate::MAX_RESPONSE_BYTES`]: no answer of Deepgram's is
    /// anywhere near that long, so it is not read further (memory stays bounded). Like
    /// [`Error::NotDeepgram`], a later run tries again. Never retried at once.
    #[error("the answer (HTTP {status}) is longer than {limit} bytes, far more than any of Deepgram's: not read further; is DEEPGRAM_API_URL right?")]
    TooLarge {
        /// The status received.
        status: u16,
        /// The cap, in bytes.
        limit: usize,
    },
    /// A success status whose body is JSON but not shaped as expected (e.g. `{}` where a
    /// list of projects belongs). Never retried.
    #[error("could not decode Deepgram's answer: {message}; body: {body}")]
    Decode {
        /// What did not fit, with the route.
        message: String,
        /// The body received, cut to a few hundred characters.
        body: String,
    },
    /// No usable HTTP answer on every attempt: timeout, refused or broken connection, DNS,
    /// TLS. [`Error::is_timeout`] tells a timeout apart.
    #[error("{kind} talking to Deepgram: {message}")]
    Transport {
        /// What kind of failure.
        kind: TransportErrorKind,
        /// The underlying error chain (the URL, never the key).
        message: String,
    },
    /// The client could not be built: bad base URL, missing or unusable key, bad tunable.
    #[error("invalid Deepgram client configuration: {message}")]
    Config {
        /// Which setting, and why.
        message: String,
    },
    /// An argument cannot be sent as asked (e.g. an id that is empty, `.` or `..`, which
    /// would change the route). Nothing was sent.
    #[error("invalid argument for a Deepgram call: {message}")]
    InvalidArgument {
        /// Which argument, and why.
        message: String,
    },
}

/// The kind of a [`Error::Transport`] failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The connect or request timeout ran out.
    Timeout,
    /// No connection could be opened (refused, DNS, TLS handshake…).
    Connect,
    /// Anything else: connection reset, body cut short…
    Other,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "request timed out",
            Self::Connect => "could not connect",
            Self::Other => "transport error",
        })
    }
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
}

fn retry_after_suffix(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|d| format!(" (Retry-After: {}s)", d.as_secs_f64()))
        .unwrap_or_default()
}

impl Error {
    /// Whether the same call may succeed later: rate limits, server errors and transport
    /// failures. The client has already retried these `max_attempts` times; this says
    /// whether a later run should try again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Transport { .. }
                | Self::NotDeepgram { .. }
                | Self::TooLarge { .. }
        )
    }

    /// Whether this is a timeout (connect or request).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Self::Transport {
                kind: TransportErrorKind::Timeout,
                ..
            }
        )
    }

    /// Whether the key itself is the problem (rejected or refused): retrying will not help
    /// until someone changes the key or its permissions.
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::Forbidden { .. })
    }

    /// The HTTP status behind the error, if Deepgram answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::NotFound { .. } | Self::ProjectNotFound { .. } => Some(404),
            Self::RateLimited { .. } => Some(429),
            Self::Forbidden { status, .. }
            | Self::Server { status, .. }
            | Self::Http { status, .. }
            | Self::NotDeepgram { status, .. }
            | Self::TooLarge { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `Retry-After` Deepgram asked for, if this is [`Error::RateLimited`] with one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The machine-readable code from the error body (`INVALID_AUTH`, `PROJECT_NOT_FOUND`…).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::ProjectNotFound { .. } => Some(PROJECT_NOT_FOUND),
            Self::Unauthorized { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Http { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// The error code of a 404 for a project that does not exist.
pub(crate) const PROJECT_NOT_FOUND: &str = "PROJECT_NOT_FOUND";
/// The error code of a permission the key lacks (sent with 401 or 403).
pub(crate) const INSUFFICIENT_PERMISSIONS: &str = "INSUFFICIENT_PERMISSIONS";

/// A Deepgram error body reduced to a code and a readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub(crate) code: Option<String>,
    pub(crate) message: String,
}

/// Reads any of Deepgram's three error body shapes:
/// `{"err_code", "err_msg", "request_id"}`, `{"category", "message", "details",
/// "request_id"}`, or plain text. Always yields some readable message.
pub(crate) fn parse_error_body(status: u16, body: &str) -> ErrorBody {
    let text = body.trim();
    if text.is_empty() {
        return ErrorBody {
            code: None,
            message: format!("{} (empty body)", reason(status)),
        };
    }
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        return ErrorBody {
            code: None,
            message: truncate(text),
        };
    };
    let string = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let code = string("err_code").or_else(|| string("category"));
    let mut message = string("err_msg")
        .or_else(|| string("message"))
        .or_else(|| string("error"))
        .unwrap_or_else(|| code.clone().unwrap_or_else(|| truncate(text)));
    match map.get("details") {
        Some(Value::String(details)) if !details.trim().is_empty() && *details != message => {
            message = format!("{message} ({})", details.trim());
        }
        Some(details @ (Value::Object(_) | Value::Array(_))) => {
            message = format!("{message} ({details})");
        }
        _ => {}
    }
    if let Some(request_id) = string("request_id") {
        message = format!("{message} [request_id {request_id}]");
    }
    ErrorBody {
        code,
        message: truncate(&message),
    }
}

fn reason(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map_or_else(|| format!("HTTP {status}"), str::to_owned)
}

/// Cuts `text` to [`MAX_BODY_CHARS`] characters (on a character boundary).
pub(crate) fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Replaces every occurrence of `secret` in `text` with `***`, including one spelled with
/// JSON string escapes (`\u0064g…`, `\/`): when the text, with its escapes decoded (up
/// to a few levels deep), still holds the secret, the decoded text is returned with it
/// masked. Text from the network goes through this before it is kept anywhere.
pub(crate) fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    let masked = text.replace(secret, "***");
    let mut decoded = masked.clone();
    // Each level of escaping needs one pass; a handful covers any body seen in practice.
    for _ in 0..4 {
        if !decoded.contains('\\') {
            break;
        }
        let next = unescape_json(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
        if decoded.contains(secret) {
            return decoded.replace(secret, "***");
        }
    }
    masked
}

/// Decodes JSON string escapes (`\uXXXX`, surrogate pairs, `\n`, `\"`, `\\`, `\/`…)
/// wherever they appear in `text`; anything that is not a valid escape is kept as it is.
fn unescape_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&next) = chars.peek() else {
            out.push(c);
            break;
        };
        let simple = match next {
            '"' => Some('"'),
            '\\' => Some('\\'),
            '/' => Some('/'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            _ => None,
        };
        if let Some(decoded) = simple {
            chars.next();
            out.push(decoded);
            continue;
        }
        if next == 'u' {
            let rest: String = chars.clone().skip(1).take(10).collect();
            if let Some((decoded, used)) = decode_unicode_escape(&rest) {
                chars.next();
                for _ in 0..used {
                    chars.next();
                }
                out.push(decoded);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Reads `XXXX` (after `\u`), or a surrogate pair `XXXX\uYYYY`: the character and how
/// many characters of `rest` it took.
fn decode_unicode_escape(rest: &str) -> Option<(char, usize)> {
    let hex = |s: &str| -> Option<u32> {
        (s.len() == 4 && s.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
    };
    let high = hex(rest.get(..4)?)?;
    if (0xD800..0xDC00).contains(&high) {
        if rest.get(4..6) == Some("\\u") {
            let low = hex(rest.get(6..10)?)?;
            if (0xDC00..0xE000).contains(&low) {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return char::from_u32(code).map(|c| (c, 10));
            }
        }
        return None;
    }
    char::from_u32(high).map(|c| (c, 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err_code_shape_gives_code_message_and_request_id() {
        let body =
            r#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"a1b2"}"#;
        let parsed = parse_error_body(401, body);
        assert_eq!(parsed.code.as_deref(), Some("INVALID_AUTH"));
        assert_eq!(parsed.message, "Invalid credentials. [request_id a1b2]");
    }

    #[test]
    fn category_shape_gives_category_message_and_details() {
        let body = r#"{"category":"INSUFFICIENT_PERMISSIONS","message":"Project does not have access.","details":"Key needs the usage:read scope.","request_id":"r-9"}"#;
        let parsed = parse_error_body(403, body);
        assert_eq!(parsed.code.as_deref(), Some("INSUFFICIENT_PERMISSIONS"));
        assert_eq!(
            parsed.message,
            "Project does not have access. (Key needs the usage:read scope.) [request_id r-9]"
        );
    }

    #[test]
    fn category_shape_with_empty_details_omits_them() {
        let body = r#"{"category":"PROJECT_NOT_FOUND","message":"Project not found.","details":"","request_id":null}"#;
        let parsed = parse_error_body(404, body);
        assert_eq!(parsed.code.as_deref(), Some("PROJECT_NOT_FOUND"));
        assert_eq!(parsed.message, "Project not found.");
    }

    #[test]
    fn plain_text_body_is_the_message() {
        let parsed = parse_error_body(404, "  Not Found: invalid project id\n");
        assert_eq!(parsed.code, None);
        assert_eq!(parsed.message, "Not Found: invalid project id");
    }

    #[test]
    fn empty_body_falls_back_to_the_status_reason() {
        let parsed = parse_error_body(503, "");
        assert_eq!(parsed.code, None);
        assert_eq!(parsed.message, "Service Unavailable (empty body)");
    }

    #[test]
    fn json_without_a_message_falls_back_to_code_or_text() {
        assert_eq!(
            parse_error_body(429, r#"{"err_code":"TOO_MANY_REQUESTS"}"#).message,
            "TOO_MANY_REQUESTS"
        );
        assert_eq!(
            parse_error_body(400, r#"{"weird":true}"#).message,
            r#"{"weird":true}"#
        );
        // A JSON value that is not an object is shown as text.
        assert_eq!(parse_error_body(400, "[1,2]").message, "[1,2]");
    }

    #[test]
    fn long_bodies_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_BODY_CHARS + 100);
        let parsed = parse_error_body(500, &long);
        assert_eq!(parsed.message.chars().count(), MAX_BODY_CHARS + 1);
        assert!(parsed.message.ends_with('…'));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn redact_removes_every_copy_of_the_secret() {
        assert_eq!(redact("key abc and abc", "abc"), "key *** and ***");
        assert_eq!(redact("nothing", ""), "nothing");
    }

    #[test]
    fn redact_finds_the_secret_spelled_with_json_escapes() {
        let secret = "dg_secret_42";
        for spelled in [
            r"\u0064g_secret_42",
            r"\u0064\u0067\u005f\u0073ecret_42",
            r"\\u0064g_secret_42",
            r"dg_secret\u005F42",
        ] {
            let text = format!(r#"{{"err_msg":"bad key {spelled}"}}"#);
            let masked = redact(&text, secret);
            assert!(masked.contains("***"), "{spelled}: {masked}");
            assert!(
                !unescape_json(&unescape_json(&masked)).contains(secret),
                "{masked}"
            );
        }
        // Text without the secret keeps its escapes.
        assert_eq!(redact(r"a \u0041 b", secret), r"a \u0041 b");
        assert_eq!(
            unescape_json(r"\ud83d\ude00 \x \u12"),
            "\u{1F600} \\x \\u12"
        );
    }

    #[test]
    fn display_is_readable_and_names_the_code() {
        let err = Error::Unauthorized {
            code: Some("INVALID_AUTH".into()),
            message: "Invalid credentials.".into(),
        };
        assert_eq!(
            err.to_string(),
            "Deepgram rejected the API key (HTTP 401 INVALID_AUTH): Invalid credentials."
        );
        let err = Error::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            err.to_string(),
            "Deepgram kept rate-limiting (HTTP 429) after all attempts (Retry-After: 2s)"
        );
        let err = Error::Transport {
            kind: TransportErrorKind::Timeout,
            message: "operation timed out".into(),
        };
        assert!(err.to_string().starts_with("request timed out"));
    }

    #[test]
    fn helpers_classify_variants() {
        let timeout = Error::Transport {
            kind: TransportErrorKind::Timeout,
            message: String::new(),
        };
        assert!(timeout.is_retryable() && timeout.is_timeout());
        assert_eq!(timeout.status(), None);
        let server = Error::Server {
            status: 502,
            body: String::new(),
        };
        assert!(server.is_retryable() && !server.is_timeout());
        assert_eq!(server.status(), Some(502));
        let forbidden = Error::Forbidden {
            status: 403,
            code: Some("INSUFFICIENT_PERMISSIONS".into()),
            message: String::new(),
        };
        assert!(!forbidden.is_retryable() && forbidden.is_auth());
        assert_eq!(forbidden.code(), Some("INSUFFICIENT_PERMISSIONS"));
        let limited = Error::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(limited.status(), Some(429));
    }
}
