//! Routing through the public API: policies, limits, cooldowns, fallbacks, streams and wildcard
//! names, with scripted deployments on tokio's paused clock.

mod cooldowns;
mod fallbacks;
mod policies;
mod streams;
mod support;
mod wildcards;
