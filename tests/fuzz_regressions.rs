//! Replays every input saved under `fuzz/regressions/<target>/` (crashes the fuzzers found, once
//! fixed, and hand-picked hard cases) through the same checks the fuzz targets run.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails again", path.display());
        replayed += 1;
    }
    assert!(replayed > 0, "no inputs in {}", dir.display());
}

#[test]
fn client_messages() {
    replay("client_message", auralis::fuzz::client_message);
}

#[test]
fn frames() {
    replay("frame", auralis::fuzz::frame);
}

#[test]
fn tokens() {
    replay("token", auralis::fuzz::token);
}
