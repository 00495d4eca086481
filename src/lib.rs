//! payhook: receives payment webhooks, verifies each against its provider's signature scheme,
//! stores it exactly once in SQLite and relays a normalized CloudEvent to RabbitMQ.
//!
//! Request path: [`http::hooks`] → [`providers`] (verify + normalize) → [`event`] (CloudEvent)
//! → [`store`] (group commit) → 200. Then, independently: [`store`] → [`relay`] → RabbitMQ.

pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod duration;
pub mod event;
pub mod http;
pub mod logging;
pub mod providers;
pub mod relay;
pub mod secret;
pub mod store;
pub mod testkit;
pub mod text;
