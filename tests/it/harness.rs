//! Real parts for the integration tests: a private RabbitMQ node on free ports, the real
//! `payhook` binary with a config in a temp dir, real HTTP over loopback, keys made here.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::{Connection, ConnectionProperties};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::Sha256;

pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
pub const NGINX: &str = "/usr/sbin/nginx";

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback TCP port nobody listens on now, for a server a test is about to start.
///
/// Taken below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), never from it: the
/// kernel hands ports of that range to every outgoing connection and to every `bind(0)`, and a
/// server that boots for seconds (RabbitMQ) could find its port taken meanwhile, then die on
/// EADDRINUSE while the other holder answers on its port. Never the same port twice in one test
/// process, so the several ports of one cluster cannot collide either.
pub fn free_port() -> u16 {
    use rand::Rng;
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    const LOW: u16 = 10_000;
    let high = ephemeral_low().clamp(LOW + 1_000, 32_768);
    let span = high - LOW;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let first = rand::thread_rng().gen_range(0..span);
    for i in 0..span {
        let port = LOW + (first + i) % span;
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{high}");
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Kills a child started with `process_group(0)` and everything in its group, then reaps it.
/// `--` matters: procps `kill -KILL -PGID` without it signals every process on the machine.
pub fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--"])
        .arg(format!("-{}", child.id()))
        .status();
    let _ = child.wait();
}

/// A watcher that kills process group `pgid` once this test process is gone, so a server
/// started by a test never outlives the run even when the test dies without dropping it.
///
/// It kills only the group it was made for: if the group's leader is no longer the process it
/// was (dropped and reaped by the test, its pid since reused by the machine), it does nothing.
/// `tail --pid` waits without forking, so a long run does not churn through process ids. The
/// watcher has a process group of its own, so a Ctrl-C to the test run does not end it too.
pub fn reap_group_on_exit(pgid: u32) {
    use std::os::unix::process::CommandExt;
    let Some(started) = start_time(pgid) else {
        return; // already gone
    };
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tail --pid={test} -f /dev/null; \
             [ \"$(sed 's/.*) //' /proc/{pgid}/stat 2>/dev/null | cut -d' ' -f20)\" = {started} ] \
             && kill -s KILL -- -{pgid} 2>/dev/null",
            test = std::process::id()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}

/// When process `pid` started (field 22 of `/proc/PID/stat`, clock ticks since boot): with the
/// pid, it names one process for good.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_comm) = stat.rsplit_once(") ")?;
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

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
        use std::os::unix::process::CommandExt;
        let dir = self.dir.path();
        let log = std::fs::File::create(dir.join("server.out")).expect("log file");
        let mut cmd = Command::new(RABBITMQ_SERVER);
        let child = rabbit_env(&mut cmd, dir, &self.node, self.port, self.dist_port)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start rabbitmq-server");
        reap_group_on_exit(child.id());
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

/// An RSA key pair made for this run, as Ping++ would hold the private half.
pub struct Keys {
    pub signing: SigningKey<Sha256>,
    pub private_pem: String,
    pub public_pem: String,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::thread_rng();
        let private = RsaPrivateKey::new(&mut rng, 2048).expect("generate RSA key");
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("public PEM");
        let private_pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("private PEM")
            .to_string();
        Keys {
            signing: SigningKey::new(private),
            private_pem,
            public_pem,
        }
    })
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

/// Starts a private nginx in its own process group with `conf` (written to `dir/nginx.conf`;
/// `dir/logs` must exist), its stderr in `dir/logs/stderr.log`. Ended with the test process.
pub fn spawn_nginx(dir: &Path, conf: &str) -> Child {
    use std::os::unix::process::CommandExt;
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let out = std::fs::File::create(dir.join("logs/stderr.log")).expect("log file");
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("logs/error.log"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("start nginx");
    reap_group_on_exit(child.id());
    child
}

/// Builds a store file before the daemon opens it.
pub type PrepareStore = Box<dyn FnOnce(&Path)>;

pub struct DaemonOptions {
    pub amqp_url: String,
    pub extra_sources: String,
    pub store: String,
    pub server: String,
    /// Extra environment for the daemon (secrets given as `{ env }`, `$CREDENTIALS_DIRECTORY`).
    pub env: Vec<(String, String)>,
    /// Top-level keys (before any table), e.g. `log_format = "json"`.
    pub top: String,
    /// Start as systemd would with `WatchdogSec=`: WATCHDOG_USEC and WATCHDOG_PID set.
    pub watchdog_usec: Option<u64>,
    /// `[amqp] queue` (default: a queue of the test's own).
    pub queue: Option<String>,
    /// Extra `[amqp]` keys, e.g. `queue_type = "quorum"`.
    pub amqp: String,
    /// Runs with the store's path before the daemon first starts (to build a large store).
    pub prepare_store: Option<PrepareStore>,
    /// Broker nodes after `amqp_url` (a cluster): `[amqp] url` becomes the list of them all.
    pub more_amqp_urls: Vec<String>,
    /// Exchange and queue instead of fresh ones, so several instances feed one queue.
    pub exchange_queue: Option<(String, String)>,
}

impl DaemonOptions {
    pub fn new(amqp_url: &str) -> Self {
        DaemonOptions {
            amqp_url: amqp_url.to_string(),
            extra_sources: String::new(),
            store: String::new(),
            server: String::new(),
            env: Vec::new(),
            top: String::new(),
            watchdog_usec: None,
            queue: None,
            amqp: String::new(),
            prepare_store: None,
            more_amqp_urls: Vec::new(),
            exchange_queue: None,
        }
    }
}

/// The real `payhook serve`, in its own temp dir.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub port: u16,
    pub admin_port: u16,
    pub queue: String,
    env: Vec<(String, String)>,
    watchdog_usec: Option<u64>,
    child: Option<Child>,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_payhook");

impl Daemon {
    pub fn start(opts: DaemonOptions) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let admin_port = free_port();
        let (exchange, queue) = opts.exchange_queue.clone().unwrap_or_else(|| {
            (
                unique("payhook.test.x"),
                opts.queue
                    .clone()
                    .unwrap_or_else(|| unique("payhook.test.q")),
            )
        });
        let url = if opts.more_amqp_urls.is_empty() {
            format!("\"{}\"", opts.amqp_url)
        } else {
            let all: Vec<String> = std::iter::once(&opts.amqp_url)
                .chain(&opts.more_amqp_urls)
                .map(|u| format!("\"{u}\""))
                .collect();
            format!("[{}]", all.join(", "))
        };
        std::fs::write(dir.path().join("pingpp.pem"), &keys().public_pem).expect("write key");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"{top}
[server]
listen = "127.0.0.1:{port}"
max_body_bytes = 65536
request_timeout = "5s"
{server}

[admin]
listen = "127.0.0.1:{admin_port}"

[store]
path = "payhook.db"
synchronous = "full"
{store}

[amqp]
url = {url}
exchange = "{exchange}"
queue = "{queue}"
confirm_timeout = "5s"
{amqp}

[[source]]
name = "pingpp"
provider = "pingpp"
public_keys = ["pingpp.pem"]
{extra}
"#,
                // The shared vectors are signed years ago: no replay window unless a test sets one.
                server = if opts.server.contains("max_event_age") {
                    opts.server
                } else {
                    format!("max_event_age = \"off\"\n{}", opts.server)
                },
                store = opts.store,
                amqp = opts.amqp,
                extra = opts.extra_sources,
                top = opts.top,
            ),
        )
        .expect("write config");
        if let Some(prepare) = opts.prepare_store {
            prepare(&dir.path().join("payhook.db"));
        }
        let mut d = Daemon {
            dir,
            config,
            port,
            admin_port,
            queue,
            env: opts.env,
            watchdog_usec: opts.watchdog_usec,
            child: None,
        };
        d.spawn();
        d
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts (or restarts) the process and waits until both listeners answer.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = match self.watchdog_usec {
            // systemd sets WATCHDOG_PID to the service's pid; `exec` keeps the shell's.
            Some(usec) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(
                        "WATCHDOG_PID=$$ WATCHDOG_USEC={usec} exec \"$0\" \"$@\""
                    ))
                    .arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start payhook");
        self.child = Some(child);
        if !wait_for_port(self.port, Duration::from_secs(20))
            || !wait_for_port(self.admin_port, Duration::from_secs(5))
        {
            panic!("payhook did not start; its log:\n{}", self.log());
        }
        // Every test starts with its broker up: wait until the relay has declared the topology,
        // so a consumer never looks for a queue that is about to exist.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.readyz_raw().contains("\"broker\":\"connected\"") {
            if Instant::now() > deadline {
                panic!(
                    "payhook never connected to the broker; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/readyz` over a plain socket, for the synchronous parts of the harness.
    fn readyz_raw(&self) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.admin_port)) else {
            return String::new();
        };
        let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    pub fn url(&self, source: &str) -> String {
        format!("http://127.0.0.1:{}/hooks/{source}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Polls `/readyz` until its JSON satisfies `cond` (or the time is up; the caller's next
    /// assertion then says what is wrong).
    pub async fn wait_readyz(
        &self,
        http: &HttpClient,
        within: Duration,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let r = send(http, "GET", &self.admin_url("/readyz"), &[], "").await;
            if cond(&r.json()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The daemon's process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.pid();
        let ok = Command::new("kill")
            .args(["-s", sig, "--"])
            .arg(pid.to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -s {sig} {pid} failed");
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--"])
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "payhook did not exit within 30 s of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn run_cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run payhook")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("JSON body expected, got {:?}", self.body))
    }
}

pub async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(body.into())).expect("request"))
        .await
        .expect("HTTP request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Posts a Ping++ event signed with this run's key.
pub async fn post_pingpp(client: &HttpClient, url: &str, body: &str) -> Reply {
    let sig = payhook::testkit::pingpp_sign(&keys().signing, body.as_bytes());
    send(
        client,
        "POST",
        url,
        &[
            ("content-type", "application/json"),
            ("x-pingplusplus-signature", &sig),
        ],
        body.to_string(),
    )
    .await
}

pub fn sample_event() -> String {
    payhook::testkit::pingpp_event("charge.succeeded", &mut rand::thread_rng())
}

pub fn shared_vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors")
}

/// Load until the daemon goes away: `senders` tasks each post up to `each` fresh signed events
/// and report (event id, status) for every answer; a sender stops at its first connection error.
pub fn load(
    url: &str,
    senders: usize,
    each: usize,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, u16)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let http = client();
    for _ in 0..senders {
        let (http, url, tx) = (http.clone(), url.to_string(), tx.clone());
        tokio::spawn(async move {
            for _ in 0..each {
                let body = sample_event();
                let sig = payhook::testkit::pingpp_sign(&keys().signing, body.as_bytes());
                let req = hyper::Request::post(&url)
                    .header("content-type", "application/json")
                    .header("x-pingplusplus-signature", sig)
                    .body(Full::new(Bytes::from(body.clone())))
                    .expect("request");
                let Ok(resp) = http.request(req).await else {
                    return;
                };
                let v: serde_json::Value = serde_json::from_str(&body).expect("sample is JSON");
                let id = v["id"].as_str().expect("sample has an id").to_string();
                let _ = tx.send((id, resp.status().as_u16()));
            }
        });
    }
    rx
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
