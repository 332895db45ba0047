//! A self-hostable LLM gateway: OpenAI-compatible endpoints in front of model providers,
//! configured by one TOML file, with no database.
//!
//! Components, in the order a request meets them:
//! - `server`: listeners, connection handling, graceful drain; the admin endpoints
//!   (`admin`: reload, report and dashboard, behind the admin token).
//! - `pipeline`: the fixed request path (`auth`, `budget`, `route`, `forward`, the stream
//!   `relay`).
//! - `pricing`: the built-in price table and the cost of a request.
//! - `ledger`: wallets, reservations, rate limits and the on-disk spend journal.
//! - `dlp`: PII/secret detection, policies, pseudonyms, the injection guard.
//! - `providers`: wire-format adapters (translation only) and the built-in `mock`.
//! - `api`: the OpenAI wire types clients send.
//! - `config`: `gateway.toml` structs and their validation into a `Runtime`.
//! - `report`: aggregates over the audit files (`gateway report`, `/admin/report`).
//! - `reload`: config file watching, SIGHUP and `POST /admin/reload`.
//! - `state`: what requests share (config snapshot, HTTP client, metrics, tasks).
//! - `error`, `body`, `sse`, `eventstream`, `metrics`: the shared pieces.
//! - `egress`: how providers are reached (proxy, CAs, client certificates, pools).
//! - `audit`: the metadata-only audit log (sinks, hash chain, verification).
//! - `cli`: the `gateway` subcommands; `doctor` checks the way out to every provider.

pub mod admin;
pub mod api;
pub mod audit;
pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod dlp;
pub mod doctor;
pub mod egress;
pub mod error;
pub mod eventstream;
pub mod health;
pub mod ledger;
pub mod metrics;
pub mod pipeline;
pub mod pricing;
pub mod providers;
pub mod reload;
pub mod report;
pub mod server;
pub mod sse;
pub mod state;

pub use server::serve;
pub use state::AppState;
