//! The HTTP client: configuration, authentication headers, retries and the Storage calls.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backpressure::{full_jitter, AdaptiveLimit, Signal};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Method, Response};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::encode::{encode_path, encode_segment};
use crate::error::{classify, truncate, MAX_ERROR_BODY};
use crate::key::{key_rights, KeyRights};
use crate::types::{deleted_names, Bucket, DeleteOutcome, FailedChunk, ObjectEntry};
use crate::Error;

/// Default time allowed to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for one whole request (connect, send, read the answer).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of attempts per request, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default first backoff; each retry doubles it (full jitter), up to the cap.
pub const DEFAULT_BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Default cap on one backoff sleep.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Default longest `Retry-After` the client waits out itself; longer ones are returned as
/// [`Error::RateLimited`] so the caller can reschedule.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Default number of requests in flight at once, shared by all clones of a client.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// Most names Storage accepts in one bulk delete, and the default chunk size.
pub const MAX_DELETE_CHUNK: usize = 1000;
/// Default page size for [`Client::list_all_objects`].
pub const DEFAULT_LIST_PAGE_SIZE: u32 = 100;

/// Largest response body read; anything longer is treated as undecodable.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Tunables of a [`Client`]; see the `DEFAULT_*` constants for the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one attempt of a request, answer included.
    pub request_timeout: Duration,
    /// Attempts per request, the first included (at least 1).
    pub max_attempts: u32,
    /// First backoff; doubled on each retry, full jitter, capped by `max_backoff`.
    pub base_backoff: Duration,
    /// Cap on one backoff sleep.
    pub max_backoff: Duration,
    /// Longest `Retry-After` waited out before retrying a 429.
    pub max_retry_after: Duration,
    /// Requests in flight at once across all clones (at least 1).
    pub max_concurrency: usize,
    /// Names per bulk-delete call (1 to [`MAX_DELETE_CHUNK`]).
    pub delete_chunk_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_backoff: DEFAULT_BASE_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            delete_chunk_size: MAX_DELETE_CHUNK,
        }
    }
}

/// Builds a [`Client`] with non-default tunables.
///
/// ```
/// # use std::time::Duration;
/// let client = storage_supabase::ClientBuilder::new("https://abc.supabase.co", "service-key")
///     .max_attempts(2)
///     .request_timeout(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// assert_eq!(client.config().max_attempts, 2);
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    key: SecretString,
    config: Config,
}

impl ClientBuilder {
    /// Starts from the project URL (e.g. `https://abc.supabase.co`) and service-role key.
    pub fn new(base_url: impl Into<String>, service_key: impl Into<SecretString>) -> Self {
        ClientBuilder {
            base_url: base_url.into(),
            key: service_key.into(),
            config: Config::default(),
        }
    }

