//! The Ping++ ceiling: RSA-2048 PKCS#1 v1.5 SHA-256 verifications per second on every core with
//! the `rsa` crate payhook uses, over a body of Ping++'s size (SHA-256 of the body included).
//! Ping++ intake cannot go faster than this on the same machine; the target is within 1.3x.
//! Two figures: the wall-clock rate now (which other processes on the machine lower), and the
//! CPU time per verification (which they do not), with the rate it gives on idle cores.
//!
//! `rsa-ceiling [--seconds S] [--threads N] [--body-bytes B]` prints one line of JSON.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{Signer, Verifier};
use sha2::Sha256;

fn main() -> std::process::ExitCode {
    let mut seconds = 3.0f64;
    let mut threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut body_bytes = 900usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse::<f64>().ok());
        match (a.as_str(), v) {
            ("--seconds", Some(v)) => seconds = v,
            ("--threads", Some(v)) => threads = v as usize,
            ("--body-bytes", Some(v)) => body_bytes = v as usize,
            _ => {
                eprintln!("usage: rsa-ceiling [--seconds S] [--threads N] [--body-bytes B]");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let mut rng = rand::thread_rng();
    let key = match rsa::RsaPrivateKey::new(&mut rng, 2048) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("rsa-ceiling: key generation: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let body = payhook_bench::samples::filler(body_bytes).into_bytes();
    let signature: Signature = SigningKey::<Sha256>::new(key.clone()).sign(&body);
    let verifying = VerifyingKey::<Sha256>::new(key.to_public_key());
    let stop = AtomicBool::new(false);
    let cpu0 = payhook_bench::procfs::self_cpu_time();
    let start = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if verifying.verify(&body, &signature).is_ok() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap_or(0)).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let cpu = payhook_bench::procfs::self_cpu_time()
        .saturating_sub(cpu0)
        .as_secs_f64();
    let total: u64 = counts.iter().sum();
    // CPU per verify does not depend on what else runs; the wall rate does.
    let cpu_us = cpu * 1e6 / total.max(1) as f64;
    eprintln!(
        "rsa-ceiling: {total} verifications in {secs:.2}s on {threads} threads = {:.0}/s; \
         {cpu_us:.0} us CPU per verify ({:.0}/s on {threads} idle cores)",
        total as f64 / secs,
        threads as f64 * 1e6 / cpu_us
    );
    println!(
        "{}",
        serde_json::json!({
            "threads": threads,
            "secs": secs,
            "verifications": total,
            "rate": total as f64 / secs,
            "cpu_us_per_verify": cpu_us,
            "idle_rate": threads as f64 * 1e6 / cpu_us,
        })
    );
    std::process::ExitCode::SUCCESS
}
