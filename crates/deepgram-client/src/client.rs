//! The HTTP client: routes, retries, limits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backpressure::{full_jitter, parse_retry_after, AdaptiveLimit, Signal};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

use secrecy::{ExposeSecret, SecretString};

use crate::config::{ClientConfig, MAX_RESPONSE_BYTES, USER_AGENT};
use crate::error::{
    parse_error_body, redact, truncate, Error, TransportErrorKind, INSUFFICIENT_PERMISSIONS,
    PROJECT_NOT_FOUND,
};
use crate::limiter::RateLimiter;
use crate::model::{
    unwrap_envelope, ListRequestsParams, Project, ProjectsBody, RawRequestsPage, RequestRecord,
    RequestsPage,
};

/// A client for the Deepgram Management API.
///
/// Cheap to clone: clones share one connection pool, one concurrency limit and one rate
/// limit. Every call retries 429, 5xx and transport failures with exponential backoff and
/// full jitter (honouring `Retry-After`), up to [`ClientConfig::max_attempts`]; other
/// errors return at once.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
    auth_header: HeaderValue,
    config: ClientConfig,
    /// Requests in flight: at most `max_concurrency`, fewer while Deepgram answers 429/503.
    in_flight: AdaptiveLimit,
    rate_limiter: Option<RateLimiter>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .field("api_key", &self.inner.api_key)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Attempt {
    /// Final: success or an error not worth retrying.
    Done(Result<Vec<u8>, Error>),
    /// Worth another try, after `retry_after` if the server asked for one.
    Retry {
        error: Error,
        retry_after: Option<Duration>,
    },
}

impl Client {
    /// A client with default tunables for `base_url` (e.g. `https://api.deepgram.com`, or a
    /// mock server's URL in tests). Fails on an unusable URL or an empty key.
    pub fn new(base_url: &str, api_key: impl Into<SecretString>) -> Result<Self, Error> {
        Self::with_config(base_url, api_key, ClientConfig::default())
    }

