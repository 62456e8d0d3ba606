//! Batching for the peer link: the wire encoding of one Raft message (under the
//! simulator, a ticket for the message itself), and gathering queued messages into
//! `RaftBatch`es of bounded size.
//!
//! Not here: sending the batches or deciding when (the link task does).

use tokio::sync::mpsc;

use super::{RAFT_BATCH_BYTES_MAX, Shared};
use crate::pb::detcdpeerpb::RaftBatch;
use crate::raft::Message;

/// A Raft message as it goes on the wire, and the bytes it counts for against the batch
/// limit (its encoding's length).
///
/// Under the simulator the message is not encoded: it waits in [`sim_wire`] and the wire
/// carries its ticket (madsim-tonic passes the batch itself, by value, to the receiver
/// on the same thread). Its encoded length still counts against the limit, so batches
/// form as they would on a real wire.
pub(crate) fn encode_message(message: Message) -> Result<(Vec<u8>, usize), postcard::Error> {
    #[cfg(not(madsim))]
    {
        let bytes = postcard::to_allocvec(&message)?;
        let len = bytes.len();
        Ok((bytes, len))
    }
    #[cfg(madsim)]
    {
        let len =
            postcard::serialize_with_flavor(&message, postcard::ser_flavors::Size::default())?;
        Ok((sim_wire::park(message), len))
    }
}

/// Decodes a Raft message from the wire (under the simulator: takes it back by its
/// ticket; a ticket taken once does not decode again).
pub(crate) fn decode_message(bytes: &[u8]) -> Result<Message, postcard::Error> {
    #[cfg(not(madsim))]
    {
        postcard::from_bytes(bytes)
    }
    #[cfg(madsim)]
    {
        sim_wire::take(bytes).ok_or(postcard::Error::DeserializeBadEncoding)
    }
}

/// Raft messages in flight under the simulator, by ticket: what the sending link parks,
/// the receiving service takes. One simulation runs on one thread, so the table is that
/// thread's; a message whose batch is lost in flight stays until the run's thread ends.
#[cfg(madsim)]
mod sim_wire {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use crate::raft::Message;

    thread_local! {
        /// The next ticket and the parked messages (boxed: a message is large, and the
        /// map moves its values around as it grows and shrinks).
        static PARKED: RefCell<(u64, BTreeMap<u64, Box<Message>>)> =
            const { RefCell::new((0, BTreeMap::new())) };
    }

    /// Parks `message`; its ticket, as wire bytes.
    pub(super) fn park(message: Message) -> Vec<u8> {
        PARKED.with(|p| {
            let mut p = p.borrow_mut();
            p.0 += 1;
            let ticket = p.0;
            p.1.insert(ticket, Box::new(message));
            ticket.to_le_bytes().to_vec()
        })
    }

    /// The message parked under the ticket `bytes`, taken out.
    pub(super) fn take(bytes: &[u8]) -> Option<Message> {
        let ticket = u64::from_le_bytes(bytes.try_into().ok()?);
        PARKED.with(|p| p.borrow_mut().1.remove(&ticket).map(|m| *m))
    }
}

/// Gathers queued messages into batches of at most [`RAFT_BATCH_BYTES_MAX`] encoded
/// bytes, carrying over the message that did not fit.
pub(crate) struct Batcher<'a> {
    shared: &'a Shared,
    peer: u64,
    /// A message's wire bytes and the bytes it counts for.
    carry: Option<(Vec<u8>, usize)>,
    /// This call's first batch went out, naming this member's peer URLs.
    introduced: bool,
}

impl<'a> Batcher<'a> {
    pub(crate) fn new(shared: &'a Shared, peer: u64) -> Self {
        Batcher {
            shared,
            peer,
            carry: None,
            introduced: false,
        }
    }

    /// Whether a message that did not fit the last batch waits to be sent.
    pub(crate) fn has_carry(&self) -> bool {
        self.carry.is_some()
    }

