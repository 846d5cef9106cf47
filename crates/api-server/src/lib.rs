#![doc = include_str!("../README.md")]

pub mod app;
pub mod backlog;
pub mod cli;
pub mod config;
pub mod http;
pub mod jobs;
pub use live_view as live;
pub mod logging;
