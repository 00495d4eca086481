//! The real `payhook serve` binary with a config of the test's own in a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::{HttpClient, keys, send};
use super::process::{free_port, unique, wait_for_port};

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
