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

/// The generated mode's bound on the logits of a `differential` input
/// (`GENERATED_MAX_LOGITS`) came after the committed `seed-generated-*` inputs: they must
/// still decode to the shapes they were written for, and the bound must hold.
#[test]
fn differential_seeds_keep_their_shapes() {
    use crate::check::{Bytes, DIFFERENTIAL_MAX_LOGITS, GENERATED_MAX_LOGITS, differential_shape};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/differential");
    let mut generated = 0;
    for f in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(f.unwrap().path()).unwrap();
        let now = differential_shape(&mut Bytes(&data), GENERATED_MAX_LOGITS);
        let before = differential_shape(&mut Bytes(&data), DIFFERENTIAL_MAX_LOGITS);
        assert_eq!(now, before, "{data:?}");
        if now.0 >> 6 == 1 {
            generated += 1;
        }
    }
    assert!(generated >= 3, "{generated} generated seeds");
    // A generated input asking for 9 rows of 20 000 classes gets 9 % (3 + 1) = 1 row;
    // any other mode, 9.
    for (mode, rows) in [(0x40u8, 1), (0x00, 9), (0x80, 9)] {
        let data = [mode, 0x1f, 0x4e, 9];
        let (_, classes, r) = differential_shape(&mut Bytes(&data), GENERATED_MAX_LOGITS);
        assert_eq!((classes, r), (20_000, rows), "mode {mode:#x}");
    }
}

#[test]
fn bad_input_regressions() {
    replay("bad_input", crate::check::bad_input);
}

#[test]
fn exp_regressions() {
    replay("exp", crate::check::exp);
}

#[cfg(feature = "linear")]
#[test]
fn linear_regressions() {
    replay("linear", crate::check::linear::linear);
}