    /// Replaces every tunable at once.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Time allowed to open a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Time allowed for one attempt of a request.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Attempts per request, the first included; 0 is read as 1.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts;
        self
    }

    /// First backoff before a retry.
    pub fn base_backoff(mut self, backoff: Duration) -> Self {
        self.config.base_backoff = backoff;
        self
    }

    /// Cap on one backoff sleep.
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.config.max_backoff = backoff;
        self
    }

    /// Longest `Retry-After` the client waits out itself.
    pub fn max_retry_after(mut self, wait: Duration) -> Self {
        self.config.max_retry_after = wait;
        self
    }

    /// Requests in flight at once across all clones; 0 is read as 1.
    pub fn max_concurrency(mut self, permits: usize) -> Self {
        self.config.max_concurrency = permits;
        self
    }

    /// Names per bulk-delete call, clamped to 1..=[`MAX_DELETE_CHUNK`].
    pub fn delete_chunk_size(mut self, size: usize) -> Self {
        self.config.delete_chunk_size = size;
        self
    }

    /// Checks the URL and key and builds the client.
    pub fn build(self) -> Result<Client, Error> {
        let mut config = self.config;
        config.max_attempts = config.max_attempts.max(1);
        config.max_concurrency = config.max_concurrency.max(1);
        config.delete_chunk_size = config.delete_chunk_size.clamp(1, MAX_DELETE_CHUNK);

        let project_url = parse_project_url(&self.base_url)?;
        let api_base = format!("{}/storage/v1", project_url.as_str().trim_end_matches('/'));

        let key = self.key.expose_secret();
        if key.trim().is_empty() {
            return Err(Error::InvalidKey {
                reason: "it is empty",
            });
        }
        if key.trim() != key {
            return Err(Error::InvalidKey {
                reason: "it has white space around it",
            });
        }
        if key.contains(['"', '\'']) {
            return Err(Error::InvalidKey {
                reason: "it has quotes in it (a key is given without quotes)",
            });
        }
        if key.contains(char::is_whitespace) {
            return Err(Error::InvalidKey {
                reason: "it has white space in it (give the key alone, without \"Bearer \")",
            });
        }
        // Legacy keys are JWTs (base64url and dots), new ones `sb_secret_…`: anything else
        // (a byte-order mark, a zero-width space, a backtick, `Bearer:`) was pasted along.
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-=+/".contains(c))
        {
            return Err(Error::InvalidKey {
                reason: "it has characters no Supabase key has (a key is letters, digits and \
                         . _ - = + /); was something pasted along with it?",
            });
        }
        let rights = key_rights(key)?;
        let header = |value: String| {
            let mut value = HeaderValue::from_str(&value).map_err(|_| Error::InvalidKey {
                reason: "it has characters not allowed in an HTTP header",
            })?;
            value.set_sensitive(true);
            Ok::<_, Error>(value)
        };
        let mut headers = HeaderMap::new();
        headers.insert("apikey", header(key.to_owned())?);
        headers.insert(AUTHORIZATION, header(format!("Bearer {key}"))?);

        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "background-jobs-storage-supabase/",
                env!("CARGO_PKG_VERSION")
            ))
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A redirect could carry the `apikey` header to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::config(format!("could not build the HTTP client: {e}")))?;

        Ok(Client {
            inner: Arc::new(Inner {
                http,
                limit: AdaptiveLimit::new(config.max_concurrency),
                project_url,
                api_base,
                key: self.key,
                rights,
                config,
            }),
        })
    }
}

/// Asked before a bulk delete is sent again ([`Client::delete_objects_rechecked`]).
pub trait Recheck: Sync {
    /// The names among `names` (of `bucket`) that must not be deleted after all.
    fn withhold<'a>(
        &'a self,
        bucket: &'a str,
        names: &'a [String],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = HashSet<String>> + Send + 'a>>;
}

