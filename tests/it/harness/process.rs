//! Names, ports and process groups: what every real part a test starts needs, so that parts of
//! one run never collide and none outlives it.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// Waits until something accepts connections on loopback `port`.
pub(super) fn wait_for_port(port: u16, timeout: Duration) -> bool {
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
