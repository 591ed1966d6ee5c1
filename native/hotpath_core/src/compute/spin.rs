//! A synthetic chunked kernel: burns CPU for a number of steps.
//!
//! Tests and benchmarks use it to observe cancellation (its step counter stops moving),
//! concurrency bounds and scheduler responsiveness without depending on input sizes.

use super::{Budget, CancelFlag, Step};
use crate::{Error, Result};
use std::hint::black_box;
use std::time::Duration;

/// Work between two polls of the cancel flag and the clock (a few microseconds).
const INNER_ROUNDS: u32 = 2_000;

/// Burns CPU for `steps` steps of `step_length` each.
#[derive(Debug, Clone)]
pub struct Spin {
    steps: u64,
    step_length: Duration,
    panic_at: Option<u64>,
    done: u64,
    acc: u64,
}

impl Spin {
    /// A spin of `steps` steps of `step_length` each. `panic_at: Some(n)` panics during step
    /// `n` (0-based), to test panic isolation.
    pub fn new(steps: u64, step_length: Duration, panic_at: Option<u64>) -> Result<Self> {
        if step_length.is_zero() || step_length > Duration::from_secs(1) {
            return Err(Error::invalid(format!(
                "spin step length must be between 1 microsecond and 1 second, got {step_length:?}"
            )));
        }
        Ok(Spin {
            steps,
            step_length,
            panic_at,
            done: 0,
            acc: 0,
        })
    }

    /// Steps completed so far.
    pub fn steps_done(&self) -> u64 {
        self.done
    }

    /// A value derived from all the work done (keeps the optimiser from removing it).
    pub fn checksum(&self) -> u64 {
        self.acc
    }

    /// Runs one step of about `step_length`, polling `cancel` every few microseconds.
    pub fn step(&mut self, cancel: &CancelFlag) -> Step {
        if cancel.is_cancelled() {
            return Step::Cancelled;
        }
        if self.done >= self.steps {
            return Step::Done;
        }
        if self.panic_at == Some(self.done) {
            panic!("spin: deliberate panic in step {}", self.done);
        }
        let budget = Budget::new(self.step_length);
        loop {
            for i in 0..INNER_ROUNDS {
                self.acc = black_box(
                    self.acc
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(u64::from(i) | 1),
                );
            }
            if cancel.is_cancelled() {
                return Step::Cancelled;
            }
            if budget.spent() {
                break;
            }
        }
        self.done += 1;
        if self.done >= self.steps {
            Step::Done
        } else {
            Step::More
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_requested_number_of_steps() {
        let mut spin = Spin::new(3, Duration::from_micros(100), None).unwrap();
        let cancel = CancelFlag::new();
        assert_eq!(spin.step(&cancel), Step::More);
        assert_eq!(spin.step(&cancel), Step::More);
        assert_eq!(spin.step(&cancel), Step::Done);
        assert_eq!(spin.step(&cancel), Step::Done);
        assert_eq!(spin.steps_done(), 3);
    }

    #[test]
    fn zero_steps_is_done_at_once() {
        let mut spin = Spin::new(0, Duration::from_micros(100), None).unwrap();
        assert_eq!(spin.step(&CancelFlag::new()), Step::Done);
    }

    #[test]
    fn a_cancelled_spin_stops_and_stays_stopped() {
        let mut spin = Spin::new(10, Duration::from_micros(100), None).unwrap();
        let cancel = CancelFlag::new();
        assert_eq!(spin.step(&cancel), Step::More);
        cancel.cancel();
        assert_eq!(spin.step(&cancel), Step::Cancelled);
        assert_eq!(spin.step(&cancel), Step::Cancelled);
        assert_eq!(spin.steps_done(), 1);
    }

    #[test]
    fn cancellation_from_another_thread_interrupts_a_step() {
        use std::sync::Arc;
        let cancel = Arc::new(CancelFlag::new());
        let mut spin = Spin::new(1, Duration::from_secs(1), None).unwrap();
        let setter = {
            let cancel = Arc::clone(&cancel);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                cancel.cancel();
            })
        };
        // A one-second step returns Cancelled (it does not run to its end).
        assert_eq!(spin.step(&cancel), Step::Cancelled);
        setter.join().unwrap();
        assert_eq!(spin.steps_done(), 0);
    }

    #[test]
    fn rejects_bad_step_lengths() {
        assert!(Spin::new(1, Duration::ZERO, None)
            .unwrap_err()
            .is_argument_error());
        assert!(Spin::new(1, Duration::from_secs(2), None).is_err());
    }

    #[test]
    #[should_panic(expected = "deliberate panic in step 1")]
    fn panics_where_asked() {
        let mut spin = Spin::new(3, Duration::from_micros(10), Some(1)).unwrap();
        let cancel = CancelFlag::new();
        spin.step(&cancel);
        spin.step(&cancel);
    }
}
