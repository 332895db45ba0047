//! Integration tests: the real server over HTTP on 127.0.0.1:0 against mock upstreams, asserting
//! on what the client got and what the upstream received.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    clippy::disallowed_methods
)]

mod support;

mod admin;
mod anthropic;
mod audit;
mod auth;
mod azure;
mod bedrock;
mod binary;
mod budget;
mod cache;
mod chat;
mod cohere;
mod completions;
mod config;
mod dashboard;
mod dlp;
mod dlp_quality;
mod doctor;
mod egress;
mod errors;
mod forwarding;
mod gemini;
mod messages;
mod mock_provider;
mod presets;
mod reload;
mod report;
mod responses;
mod routing;
mod shared;
mod streaming;
mod tls;
