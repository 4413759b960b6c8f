//! The threads a call runs on ([`CrossEntropy::threads`](crate::CrossEntropy::threads)):
//! the caller's current rayon pool (the default), the calling thread alone, or a pool of
//! the configuration's own, built at its first call and shared by its clones.
//!
//! Whichever runs, the work is cut into the same chunks (their boundaries depend on the
//! shape alone, `crate::parallel`) and the partial results are folded in chunk order, so
//! the bits of every result are the same.

use crate::Error;
use rayon::ThreadPool;
use std::sync::{Arc, OnceLock};

/// A configuration's choice of threads.
#[derive(Clone, Default)]
pub(crate) enum Threads {
    /// Rayon's current pool: the global one, or the pool of an enclosing `install`.
    #[default]
    Current,
    /// The calling thread only.
    Calling,
    /// A pool of `count` threads, built at the first call that needs it.
    Own {
        count: usize,
        pool: Arc<OnceLock<Result<ThreadPool, String>>>,
    },
}

impl core::fmt::Debug for Threads {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Threads::Current => f.write_str("Current"),
            Threads::Calling => f.write_str("Calling"),
            Threads::Own { count, .. } => write!(f, "Own({count})"),
        }
    }
}

/// The stack of a configuration's own pool threads: 16 MiB of address space.
const POOL_STACK: usize = 16 << 20;

impl Threads {
    /// `0`: the current pool; `1`: the calling thread; more: a pool of its own.
    pub(crate) fn with_count(count: usize) -> Threads {
        match count {
            0 => Threads::Current,
            1 => Threads::Calling,
            count => Threads::Own {
                count,
                pool: Arc::new(OnceLock::new()),
            },
        }
    }

    /// The count as set (`0` for the current pool).
    pub(crate) fn count(&self) -> usize {
        match self {
            Threads::Current => 0,
            Threads::Calling => 1,
            Threads::Own { count, .. } => *count,
        }
    }

    /// The threads of one call, the configuration's own pool built if it is the first
    /// call; the error if the operating system would not start its threads.
    pub(crate) fn resolve(&self) -> Result<Run<'_>, Error> {
        match self {
            Threads::Current => Ok(Run::Current),
            Threads::Calling => Ok(Run::Calling),
            Threads::Own { count, pool } => {
                let built = pool.get_or_init(|| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(*count)
                        // A margin: the kernels fit the default 2 MiB in the usual
                        // profiles (see `crate::arch`), but a `xent` built at opt-level 0
                        // without debug assertions forces its helpers inline there, and
                        // the AVX-512 boundary's frame is then about 4 MiB. Reserved,
                        // not committed, memory.
                        .stack_size(POOL_STACK)
                        .thread_name(|i| format!("xent-{i}"))
                        .build()
                        .map_err(|e| e.to_string())
                });
                match built {
                    Ok(p) => Ok(Run::Pool(p)),
                    Err(reason) => Err(Error::ThreadPool {
                        threads: *count,
                        reason: reason.clone(),
                    }),
                }
            }
        }
    }
}

/// The threads of one validated call.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Run<'a> {
    Current,
    Calling,
    Pool(&'a ThreadPool),
}

impl Run<'_> {
    /// How many threads the call's parallel work would share.
    pub(crate) fn threads(self) -> usize {
        match self {
            Run::Current => rayon::current_num_threads(),
            Run::Calling => 1,
            Run::Pool(p) => p.current_num_threads(),
        }
    }

    /// Runs `op` on the calling thread with a scope whose spawned jobs run on the call's
    /// threads (the configuration's pool, or the current one), and waits for them.
    pub(crate) fn in_place_scope<'s, R>(self, op: impl FnOnce(&rayon::Scope<'s>) -> R) -> R {
        match self {
            Run::Pool(p) => p.in_place_scope(op),
            Run::Current | Run::Calling => rayon::in_place_scope(op),
        }
    }

    /// Runs `f`, which may use rayon's parallel iterators, on the call's threads (the
    /// fused linear head's GEMM; a build without it has no caller but the tests).
    #[cfg(any(test, feature = "linear"))]
    pub(crate) fn install<R: Send>(self, f: impl FnOnce() -> R + Send) -> R {
        match self {
            Run::Pool(p) => p.install(f),
            Run::Current | Run::Calling => f(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_the_shared_pool() {
        assert_eq!(Threads::with_count(0).count(), 0);
        assert!(matches!(Threads::with_count(0).resolve(), Ok(Run::Current)));
        assert!(matches!(Threads::with_count(1).resolve(), Ok(Run::Calling)));
        assert_eq!(Threads::with_count(1).resolve().unwrap().threads(), 1);
        let own = Threads::with_count(3);
        let twin = own.clone();
        let (Ok(Run::Pool(a)), Ok(Run::Pool(b))) = (own.resolve(), twin.resolve()) else {
            panic!("a count of 3 must give a pool");
        };
        // Built once, shared by the clone.
        assert!(core::ptr::eq(a, b));
        assert_eq!(a.current_num_threads(), 3);
        assert_eq!(Run::Pool(a).install(rayon::current_num_threads), 3);
        assert_eq!(format!("{own:?}"), "Own(3)");
    }
}
