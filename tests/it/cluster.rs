//! Past one machine (issue 10): two payhook instances, each with its own store, behind nginx,
//! feeding a quorum queue on a three-node RabbitMQ cluster. Under a steady signed load through
//! nginx, a broker node is SIGKILLed, an instance is SIGKILLed and restarted, a minority of the
//! cluster is stopped and then the cluster is taken below quorum. Counted by message id on the
//! quorum queue: every acknowledged webhook must arrive.
//!
//! One test runs the scenarios in sequence on one cluster (three Erlang nodes are the heavy
//! part); each scenario has its own instances, stores, nginx and queue, a failing scenario does
//! not stop the next, and every scenario prints its figures line:
//! `cargo test --test it cluster:: -- --nocapture`. PAYHOOK_CLUSTER_RATE sets the load (webhooks
//! per second, default 200); PAYHOOK_CLUSTER_SCENARIOS a subset (`node_kill,instance_kill,quorum`).

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use crate::cluster_harness::{Cluster, balancer};
use crate::cluster_load::{Figures, Load, QueueWatch, longest_gap, published_total, readyz};
use crate::harness::{Daemon, DaemonOptions, HttpClient, Nginx, client, unique};

/// A relay must be publishing through another node within this long after its node dies.
const FAILOVER_WITHIN: Duration = Duration::from_secs(30);

fn rate() -> f64 {
    std::env::var("PAYHOOK_CLUSTER_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r: &f64| r > 0.0)
        .unwrap_or(200.0)
}

/// Cluster and process operations block (rabbitmqctl, waiting for ports); the load and the
/// watcher keep running on the other workers meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn note(t0: Instant, msg: &str) {
    eprintln!("[cluster +{:6.1}s] {msg}", t0.elapsed().as_secs_f64());
}

/// Two instances behind nginx, feeding one quorum queue.
struct Topology {
    instances: Vec<Daemon>,
    balancer: Nginx,
    queue: String,
    http: HttpClient,
}

impl Topology {
    fn start(cluster: &Cluster) -> Topology {
        let exchange = unique("payhook.cluster.x");
        let queue = unique("payhook.cluster.q");
        let urls = cluster.urls();
        let instances: Vec<Daemon> = (0..2)
            .map(|_| {
                let mut o = DaemonOptions::new(&urls[0]);
                o.more_amqp_urls = urls[1..].to_vec();
                o.exchange_queue = Some((exchange.clone(), queue.clone()));
                o.amqp = "queue_type = \"quorum\"".into();
                Daemon::start(o)
            })
            .collect();
        let balancer = balancer(&[instances[0].port, instances[1].port]);
        cluster.wait_quorum_queue(&queue, Duration::from_secs(60));
        Topology {
            instances,
            balancer,
            queue,
            http: client(),
        }
    }

    fn hooks_url(&self) -> String {
        self.balancer.url("/hooks/pingpp")
    }

    async fn readyz(&self, i: usize) -> serde_json::Value {
        readyz(&self.http, &self.instances[i].admin_url("/readyz")).await
    }

    /// `/readyz` `broker_node` of each instance (None when it does not report one).
    async fn broker_nodes(&self) -> Vec<Option<String>> {
        let mut out = Vec::new();
        for i in 0..self.instances.len() {
            let j = self.readyz(i).await;
            out.push(j["broker_node"].as_str().map(str::to_string));
        }
        out
    }

    async fn published(&self) -> f64 {
        let mut sum = 0.0;
        for d in &self.instances {
            sum += published_total(&self.http, &d.admin_url("/metrics"))
                .await
                .expect("instance answers /metrics");
        }
        sum
    }

    async fn backlog(&self) -> u64 {
        let mut sum = 0;
        for i in 0..self.instances.len() {
            sum += self.readyz(i).await["backlog"].as_u64().unwrap_or(0);
        }
        sum
    }
}

/// What a scenario reports: its figures line and the guarantees it found broken.
struct Outcome {
    line: String,
    failures: Vec<String>,
}

/// The node instance 0's relay uses per `/readyz` `broker_node`; when the daemon does not
/// report one, node 1 (the first URL, which a relay that starts from the top connects to), and
/// the missing field is a failure of its own.
async fn relay_node(cluster: &Cluster, topo: &Topology, failures: &mut Vec<String>) -> usize {
    let nodes = topo.broker_nodes().await;
    match nodes[0].as_deref().and_then(|a| cluster.index_of(a)) {
        Some(i) => i,
        None => {
            failures.push(format!(
                "/readyz reports no broker_node of the cluster ({nodes:?}; SPEC/issue 10: \
                 \"broker_node\": \"127.0.0.1:PORT\"); assumed node 1, the first URL"
            ));
            0
        }
    }
}

