//! A 200 means the event is on disk (SPEC §6.1): with `synchronous = "full"`, every byte the
//! daemon wrote to the store's WAL for a webhook was fsynced before the webhook was answered.
//!
//! Killing the daemon cannot show this (the page cache survives a SIGKILL), so the test watches
//! the system calls: `strace` attached to the running daemon records the WAL writes, the WAL
//! syncs, and each request and answer on the daemon's port with their times. For each answered
//! webhook, the WAL writes made while it was in the daemon must all have finished before one
//! fsync (or fdatasync) of the WAL began, and that fsync must have returned before the 200 was
//! written. A daemon that answers at commit, syncs the wrong file or syncs before writing fails.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// One system call as strace reported it: when it began and ended (seconds), and its text
/// (arguments, with file paths and socket addresses, and the result).
#[derive(Debug)]
struct Call {
    name: String,
    start: f64,
    end: f64,
    text: String,
}

/// Parses `strace -f -ttt -T -y -yy` output: `PID TIME name(args) = ret <dur>` (the pid padded
/// with spaces to a width), where a call
/// that another thread's call interrupted comes as `... <unfinished ...>` then
/// `PID TIME <... name resumed>rest = ret <dur>`.
fn parse(out: &str) -> Vec<Call> {
    let mut open: HashMap<String, (String, f64, String)> = HashMap::new();
    let mut calls = Vec::new();
    for line in out.lines() {
        // strace pads the pid column (`7086  1795807961.22 ...` beside `25149 1795...`).
        let Some((pid, line)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((time, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(time) = time.parse::<f64>() else {
            continue;
        };
        let (name, start, text) = if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((name, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            let Some((_, start, head)) = open.remove(pid) else {
                continue;
            };
            (name.to_string(), start, format!("{head}{tail}"))
        } else if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            let name = head.split('(').next().unwrap_or("").to_string();
            open.insert(pid.to_string(), (name, time, head.to_string()));
            continue;
        } else {
            let name = rest.split('(').next().unwrap_or("").to_string();
            (name, time, rest.to_string())
        };
        // `<0.000123>` at the end: how long the call took.
        let dur = text
            .rsplit_once('<')
            .and_then(|(_, d)| d.strip_suffix('>'))
            .and_then(|d| d.parse::<f64>().ok());
        let Some(dur) = dur else {
            continue;
        };
        calls.push(Call {
            name,
            start,
            end: start + dur,
            text,
        });
    }
    calls.sort_by(|a, b| a.start.total_cmp(&b.start));
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_200_comes_after_an_fsync_of_the_wal_bytes_of_its_event() {
    // Its own broker, taken away before the test: with nothing to relay, the only writes to
    // the WAL are the webhooks' commits.
    let broker = Broker::start();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let http = client();
    broker.crash();
    daemon
        .wait_readyz(&http, Duration::from_secs(30), |j| {
            j["broker"] == "disconnected"
        })
        .await;
    // One webhook before the trace, so the WAL exists and the store is warm.
    let r = post_pingpp(&http, &daemon.url("pingpp"), &sample_event()).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let trace = daemon.dir.path().join("strace.out");
    let mut strace = Command::new("strace")
        .args(["-f", "-ttt", "-T", "-y", "-yy", "-s", "48", "-e"])
        .arg("trace=pwrite64,pwritev,pwritev2,write,writev,sendto,sendmsg,fsync,fdatasync,read,recvfrom,recvmsg")
        .arg("-o")
        .arg(&trace)
        .arg("-p")
        .arg(daemon.pid().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("strace (Debian package strace; scripts/test installs it)");
    reap_group_on_exit(strace.id());
    // strace reports each thread it attached to; give it a moment to reach them all.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        strace.try_wait().expect("strace status").is_none(),
        "strace could not attach to the daemon (is ptrace allowed here?)"
    );

    const N: usize = 30;
    for _ in 0..N {
        let r = post_pingpp(&http, &daemon.url("pingpp"), &sample_event()).await;
        assert_eq!(r.status, 200, "{}", r.body);
        // Apart, so each webhook is a commit of its own and its window holds only its writes.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGINT: strace detaches from every thread and the daemon runs on.
    let _ = Command::new("kill")
        .args(["-s", "INT", "--"])
        .arg(format!("-{}", strace.id()))
        .status();
    let _ = strace.wait();
    let out = std::fs::read_to_string(&trace).expect("strace output");
    let calls = parse(&out);

    let port = format!("TCP:[127.0.0.1:{}->", daemon.port);
    let on_port = |c: &&Call| c.text.contains(&port);
    let requests: Vec<&Call> = calls
        .iter()
        .filter(on_port)
        .filter(|c| matches!(c.name.as_str(), "read" | "recvfrom" | "recvmsg"))
        .filter(|c| c.text.contains("POST /hooks/"))
        .collect();
    let answers: Vec<&Call> = calls
        .iter()
        .filter(on_port)
        .filter(|c| matches!(c.name.as_str(), "write" | "writev" | "sendto" | "sendmsg"))
        .filter(|c| c.text.contains("HTTP/1.1 200"))
        .collect();
    let wal_writes: Vec<&Call> = calls
        .iter()
        .filter(|c| c.text.contains("-wal>"))
        .filter(|c| c.name.starts_with("pwrite") || c.name.starts_with("write"))
        .collect();
    let wal_syncs: Vec<&Call> = calls
        .iter()
        .filter(|c| c.text.contains("-wal>"))
        .filter(|c| matches!(c.name.as_str(), "fsync" | "fdatasync"))
        .collect();
    let tail: String = out.lines().rev().take(30).collect::<Vec<_>>().join("\n");
    assert_eq!(
        answers.len(),
        N,
        "one 200 per webhook in the trace; {} requests seen; trace tail:\n{tail}",
        requests.len()
    );

    for (i, answer) in answers.iter().enumerate() {
        let request = requests
            .iter()
            .rev()
            .find(|r| r.start < answer.start)
            .unwrap_or_else(|| panic!("webhook {i}: no request before its 200"));
        let written: Vec<&&Call> = wal_writes
            .iter()
            .filter(|w| w.start >= request.start && w.start < answer.start)
            .collect();
        assert!(
            !written.is_empty(),
            "webhook {i}: the event was stored without a write to the WAL?"
        );
        let last_write = written.iter().map(|w| w.end).fold(f64::MIN, f64::max);
        let synced = wal_syncs
            .iter()
            .any(|s| s.start >= last_write && s.end <= answer.start);
        assert!(
            synced,
            "webhook {i}: answered 200 at {:.6} without an fsync of the WAL begun after its last \
             write ({last_write:.6}) and finished before the answer; syncs around it: {:?}",
            answer.start,
            wal_syncs
                .iter()
                .filter(|s| s.end > request.start - 0.01 && s.start < answer.start + 0.01)
                .map(|s| (s.start, s.end))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_trace_parser_reads_padded_pids_and_resumed_calls() {
    let out = "7086  100.000100 fdatasync(25</x/p.db-wal> <unfinished ...>\n\
               25149 100.000150 pwrite64(13</x/p.db-wal>, \"ab\", 2, 0) = 2 <0.000010>\n\
               7086  100.000400 <... fdatasync resumed>) = 0 <0.000300>\n";
    let calls = parse(out);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].name, "fdatasync");
    assert!((calls[0].end - 100.0004).abs() < 1e-9);
    assert!(calls[0].text.contains("-wal>"));
    assert_eq!(calls[1].name, "pwrite64");
}
