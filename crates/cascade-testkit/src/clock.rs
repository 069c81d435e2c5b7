use std::sync::Mutex;
use std::time::Duration;

use cascade_engine::Timestamp;

/// Time that moves only when told, for pure tests of the state machine and pools.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// Starts at a fixed, readable moment (2026-01-01T00:00:00Z).
    pub fn new() -> Self {
        Self::at(chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default())
    }

    /// Starts at `at`.
    pub fn at(at: Timestamp) -> Self {
        Self { now: Mutex::new(at) }
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves time forward and returns the new now.
    pub fn advance(&self, by: Duration) -> Timestamp {
        let mut g = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *g += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        *g
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}
