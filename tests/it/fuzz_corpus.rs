//! Replays the committed fuzz corpus (`fuzz/corpus/TARGET/`) and seeds (`fuzz/seeds/TARGET/`)
//! through the fuzz targets' own code, so every `cargo test` re-checks what the fuzzer once
//! reached, with all its invariants, without cargo-fuzz or libFuzzer (scripts/fuzz runs those).

use std::path::Path;

#[path = "../../fuzz/src/lib.rs"]
mod targets;

/// Runs every input of `target` through `f` and names each one that breaks an invariant.
fn replay(target: &str, f: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = 0;
    let mut failed = Vec::new();
    for dir in ["corpus", "seeds"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).expect("read corpus file");
            inputs += 1;
            if std::panic::catch_unwind(|| f(&data)).is_err() {
                failed.push(
                    path.strip_prefix(&root)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    assert!(
        inputs > 0,
        "no corpus for {target} under {}",
        root.display()
    );
    assert!(
        failed.is_empty(),
        "{} of {inputs} {target} inputs break an invariant (the panic messages are above); \
         replay one with `cd fuzz && cargo fuzz run -s none -O {target} FILE`:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn fuzz_corpus_pingpp() {
    replay("pingpp", targets::pingpp);
}

#[test]
fn fuzz_corpus_pingpp_signature() {
    replay("pingpp_signature", targets::pingpp_signature);
}

#[test]
fn fuzz_corpus_pinddpay() {
    replay("pinddpay", targets::pinddpay);
}

#[test]
fn fuzz_corpus_pingpong_json() {
    replay("pingpong_json", targets::pingpong_json);
}

#[test]
fn fuzz_corpus_pingpong_form() {
    replay("pingpong_form", targets::pingpong_form);
}

#[test]
fn fuzz_corpus_wechat_alarm() {
    replay("wechat_alarm", targets::wechat_alarm);
}

#[test]
fn fuzz_corpus_xml() {
    replay("xml", targets::xml);
}
