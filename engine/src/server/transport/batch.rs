//! Batching for the peer link: the wire encoding of one Raft message, and gathering
//! queued messages into `RaftBatch`es of bounded size.
//!
//! Not here: sending the batches or deciding when (the link task does).

use tokio::sync::mpsc;

use super::{RAFT_BATCH_BYTES_MAX, Shared};
use crate::pb::detcdpeerpb::RaftBatch;
use crate::raft::Message;

/// Encodes a Raft message for the wire.
pub(crate) fn encode_message(message: &Message) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(message)
}

/// Decodes a Raft message from the wire.
pub(crate) fn decode_message(bytes: &[u8]) -> Result<Message, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// Gathers queued messages into batches of at most [`RAFT_BATCH_BYTES_MAX`] encoded
/// bytes, carrying over the message that did not fit.
pub(crate) struct Batcher<'a> {
    shared: &'a Shared,
    peer: u64,
    carry: Option<Vec<u8>>,
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
        if let Some(carried) = self.carry.take() {
            bytes_total += carried.len();
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
            let bytes = match encode_message(&message) {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(peer = self.peer, %error, "unencodable raft message dropped");
                    continue;
                }
            };
            if !messages.is_empty() && bytes_total + bytes.len() > RAFT_BATCH_BYTES_MAX {
                self.carry = Some(bytes);
                break;
            }
            bytes_total += bytes.len();
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
