#![doc = include_str!("../README.md")]

mod client;
mod config;
mod error;
mod limiter;
mod model;

pub use backpressure::AdaptiveLimit;
pub use client::Client;
pub use config::{
    ClientConfig, DEFAULT_BASE_BACKOFF, DEFAULT_BASE_URL, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_CONCURRENCY, DEFAULT_REQUEST_TIMEOUT,
    MAX_RESPONSE_BYTES, USER_AGENT,
};
pub use error::{Error, TransportErrorKind};
pub use model::{
    CostState, ListRequestsParams, Project, RequestRecord, RequestResponse, RequestStatus,
    RequestsPage, ResponseDetails, MAX_LIST_LIMIT,
};
/// The API key's type: `Debug` never shows it, [`ExposeSecret`] is the one way to read it.
pub use secrecy::{ExposeSecret, SecretString};