    /// A client with the given tunables; see [`ClientConfig`].
    pub fn with_config(
        base_url: &str,
        api_key: impl Into<SecretString>,
        config: ClientConfig,
    ) -> Result<Self, Error> {
        config.validate()?;
        let api_key = api_key.into();
        let base_url = parse_base_url(base_url)?;
        if api_key.expose_secret().trim().is_empty() {
            return Err(Error::Config {
                message: "the Deepgram API key is empty".to_owned(),
            });
        }
        let mut auth_header = HeaderValue::from_str(&format!("Token {}", api_key.expose_secret()))
            .map_err(|_| Error::Config {
                message: "the Deepgram API key contains characters not allowed in an HTTP header"
                    .to_owned(),
            })?;
        auth_header.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // Deepgram does not redirect its API: an answer from wherever a 3xx points is
            // not Deepgram's, and the 3xx itself is an `Error::NotDeepgram` instead.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| Error::Config {
                message: format!("could not build the HTTP client: {e}"),
            })?;
        let rate_limiter = config
            .requests_per_second
            .map(|rate| RateLimiter::new(Duration::from_secs_f64(1.0 / rate)));
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                api_key,
                auth_header,
                in_flight: AdaptiveLimit::new(config.max_concurrency),
                rate_limiter,
                config,
            }),
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// The tunables in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The adaptive limit on requests in flight, shared by every clone and so by every
    /// task of a job: a 429 or 503 lowers it for everyone (and a `Retry-After` pauses every
    /// new request until it has passed), good answers raise it back towards
    /// [`ClientConfig::max_concurrency`].
    pub fn concurrency_limit(&self) -> &AdaptiveLimit {
        &self.inner.in_flight
    }

    /// `GET /v1/projects/{project_id}/requests/{request_id}`: one past request with its
    /// cost. Accepts the bare record and `{"request": {...}}`. An unknown or expired
    /// request is [`Error::NotFound`].
    pub async fn get_request(
        &self,
        project_id: &str,
        request_id: &str,
    ) -> Result<RequestRecord, Error> {
        check_ids(&[("project_id", project_id), ("request_id", request_id)])?;
        let url = self.url(&["v1", "projects", project_id, "requests", request_id], &[])?;
        let body = self.get(&url).await?;
        let value = self.decode::<serde_json::Value>(&url, &body)?;
        serde_json::from_value(unwrap_envelope(value))
            .map_err(|e| self.decode_error(&url, &e.to_string(), &body))
    }

    /// `GET /v1/projects`: the projects the key can see.
    pub async fn list_projects(&self) -> Result<Vec<Project>, Error> {
        let url = self.url(&["v1", "projects"], &[])?;
        let body = self.get(&url).await?;
        Ok(self.decode::<ProjectsBody>(&url, &body)?.into_projects())
    }

    /// `GET /v1/projects/{project_id}/requests?…`: one page of past requests, newest first.
    /// `page`/`limit` missing from the answer are taken from `params` (limit default 10,
    /// Deepgram's own). Use [`RequestsPage::is_last_page`] to stop paging, or
    /// [`Client::list_all_requests`].
    pub async fn list_requests(
        &self,
        project_id: &str,
        params: &ListRequestsParams,
    ) -> Result<RequestsPage, Error> {
        let query = params.query_pairs();
        check_ids(&[("project_id", project_id)])?;
        let url = self.url(&["v1", "projects", project_id, "requests"], &query)?;
        let body = self.get(&url).await?;
        let raw = self.decode::<RawRequestsPage>(&url, &body)?;
        let requests = raw
            .requests
            .into_iter()
            .map(|value| serde_json::from_value(unwrap_envelope(value)))
            .collect::<Result<Vec<RequestRecord>, _>>()
            .map_err(|e| self.decode_error(&url, &e.to_string(), &body))?;
        Ok(RequestsPage {
            page: raw.page.or(params.page).unwrap_or(0),
            limit: raw
                .limit
                .or(params.limit.map(|l| l.clamp(1, crate::MAX_LIST_LIMIT)))
                .unwrap_or(10),
            requests,
        })
    }

    /// Every record matching `params`, paging from `params.page` (default 0) until a page
    /// is shorter than its limit. Memory grows with the result: bound it with `start`/`end`.
    /// A page answered with another page number than asked is an [`Error::Decode`].
    pub async fn list_all_requests(
        &self,
        project_id: &str,
        params: &ListRequestsParams,
    ) -> Result<Vec<RequestRecord>, Error> {
        let mut params = params.clone();
        let mut page_number = params.page.unwrap_or(0);
        let mut all = Vec::new();
        loop {
            params.page = Some(page_number);
            let page = self.list_requests(project_id, &params).await?;
            if page.page != page_number {
                // A server that ignores `page` would otherwise be paged forever.
                return Err(Error::Decode {
                    message: format!(
                        "GET /v1/projects/{project_id}/requests: asked for page {page_number}, got page {}",
                        page.page
                    ),
                    body: String::new(),
                });
            }
            let last = page.is_last_page();
            all.extend(page.requests);
            if last {
                return Ok(all);
            }
            page_number = match page_number.checked_add(1) {
                Some(next) => next,
                None => return Ok(all),
            };
        }
    }

    /// Builds `base_url` + percent-encoded `segments` + `query`. Check ids with
    /// [`check_ids`] first.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, Error> {
        let mut url = self.inner.base_url.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| Error::Config {
                message: "the base URL cannot have a path".to_owned(),
            })?;
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// GET with retries; the body of a 2xx answer, or the error.
    async fn get(&self, url: &Url) -> Result<Vec<u8>, Error> {
        let config = &self.inner.config;
        let mut attempt: u32 = 1;
        loop {
            let (error, retry_after) = match self.attempt(url).await {
                Attempt::Done(result) => return result,
                Attempt::Retry { error, retry_after } => (error, retry_after),
            };
            if attempt >= config.max_attempts {
                log::debug!(
                    "Deepgram GET {}: giving up after {attempt} attempt(s): {error}",
                    url.path()
                );
                return Err(error);
            }
            let delay = retry_after.map_or_else(
                || full_jitter(attempt, config.base_backoff, config.max_backoff),
                |asked| asked.min(config.max_backoff),
            );
            // The error reads as the final one ("… after all attempts"); this one is not.
            let said = error.to_string().replace(" after all attempts", "");
            log::warn!(
                "Deepgram GET {}: attempt {attempt}/{} failed ({said}); retrying in {} ms",
                url.path(),
                config.max_attempts,
                delay.as_millis()
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One request, holding a slot of the adaptive limit (and a rate slot) while it runs,
    /// and telling the limit what Deepgram answered.
    async fn attempt(&self, url: &Url) -> Attempt {
        let permit = self.inner.in_flight.acquire().await;
        let attempt = self.send(url).await;
        permit.record(match &attempt {
            Attempt::Retry {
                error: Error::RateLimited { .. } | Error::Server { status: 503, .. },
                retry_after,
            } => Signal::Overloaded {
                // The same cap as the client's own wait before a retry.
                retry_after: retry_after.map(|wait| wait.min(self.inner.config.max_backoff)),
            },
            Attempt::Retry { .. } => Signal::Neutral,
            Attempt::Done(_) => Signal::Good,
        });
        attempt
    }

    async fn send(&self, url: &Url) -> Attempt {
        let inner = &self.inner;
        if let Some(limiter) = &inner.rate_limiter {
            limiter.acquire().await;
        }
        log::debug!("Deepgram GET {}", url.path());
        let sent = inner
            .http
            .get(url.clone())
            .header(AUTHORIZATION, inner.auth_header.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return self.transport_failure(&e),
        };
        let status = response.status();
        let html = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/html")
            });
        // `Retry-After: 0`, a negative number or a date in the past asks for no wait at
        // all: ignored, so that the exponential backoff still spaces the attempts.
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after)
            .filter(|wait| !wait.is_zero());
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = match read_capped(response, MAX_RESPONSE_BYTES).await {
            Ok(Body::Whole(body)) => body,
            // An error's body is only quoted, so its first bytes are enough.
            Ok(Body::Cut(body)) if !status.is_success() => body,
            Ok(Body::Cut(_)) => {
                return Attempt::Done(Err(Error::TooLarge {
                    status: status.as_u16(),
                    limit: MAX_RESPONSE_BYTES,
                }))
            }
            Err(e) => return self.transport_failure(&e),
        };
        // Answers Deepgram never gives: a redirect (its API does not redirect), a proxy
        // asking for its own credentials, an HTML page (unless a 429 or 5xx, which are
        // retried as such whatever their body), a success that is not JSON.
        let retried = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
        let not_deepgram = if status.is_redirection() {
            Some(match &location {
                Some(to) => format!("a redirect to {}", truncate(&self.scrub(to))),
                None => "a redirect".to_owned(),
            })
        } else if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            Some("a proxy asking for its own credentials".to_owned())
        } else if !retried && status != StatusCode::UNAUTHORIZED && (html || looks_like_html(&body))
        {
            Some("an HTML page".to_owned())
        } else if status.is_success() && body.iter().all(u8::is_ascii_whitespace) {
            Some("an empty body".to_owned())
        } else if status.is_success()
            && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err()
        {
            Some("a body that is not JSON".to_owned())
        } else {
            None
        };
        if let Some(what) = not_deepgram {
            return Attempt::Done(Err(Error::NotDeepgram {
                status: status.as_u16(),
                what,
                body: truncate(self.scrub(&String::from_utf8_lossy(&body)).trim()),
            }));
        }
        if status.is_success() {
            return Attempt::Done(Ok(body));
        }
        self.classify_failure(status, retry_after, &body)
    }

    fn classify_failure(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Attempt {
        let text = String::from_utf8_lossy(body);
        let code = status.as_u16();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Retry {
                error: Error::RateLimited { retry_after },
                retry_after,
            };
        }
        if status.is_server_error() {
            return Attempt::Retry {
                error: Error::Server {
                    status: code,
                    body: truncate(self.scrub(&text).trim()),
                },
                retry_after,
            };
        }
        // Parsed before scrubbing, and scrubbed after: parsing decodes JSON escapes, which
        // could spell the key.
        let parsed = parse_error_body(code, &self.scrub_literal(&text));
        let code_text = parsed.code.map(|c| self.scrub(&c));
        let message = truncate(&self.scrub(&parsed.message));
        Attempt::Done(Err(match status {
            StatusCode::FORBIDDEN => Error::Forbidden {
                status: code,
                code: code_text,
                message,
            },
            StatusCode::UNAUTHORIZED if code_text.as_deref() == Some(INSUFFICIENT_PERMISSIONS) => {
                Error::Forbidden {
                    status: code,
                    code: code_text,
                    message,
                }
            }
            StatusCode::UNAUTHORIZED => Error::Unauthorized {
                code: code_text,
                message,
            },
            StatusCode::NOT_FOUND if code_text.as_deref() == Some(PROJECT_NOT_FOUND) => {
                Error::ProjectNotFound { message }
            }
            StatusCode::NOT_FOUND => Error::NotFound {
                code: code_text,
                message,
            },
            _ => Error::Http {
                status: code,
                code: code_text,
                message,
            },
        }))
    }

    fn transport_failure(&self, error: &reqwest::Error) -> Attempt {
        let kind = if error.is_timeout() {
            TransportErrorKind::Timeout
        } else if error.is_connect() {
            TransportErrorKind::Connect
        } else {
            TransportErrorKind::Other
        };
        // The whole chain: reqwest's top message alone ("error sending request") hides
        // the cause.
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !message.contains(&cause_text) {
                message = format!("{message}: {cause_text}");
            }
            source = cause.source();
        }
        let error = Error::Transport {
            kind,
            message: self.scrub(&message),
        };
        // Every transport failure of a GET is safe to retry: nothing was changed.
        Attempt::Retry {
            error,
            retry_after: None,
        }
    }

    /// Reads a success answer with every string in it scrubbed of the key (an echoed
    /// error message, decoded escapes included): its text may be stored and logged.
    fn decode<T: DeserializeOwned>(&self, url: &Url, body: &[u8]) -> Result<T, Error> {
        let mut value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| self.decode_error(url, &e.to_string(), body))?;
        self.scrub_value(&mut value);
        serde_json::from_value(value).map_err(|e| self.decode_error(url, &e.to_string(), body))
    }

    /// Scrubs every string (and object key) of a decoded answer.
    fn scrub_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(text) => *text = self.scrub(text),
            Value::Array(items) => items.iter_mut().for_each(|item| self.scrub_value(item)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    self.scrub_value(&mut item);
                    map.insert(self.scrub(&key), item);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn decode_error(&self, url: &Url, reason: &str, body: &[u8]) -> Error {
        Error::Decode {
            message: format!("GET {}: {reason}", url.path()),
            body: truncate(&self.scrub(&String::from_utf8_lossy(body))),
        }
    }

    /// Masks only the key's literal copies, keeping JSON escapes as they are (so that the
    /// text still parses); what is read out of it must still go through [`Self::scrub`].
    fn scrub_literal(&self, text: &str) -> String {
        text.replace(self.inner.api_key.expose_secret(), "***")
    }

    /// Removes the API key from text that came from the network.
    fn scrub(&self, text: &str) -> String {
        redact(text, self.inner.api_key.expose_secret())
    }
}

