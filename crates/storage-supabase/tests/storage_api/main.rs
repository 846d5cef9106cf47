//! The client against a local mock of Supabase Storage whose answers have the exact shapes
//! of the real server (see `spec/EXTERNAL_APIS.md`): HTTP 400 with a string `statusCode`
//! for most errors, `200 []` for a missing bucket, the gateway's 401, and so on.

mod support;

mod auth_and_encoding;
mod buckets_and_objects;
mod bulk_delete;
mod errors_and_retries;
mod keys_and_backpressure;
mod listing;
