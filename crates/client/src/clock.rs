//! Time as the client sees it: the system clock, or one shifted for tests.

use time::OffsetDateTime;

/// A source of "now".
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock shifted by a fixed offset (zero in production; tests move it forward).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock {
    /// Added to the system time.
    pub offset: time::Duration,
}

impl SystemClock {
    /// The system clock moved by `offset`.
    pub fn with_offset(offset: time::Duration) -> Self {
        Self { offset }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_moves_now() {
        let c = SystemClock::with_offset(time::Duration::days(400));
        assert!(c.now() - OffsetDateTime::now_utc() > time::Duration::days(399));
    }
}
