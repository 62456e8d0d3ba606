//! The liveness watchdog of one Raft stream: decides when the sender asks the receiver
//! for an acknowledgement and when a stream whose acknowledgement is overdue counts as
//! broken.
//!
//! Why it exists: a peer that vanished (powered off, partitioned) without closing its
//! connection leaves the stream looking healthy. HTTP/2 keep-alive notices that on real
//! sockets, but the simulator's gRPC has no HTTP/2, so the stream could stay stuck
//! forever and Raft would never hear that the peer is unreachable. The watchdog works
//! the same in both modes, at the application level:
//!
//! - every [`RAFT_ACK_INTERVAL_MS`] (and at once when the stream opens) the next batch
//!   asks for an ack (`RaftBatch.ack_requested`); if no batch is waiting, the link sends
//!   an empty batch as a probe;
//! - the receiver answers a flagged batch, after handing it to its node, with the number
//!   of batches it received on the stream (`RaftAck.batches_received`);
//! - an ask unanswered for [`RAFT_ACK_TIMEOUT_MS`] (counted from when it became due,
//!   so a send that cannot even leave is caught too) ends the stream: the link reports
//!   the peer unreachable and redials. A dead peer is thus noticed within
//!   `RAFT_ACK_INTERVAL_MS + RAFT_ACK_TIMEOUT_MS`.
//!
//! Pure: time is passed in as milliseconds since the stream opened; the link reads the
//! runtime's clock (simulated under the simulator). Not here: sending, receiving, or
//! what to do about a broken stream.

/// How often a Raft stream asks its receiver for an acknowledgement.
pub const RAFT_ACK_INTERVAL_MS: u64 = 1_000;
/// How long an ask may go unanswered before the stream counts as broken.
pub const RAFT_ACK_TIMEOUT_MS: u64 = 3_000;

/// An ask for an acknowledgement that has not been answered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ask {
    /// The number (1-based, in sending order) of the batch that carries the ask.
    batch: u64,
    /// When the ask became due.
    since_ms: u64,
}

/// What the link must do when the watchdog's timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alarm {
    /// Nothing yet.
    None,
    /// An ask is due: the next batch carries it; send an empty probe if none waits.
    AskDue,
    /// The ask went unanswered too long: the stream is broken.
    Expired,
}

/// The watchdog's state for one stream.
#[derive(Debug, Clone)]
pub(crate) struct Watchdog {
    /// Batches sent so far.
    sent: u64,
    /// The ask waiting for its answer, if any.
    ask: Option<Ask>,
    /// When the next ask falls due (once the current one is answered).
    next_ask_ms: u64,
}

impl Watchdog {
    /// A watchdog for a stream that just opened: the first ask is due at once.
    pub(crate) fn new() -> Self {
        Watchdog {
            sent: 0,
            ask: None,
            next_ask_ms: 0,
        }
    }

    /// When (ms since the stream opened) [`Watchdog::on_timer`] should be called next.
    pub(crate) fn wake_at_ms(&self) -> u64 {
        match self.ask {
            Some(ask) => ask.since_ms.saturating_add(RAFT_ACK_TIMEOUT_MS),
            None => self.next_ask_ms,
        }
    }

    /// The timer fired (or the link looked) at `now_ms`.
    pub(crate) fn on_timer(&mut self, now_ms: u64) -> Alarm {
        match self.ask {
            Some(ask) if now_ms >= ask.since_ms.saturating_add(RAFT_ACK_TIMEOUT_MS) => {
                Alarm::Expired
            }
            Some(_) => Alarm::None,
            None if now_ms >= self.next_ask_ms => {
                self.ask = Some(Ask {
                    batch: self.sent + 1,
                    since_ms: now_ms,
                });
                Alarm::AskDue
            }
            None => Alarm::None,
        }
    }

    /// Records that one more batch is being sent; returns whether it carries the ask.
    pub(crate) fn on_send(&mut self) -> bool {
        self.sent += 1;
        self.ask.is_some_and(|ask| ask.batch == self.sent)
    }

