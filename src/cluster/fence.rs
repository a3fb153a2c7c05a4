//! The lease clock and the fence token.
//!
//! PostgreSQL ends a lease connection that stays idle for `idle_session_timeout` (the
//! lease), and with it every advisory lock the replica holds; another replica may then
//! claim its units. The replica must have stopped before that instant. It cannot know
//! when the server last saw it, but it knows when it *sent* its last heartbeat that
//! succeeded: the server saw the session active at or after that instant, so it cannot
//! free the locks before `sent + lease`. The fence breaks at `sent + (lease − margin)`,
//! which leaves the margin for a commit already under way and for clock reads. The clock
//! is monotonic (`Instant`), and a frozen process sees the time it was frozen as soon as it
//! runs again: its first check after a SIGCONT finds the fence broken.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The unit must not commit: its lease may be gone, or it was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fenced {
    #[error("no heartbeat succeeded for too long: this replica may have lost its lease")]
    LeaseExpired,
    #[error("the unit was released")]
    Released,
}

/// The margin kept between the fence and the lease: a third of the lease, at least
/// 200 ms.
pub fn margin(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(200)).min(lease / 2)
}

/// How long after the send time of its last successful heartbeat a replica may still
/// commit: lease − margin.
pub fn fence_after(lease: Duration) -> Duration {
    lease.saturating_sub(margin(lease))
}

/// How often the lease connection is used (each use is a heartbeat): every 250 ms, or
/// every lease/4 when that is shorter.
pub fn heartbeat_every(lease: Duration) -> Duration {
    (lease / 4).min(Duration::from_millis(250))
}

/// When the last heartbeat that succeeded was sent, on one lease connection.
#[derive(Debug)]
pub struct LeaseClock {
    lease: Duration,
    last_sent: Mutex<Option<Instant>>,
}

impl LeaseClock {
    /// A clock for a new connection, with its first successful round trip sent at `sent`.
    pub fn new(lease: Duration, sent: Instant) -> Self {
        Self {
            lease,
            last_sent: Mutex::new(Some(sent)),
        }
    }

    /// A heartbeat sent at `sent` succeeded.
    pub fn beat(&self, sent: Instant) {
        let mut last = self.last_sent.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|l| sent > l) {
            *last = Some(sent);
        }
    }

    /// The connection is gone: nothing may commit under it any more.
    pub fn expire(&self) {
        *self.last_sent.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether a unit may still commit at `now`.
    pub fn valid_at(&self, now: Instant) -> bool {
        let last = *self.last_sent.lock().unwrap_or_else(|e| e.into_inner());
        last.is_some_and(|sent| now.saturating_duration_since(sent) < fence_after(self.lease))
    }

    /// Time since the last successful heartbeat was sent (`None` once expired).
    pub fn age(&self, now: Instant) -> Option<Duration> {
        let last = *self.last_sent.lock().unwrap_or_else(|e| e.into_inner());
        last.map(|sent| now.saturating_duration_since(sent))
    }
}

/// A unit's fence token: checked before every commit, and awaited to learn that the
/// unit must stop.
#[derive(Clone, Debug)]
pub struct Fence {
    clock: Option<Arc<LeaseClock>>,
    released: Arc<watch::Sender<bool>>,
}

impl Fence {
    /// A fence under the lease of `clock`.
    pub fn leased(clock: Arc<LeaseClock>) -> Self {
        Self {
            clock: Some(clock),
            released: Arc::new(watch::Sender::new(false)),
        }
    }

    /// A fence without a lease (SQLite: one process, which holds every unit), broken
    /// only by [`Fence::release`].
    pub fn unleased() -> Self {
        Self {
            clock: None,
            released: Arc::new(watch::Sender::new(false)),
        }
    }

    /// `Ok` while the unit may commit.
    pub fn check(&self) -> Result<(), Fenced> {
        if *self.released.borrow() {
            return Err(Fenced::Released);
        }
        match &self.clock {
            Some(clock) if !clock.valid_at(Instant::now()) => Err(Fenced::LeaseExpired),
            _ => Ok(()),
        }
    }

    /// Tells the unit to stop (it was released, lost, or the replica shuts down).
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    pub fn is_released(&self) -> bool {
        *self.released.borrow()
    }

    /// Resolves once the unit is told to stop.
    pub async fn released(&self) {
        let mut rx = self.released.subscribe();
        let _ = rx.wait_for(|released| *released).await;
    }

    /// A receiver that turns true once the unit is told to stop (for loops that take a
    /// `watch::Receiver<bool>` as their shutdown signal).
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.released.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_breaks_a_margin_before_the_server_can_free_the_lease() {
        let lease = Duration::from_secs(3);
        assert_eq!(fence_after(lease), Duration::from_secs(2));
        assert_eq!(heartbeat_every(lease), Duration::from_millis(250));
        assert_eq!(
            heartbeat_every(Duration::from_millis(600)),
            Duration::from_millis(150)
        );
        // A short lease keeps at least 200 ms of margin, never more than half.
        assert_eq!(
            fence_after(Duration::from_millis(600)),
            Duration::from_millis(400)
        );
        assert_eq!(
            fence_after(Duration::from_millis(300)),
            Duration::from_millis(150)
        );
        // Several heartbeats fit before the fence, so one slow heartbeat does not fence.
        for ms in [300, 600, 1_000, 3_000, 10_000, 60_000] {
            let lease = Duration::from_millis(ms);
            assert!(fence_after(lease) >= heartbeat_every(lease) * 2, "{ms}");
            assert!(fence_after(lease) < lease, "{ms}");
        }
    }

    #[test]
    fn the_fence_counts_from_the_send_time_of_the_last_heartbeat_that_succeeded() {
        let start = Instant::now();
        let clock = Arc::new(LeaseClock::new(Duration::from_secs(3), start));
        let fence = Fence::leased(clock.clone());
        assert!(clock.valid_at(start + Duration::from_millis(1_999)));
        assert!(!clock.valid_at(start + Duration::from_millis(2_000)));
        // A later heartbeat moves it; an older answer arriving late does not move it back.
        clock.beat(start + Duration::from_secs(1));
        clock.beat(start + Duration::from_millis(500));
        assert!(clock.valid_at(start + Duration::from_millis(2_999)));
        assert!(!clock.valid_at(start + Duration::from_secs(3)));
        assert_eq!(fence.check(), Ok(()));
        clock.expire();
        assert_eq!(fence.check(), Err(Fenced::LeaseExpired));
    }

    #[test]
    fn a_released_unit_is_fenced_even_with_a_fresh_lease() {
        let fence = Fence::leased(Arc::new(LeaseClock::new(
            Duration::from_secs(3),
            Instant::now(),
        )));
        let stop = fence.stop_signal();
        fence.release();
        assert_eq!(fence.check(), Err(Fenced::Released));
        assert!(*stop.borrow());
        assert_eq!(Fence::unleased().check(), Ok(()));
    }
}
