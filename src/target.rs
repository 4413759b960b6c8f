//! Integer target types accepted without copying.

mod sealed {
    pub trait Sealed {}
}

/// An integer class index: implemented for `u8`, `u16`, `u32`, `u64`, `usize`, `i32` and
/// `i64`, so trainers pass the targets they already have. Values are widened losslessly
/// to `i128` for range checks and for comparison with the ignore index, so nothing wraps.
pub trait Target: Copy + Send + Sync + sealed::Sealed + 'static {
    /// The value, widened without loss.
    fn class(self) -> i128;
}

macro_rules! impl_target {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Target for $t {
            #[inline(always)]
            fn class(self) -> i128 {
                self as i128
            }
        }
    )*};
}
impl_target!(u8, u16, u32, u64, usize, i32, i64);
