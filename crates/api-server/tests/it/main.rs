//! The server's integration tests, one module per area, in one test binary: each binary
//! links the whole server and its dependencies again, so one binary instead of a dozen saves
//! minutes of linking per build. No test needs a process of its own: the servers under test
//! run as child processes (`support::server`, `support::browser`), and the in-process ones
//! (`http`, the jobs) share nothing but the metrics recorder, which only ever adds series.
//!
//! Run one area with its module path, e.g. `cargo test -p api-server --test it access::`.

mod support;

mod access;
mod audio_cleanup;
mod browser;
mod cli;
mod console;
mod cost_update;
mod fuzz;
mod http;
mod live;
mod production;
mod reliability;
mod robustness;
mod takeover;
