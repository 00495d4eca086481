//! A private RabbitMQ node on free loopback ports, and a consumer of the test's queue.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::{Connection, ConnectionProperties};

use super::process::{free_port, kill_group, reap_group_on_exit, unique, wait_for_port};

pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A private RabbitMQ node: its own data dir, cookie, node name and ports. Killed on drop, and
/// by a reaper if the test process dies first, so no broker outlives the run.
pub struct Broker {
    dir: tempfile::TempDir,
    node: String,
    pub port: u16,
    dist_port: u16,
    child: Mutex<Option<Child>>,
}

impl Broker {
    pub fn start() -> Broker {
        assert!(
            Path::new(RABBITMQ_SERVER).exists(),
            "RabbitMQ is not installed ({RABBITMQ_SERVER} is missing). Install it with \
             `sudo apt-get install rabbitmq-server`, or run the whole suite with scripts/test, \
             which installs it."
        );
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        let broker = Broker {
            dir,
            node: format!("{}@localhost", unique("payhook-test")),
            port: free_port(),
            dist_port: free_port(),
            child: Mutex::new(None),
        };
        broker.spawn_node();
        broker
    }

    fn spawn_node(&self) {
        let dir = self.dir.path();
        let mut cmd = Command::new(RABBITMQ_SERVER);
        rabbit_env(&mut cmd, dir, &self.node, self.port, self.dist_port);
        let child = spawn_rabbitmq(&mut cmd, &dir.join("server.out"));
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        if !wait_for_port(self.port, Duration::from_secs(90)) {
            let out = std::fs::read_to_string(dir.join("server.out")).unwrap_or_default();
            panic!("RabbitMQ did not start within 90 s; its output:\n{out}");
        }
    }

    /// The broker every test may share; tests keep apart by their own exchange and queue names.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(Broker::start)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The broker dies at once (SIGKILL to the whole node): connections drop, the port closes.
    pub fn crash(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            kill_group(&mut child);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the same node again on the same port and data (durable queues come back).
    pub fn restart(&self) {
        self.spawn_node();
    }

    /// Sends `sig` (e.g. "STOP", "CONT") to the whole node: a stopped broker keeps its TCP
    /// connections open but answers nothing.
    pub fn signal(&self, sig: &str) {
        if let Some(child) = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = Command::new("kill")
                .args(["-s", sig, "--"])
                .arg(format!("-{}", child.id()))
                .status();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.crash();
    }
}

/// A consumer on the test's queue.
pub struct Consumer {
    conn: Connection,
    channel: lapin::Channel,
    queue: String,
}

pub struct Message {
    pub routing_key: String,
    pub properties: lapin::BasicProperties,
    pub body: serde_json::Value,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<String> {
        let headers = self.properties.headers().as_ref()?;
        match headers.inner().get(name)? {
            lapin::types::AMQPValue::LongString(s) => Some(s.to_string()),
            other => Some(format!("{other:?}")),
        }
    }
}

impl Consumer {
    pub async fn connect(url: &str, queue: &str) -> Consumer {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("test consumer connects");
        let channel = conn.create_channel().await.expect("channel");
        Consumer {
            conn,
            channel,
            queue: queue.to_string(),
        }
    }

    /// Takes every message that arrives until `n` have come or `timeout` passes.
    pub async fn take(&self, n: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            match self
                .channel
                .basic_get(self.queue.as_str().into(), BasicGetOptions::default())
                .await
            {
                Ok(Some(m)) => {
                    let d = m.delivery;
                    let _ = d.acker.ack(BasicAckOptions::default()).await;
                    out.push(Message {
                        routing_key: d.routing_key.to_string(),
                        properties: d.properties.clone(),
                        body: serde_json::from_slice(&d.data).expect("message body is JSON"),
                    });
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("basic_get failed: {e}"),
            }
        }
        out
    }

    /// Waits a little to be sure nothing more arrives.
    pub async fn expect_no_more(&self, wait: Duration) {
        let extra = self.take(1, wait).await;
        assert!(extra.is_empty(), "unexpected message: {:?}", extra[0].body);
    }

    pub async fn close(self) {
        let _ = self.conn.close(200, "bye".into()).await;
    }
}

impl Consumer {
    /// Collects dedup keys from the queue until all of `want` have come or `within` passes;
    /// returns those that never came.
    pub async fn missing(
        &self,
        want: &std::collections::HashSet<String>,
        within: Duration,
    ) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let deadline = Instant::now() + within;
        while !want.is_subset(&seen) && Instant::now() < deadline {
            for m in self.take(1000, Duration::from_millis(500)).await {
                if let Some(k) = m.body["data"]["dedup_key"].as_str() {
                    seen.insert(k.to_string());
                }
            }
        }
        want.difference(&seen).cloned().collect()
    }
}

/// Starts rabbitmq-server with `cmd`'s environment in its own process group, its output appended
/// to `log`, with a reaper that ends it with the test process; does not wait for it.
pub fn spawn_rabbitmq(cmd: &mut Command, log: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("RabbitMQ log file");
    let child = cmd
        .stdout(log.try_clone().expect("RabbitMQ log file"))
        .stderr(log)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start rabbitmq-server");
    reap_group_on_exit(child.id());
    child
}

/// The environment rabbitmq-server and rabbitmqctl need to find a private node: HOME (which
/// holds its Erlang cookie), its name, its loopback ports, and every file of it under `home`.
pub fn rabbit_env<'c>(
    cmd: &'c mut Command,
    home: &Path,
    node: &str,
    port: u16,
    dist_port: u16,
) -> &'c mut Command {
    cmd.env("HOME", home)
        .env("RABBITMQ_NODENAME", node)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", dist_port.to_string())
        .env("RABBITMQ_MNESIA_BASE", home.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", home.join("log"))
        .env(
            "RABBITMQ_ENABLED_PLUGINS_FILE",
            home.join("enabled_plugins"),
        )
        .env("RABBITMQ_CONFIG_FILE", home.join("rabbitmq"))
        .env(
            "RABBITMQ_ADVANCED_CONFIG_FILE",
            home.join("advanced.config"),
        )
        .env("RABBITMQ_PID_FILE", home.join("pid"))
        // Where the VM writes its crash dump when it halts (else: the test's working directory).
        .env("ERL_CRASH_DUMP", home.join("erl_crash.dump"))
}
