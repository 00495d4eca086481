//! The Ping++ ceiling: RSA-2048 PKCS#1 v1.5 SHA-256 verifications per second on every core, over
//! a body of Ping++'s size (SHA-256 of the body included), with the verifier payhook runs
//! (`ring`, the default) or with the `rsa` crate (`--verifier rsa`, about 4x slower, for
//! comparison). Ping++ intake cannot go faster than this on the same machine; the target is
//! within 1.3x. Two figures: the wall-clock rate now (which other processes on the machine
//! lower), and the CPU time per verification (which they do not), with the rate it gives on
//! idle cores.
//!
//! `rsa-ceiling [--seconds S] [--threads N] [--body-bytes B] [--verifier ring|rsa]` prints one
//! line of JSON.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use sha2::Sha256;

fn main() -> std::process::ExitCode {
    let mut seconds = 3.0f64;
    let mut threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut body_bytes = 900usize;
    let mut use_ring = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next();
        let n = v.as_deref().and_then(|v| v.parse::<f64>().ok());
        match (a.as_str(), n, v.as_deref()) {
            ("--seconds", Some(n), _) => seconds = n,
            ("--threads", Some(n), _) => threads = n as usize,
            ("--body-bytes", Some(n), _) => body_bytes = n as usize,
            ("--verifier", _, Some("ring")) => use_ring = true,
            ("--verifier", _, Some("rsa")) => use_ring = false,
            _ => {
                eprintln!(
                    "usage: rsa-ceiling [--seconds S] [--threads N] [--body-bytes B] [--verifier ring|rsa]"
                );
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
    // payhook's own Ping++ verifier (src/providers/pingpp): ring with the key's components.
    let components = ring::signature::RsaPublicKeyComponents {
        n: key.n().to_bytes_be(),
        e: key.e().to_bytes_be(),
    };
    let raw = signature.to_bytes();
    let verify = || {
        if use_ring {
            components
                .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &body, &raw)
                .is_ok()
        } else {
            verifying.verify(&body, &signature).is_ok()
        }
    };
    if !verify() {
        eprintln!("rsa-ceiling: the signature does not verify");
        return std::process::ExitCode::from(1);
    }
    let stop = AtomicBool::new(false);
    let cpu0 = payhook_bench::procfs::self_cpu_time();
    let start = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if verify() {
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
    let verifier = if use_ring { "ring" } else { "rsa" };
    eprintln!(
        "rsa-ceiling ({verifier}): {total} verifications in {secs:.2}s on {threads} threads = {:.0}/s; \
         {cpu_us:.0} us CPU per verify ({:.0}/s on {threads} idle cores)",
        total as f64 / secs,
        threads as f64 * 1e6 / cpu_us
    );
    println!(
        "{}",
        serde_json::json!({
            "verifier": verifier,
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