    /// The receiver says it received `batches_received` batches, at `now_ms`. Answers
    /// the pending ask if that covers the asking batch. An ack for more batches than
    /// were sent is an error: the stream is not what this side thinks it is.
    pub(crate) fn on_ack(&mut self, batches_received: u64, now_ms: u64) -> Result<(), String> {
        if batches_received > self.sent {
            return Err(format!(
                "the peer acknowledged {batches_received} batches, only {} were sent",
                self.sent
            ));
        }
        if let Some(ask) = self.ask
            && batches_received >= ask.batch
        {
            self.ask = None;
            self.next_ask_ms = now_ms.saturating_add(RAFT_ACK_INTERVAL_MS);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_ask_is_due_at_once_and_rides_on_the_next_batch() {
        let mut dog = Watchdog::new();
        assert_eq!(dog.wake_at_ms(), 0);
        assert_eq!(dog.on_timer(0), Alarm::AskDue);
        assert!(dog.on_send());
        assert!(!dog.on_send());
        assert_eq!(dog.wake_at_ms(), RAFT_ACK_TIMEOUT_MS);
        assert_eq!(dog.on_ack(1, 40), Ok(()));
        assert_eq!(dog.wake_at_ms(), 40 + RAFT_ACK_INTERVAL_MS);
        assert_eq!(dog.on_timer(100), Alarm::None);
    }

    #[test]
    fn an_unanswered_ask_expires_after_the_timeout() {
        let mut dog = Watchdog::new();
        assert_eq!(dog.on_timer(0), Alarm::AskDue);
        assert!(dog.on_send());
        // An ack for an earlier batch does not answer the ask.
        assert_eq!(dog.on_ack(0, 10), Ok(()));
        assert_eq!(dog.on_timer(RAFT_ACK_TIMEOUT_MS - 1), Alarm::None);
        assert_eq!(dog.on_timer(RAFT_ACK_TIMEOUT_MS), Alarm::Expired);
    }

    #[test]
    fn an_ask_that_never_left_expires_too() {
        let mut dog = Watchdog::new();
        assert_eq!(dog.on_timer(5), Alarm::AskDue);
        assert_eq!(dog.on_timer(5 + RAFT_ACK_TIMEOUT_MS), Alarm::Expired);
    }

    #[test]
    fn acking_more_than_was_sent_is_an_error() {
        let mut dog = Watchdog::new();
        dog.on_send();
        assert!(dog.on_ack(2, 0).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A receiver that answers every ask within `delay_ms` keeps the stream alive as
        /// long as the delay is under the timeout; one that stops answering at some
        /// point is found out within interval + timeout of its last answer.
        #[test]
        fn live_streams_stay_up_and_dead_ones_are_found(
            delay_ms in 0u64..RAFT_ACK_TIMEOUT_MS,
            dies_at_ms in prop::option::of(0u64..20_000),
            batch_every_ms in 1u64..700,
        ) {
            let mut dog = Watchdog::new();
            let mut in_flight: Vec<(u64, u64)> = Vec::new(); // (answer due at, batch number)
            let mut last_answer_ms = 0u64;
            let mut expired_at = None;
            for now in 0..25_000u64 {
                let alive = dies_at_ms.is_none_or(|d| now < d);
                // Deliver answers that are due.
                let (due, later): (Vec<_>, Vec<_>) =
                    in_flight.iter().partition(|(at, _)| *at <= now);
                in_flight = later;
                for (_, batch) in due {
                    if alive {
                        prop_assert_eq!(dog.on_ack(batch, now), Ok(()));
                        last_answer_ms = now;
                    }
                }
                let mut send_probe = false;
                if dog.wake_at_ms() <= now {
                    match dog.on_timer(now) {
                        Alarm::Expired => { expired_at = Some(now); break; }
                        Alarm::AskDue => send_probe = true,
                        Alarm::None => {}
                    }
                }
                if send_probe || now % batch_every_ms == 0 {
                    let asked = dog.on_send();
                    if asked {
                        in_flight.push((now + delay_ms, dog.sent));
                    }
                }
            }
            match dies_at_ms {
                None => prop_assert_eq!(expired_at, None),
                Some(died) => {
                    let at = expired_at.expect("a dead receiver is found");
                    prop_assert!(at >= died);
                    prop_assert!(
                        at <= last_answer_ms.max(died) + RAFT_ACK_INTERVAL_MS + RAFT_ACK_TIMEOUT_MS,
                        "found at {} ms, last answer at {} ms", at, last_answer_ms
                    );
                }
            }
        }
    }
}