/// A typed client for the Supabase Storage API. Cheap to clone; clones share the
/// connection pool and the concurrency limit.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Requests in flight: at most `max_concurrency`, fewer while Storage says `SlowDown`.
    limit: AdaptiveLimit,
    project_url: Url,
    api_base: String,
    key: SecretString,
    rights: KeyRights,
    config: Config,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("project_url", &self.inner.project_url.as_str())
            .field("key", &self.inner.key)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Client {
    /// A client with default tunables for the project at `base_url` (e.g.
    /// `https://abc.supabase.co`; `/storage/v1` is appended).
    pub fn new(base_url: &str, service_key: impl Into<SecretString>) -> Result<Self, Error> {
        ClientBuilder::new(base_url, service_key).build()
    }

    /// A builder for non-default tunables.
    pub fn builder(
        base_url: impl Into<String>,
        service_key: impl Into<SecretString>,
    ) -> ClientBuilder {
        ClientBuilder::new(base_url, service_key)
    }

    /// The project URL; pass it to [`crate::path::parse_audio_path`].
    pub fn project_url(&self) -> &Url {
        &self.inner.project_url
    }

    /// The tunables in effect.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// What the key says about its rights; [`KeyRights::Unknown`] keys must pass
    /// [`Client::prove_delete_rights`] before an empty delete answer means anything.
    pub fn key_rights(&self) -> &KeyRights {
        &self.inner.rights
    }

    /// The adaptive limit on requests in flight, shared by all clones: lowered when
    /// Storage answers 429 `SlowDown` or 503, raised again by good answers.
    pub fn concurrency_limit(&self) -> &AdaptiveLimit {
        &self.inner.limit
    }

    /// Uploads (or overwrites) a small object: `POST /storage/v1/object/{bucket}/{path}`
    /// with `x-upsert: true`.
    pub async fn upload_object(
        &self,
        bucket: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), Error> {
        let url = format!(
            "{}/object/{}/{}",
            self.inner.api_base,
            bucket_segment(bucket)?,
            object_path(path)?
        );
        let payload = Payload::Bytes { content_type, body };
        self.execute(Method::POST, &url, payload).await?;
        Ok(())
    }

    /// Proves that the key may delete objects in `bucket`: writes a small probe object
    /// under `probe_name` and deletes it with a bulk delete, whose answer must list it.
    ///
    /// Needed for keys whose rights cannot be read ([`KeyRights::Unknown`]): row-level
    /// security makes a bulk delete by a key without rights answer `200 []`, the same as
    /// for names already gone. A probe refused at upload, or left out of the answer, is
    /// [`Error::RightsNotProven`]; a missing bucket is [`Error::NotFound`]; errors that
    /// say nothing about the key (5xx, transport, 429) are returned as they are.
    pub async fn prove_delete_rights(&self, bucket: &str, probe_name: &str) -> Result<(), Error> {
        let not_proven = |detail: String| Error::RightsNotProven {
            bucket: bucket.to_owned(),
            detail,
        };
        match self
            .upload_object(
                bucket,
                probe_name,
                "text/plain",
                b"delete-rights probe; safe to delete",
            )
            .await
        {
            Ok(()) => {}
            Err(error @ (Error::NotFound { .. } | Error::UnknownRoute { .. })) => {
                return Err(error)
            }
            Err(error) if error.is_retryable() => return Err(error),
            Err(error) => return Err(not_proven(format!("the probe upload was refused: {error}"))),
        }
        let outcome = self.delete_objects(bucket, &[probe_name]).await?;
        if let Some(failed) = outcome.failed.into_iter().next() {
            return Err(failed.error);
        }
        if outcome.deleted.iter().any(|name| name == probe_name) {
            Ok(())
        } else {
            Err(not_proven(format!(
                "Storage did not list the probe object {probe_name:?} as deleted (row-level \
                 security hides what the key may not delete); it may be left in the bucket"
            )))
        }
    }

    /// Looks at a bucket. A bucket that does not exist is [`Error::NotFound`].
    pub async fn get_bucket(&self, bucket: &str) -> Result<Bucket, Error> {
        let url = format!("{}/bucket/{}", self.inner.api_base, bucket_segment(bucket)?);
        let body = self.execute(Method::GET, &url, Payload::None).await?;
        self.decode(&body)
    }

    /// Deletes one object. A missing object (or bucket) is [`Error::NotFound`].
    ///
    /// `path` is the object name with `/` between folders; each segment is percent-encoded.
    /// Empty, `.` and `..` segments are refused, since URL normalisation would turn them
    /// into a different object.
    pub async fn delete_object(&self, bucket: &str, path: &str) -> Result<(), Error> {
        let url = format!(
            "{}/object/{}/{}",
            self.inner.api_base,
            bucket_segment(bucket)?,
            object_path(path)?
        );
        self.execute(Method::DELETE, &url, Payload::None).await?;
        Ok(())
    }

    /// Deletes objects by exact name, in calls of at most `delete_chunk_size` names.
    ///
    /// Duplicates are sent once; an empty list sends nothing. Storage answers with the
    /// objects it deleted, so each name lands in [`DeleteOutcome::deleted`] or
    /// [`DeleteOutcome::not_returned`]. Note that a bucket that does not exist answers
    /// like one where no name exists (everything `not_returned`): check the bucket with
    /// [`Client::get_bucket`] before reading `not_returned` as "already gone".
    ///
    /// A failing call does not lose earlier results: its names go to
    /// [`DeleteOutcome::failed`] with the error. After an error that would fail every call
    /// (bad key, rate limit or server errors after retries, transport) the remaining names
    /// are not sent and are listed in [`DeleteOutcome::skipped`]. `Err` is returned only
    /// when nothing could be sent at all (an invalid bucket name).
    pub async fn delete_objects<S: AsRef<str>>(
        &self,
        bucket: &str,
        names: &[S],
    ) -> Result<DeleteOutcome, Error> {
        self.delete_objects_rechecked(bucket, names, None).await
    }

    /// [`Client::delete_objects`], asking `recheck` before each attempt after a chunk's
    /// first (a retry after a 429, a 5xx or a timeout, maybe seconds later) which of its
    /// names must not be deleted after all: those are not sent, and are listed in
    /// [`DeleteOutcome::withheld`]. For a caller whose reasons to delete an object can
    /// change while Storage is asked again.
    pub async fn delete_objects_rechecked<S: AsRef<str>>(
        &self,
        bucket: &str,
        names: &[S],
        recheck: Option<&dyn Recheck>,
    ) -> Result<DeleteOutcome, Error> {
        let url = format!("{}/object/{}", self.inner.api_base, bucket_segment(bucket)?);
        let mut seen = HashSet::new();
        let unique: Vec<String> = names
            .iter()
            .map(AsRef::as_ref)
            .filter(|name| seen.insert(*name))
            .map(str::to_owned)
            .collect();

        let mut outcome = DeleteOutcome::default();
        let mut chunks = unique.chunks(self.inner.config.delete_chunk_size);
        while let Some(chunk) = chunks.next() {
            let mut chunk = chunk.to_vec();
            let answer = self
                .delete_chunk(&url, bucket, &mut chunk, recheck, &mut outcome.withheld)
                .await;
            match answer {
                Ok(returned) => {
                    let returned: HashSet<&str> = returned.iter().map(String::as_str).collect();
                    for name in chunk {
                        if returned.contains(name.as_str()) {
                            outcome.deleted.push(name);
                        } else {
                            outcome.not_returned.push(name);
                        }
                    }
                }
                Err(error) => {
                    let stop = fails_every_chunk(&error);
                    outcome.failed.push(FailedChunk {
                        names: chunk,
                        error,
                    });
                    if stop {
                        outcome.skipped.extend(chunks.flatten().cloned());
                        break;
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// One bulk delete with retries; the names Storage listed as deleted. Before each
    /// retry, `recheck` may take names out of `chunk` (into `withheld`).
    async fn delete_chunk(
        &self,
        url: &str,
        bucket: &str,
        chunk: &mut Vec<String>,
        recheck: Option<&dyn Recheck>,
        withheld: &mut Vec<String>,
    ) -> Result<Vec<String>, Error> {
        let mut attempt = 1;
        loop {
            if let Some(recheck) = recheck.filter(|_| attempt > 1) {
                let keep = recheck.withhold(bucket, chunk).await;
                if !keep.is_empty() {
                    chunk.retain(|name| {
                        let kept = keep.contains(name);
                        if kept {
                            withheld.push(name.clone());
                        }
                        !kept
                    });
                }
                if chunk.is_empty() {
                    return Ok(Vec::new());
                }
            }
            let body = serde_json::json!({ "prefixes": &*chunk });
            let error = match self
                .attempt(Method::DELETE, url, Payload::Json(&body))
                .await
            {
                Ok(bytes) => {
                    return deleted_names(&bytes)
                        .map_err(|e| self.decode_error(&e.to_string(), &bytes))
                }
                Err(error) => error,
            };
            if !self.back_off(&Method::DELETE, url, &error, attempt).await {
                return Err(error);
            }
            attempt += 1;
        }
    }

    /// Lists one page of the folder `prefix` (`""` for the bucket's top level), sorted by
    /// name. Names are relative to `prefix`; folders are entries without an id.
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<ObjectEntry>, Error> {
        if limit == 0 {
            return Err(Error::config("list limit must be at least 1"));
        }
        let url = format!(
            "{}/object/list/{}",
            self.inner.api_base,
            bucket_segment(bucket)?
        );
        let body = serde_json::json!({
            "prefix": prefix,
            "limit": limit,
            "offset": offset,
            "sortBy": { "column": "name", "order": "asc" },
        });
        let bytes = self
            .execute(Method::POST, &url, Payload::Json(&body))
            .await?;
        self.decode(&bytes)
    }

    /// Lists the whole folder `prefix`, page by page (`page_size` entries per call) until
    /// a short page.
    pub async fn list_all_objects(
        &self,
        bucket: &str,
        prefix: &str,
        page_size: u32,
    ) -> Result<Vec<ObjectEntry>, Error> {
        let mut all = Vec::new();
        let mut offset: u32 = 0;
        loop {
            let page = self.list_objects(bucket, prefix, page_size, offset).await?;
            let len = page.len();
            all.extend(page);
            if len < page_size as usize {
                return Ok(all);
            }
            offset = offset.saturating_add(page_size);
        }
    }

    /// Sends a request with retries; returns the body of a 2xx answer.
    async fn execute(
        &self,
        method: Method,
        url: &str,
        body: Payload<'_>,
    ) -> Result<Vec<u8>, Error> {
        let mut attempt = 1;
        loop {
            let error = match self.attempt(method.clone(), url, body).await {
                Ok(bytes) => return Ok(bytes),
                Err(error) => error,
            };
            if !self.back_off(&method, url, &error, attempt).await {
                return Err(error);
            }
            attempt += 1;
        }
    }

    /// After failed attempt number `attempt`: waits before the next one and says so, or
    /// answers `false` when `error` is not retried or the attempts are spent.
    async fn back_off(&self, method: &Method, url: &str, error: &Error, attempt: u32) -> bool {
        let config = &self.inner.config;
        let Some(delay) = retry_delay(config, error, attempt) else {
            return false;
        };
        log::warn!(
            "Supabase Storage {method} {url}: attempt {attempt}/{} failed: {error}; \
             retrying in {delay:?}",
            config.max_attempts
        );
        tokio::time::sleep(delay).await;
        true
    }

    /// One attempt, holding a slot of the adaptive limit and reporting the answer to it.
    async fn attempt(
        &self,
        method: Method,
        url: &str,
        body: Payload<'_>,
    ) -> Result<Vec<u8>, Error> {
        let permit = self.inner.limit.acquire().await;
        let result = self.send(method, url, body).await;
        permit.record(match &result {
            Ok(_) => Signal::Good,
            Err(error) if error.is_overload() => Signal::Overloaded {
                // The same cap as the client's own wait before a retry: a longer one is
                // handed to the caller rather than imposed on every request.
                retry_after: match error {
                    Error::RateLimited { retry_after } => {
                        retry_after.filter(|wait| *wait <= self.inner.config.max_retry_after)
                    }
                    _ => None,
                },
            },
            Err(Error::Transport { .. } | Error::Server { .. }) => Signal::Neutral,
            Err(_) => Signal::Good,
        });
        result
    }

    async fn send(&self, method: Method, url: &str, body: Payload<'_>) -> Result<Vec<u8>, Error> {
        let mut request = self.inner.http.request(method, url);
        match body {
            Payload::None => {}
            Payload::Json(body) => request = request.json(body),
            Payload::Bytes { content_type, body } => {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .header("x-upsert", "true")
                    .body(body.to_vec());
            }
        }
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let (bytes, complete) = read_body(response).await.map_err(|e| self.transport(&e))?;
        if status.is_success() {
            if !complete {
                return Err(self.decode_error("answer too large", &bytes));
            }
            return Ok(bytes);
        }
        let text = self.redact(&String::from_utf8_lossy(&bytes));
        Err(classify(status, &headers, &text))
    }

    fn transport(&self, error: &reqwest::Error) -> Error {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::Transport {
            message: self.redact(&message),
            timeout: error.is_timeout(),
        }
    }

    /// Removes the key from text that came from the network, should a server echo it.
    fn redact(&self, text: &str) -> String {
        text.replace(self.inner.key.expose_secret(), "***")
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(bytes).map_err(|e| self.decode_error(&e.to_string(), bytes))
    }

    /// A successful answer that could not be read, with its start for the reader: redacted
    /// whole before it is cut, as a captive portal or a proxy may echo the request's headers.
    fn decode_error(&self, message: &str, body: &[u8]) -> Error {
        Error::Decode {
            message: self.redact(message),
            body: truncate(&self.redact(&String::from_utf8_lossy(body)), MAX_ERROR_BODY),
        }
    }
}

/// A request's body.
#[derive(Clone, Copy)]
enum Payload<'a> {
    None,
    Json(&'a serde_json::Value),
    Bytes {
        content_type: &'a str,
        body: &'a [u8],
    },
}

/// How long to wait before attempt `attempt + 1`, or `None` to give up.
fn retry_delay(config: &Config, error: &Error, attempt: u32) -> Option<Duration> {
    if !error.is_retryable() || attempt >= config.max_attempts {
        return None;
    }
    if let Error::RateLimited {
        retry_after: Some(after),
    } = error
    {
        return (*after <= config.max_retry_after).then_some(*after);
    }
    Some(full_jitter(
        attempt,
        config.base_backoff,
        config.max_backoff,
    ))
}

/// Errors after which sending further delete chunks is pointless.
fn fails_every_chunk(error: &Error) -> bool {
    !matches!(
        error,
        Error::NotFound { .. } | Error::InvalidRequest { .. } | Error::Decode { .. }
    )
}

/// Reads at most [`MAX_BODY_BYTES`]; the flag says whether the body was complete.
async fn read_body(mut response: Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// Reads `SUPABASE_URL`. No message repeats the value: its query or user info may hold a
/// key (`?apikey=…`), and these errors reach logs and the console.
fn parse_project_url(raw: &str) -> Result<Url, Error> {
    let url = Url::parse(raw.trim()).map_err(|e| {
        Error::invalid_url(format!(
            "the Supabase project URL is not a valid URL ({e}); expected https://<project>.supabase.co"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Error::invalid_url(format!(
            "the Supabase project URL must be http(s)://host, not {}:…",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid_url(
            "the Supabase project URL must not carry credentials",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid_url(
            "the Supabase project URL must not have a query or fragment; the key goes in SUPABASE_SERVICE_ROLE_KEY",
        ));
    }
    if url.port() == Some(0) {
        return Err(Error::invalid_url(
            "the Supabase project URL must not name port 0",
        ));
    }
    // A path prefix (a self-hosted project behind a proxy) is plain: an escaped character
    // may be read differently by the proxy than written here. (Dot segments, escaped or
    // not, are resolved by the URL parser before anything is sent.)
    if url.path().contains('%') {
        return Err(Error::invalid_url(
            "the path of the Supabase project URL must not hold %-escapes",
        ));
    }
    if url.path().trim_end_matches('/').ends_with("/storage/v1") {
        return Err(Error::invalid_url(
            "the Supabase project URL is the project's address without /storage/v1 (that part is added to every call)",
        ));
    }
    Ok(url)
}

/// Checks and encodes a bucket name for use as one path segment.
fn bucket_segment(bucket: &str) -> Result<String, Error> {
    if bucket.is_empty() || bucket == "." || bucket == ".." || bucket.contains('/') {
        return Err(Error::config(format!(
            "invalid bucket name {:?}",
            truncate(bucket, 100)
        )));
    }
    Ok(encode_segment(bucket))
}

/// Checks and encodes an object path, segment by segment.
fn object_path(path: &str) -> Result<String, Error> {
    if path
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(Error::config(format!(
            "invalid object path {:?}: empty, `.` or `..` segment",
            truncate(path, 200)
        )));
    }
    Ok(encode_path(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..Config::default()
        }
    }

    #[test]
    fn retry_delay_uses_full_jitter_within_the_cap() {
        let config = config();
        let error = Error::Server {
            status: 503,
            body: String::new(),
        };
        for _ in 0..100 {
            let delay = retry_delay(&config, &error, 3).unwrap();
            assert!(delay <= Duration::from_millis(400), "{delay:?}");
        }
        assert_eq!(retry_delay(&config, &error, config.max_attempts), None);
    }

    #[test]
    fn retry_delay_honours_retry_after_up_to_the_limit() {
        let config = config();
        let limited = |secs| Error::RateLimited {
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            retry_delay(&config, &limited(3), 1),
            Some(Duration::from_secs(3))
        );
        assert_eq!(retry_delay(&config, &limited(3600), 1), None);
    }

    #[test]
    fn four_xx_is_never_retried() {
        let not_found = Error::NotFound {
            code: "NoSuchKey".into(),
            message: "Object not found".into(),
        };
        assert_eq!(retry_delay(&config(), &not_found, 1), None);
    }

    #[test]
    fn object_paths_refuse_segments_that_url_normalisation_would_change() {
        assert_eq!(object_path("a b/c#d.webm").unwrap(), "a%20b/c%23d.webm");
        for bad in ["", "a//b", "/a", "a/", "a/../b", "./a", ".."] {
            assert!(object_path(bad).is_err(), "{bad:?}");
        }
        assert!(bucket_segment("a/b").is_err());
        assert!(bucket_segment("").is_err());
        assert_eq!(bucket_segment("my bucket").unwrap(), "my%20bucket");
    }

    #[test]
    fn builder_clamps_tunables() {
        let client = Client::builder("https://abc.supabase.co/", "k")
            .max_attempts(0)
            .max_concurrency(0)
            .delete_chunk_size(5000)
            .build()
            .unwrap();
        assert_eq!(client.config().max_attempts, 1);
        assert_eq!(client.config().max_concurrency, 1);
        assert_eq!(client.config().delete_chunk_size, MAX_DELETE_CHUNK);
        assert_eq!(client.inner.api_base, "https://abc.supabase.co/storage/v1");
    }

    #[test]
    fn bad_configuration_is_refused_without_echoing_the_key() {
        assert!(Client::new("not a url", "k").is_err());
        assert!(Client::new("ftp://abc.supabase.co", "k").is_err());
        assert!(Client::new("https://u:p@abc.supabase.co", "k").is_err());
        assert!(Client::new("https://abc.supabase.co", " ").is_err());
        let err = Client::new("https://abc.supabase.co", "secret\nkey").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        // Pasted with its quotes, a prefix or white space: refused before any request,
        // whatever kind of key is inside.
        for (key, says) in [
            ("\"sb_secret_abc123\"", "quotes"),
            ("'sb_publishable_abc123'", "quotes"),
            (" sb_secret_abc123", "white space around"),
            ("Bearer sb_secret_abc123", "Bearer"),
            ("\u{feff}sb_secret_abc123", "characters no Supabase key has"),
            ("sb_secret_abc123\u{200b}", "characters no Supabase key has"),
            ("`sb_secret_abc123`", "characters no Supabase key has"),
            ("Bearer:sb_secret_abc123", "characters no Supabase key has"),
            ("sb_secret_abc123é", "characters no Supabase key has"),
        ] {
            let err = Client::new("https://abc.supabase.co", key).unwrap_err();
            assert!(matches!(err, Error::InvalidKey { .. }), "{key}: {err}");
            assert!(err.to_string().contains(says), "{key}: {err}");
            assert!(!err.to_string().contains("abc123"), "{key}: {err}");
        }
    }

    #[test]
    fn a_bad_project_url_is_refused_without_echoing_it() {
        for url in [
            "https://abc.supabase.co/?apikey=sekrit-123",
            "https://abc.supabase.co/#sekrit-123",
            "https://user:sekrit-123@abc.supabase.co",
            "ftp://abc.supabase.co/?apikey=sekrit-123",
            "https://[sekrit-123/",
            "sekrit-123",
        ] {
            let err = Client::new(url, "k").unwrap_err().to_string();
            assert!(!err.contains("sekrit"), "{url}: {err}");
            assert!(err.contains("Supabase project URL"), "{url}: {err}");
        }
    }
}
