//! The Switchyard HTTP application: configuration, the server, the endpoints and the
//! assembly of the request path.
//!
//! This crate is where files and the environment are read ([`config`]) and where the layers
//! of the other crates are put together in order ([`app`]). It speaks OpenAI's HTTP API to
//! clients: `POST /v1/chat/completions` (streamed or not), `POST /v1/embeddings`,
//! `GET /v1/models[/{id}]`, and `GET /health/liveness|readiness`.
//!
//! It does not translate provider dialects (switchyard-providers) or define wire shapes
//! (switchyard-types). The binary `switchyard` is a thin command line over it.
//!
//! ```no_run
//! use switchyard_gateway::{config::Config, server::Server};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let env = std::env::vars().collect();
//! let config = Config::load("switchyard.yaml".as_ref())?;
//! let server = Server::bind(&config, &env).await?;
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod accounting;
pub mod app;
pub mod auth;
pub mod config;
pub mod decode;
pub mod encode;
mod endpoints;
pub mod headers;
pub mod models;
pub mod respond;
pub mod server;
pub mod settle;