    /// A batch starting with whatever was carried over, then `first`, then whatever
    /// else is queued, until the byte limit.
    pub(crate) fn fill(
        &mut self,
        first: Option<Message>,
        queue: &mut mpsc::Receiver<Message>,
    ) -> RaftBatch {
        let mut messages = Vec::new();
        let mut bytes_total = 0usize;
        let mut next = first;
        if let Some((carried, len)) = self.carry.take() {
            bytes_total += len;
            messages.push(carried);
        }
        loop {
            let message = match next.take() {
                Some(message) => message,
                None => match queue.try_recv() {
                    Ok(message) => message,
                    Err(_) => break,
                },
            };
            let (bytes, len) = match encode_message(message) {
                Ok(encoded) => encoded,
                Err(error) => {
                    tracing::warn!(peer = self.peer, %error, "unencodable raft message dropped");
                    continue;
                }
            };
            if !messages.is_empty() && bytes_total + len > RAFT_BATCH_BYTES_MAX {
                self.carry = Some((bytes, len));
                break;
            }
            bytes_total += len;
            messages.push(bytes);
        }
        self.batch(messages)
    }

    /// A batch of `messages` (none: a liveness probe) with this link's header; it asks
    /// for no ack (the link decides that when sending). The first batch of a call also
    /// names this member's peer URLs, for a receiver that does not know it yet.
    pub(crate) fn batch(&mut self, messages: Vec<Vec<u8>>) -> RaftBatch {
        let from_peer_urls = if self.introduced {
            Vec::new()
        } else {
            self.introduced = true;
            self.shared.own_peer_urls()
        };
        RaftBatch {
            cluster_id: self.shared.cluster_id,
            from: self.shared.member_id,
            to: self.peer,
            messages,
            ack_requested: false,
            from_peer_urls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Entry, EntryKind, MessageKind};
    use crate::server::transport::PEER_QUEUE_MESSAGES_MAX;
    use proptest::prelude::*;

    /// An Append carrying one entry of `data_bytes` bytes, numbered by `index`.
    fn message(index: u64, data_bytes: usize) -> Message {
        let mut message = Message::new(MessageKind::Append, 1, 2, 1);
        message.index = index;
        message.entries.push(Entry {
            term: 1,
            index: index + 1,
            kind: EntryKind::Normal,
            data: vec![7; data_bytes],
        });
        message
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Batching keeps every message once, in order, and no batch of two or more
        /// messages exceeds the byte limit.
        #[test]
        fn batches_keep_order_and_respect_the_byte_limit(
            sizes in prop::collection::vec(0usize..RAFT_BATCH_BYTES_MAX / 3, 1..24),
            oversize_at in prop::option::of(0usize..24),
        ) {
            let shared = Shared::new(1, 9);
            let (sender, mut queue) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
            let mut sent = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let size = if oversize_at == Some(i) { RAFT_BATCH_BYTES_MAX + 1 } else { *size };
                let m = message(i as u64, size);
                sent.push(m.clone());
                sender.try_send(m).expect("room in queue");
            }
            let mut batcher = Batcher::new(&shared, 2);
            let mut received = Vec::new();
            loop {
                let first = if batcher.has_carry() { None } else { queue.try_recv().ok() };
                if first.is_none() && !batcher.has_carry() {
                    break;
                }
                let batch = batcher.fill(first, &mut queue);
                prop_assert_eq!((batch.cluster_id, batch.from, batch.to), (9, 1, 2));
                let bytes: usize = batch.messages.iter().map(Vec::len).sum();
                prop_assert!(batch.messages.len() == 1 || bytes <= RAFT_BATCH_BYTES_MAX);
                for encoded in &batch.messages {
                    received.push(decode_message(encoded).expect("decodes"));
                }
            }
            prop_assert_eq!(received, sent);
        }
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode_message(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode_message(&[]).is_err());
    }
}
