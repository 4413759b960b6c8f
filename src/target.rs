//! Integer target types accepted without copying.

pub(crate) mod sealed {
    pub trait Sealed {
        /// The value as `i64`, wrapping: exact for every target that passed validation
        /// (a class `0..C`, or equal to the `i64` ignore index), which is all the kernels'
        /// drivers read it for. Cheap where `i128` would not be (vector compares).
        fn low(self) -> i64;
        /// Whether the type has negative values.
        const SIGNED: bool;
    }
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
        impl sealed::Sealed for $t {
            #[inline(always)]
            fn low(self) -> i64 {
                self as i64
            }
            const SIGNED: bool = <$t>::MIN != 0;
        }
        impl Target for $t {
            #[inline(always)]
            fn class(self) -> i128 {
                self as i128
            }
        }
    )*};
}
impl_target!(u8, u16, u32, u64, usize, i32, i64);
