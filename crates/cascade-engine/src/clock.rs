//! Engine time.
//!
//! The runtime reads wall-clock time through [`TokioClock`], which follows tokio's clock: with
//! `tokio::time::pause()` (tests), time stands still until advanced, so timeouts are tested
//! without real sleeping.

use std::time::Duration;

use crate::model::Timestamp;

/// Wall-clock time anchored once and advanced by tokio's monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    base_utc: Timestamp,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// Anchors at the current wall-clock time.
    pub fn new() -> Self {
        Self::starting_at(chrono::Utc::now())
    }

    /// Anchors at a given time (tests).
    pub fn starting_at(at: Timestamp) -> Self {
        Self { base_utc: at, base: tokio::time::Instant::now() }
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.base);
        self.base_utc + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }

    /// The tokio instant at which `at` falls.
    pub fn instant_at(&self, at: Timestamp) -> tokio::time::Instant {
        let offset = at.signed_duration_since(self.base_utc).to_std().unwrap_or(Duration::ZERO);
        self.base.checked_add(offset).unwrap_or_else(|| self.base + Duration::from_secs(86_400 * 365))
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}
