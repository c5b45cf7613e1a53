//! Exponential backoff with jitter for reconnecting to the CA.

use std::time::Duration;

/// The first wait after a failure.
pub const INITIAL: Duration = Duration::from_secs(1);
/// The longest wait.
pub const MAX: Duration = Duration::from_secs(60);

/// Waits that double from [`INITIAL`] to [`MAX`]; each wait is drawn at random between
/// half the current step and the step itself, so that agents cut off together do not
/// come back together.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(INITIAL, MAX)
    }
}

impl Backoff {
    /// Steps from `initial` doubling to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            step: initial,
            initial,
            max: max.max(initial),
        }
    }

    /// The next wait; the step after it doubles (up to the maximum).
    pub fn next_wait(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let mut rnd = [0u8; 8];
        let fraction = match aws_lc_rs::rand::fill(&mut rnd) {
            Ok(()) => u64::from_le_bytes(rnd) as f64 / u64::MAX as f64,
            Err(_) => 1.0,
        };
        half + half.mul_f64(fraction)
    }

    /// After a success: the next failure waits the initial step again.
    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_bounds_and_reset() {
        let mut b = Backoff::default();
        let mut step = INITIAL;
        for _ in 0..12 {
            let w = b.next_wait();
            assert!(
                w >= step / 2 && w <= step,
                "{w:?} outside [{:?}, {step:?}]",
                step / 2
            );
            assert!(w <= MAX);
            step = (step * 2).min(MAX);
        }
        // Long after the cap: never more than the maximum, never less than half of it.
        for _ in 0..50 {
            let w = b.next_wait();
            assert!(w >= MAX / 2 && w <= MAX, "{w:?}");
        }
        b.reset();
        let w = b.next_wait();
        assert!(w >= INITIAL / 2 && w <= INITIAL, "{w:?}");
    }
}
