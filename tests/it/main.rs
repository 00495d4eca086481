//! End-to-end tests: the real daemon, a real RabbitMQ node, a real SQLite file, real HTTP.

mod harness;
mod http;
mod intake;
mod operations;
mod pingpp;
mod providers;
mod proxy;
mod reliability;
mod systemd;
