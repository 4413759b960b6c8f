//! Which kernels ran. `XENT_EXPECT=avx512,avx2` (set by `.ci/run` from /proc/cpuinfo, not
//! from the crate's own detection) makes this fail if an expected variant is missing, so a
//! machine cannot pass by testing only the portable kernel.

use xent::Kernel;

#[test]
fn expected_kernels_are_available() {
    let have = Kernel::available();
    println!(
        "kernels available here: {have:?}; Auto resolves to {:?}",
        Kernel::Auto.resolve()
    );
    assert_eq!(have.last(), Some(&Kernel::Portable));
    assert_eq!(Kernel::Auto.resolve().unwrap(), have[0]);
    let expect = std::env::var("XENT_EXPECT").unwrap_or_default();
    for name in expect.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let k = match name {
            "avx512" => Kernel::Avx512,
            "avx2" => Kernel::Avx2,
            "portable" => Kernel::Portable,
            "neon" => Kernel::Neon,
            other => panic!("unknown kernel {other:?} in XENT_EXPECT"),
        };
        assert!(
            have.contains(&k),
            "XENT_EXPECT lists {k:?} but only {have:?} are available"
        );
    }
}
