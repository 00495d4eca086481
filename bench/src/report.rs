//! The pieces of `bench-report`'s table: reading the JSON files a bench run left, formatting
//! figures and ratios, marking targets, printing aligned Markdown. The rows themselves are in
//! `src/bin/bench-report.rs`.

use std::path::PathBuf;

use serde_json::Value;

pub struct Results(pub PathBuf);

impl Results {
    pub fn get(&self, file: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.0.join(format!("{file}.json"))).ok()?;
        serde_json::from_str(text.lines().last()?).ok()
    }
    /// A number at a `/`-separated path in a file.
    pub fn num(&self, file: &str, path: &str) -> Option<f64> {
        let v = self.get(file)?;
        path.split('/')
            .try_fold(&v, |v, k| v.get(k))
            .and_then(Value::as_f64)
    }
}

/// 12345.6 -> "12,346".
pub fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

pub fn ms(x: Option<f64>) -> String {
    match x {
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.1}"),
        None => "-".into(),
    }
}

pub fn mib(kib: Option<f64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MiB", k / 1024.0))
}

pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

pub fn fx(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

/// "target (met)" or "target (MISSED)".
pub fn target(text: &str, met: Option<bool>) -> String {
    match met {
        Some(true) => format!("{text} (met)"),
        Some(false) => format!("{text} (MISSED)"),
        None => text.to_string(),
    }
}

pub struct Table(pub Vec<[String; 4]>);

impl Table {
    pub fn row(
        &mut self,
        a: impl Into<String>,
        b: impl Into<String>,
        c: impl Into<String>,
        d: impl Into<String>,
    ) {
        self.0.push([a.into(), b.into(), c.into(), d.into()]);
    }
    pub fn print(&self) {
        let mut w = [0usize; 4];
        for r in &self.0 {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |r: &[String; 4]| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c}{}", " ".repeat(w[i] - c.chars().count())))
                .collect();
            println!("| {} |", cells.join(" | "));
        };
        for (i, r) in self.0.iter().enumerate() {
            line(r);
            if i == 0 {
                let dashes: Vec<String> = w.iter().map(|n| "-".repeat(*n)).collect();
                println!("| {} |", dashes.join(" | "));
            }
        }
    }
}

/// "12,345/s, p50 0.43 p99 8.8 max 25 ms".
pub fn run_figure(r: &Results, f: &str) -> Option<String> {
    r.get(f)?;
    Some(format!(
        "{}/s, p50 {} p99 {} max {} ms",
        thousands(r.num(f, "ok_rate")?),
        ms(r.num(f, "p50_ms")),
        ms(r.num(f, "p99_ms")),
        ms(r.num(f, "max_ms")),
    ))
}

/// Status counts other than 200, e.g. " [503: 12, errors 3]", to flag a run that was not clean.
pub fn anomalies(r: &Results, f: &str) -> String {
    let Some(v) = r.get(f) else {
        return String::new();
    };
    let mut odd = Vec::new();
    if let Some(st) = v["status"].as_object() {
        for (k, n) in st {
            if k != "200" {
                odd.push(format!("{k}: {n}"));
            }
        }
    }
    for k in ["errors", "timeouts"] {
        if v[k].as_u64().unwrap_or(0) > 0 {
            odd.push(format!("{k} {}", v[k]));
        }
    }
    if odd.is_empty() {
        String::new()
    } else {
        format!(" [{}]", odd.join(", "))
    }
}
