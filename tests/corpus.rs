//! Replays every committed fuzz input: `fuzz/regressions/<target>/*` through the same
//! checker the fuzz target runs. A crash found by `cargo fuzz` becomes a regression test by
//! copying its artifact file into the matching folder.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no inputs to replay", dir.display());
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let name = f.display().to_string();
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{name} fails again");
    }
    println!("replayed {} {target} inputs", files.len());
}

#[test]
fn differential_regressions() {
    replay("differential", crate::check::differential);
}

#[test]
fn bad_input_regressions() {
    replay("bad_input", crate::check::bad_input);
}

#[test]
fn exp_regressions() {
    replay("exp", crate::check::exp);
}

#[test]
fn linear_regressions() {
    replay("linear", crate::check::linear::linear);
}