/// A body as read: whole, or its first [`MAX_RESPONSE_BYTES`] when longer.
enum Body {
    Whole(Vec<u8>),
    Cut(Vec<u8>),
}

/// Reads at most `cap` bytes of the body, chunk by chunk, so that an endless or huge answer
/// never takes more memory than that; a longer body is cut (and the connection dropped).
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Body, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|length| length > cap as u64)
    {
        return Ok(Body::Cut(Vec::new()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok(Body::Cut(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Body::Whole(body))
}

/// Whether a body starts like an HTML document (`<!DOCTYPE html>`, `<html>`).
fn looks_like_html(body: &[u8]) -> bool {
    let start: Vec<u8> = body
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(15)
        .map(u8::to_ascii_lowercase)
        .collect();
    start.starts_with(b"<!doctype html") || start.starts_with(b"<html")
}

/// Rejects ids that would change the route: empty, `.` or `..` (the URL library drops
/// dot segments instead of encoding them). Everything else is percent-encoded.
fn check_ids(ids: &[(&str, &str)]) -> Result<(), Error> {
    for (name, id) in ids {
        if id.is_empty() || *id == "." || *id == ".." {
            return Err(Error::InvalidArgument {
                message: format!("{name} {id:?} cannot be used in a URL path"),
            });
        }
    }
    Ok(())
}

/// No message repeats the value: its query or user info may hold a key.
fn parse_base_url(base_url: &str) -> Result<Url, Error> {
    let url = Url::parse(base_url.trim()).map_err(|e| Error::Config {
        message: format!("invalid base URL ({e}): must be http(s)://host[/path]"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(Error::Config {
            message: format!(
                "invalid base URL: must be http(s)://host[/path], not {}:…",
                url.scheme()
            ),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config {
            message: "invalid base URL: must not have a query or fragment".to_owned(),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_base_urls_and_keys_are_config_errors_without_the_key() {
        for url in ["", "ftp://x", "mailto:a@b", "https://x/?q=1"] {
            assert!(
                matches!(Client::new(url, "k"), Err(Error::Config { .. })),
                "{url:?} should be rejected"
            );
        }
        let err = Client::new("https://x", "bad\nkey-secret").expect_err("newline in key");
        assert!(!err.to_string().contains("key-secret"), "{err}");
        assert!(matches!(
            Client::new("https://x", ""),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn urls_keep_a_base_path_and_encode_ids() {
        let client = Client::new("http://localhost:1234/proxy/", "k").expect("client");
        let url = client
            .url(
                &["v1", "projects", "p 1", "requests", "a/b?c#d"],
                &[("limit", "5".to_owned())],
            )
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://localhost:1234/proxy/v1/projects/p%201/requests/a%2Fb%3Fc%23d?limit=5"
        );
        for bad in ["", ".", ".."] {
            assert!(matches!(
                check_ids(&[("request_id", bad)]),
                Err(Error::InvalidArgument { .. })
            ));
        }
    }
}
