#![doc = include_str!("../README.md")]

pub mod app;
pub mod backlog;
pub mod cli;
pub mod config;
pub mod http;
pub mod jobs;
pub mod live;
pub mod logging;
