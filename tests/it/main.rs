//! End-to-end tests: the real daemon, a real RabbitMQ node, a real SQLite file, real HTTP.

mod cluster;
mod cluster_harness;
mod cluster_load;
mod durability;
mod fuzz_corpus;
mod harness;
mod hostile;
mod http;
mod intake;
mod maintenance;
mod operations;
mod pingpp;
mod providers;
mod proxy;
mod relay;
mod reliability;
mod systemd;
