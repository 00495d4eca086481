//! Real parts for the cluster tests: a three-node RabbitMQ cluster of private nodes on loopback
//! (own node names, Erlang cookie, data and log directories, AMQP and distribution ports; joined
//! with `rabbitmqctl join_cluster`), and a private nginx balancing `/hooks/` over several payhook
//! instances with the upstream and location blocks of docs/SCALING.md.
//!
//! Every server runs in its own process group, is killed with its group on drop and by a reaper
//! if the test process dies first. epmd (port 4369) is the machine's shared one: the nodes
//! register there under names unique to this test process, and epmd itself is never killed
//! (`epmd -daemon` leaves the process group that started it).
//!
//! `cluster` holds the RabbitMQ nodes and their cluster, `balancer` the nginx in front of the
//! instances; both are re-exported here.

use std::time::{Duration, Instant};

mod balancer;
mod cluster;

pub use balancer::*;
pub use cluster::*;

/// Whether a TCP connection to the loopback port opens now.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
