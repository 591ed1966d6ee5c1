//! Building blocks of cancellable, chunked CPU work.
//!
//! A long kernel is split into steps. Each step runs until its [`Budget`] is spent (10-50 ms
//! is the target; a dirty NIF call runs one step), polling a cancel flag often enough that a
//! cancellation takes effect well within one step. The NIF layer keeps the kernel's state in
//! a resource between steps; this module knows nothing about the BEAM.
//!
//! Kernels: [`crate::digest`] (BLAKE3 / SHA-256 over large inputs), [`spin::Spin`] (a
//! synthetic CPU burner used to prove cancellation and concurrency bounds), and
//! [`crate::password`] (argon2, one hash per call: not chunkable).

pub mod spin;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The default time budget of one step (one dirty NIF call).
pub const DEFAULT_STEP: Duration = Duration::from_millis(10);

/// How one step of a chunked kernel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The budget was spent; call again to continue.
    More,
    /// The kernel finished its input.
    Done,
    /// The cancel flag was set; the kernel stopped and must not be resumed.
    Cancelled,
}

/// The time a step may take, measured on the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
}

impl Budget {
    /// A budget of `length` starting now.
    pub fn new(length: Duration) -> Self {
        Budget {
            deadline: Instant::now() + length,
        }
    }

    /// True when the budget is spent.
    pub fn spent(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// A cancel flag shared between a running kernel and whoever may cancel it.
///
/// Setting it is idempotent and lock-free, so it can be done from a normal scheduler, from a
/// resource's `down` callback, or from another thread while a step runs.
#[derive(Debug, Default)]
pub struct CancelFlag(AtomicBool);

impl CancelFlag {
    /// A flag that is not set.
    pub const fn new() -> Self {
        CancelFlag(AtomicBool::new(false))
    }

    /// Sets the flag. Returns true if this call set it (it was not set before).
    ///
    /// Sequentially consistent, like [`CancelFlag::is_cancelled`], so a caller can order the
    /// flag against its own sequentially consistent counters (the NIF's "a cancelled job that
    /// is not in a step runs no more steps").
    pub fn cancel(&self) -> bool {
        !self.0.swap(true, Ordering::SeqCst)
    }

    /// True once the flag is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_flag_is_set_once() {
        let flag = CancelFlag::new();
        assert!(!flag.is_cancelled());
        assert!(flag.cancel());
        assert!(!flag.cancel());
        assert!(flag.is_cancelled());
    }

    #[test]
    fn a_zero_budget_is_spent_at_once() {
        assert!(Budget::new(Duration::ZERO).spent());
        assert!(!Budget::new(Duration::from_secs(60)).spent());
    }
}
