//! A private nginx, for the tests of the reverse-proxy setups the docs describe.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{free_port, kill_group, reap_group_on_exit};

pub const NGINX: &str = "/usr/sbin/nginx";

/// A private nginx: its own prefix, config, pid, logs and temp dirs in a temp dir, one process
/// (the config says `master_process off`, `daemon off`), on a free loopback port. Killed with its
/// process group on drop, and by a reaper if the test process dies first.
pub struct Nginx {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx with the `http { … }` contents `http` makes for its prefix directory and its
    /// port (the settings every test needs come first: one process, no daemon, error log and temp
    /// dirs in the prefix, no access log), and waits until the port takes connections; if nginx
    /// exits or 10 s pass first, panics with its logs.
    pub fn start(http: impl FnOnce(&Path, u16) -> String) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "nginx is not installed ({NGINX} is missing): install nginx (scripts/test installs \
             it), e.g. `sudo apt-get install nginx`"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("nginx temp dir");
        }
        let d = dir.path().display();
        let conf = format!(
            r#"
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{http}
}}
"#,
            http = http(dir.path(), port)
        );
        let child = spawn(dir.path(), &conf);
        let mut nginx = Nginx {
            dir,
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            let exited = nginx
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "nginx did not start ({exited:?}); its logs:\n{}\n{}",
                    nginx.file("logs/stderr.log"),
                    nginx.error_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    pub fn error_log(&self) -> String {
        self.file("logs/error.log")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

/// Starts nginx in its own process group with `conf` (written to `dir/nginx.conf`), its stderr
/// in `dir/logs/stderr.log`, and a reaper that ends it with the test process.
fn spawn(dir: &Path, conf: &str) -> Child {
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
