//! The shipped unit, systemd/payhook.service, checked by systemd's own tools: it verifies cleanly
//! and its hardening keeps `systemd-analyze security` at an exposure of 2.0 or lower.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::BIN;

/// The highest exposure `systemd-analyze security` may report for the unit (0 best, 10 worst).
const MAX_EXPOSURE: f64 = 2.0;

fn systemd_analyze() -> PathBuf {
    let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!(
            "systemd-analyze is missing: install the Debian package `systemd` \
             (`sudo apt-get install systemd`; scripts/test installs it)"
        )
    })
}

/// The unit as shipped, in a temp dir under its own name, with ExecStart pointing at the binary
/// this build made (a dev machine has no /usr/local/bin/payhook).
fn unit_in_tempdir() -> (tempfile::TempDir, PathBuf) {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systemd/payhook.service");
    let text = std::fs::read_to_string(&shipped)
        .unwrap_or_else(|e| panic!("read {}: {e}", shipped.display()));
    let from = "\nExecStart=/usr/local/bin/payhook ";
    assert_eq!(
        text.matches(from).count(),
        1,
        "the unit has one `ExecStart=/usr/local/bin/payhook ...` line"
    );
    let text = text.replace(from, &format!("\nExecStart={BIN} "));
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = dir.path().join("payhook.service");
    std::fs::write(&unit, text).expect("write the unit");
    (dir, unit)
}

fn run(args: &[&str], unit: &Path) -> (Output, String) {
    let out = Command::new(systemd_analyze())
        .args(args)
        .arg(unit)
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_LOG_COLOR", "0")
        .current_dir(unit.parent().expect("the unit's dir"))
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn the_unit_verifies_without_warnings() {
    let (_dir, unit) = unit_in_tempdir();
    let (out, text) = run(&["verify", "--man=no", "--no-pager"], &unit);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed ({}):\n{text}",
        out.status
    );
    // Whatever it says about the unit is a warning (unknown keys, bad values, missing commands).
    let about_unit: Vec<&str> = text.lines().filter(|l| l.contains("payhook")).collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify warns about the unit:\n{}",
        about_unit.join("\n")
    );
}

#[test]
fn the_unit_is_hardened_to_an_exposure_of_at_most_2() {
    let (_dir, unit) = unit_in_tempdir();
    let (out, text) = run(&["security", "--offline=yes", "--no-pager"], &unit);
    assert!(
        out.status.success(),
        "systemd-analyze security failed ({}):\n{text}",
        out.status
    );
    // "→ Overall exposure level for payhook.service: 1.2 OK 🙂"
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for payhook.service"))
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{text}"));
    let figure: f64 = line
        .rsplit_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure figure in {line:?}"));
    assert!(
        figure <= MAX_EXPOSURE,
        "exposure {figure} is over {MAX_EXPOSURE}; systemd-analyze security says:\n{text}"
    );
    eprintln!("systemd-analyze security: {line}");
}
