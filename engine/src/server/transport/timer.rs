//! A sleep that registers its deadline with the timer once per waker, for futures polled
//! many times while they wait (a timer arm in a `select!` loop, a timeout around a
//! stream that wakes often).
//!
//! The simulator's `sleep` adds a new timer event on every poll that finds it pending,
//! and a cancelled or superseded event stays queued until its deadline, then wakes the
//! task for nothing. A loop that selects over a 1 s timer and a busy channel thus queues
//! one event per message. [`QuietSleep`] polls the inner sleep only the first time, when
//! the waker changes, or once the deadline has passed, so one event per deadline
//! remains. Under tokio it behaves like `tokio::time::Sleep` (which registers once
//! anyway).
//!
//! Not here: intervals or timeouts as types of their own; callers build them from this.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::time::{Instant, Sleep};

/// A sleep until a deadline that re-registers with the timer only when needed.
pub struct QuietSleep {
    inner: Pin<Box<Sleep>>,
    /// The waker the inner sleep last registered, with its deadline.
    registered: Option<(Waker, Instant)>,
}

impl QuietSleep {
    /// A sleep until `deadline`.
    pub fn until(deadline: Instant) -> QuietSleep {
        QuietSleep {
            inner: Box::pin(tokio::time::sleep_until(deadline)),
            registered: None,
        }
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.inner.deadline()
    }

    /// Moves the deadline; the next poll registers it.
    pub fn reset(&mut self, deadline: Instant) {
        if self.inner.deadline() != deadline {
            self.inner.as_mut().reset(deadline);
            self.registered = None;
        }
    }
}

impl Future for QuietSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.inner.deadline();
        let still_registered = self
            .registered
            .as_ref()
            .is_some_and(|(waker, at)| *at == deadline && waker.will_wake(cx.waker()));
        // The sleep's own clock check: under the simulator a plain clock read first
        // looks up the running simulation (a thread-local, two reference counts), and
        // this poll runs on every turn of the loops that select over a timer.
        if still_registered && !self.inner.is_elapsed() {
            return Poll::Pending;
        }
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                self.registered = Some((cx.waker().clone(), deadline));
                Poll::Pending
            }
        }
    }
}

/// The current time, for code that reads it often (a loop's every turn, every write).
/// Under the simulator `Instant::now()` first looks up the running simulation (a
/// thread-local and two reference counts) before it reads the simulated clock; this
/// keeps the simulation's clock at hand and reads it directly, giving the same instant.
/// Under tokio it is `Instant::now()`. Made inside the runtime it reads.
#[derive(Clone)]
pub struct LoopClock {
    #[cfg(madsim)]
    handle: tokio::time::TimeHandle,
}

impl LoopClock {
    /// The running runtime's clock.
    pub fn new() -> LoopClock {
        LoopClock {
            #[cfg(madsim)]
            handle: tokio::time::TimeHandle::current(),
        }
    }

    /// Now.
    pub fn now(&self) -> Instant {
        #[cfg(madsim)]
        return self.handle.now_instant();
        #[cfg(not(madsim))]
        return Instant::now();
    }
}

impl Default for LoopClock {
    fn default() -> Self {
        LoopClock::new()
    }
}

/// Sleeps until `deadline` exactly. The simulator's `sleep_until` waits at least 1 ms
/// even for a nearer deadline, but keeps a reset deadline as given; under tokio this is
/// a plain `sleep_until`.
pub async fn sleep_exactly_until(deadline: Instant) {
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    sleep.as_mut().reset(deadline);
    sleep.await;
}

/// Runs `future` until `deadline`; `Err(())` if the deadline passes first. The timer
/// arm is a [`QuietSleep`], so a future that wakes often queues one timer event.
pub async fn quiet_timeout<F: Future>(deadline: Instant, future: F) -> Result<F::Output, ()> {
    let sleep = QuietSleep::until(deadline);
    tokio::pin!(future);
    tokio::pin!(sleep);
    tokio::select! {
        biased;
        output = &mut future => Ok(output),
        () = &mut sleep => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_at_its_deadline_and_after_a_reset() {
        let start = Instant::now();
        let mut sleep = QuietSleep::until(start + Duration::from_millis(30));
        sleep.reset(start + Duration::from_millis(50));
        assert_eq!(sleep.deadline(), start + Duration::from_millis(50));
        (&mut sleep).await;
        assert!(Instant::now() >= start + Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_timeout_passes_the_output_or_reports_the_deadline() {
        let start = Instant::now();
        let fast = quiet_timeout(start + Duration::from_millis(20), async { 7 }).await;
        assert_eq!(fast, Ok(7));
        let slow = quiet_timeout(
            start + Duration::from_millis(20),
            tokio::time::sleep(Duration::from_millis(100)),
        )
        .await;
        assert_eq!(slow, Err(()));
        assert!(Instant::now() < start + Duration::from_millis(100));
    }
}
