//! Real parts for the integration tests: a private RabbitMQ node on free ports, the real
//! `payhook` binary with a config in a temp dir, real HTTP over loopback, keys made here.
//!
//! One file per part: `process` (names, ports, process groups), `broker`, `nginx`, `daemon`,
//! and `client` (the provider's side: HTTP and signing keys). Everything is re-exported here,
//! so tests name it as `harness::X`.

mod broker;
mod client;
mod daemon;
mod nginx;
mod process;

pub use broker::*;
pub use client::*;
pub use daemon::*;
pub use nginx::*;
pub use process::*;
