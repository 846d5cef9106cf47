#![doc = include_str!("../README.md")]

mod client;
mod encode;
mod error;
mod key;
pub mod path;
mod types;

/// Re-exported: the limit a client reports through [`Client::concurrency_limit`].
pub use backpressure::AdaptiveLimit;
pub use client::{
    Client, ClientBuilder, Config, Recheck, DEFAULT_BASE_BACKOFF, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_LIST_PAGE_SIZE, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRY_AFTER, DEFAULT_REQUEST_TIMEOUT, MAX_DELETE_CHUNK,
};
pub use error::Error;
pub use key::{key_rights, KeyRights};
pub use path::{has_query, parse_audio_path, plausible_objects, ObjectRef, PathError};
/// The service-role key's type: `Debug` never shows it, [`ExposeSecret`] is the one way to
/// read it.
pub use secrecy::{ExposeSecret, SecretString};
pub use types::{Bucket, DeleteOutcome, FailedChunk, ObjectEntry};
/// Re-exported so callers can build the project URL [`parse_audio_path`] needs.
pub use url::Url;
