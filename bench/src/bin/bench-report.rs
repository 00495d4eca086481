//! Prints scripts/bench's one table from the JSON files its steps left in a results directory:
//! figures, ratios and the targets of issues 9 and 7. A missing file (a section not run, a step
//! that failed) leaves its row out or shows "-". Nothing is asserted: a target is only marked.
//!
//! `bench-report RESULTS_DIR [MACHINE TEXT]`

use std::path::PathBuf;

use payhook_bench::report::{
    Results, Table, anomalies, fx, mib, ms, ratio, run_figure, target, thousands,
};

/// The providers of the (b) and (c) rows: the bench's name and the table's.
const PROVIDERS: [(&str, &str); 4] = [
    ("pinddpay", "Pinddpay"),
    ("pingpong", "PingPong"),
    ("wechat_alarm", "WeChat alarm"),
    ("pingpp", "Ping++"),
];

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let machine = args.collect::<Vec<_>>().join(" ");
    report(&Results(dir), &machine);
}

fn report(r: &Results, machine: &str) {
    let mut t = Table(Vec::new());
    t.row("measure", "figure", "ratio", "target");
    let a = r.num("ceiling", "ok_rate");
    let body = |f: &str| {
        r.num(f, "body_bytes")
            .map_or("-".into(), |b| format!("{b:.0} B"))
    };

    // The generator and the ceilings. Each (b) run has its own (a) measured just before it.
    let providers = ["pinddpay", "pingpong", "wechat_alarm", "pingpp"];
    let adjacent: Vec<f64> = providers
        .iter()
        .filter_map(|p| r.num(&format!("ceiling-before-{p}"), "ok_rate"))
        .collect();
    let a_for = |p: &str| r.num(&format!("ceiling-before-{p}"), "ok_rate").or(a);
    // The row shows the ceiling section's run, or the first adjacent one (--only intake).
    let af = if r.get("ceiling").is_some() {
        "ceiling"
    } else {
        "ceiling-before-pinddpay"
    };
    if let Some(fig) = run_figure(r, af) {
        let best = providers[..3]
            .iter()
            .filter_map(|p| ratio(r.num(&format!("intake-{p}"), "ok_rate"), a_for(p)))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let range = match (
            adjacent.iter().copied().reduce(f64::min),
            adjacent.iter().copied().reduce(f64::max),
        ) {
            (Some(lo), Some(hi)) => format!(
                "; before each (b): {} to {}/s",
                thousands(lo),
                thousands(hi)
            ),
            _ => String::new(),
        };
        t.row(
            format!(
                "(a) HTTP ceiling: loadgen -> bench-server, c=64, Pinddpay {}",
                body(af)
            ),
            {
                let cpu = r.num(af, "loadgen_cpu_us_per_req").unwrap_or(0.0);
                format!(
                    "{fig}; bench-server CPU {:.1} us/req; loadgen CPU {cpu:.1} us/req (its own limit ~{}/s per core){range}{}",
                    r.num(af, "daemon/cpu_us_per_ok").unwrap_or(0.0),
                    thousands(if cpu > 0.0 { 1e6 / cpu } else { 0.0 }),
                    anomalies(r, af)
                )
            },
            best.map_or("-".into(), |x| format!("{:.1}x the best intake", 1.0 / x)),
            "loadgen far above payhook",
        );
    }
    if let Some(rsa) = r.num("rsa", "rate") {
        t.row(
            "RSA-2048 PKCS#1 v1.5 verify ceiling, every core (ring, payhook's verifier)",
            format!(
                "{}/s now; {:.0} us CPU per verify ({}/s on idle cores){}",
                thousands(rsa),
                r.num("rsa", "cpu_us_per_verify").unwrap_or(0.0),
                thousands(r.num("rsa", "idle_rate").unwrap_or(0.0)),
                r.num("rsa-crate", "rate")
                    .map_or(String::new(), |c| format!(
                        "; the rsa crate: {}/s, {:.0} us CPU per verify",
                        thousands(c),
                        r.num("rsa-crate", "cpu_us_per_verify").unwrap_or(0.0)
                    ))
            ),
            "",
            "",
        );
    }

    if let Some(store) = r.num("store", "rate") {
        let x = ratio(Some(store), a_for("pinddpay"));
        t.row(
            "store ceiling: payhook's store alone (writer, fsync per group), 64 inserting tasks, no HTTP",
            format!(
                "{}/s; {:.1} us CPU/event; {} events/commit; messages of {} B",
                thousands(store),
                r.num("store", "cpu_us_per_event").unwrap_or(0.0),
                r.num("store", "events_per_commit")
                    .map_or("-".into(), |e| format!("{e:.1}")),
                r.num("store", "message_bytes").unwrap_or(0.0)
            ),
            format!("/(a) = {}", fx(x)),
            "",
        );
    }

    // (b) and (c).
    for (p, name) in PROVIDERS {
        let f = format!("intake-{p}");
        let Some(fig) = run_figure(r, &f) else {
            continue;
        };
        let rate = r.num(&f, "ok_rate");
        let epc = r.num(&f, "metrics/events_per_commit");
        let (ratio_text, tgt) = if p == "pingpp" {
            let x = ratio(r.num("rsa", "rate"), rate);
            (
                format!("RSA ceiling / intake = {}", fx(x)),
                target("<= 1.3x", x.map(|x| x <= 1.3)),
            )
        } else {
            let x = ratio(rate, a_for(p));
            let store = ratio(rate, r.num("store", "rate")).map_or(String::new(), |s| {
                format!("; /store ceiling = {}", fx(Some(s)))
            });
            (
                format!("(b)/(a) = {}{store}", fx(x)),
                target(">= 0.5", x.map(|x| x >= 0.5)),
            )
        };
        t.row(
            format!("(b) {name} intake, broker down, c=64, {}", body(&f)),
            format!(
                "{fig}; {} events/commit, commit {} ms mean; loadgen {:.1} us CPU/req{}",
                epc.map_or("-".into(), |e| format!("{e:.1}")),
                ms(r.num(&f, "metrics/commit_mean_ms")),
                r.num(&f, "loadgen_cpu_us_per_req").unwrap_or(0.0),
                anomalies(r, &f)
            ),
            ratio_text,
            tgt,
        );
    }
    for (p, name) in PROVIDERS {
        let f = format!("intake-{p}");
        let Some(cpu) = r.num(&f, "daemon/cpu_us_per_ok") else {
            continue;
        };
        let (extra, tgt) = if p == "pingpp" {
            let x = ratio(Some(cpu), r.num("rsa", "cpu_us_per_verify"));
            (format!("/ RSA verify CPU = {}", fx(x)), String::new())
        } else {
            (String::new(), target("<= 35 us", Some(cpu <= 35.0)))
        };
        t.row(
            format!("(c) {name}: daemon CPU per accepted event; peak RSS"),
            format!(
                "{cpu:.1} us (daemon busy {:.2} of {} cores); VmHWM {}",
                r.num(&f, "daemon/busy_cores").unwrap_or(0.0),
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                mib(r.num(&f, "daemon/hwm_kib"))
            ),
            extra,
            tgt,
        );
    }

    // Intake with the relay on, and (d).
    if let Some(fig) = run_figure(r, "e2e") {
        let n = r.num("e2e", "ok");
        let cpu = r.num("e2e-cpu", "cpu_s");
        t.row(
            format!(
                "intake with the relay on (broker up), Pinddpay, c=64, {} events",
                thousands(n.unwrap_or(0.0))
            ),
            format!(
                "{fig}; daemon CPU intake + relay {} us/event{}",
                ratio(cpu.map(|c| c * 1e6), n).map_or("-".into(), |x| format!("{x:.1}")),
                anomalies(r, "e2e")
            ),
            format!("/(a) = {}", fx(ratio(r.num("e2e", "ok_rate"), a))),
            "",
        );
    }
    if r.get("latency").is_some() {
        let p99 = r.num("latency", "p99_ms");
        t.row(
            format!(
                "(d) open loop {}/s for {:.0} s, relay on (latency from each due time)",
                thousands(r.num("latency", "target_rate").unwrap_or(0.0)),
                r.num("latency", "wall_s").unwrap_or(0.0)
            ),
            format!(
                "p50 {} p90 {} p99 {} p99.9 {} max {} ms; {} sent at {}/s{}",
                ms(r.num("latency", "p50_ms")),
                ms(r.num("latency", "p90_ms")),
                ms(p99),
                ms(r.num("latency", "p999_ms")),
                ms(r.num("latency", "max_ms")),
                thousands(r.num("latency", "sent").unwrap_or(0.0)),
                thousands(r.num("latency", "rate").unwrap_or(0.0)),
                anomalies(r, "latency")
            ),
            "",
            target("p99 <= 10 ms", p99.map(|p| p <= 10.0)),
        );
    }

    // (e).
    if let Some(v) = r.get("memory") {
        let samples: Vec<[f64; 4]> = v["daemon"]["mem"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        let s = s.as_array()?;
                        Some([
                            s.first()?.as_f64()?,
                            s.get(1)?.as_f64()?,
                            s.get(2)?.as_f64()?,
                            s.get(3)?.as_f64()?,
                        ])
                    })
                    .collect()
            })
            .unwrap_or_default();
        let total = v["sent"].as_f64().unwrap_or(0.0);
        let at = |frac: f64| {
            samples
                .iter()
                .find(|s| s[1] >= frac * total)
                .or(samples.last())
                .map(|s| mib(Some(s[2])))
                .unwrap_or_else(|| "-".into())
        };
        let peak = r.num("memory", "daemon/hwm_kib");
        let after = r.num("memory-after", "rss_kib");
        // Flat: from a quarter of the way to the end, RSS grows by at most 2 MiB or 5%.
        let rss_at = |frac: f64| {
            samples
                .iter()
                .find(|s| s[1] >= frac * total)
                .or(samples.last())
                .map(|s| s[2])
        };
        let growth = match (rss_at(0.25), rss_at(1.0)) {
            (Some(q), Some(e)) => Some(e - q),
            _ => None,
        };
        let flat = match (rss_at(0.25), growth) {
            (Some(q), Some(g)) => Some(g <= (2048.0f64).max(0.05 * q)),
            _ => None,
        };
        t.row(
            format!("(e) RSS over {} webhooks, relay on, /metrics never scraped", thousands(total)),
            format!(
                "RSS at 10% {}, 25% {}, 50% {}, 75% {}, 100% {} ({} from 25%); after the relay drained {}; VmHWM {}{}",
                at(0.1),
                at(0.25),
                at(0.5),
                at(0.75),
                at(1.0),
                growth.map_or("-".into(), |g| format!("{:+.1} MiB", g / 1024.0)),
                mib(after),
                mib(r.num("memory-after", "hwm_kib").or(peak)),
                anomalies(r, "memory")
            ),
            "",
            target(
                "peak <= 64 MiB and flat",
                peak.zip(flat).map(|(p, f)| p <= 64.0 * 1024.0 && f),
            ),
        );
    }
    if let Some(v) = r.get("outage") {
        // The daemon ran the end-to-end load before: its VmHWM is not the outage's. The
        // highest RSS sampled during the outage load is.
        let peak = v["daemon"]["mem"]
            .as_array()
            .and_then(|a| a.iter().filter_map(|s| s.get(2)?.as_f64()).reduce(f64::max))
            .or(r.num("outage", "daemon/rss_kib"));
        t.row(
            format!(
                "(e) memory during a {}-event broker outage",
                thousands(r.num("outage", "ok").unwrap_or(0.0))
            ),
            format!(
                "RSS {} at the end, at most {} while loading (sampled every second); {}/s accepted{}",
                mib(r.num("outage", "daemon/rss_kib")),
                mib(peak),
                thousands(r.num("outage", "ok_rate").unwrap_or(0.0)),
                anomalies(r, "outage")
            ),
            "",
            target("<= 64 MiB", peak.map(|p| p <= 64.0 * 1024.0)),
        );
    }

    // Curves.
    for (c, ceil) in [
        ("1", "ceiling-c1"),
        ("8", "ceiling-c8"),
        ("64", "ceiling"),
        ("256", "ceiling-c256"),
    ] {
        let f = format!("curve-c{c}");
        if let Some(fig) = run_figure(r, &f) {
            t.row(
                format!("curve: concurrency {c}, Pinddpay {}", body(&f)),
                format!(
                    "{fig}; {:.1} us CPU/event{}",
                    r.num(&f, "daemon/cpu_us_per_ok").unwrap_or(0.0),
                    anomalies(r, &f)
                ),
                format!(
                    "/ceiling at c={c} = {}",
                    fx(ratio(r.num(&f, "ok_rate"), r.num(ceil, "ok_rate")))
                ),
                "",
            );
        }
    }
    for (s, label) in [("1k", "1 KiB"), ("64k", "64 KiB"), ("1m", "1 MiB")] {
        let f = format!("curve-b{s}");
        let ceil = format!("ceiling-b{s}");
        if let Some(fig) = run_figure(r, &f) {
            t.row(
                format!("curve: body {label}, c=64"),
                format!(
                    "{fig}; {:.1} us CPU/event; VmHWM {}{}",
                    r.num(&f, "daemon/cpu_us_per_ok").unwrap_or(0.0),
                    mib(r.num(&f, "daemon/hwm_kib")),
                    anomalies(r, &f)
                ),
                format!(
                    "/ceiling {}/s = {}",
                    thousands(r.num(&ceil, "ok_rate").unwrap_or(0.0)),
                    fx(ratio(r.num(&f, "ok_rate"), r.num(&ceil, "ok_rate")))
                ),
                "",
            );
        }
    }

    relay_rows(r, &mut t);
    t.print();

    let mut times = Vec::new();
    for s in ["ceiling", "intake", "curves", "latency", "relay", "memory"] {
        let f = format!("time-{s}");
        if let Some(x) = r.num(&f, "seconds") {
            let load = r
                .num(&f, "load")
                .map_or(String::new(), |l| format!(" (load {l:.1})"));
            times.push(format!("{s} {x:.0} s{load}"));
        }
    }
    println!();
    if !machine.is_empty() {
        println!("machine: {machine}");
    }
    println!(
        "section times (and the 1-minute load average at their end): {}",
        times.join(", ")
    );
}

