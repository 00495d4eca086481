//! End-to-end tests: the real daemon, a real RabbitMQ node, a real SQLite file, real HTTP.

mod fuzz_corpus;
mod harness;
mod hostile;
mod intake;
mod operations;
mod pingpp;
mod providers;
mod proxy;
mod reliability;
mod systemd;
