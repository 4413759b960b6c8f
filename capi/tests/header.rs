//! `include/xent.h` against the code: the same error codes, the same functions with the
//! same number of parameters, and `xent_loss`'s layout as a C compiler lays the header's
//! struct out. (The C test program, `xent_test.c`, then calls every function through
//! the header.)

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use xent_capi::*;

fn header() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../include/xent.h")).unwrap()
}

/// `name -> parameter count` of every function a text declares: C prototypes in the
/// header, `extern "C" fn` items in the Rust source.
fn functions(text: &str, rust: bool) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (i, _) in text.match_indices("xent_") {
        let rest = &text[i..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = &rest[name.len()..];
        if !after.starts_with('(') {
            continue;
        }
        let before = &text[..i];
        let declared = if rust {
            before.trim_end().ends_with("extern \"C\" fn")
        } else {
            // A prototype starts a line (after its return type), not a call or comment.
            let line = before.rsplit('\n').next().unwrap_or("");
            !line.contains("/*") && !line.trim_start().starts_with('*') && !line.contains('=')
        };
        if !declared {
            continue;
        }
        let params = &after[1..after.find(')').unwrap()];
        let count = match params.trim() {
            "" | "void" => 0,
            p => p.split(',').filter(|s| !s.trim().is_empty()).count(),
        };
        out.insert(name, count);
    }
    out
}

#[test]
fn the_header_declares_the_functions_the_library_defines() {
    let rust = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let (h, r) = (functions(&header(), false), functions(&rust, true));
    assert_eq!(h, r, "header vs src/lib.rs");
    assert_eq!(r.len(), 13, "{r:?}");
}

#[test]
fn the_header_has_the_library_error_codes() {
    let codes = [
        ("XENT_OK", XENT_OK),
        ("XENT_E_NULL", XENT_E_NULL),
        ("XENT_E_ZERO_CLASSES", XENT_E_ZERO_CLASSES),
        ("XENT_E_LOGITS_SHAPE", XENT_E_LOGITS_SHAPE),
        ("XENT_E_TARGETS_LENGTH", XENT_E_TARGETS_LENGTH),
        ("XENT_E_TARGET_OUT_OF_RANGE", XENT_E_TARGET_OUT_OF_RANGE),
        ("XENT_E_OUTPUT_LENGTH", XENT_E_OUTPUT_LENGTH),
        ("XENT_E_WEIGHTS_LENGTH", XENT_E_WEIGHTS_LENGTH),
        ("XENT_E_NON_FINITE_WEIGHT", XENT_E_NON_FINITE_WEIGHT),
        ("XENT_E_LABEL_SMOOTHING", XENT_E_LABEL_SMOOTHING),
        ("XENT_E_Z_LOSS", XENT_E_Z_LOSS),
        ("XENT_E_SOFTCAP", XENT_E_SOFTCAP),
        ("XENT_E_REDUCTION", XENT_E_REDUCTION),
        ("XENT_E_OVERLAP", XENT_E_OVERLAP),
        ("XENT_E_THREADS", XENT_E_THREADS),
        ("XENT_E_PANIC", XENT_E_PANIC),
        ("XENT_E_OTHER", XENT_E_OTHER),
    ];
    let text = header();
    let defines: BTreeMap<&str, i32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#define XENT_"))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            let v = value.trim().trim_start_matches('(').trim_end_matches(')');
            Some((name, v.parse().ok()?))
        })
        .collect();
    let want: BTreeMap<&str, i32> = codes
        .iter()
        .map(|&(n, v)| (n.strip_prefix("XENT_").unwrap(), v))
        .collect();
    assert_eq!(defines, want);
}

#[test]
fn xent_loss_is_laid_out_as_the_header_struct() {
    // float, size_t, size_t, float: C puts them at 0, 8, 16, 24 (size 32) on 64-bit
    // targets, 0, 4, 8, 12 (size 16) on 32-bit ones.
    let w = size_of::<usize>();
    assert_eq!(offset_of!(xent_loss, value), 0);
    assert_eq!(offset_of!(xent_loss, rows), w);
    assert_eq!(offset_of!(xent_loss, correct), 2 * w);
    assert_eq!(offset_of!(xent_loss, z_loss), 3 * w);
    assert_eq!(size_of::<xent_loss>(), 4 * w);
}