/// The mean of the figures that exist.
fn mean(xs: &[Option<f64>]) -> Option<f64> {
    let v: Vec<f64> = xs.iter().flatten().copied().collect();
    if v.is_empty() {
        None
    } else {
        Some(v.iter().sum::<f64>() / v.len() as f64)
    }
}

fn relay_rows(r: &Results, t: &mut Table) {
    // The bare publisher ran before and after the end-to-end run; ratios use the mean of both.
    let runs = ["bare-before", "bare-after"];
    let bare = mean(&runs.map(|f| r.num(f, "rate")));
    let bare_cpu = mean(&runs.map(|f| r.num(f, "cpu_us_per_msg")));
    if let Some(rate) = bare {
        let f = if r.get("bare-before").is_some() {
            "bare-before"
        } else {
            "bare-after"
        };
        let each: Vec<String> = runs
            .iter()
            .filter_map(|f| {
                Some(format!(
                    "{}/s at {:.1} us CPU/msg",
                    thousands(r.num(f, "rate")?),
                    r.num(f, "cpu_us_per_msg")?
                ))
            })
            .collect();
        t.row(
            format!(
                "relay: bare confirmed lapin publisher, window {}, {} x {} B (payhook's message)",
                r.num(f, "window").unwrap_or(0.0),
                thousands(r.num(f, "count").unwrap_or(0.0)),
                r.num(f, "body_bytes").unwrap_or(0.0)
            ),
            format!(
                "mean {}/s, {:.1} us CPU/msg (before / after the e2e run: {})",
                thousands(rate),
                bare_cpu.unwrap_or(0.0),
                each.join(" / ")
            ),
            "",
            "",
        );
    }
    if let (Some(first), Some(done)) = (
        r.num("e2e", "first_ok_unix_ms"),
        r.num("e2e-watch", "done_unix_ms"),
    ) {
        let n = r.num("e2e", "ok").unwrap_or(0.0);
        let secs = (done - first) / 1000.0;
        let rate = if secs > 0.0 { Some(n / secs) } else { None };
        let x = ratio(rate, bare);
        t.row(
            format!(
                "relay: end to end, {} events (first accept -> published_total)",
                thousands(n)
            ),
            format!("{}/s ({secs:.1} s)", thousands(rate.unwrap_or(0.0))),
            format!("/bare = {}", fx(x)),
            target(">= 0.8", x.map(|x| x >= 0.8)),
        );
    } else if r.get("e2e-watch").is_some() {
        t.row(
            "relay: end to end",
            "did not complete (see the watch JSON)",
            "",
            "",
        );
    }
    if let Some(rate) = r.num("drain-watch", "rate") {
        let x = ratio(Some(rate), bare);
        let wait = match (
            r.num("drain-broker", "broker_up_unix_ms"),
            r.num("drain-watch", "active_from_unix_ms"),
        ) {
            (Some(up), Some(from)) => format!(
                "; relay resumed {:.1} s after the broker came back",
                (from - up) / 1000.0
            ),
            _ => String::new(),
        };
        t.row(
            format!(
                "relay: drain of a {}-event backlog built while the broker was down",
                thousands(r.num("drain-watch", "delta").unwrap_or(0.0))
            ),
            format!(
                "{}/s ({:.1} s){wait}",
                thousands(rate),
                r.num("drain-watch", "active_s").unwrap_or(0.0)
            ),
            format!("/bare = {}", fx(x)),
            target(">= 0.9", x.map(|x| x >= 0.9)),
        );
        let cpu = r.num("drain-watch", "cpu_us_per_event");
        let x = ratio(cpu, bare_cpu);
        t.row(
            "relay: daemon CPU per relayed event (over the drain)",
            format!("{} us", cpu.map_or("-".into(), |c| format!("{c:.1}"))),
            format!("/bare's per message = {}", fx(x)),
            target("<= 1.3x", x.map(|x| x <= 1.3)),
        );
    } else if r.get("drain-watch").is_some() {
        t.row(
            "relay: drain",
            "did not complete (see the watch JSON)",
            "",
            "",
        );
    }
}