/// The watcher's node order: `first` first, so it sits on a node the scenario keeps.
fn urls_from(cluster: &Cluster, first: usize) -> Vec<String> {
    let urls = cluster.urls();
    let n = urls.len();
    (0..n).map(|k| urls[(first + k) % n].clone()).collect()
}

fn check_common(figures: &Figures, failures: &mut Vec<String>, stats_failures: String) {
    if figures.non_200 > 0 {
        failures.push(format!(
            "{} webhooks were not answered 200 through nginx: {stats_failures}",
            figures.non_200
        ));
    }
    if !figures.missing.is_empty() {
        failures.push(format!(
            "{} acknowledged events never arrived on the quorum queue (first: {:?})",
            figures.missing.len(),
            &figures.missing[..figures.missing.len().min(5)]
        ));
    }
}

/// SIGKILL the broker node the relays use: intake keeps answering 200, the relays move to
/// another node within 30 s, every acknowledged event arrives.
async fn node_kill(cluster: &Cluster, t0: Instant) -> Outcome {
    let mut failures = Vec::new();
    blocking(|| cluster.heal());
    let topo = blocking(|| Topology::start(cluster));
    let victim = relay_node(cluster, &topo, &mut failures).await;
    let victim_addr = cluster.nodes[victim].addr();
    let nodes = topo.broker_nodes().await;
    note(
        t0,
        &format!("node kill: relays on {nodes:?}; victim node {}", victim + 1),
    );
    let watch = QueueWatch::start(urls_from(cluster, victim + 1), topo.queue.clone());
    let load = Load::start(topo.hooks_url(), rate(), 64);
    tokio::time::sleep(Duration::from_secs(6)).await;
    note(
        t0,
        &format!(
            "node kill: {} acknowledged; SIGKILL node {}",
            load.acked(),
            victim + 1
        ),
    );
    blocking(|| cluster.nodes[victim].kill());
    let killed_at = Instant::now();

    // Each relay must report a connection to another node within 30 s.
    let mut failover: Vec<Option<Duration>> = vec![None; topo.instances.len()];
    let mut last = Vec::new();
    while killed_at.elapsed() < FAILOVER_WITHIN && failover.iter().any(Option::is_none) {
        last.clear();
        for (i, f) in failover.iter_mut().enumerate() {
            let j = topo.readyz(i).await;
            let node = j["broker_node"].as_str().unwrap_or("");
            if f.is_none() && j["broker"] == "connected" && !node.is_empty() && node != victim_addr
            {
                *f = Some(killed_at.elapsed());
            }
            last.push(j);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, f) in failover.iter().enumerate() {
        if f.is_none() {
            failures.push(format!(
                "instance {} did not report a connection to another node within {:?} of the \
                 kill (its /readyz: {})",
                i + 1,
                FAILOVER_WITHIN,
                last.get(i).cloned().unwrap_or_default()
            ));
        }
    }
    let rest = Duration::from_secs(15).saturating_sub(killed_at.elapsed());
    tokio::time::sleep(rest).await;
    let started = load.started;
    let (stats, ended) = load.stop().await;
    note(
        t0,
        &format!(
            "node kill: load stopped, {} acknowledged; waiting for arrivals",
            stats.acked.len()
        ),
    );
    let missing = watch.wait_for(&stats.acked, Duration::from_secs(90)).await;
    let figures = Figures::compute(&stats, (started, ended), &watch.arrivals(), missing);
    watch.stop().await;
    check_common(&figures, &mut failures, stats.describe_failures());
    if figures.longest_gap >= FAILOVER_WITHIN {
        failures.push(format!(
            "publishing stopped for {:.1} s (failover must take under {:?})",
            figures.longest_gap.as_secs_f64(),
            FAILOVER_WITHIN
        ));
    }
    let fo: Vec<String> = failover
        .iter()
        .map(|f| f.map_or("none".into(), |d| format!("{:.1} s", d.as_secs_f64())))
        .collect();
    Outcome {
        line: format!(
            "{}, relay failover (readyz) {}",
            figures.line("node kill"),
            fo.join(" / ")
        ),
        failures,
    }
}

/// The message ids an instance's store holds (`payhook events list --json`), all or one state.
fn stored_ids(d: &Daemon, state: Option<&str>) -> HashSet<String> {
    let mut args = vec!["events", "list", "--limit", "100000000", "--json"];
    if let Some(s) = state {
        args.extend(["--state", s]);
    }
    let out = d.run_cli(&args);
    assert!(
        out.status.success(),
        "payhook events list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

/// SIGKILL one instance and restart it later on the same store: nginx sends the load to the
/// other; every event the killed one had stored arrives, its unpublished backlog after its
/// restart. So that it dies with a backlog, the cluster blocks publishers (memory alarm) for a
/// few seconds around the kill; the instance left running drains its own once they are unblocked.
async fn instance_kill(cluster: &Cluster, t0: Instant) -> Outcome {
    let mut failures = Vec::new();
    blocking(|| cluster.heal());
    let mut topo = blocking(|| Topology::start(cluster));
    let watch = QueueWatch::start(urls_from(cluster, 0), topo.queue.clone());
    let load = Load::start(topo.hooks_url(), rate(), 64);
    tokio::time::sleep(Duration::from_secs(5)).await;
    blocking(|| cluster.block_publishers(true));
    let blocked_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let backlogs = (
        topo.readyz(0).await["backlog"].clone(),
        topo.readyz(1).await["backlog"].clone(),
    );
    note(
        t0,
        &format!(
            "instance kill: {} acknowledged, publishers blocked, backlogs {backlogs:?}; SIGKILL \
             instance 1",
            load.acked()
        ),
    );
    blocking(|| topo.instances[0].kill9());
    let acked_at_kill = load.acked();
    // What the dead instance holds on its disk: its acknowledged webhooks, some unpublished.
    let (held, pending) = blocking(|| {
        (
            stored_ids(&topo.instances[0], None),
            stored_ids(&topo.instances[0], Some("pending")),
        )
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    blocking(|| cluster.block_publishers(false));
    let blocked_for = blocked_at.elapsed();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let acked_while_down = load.acked() - acked_at_kill;
    if acked_while_down == 0 {
        failures.push("nothing was acknowledged while instance 1 was down".into());
    }
    let pending_before_restart = watch.arrived_ids().intersection(&pending).count();
    note(
        t0,
        &format!(
            "instance kill: {acked_while_down} acknowledged by instance 2 alone; instance 1 \
             held {} events ({} unpublished, {pending_before_restart} of those arrived anyway); \
             restarting it",
            held.len(),
            pending.len()
        ),
    );
    let restarted_at = Instant::now();
    blocking(|| topo.instances[0].spawn());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started = load.started;
    let (stats, ended) = load.stop().await;
    let missing = watch.wait_for(&stats.acked, Duration::from_secs(90)).await;
    let held_missing = watch.wait_for(&held, Duration::from_secs(30)).await;
    let arrivals = watch.arrivals();
    let pending_after_restart = arrivals
        .iter()
        .filter(|a| a.at >= restarted_at && pending.contains(&a.message_id))
        .map(|a| a.message_id.as_str())
        .collect::<HashSet<_>>()
        .len();
    let figures = Figures::compute(&stats, (started, ended), &arrivals, missing);
    watch.stop().await;
    check_common(&figures, &mut failures, stats.describe_failures());
    if !held_missing.is_empty() {
        failures.push(format!(
            "{} events the killed instance had stored never arrived (first: {:?})",
            held_missing.len(),
            &held_missing[..held_missing.len().min(5)]
        ));
    }
    if pending.is_empty() {
        failures.push("the killed instance had no unpublished event: the scenario proved nothing about its backlog".into());
    }
    Outcome {
        line: format!(
            "{} (publishers blocked {:.1} s on purpose); instance 2 alone acknowledged \
             {acked_while_down}; the killed instance held {} ({} unpublished at the kill, \
             {pending_after_restart} of them arrived after its restart)",
            figures.line("instance kill"),
            blocked_for.as_secs_f64(),
            held.len(),
            pending.len()
        ),
        failures,
    }
}

/// Stop a minority (the relays' node) and bring it back; then stop two of three nodes (below
/// quorum) and bring them back: intake goes on into the stores, nothing is marked published
/// without a majority, everything arrives once quorum returns.
async fn quorum(cluster: &Cluster, t0: Instant) -> Outcome {
    let mut failures = Vec::new();
    blocking(|| cluster.heal());
    let topo = blocking(|| Topology::start(cluster));
    let minority = relay_node(cluster, &topo, &mut failures).await;
    let n = cluster.nodes.len();
    let keep = (minority + 1) % n;
    let down: Vec<usize> = (0..n).filter(|&i| i != keep).collect();
    let watch = QueueWatch::start(urls_from(cluster, keep), topo.queue.clone());
    let load = Load::start(topo.hooks_url(), rate(), 64);
    tokio::time::sleep(Duration::from_secs(5)).await;

    note(
        t0,
        &format!("quorum: stop_app node {} (minority)", minority + 1),
    );
    let minority_at = Instant::now();
    blocking(|| cluster.nodes[minority].stop_app());
    tokio::time::sleep(Duration::from_secs(8)).await;
    blocking(|| {
        cluster.nodes[minority].start_app();
        cluster.wait_running(Duration::from_secs(60));
        cluster.wait_quorum_queue(&topo.queue, Duration::from_secs(60));
    });
    let minority_back = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;

    let names: Vec<String> = down.iter().map(|i| format!("{}", i + 1)).collect();
    note(
        t0,
        &format!("quorum: stop_app nodes {} (below quorum)", names.join(", ")),
    );
    let stopping_at = Instant::now();
    blocking(|| {
        for &i in &down {
            cluster.nodes[i].stop_app();
        }
    });
    // The majority is gone once the second node has stopped.
    let lost_at = Instant::now();
    // Confirms that came before the majority went may still be being recorded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (published0, backlog0, acked0) =
        (topo.published().await, topo.backlog().await, load.acked());
    let mut published_max = published0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        published_max = published_max.max(topo.published().await);
    }
    let (backlog1, acked1) = (topo.backlog().await, load.acked());
    note(
        t0,
        &format!(
            "quorum: below quorum for 10 s: published {published0} -> {published_max}, backlog \
             {backlog0} -> {backlog1}, acknowledged +{}; restarting",
            acked1 - acked0
        ),
    );
    if published_max != published0 {
        failures.push(format!(
            "payhook_published_total moved from {published0} to {published_max} while the \
             cluster had no majority"
        ));
    }
    if acked1 <= acked0 || backlog1 <= backlog0 {
        failures.push(format!(
            "intake did not go on into the stores below quorum: acknowledged {acked0} -> \
             {acked1}, backlog {backlog0} -> {backlog1}"
        ));
    }
    // A majority again once the first of them runs.
    blocking(|| cluster.nodes[down[0]].start_app());
    let quorum_back = Instant::now();
    blocking(|| {
        cluster.nodes[down[1]].start_app();
        cluster.wait_running(Duration::from_secs(60));
    });
    tokio::time::sleep(Duration::from_secs(8)).await;
    let started = load.started;
    let (stats, ended) = load.stop().await;
    note(
        t0,
        &format!(
            "quorum: load stopped, {} acknowledged; waiting for arrivals",
            stats.acked.len()
        ),
    );
    let missing = watch.wait_for(&stats.acked, Duration::from_secs(120)).await;
    let arrivals = watch.arrivals();
    let figures = Figures::compute(&stats, (started, ended), &arrivals, missing);
    watch.stop().await;
    check_common(&figures, &mut failures, stats.describe_failures());
    let first_after = arrivals
        .iter()
        .map(|a| a.at)
        .filter(|&t| t >= quorum_back)
        .min()
        .map_or("none".to_string(), |t| {
            format!("{:.1} s", (t - quorum_back).as_secs_f64())
        });
    Outcome {
        line: format!(
            "{}; minority stop gap {:.1} s; below quorum {:.1} s, gap {:.1} s, published \
             {published0} -> {published_max} meanwhile, first arrival {first_after} after quorum \
             returned",
            figures.line("quorum"),
            longest_gap(&arrivals, minority_at, minority_back).as_secs_f64(),
            (quorum_back - lost_at).as_secs_f64(),
            longest_gap(&arrivals, stopping_at, quorum_back).as_secs_f64(),
        ),
        failures,
    }
}

/// Runs a scenario; a panic becomes a failure of that scenario, so the next one still runs.
async fn run(name: &str, scenario: impl Future<Output = Outcome>) -> Outcome {
    match AssertUnwindSafe(scenario).catch_unwind().await {
        Ok(o) => o,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Outcome {
                line: format!("{name}: aborted"),
                failures: vec![msg],
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "heavy: scripts/test runs it alone after the parallel pass"]
async fn cluster_loses_nothing_acknowledged_through_node_instance_and_quorum_loss() {
    let t0 = Instant::now();
    let only = std::env::var("PAYHOOK_CLUSTER_SCENARIOS").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|s| s.trim() == name);
    let cluster = blocking(|| Cluster::start(3));
    note(
        t0,
        &format!(
            "cluster of {} nodes running ({}); load {} webhooks/s",
            cluster.nodes.len(),
            cluster
                .nodes
                .iter()
                .map(|n| n.addr())
                .collect::<Vec<_>>()
                .join(", "),
            rate()
        ),
    );
    let mut outcomes = Vec::new();
    if wanted("node_kill") {
        outcomes.push(run("node kill", node_kill(&cluster, t0)).await);
    }
    if wanted("instance_kill") {
        outcomes.push(run("instance kill", instance_kill(&cluster, t0)).await);
    }
    if wanted("quorum") {
        outcomes.push(run("quorum", quorum(&cluster, t0)).await);
    }
    drop(cluster);
    note(t0, "done");
    let mut report = String::new();
    for o in &outcomes {
        println!("{}", o.line);
        report.push_str(&o.line);
        report.push('\n');
        for f in &o.failures {
            report.push_str(&format!("  FAILED: {f}\n"));
        }
    }
    assert!(
        outcomes.iter().all(|o| o.failures.is_empty()),
        "cluster scenarios fell short:\n{report}"
    );
}
