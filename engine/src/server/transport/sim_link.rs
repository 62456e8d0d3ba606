//! Under the simulator only: the peer `Raft` stream as one plain simulated connection
//! per link, carrying `RaftBatch`es one way and `RaftAck`s the other as values, served
//! on the receiving member by the same [`PeerService::receive`] the gRPC stream uses.
//!
//! Why: through madsim-tonic every batch passed a channel, the client's request-stream
//! task, the server's request stream and tonic's `Streaming`, and every ack the server's
//! response task; for one simulated message each way. Here a batch is one message on
//! the connection and one call of the receiving service.
//!
//! Faults act as they did: the connection is the same kind madsim-tonic opens
//! (`connect1`), so a peer that is down, killed or cut off refuses it, a clogged or
//! lossy link holds its messages back until the link works again, and a connection to
//! a member that dies breaks, which ends the link's session (the link task reconnects
//! as before). Snapshots still use the gRPC service.
//!
//! The forwarding stream (`forward.rs`) uses the same listener: a connection whose first
//! message is a `ForwardRequest` carries requests one way and their answers the other,
//! each answered by the service's own forwarding code, all of a connection's at once on
//! its one task.
//!
//! The listener binds a fixed port on every address of its host, so this assumes one
//! member per simulated host (the simulator gives each its own IP).
//!
//! Not here: batching, pacing, the watchdog (the link task keeps those, unchanged).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::net::{Endpoint, Receiver, Sender};
use tokio::sync::oneshot;

use super::CONNECT_TIMEOUT_MS;
use super::service::{InboundState, PeerHandler, PeerService};
use crate::pb::detcdpeerpb::{ForwardRequest, ForwardResponse, RaftAck, RaftBatch};

/// The port of a member's direct Raft listener, on every address of its host.
pub const SIM_RAFT_DIRECT_PORT: u16 = 2391;

/// What the receiver sends back on the connection: an ack, or why it ends the stream.
type AckMessage = Result<RaftAck, tonic::Status>;

/// What the leader sends back on a forwarding connection: an answer, or why it ends
/// the stream.
type AnswerMessage = Result<ForwardResponse, tonic::Status>;

/// An open direct connection to a peer's Raft listener.
pub(crate) struct Connection {
    tx: Sender,
    rx: Receiver,
}

/// Connects to the direct Raft listener of the peer reachable at `uri` (its host, with
/// [`SIM_RAFT_DIRECT_PORT`]); refused like a gRPC connection would be.
pub(crate) async fn connect(uri: &tonic::codegen::http::Uri) -> Result<Connection, String> {
    let host = uri
        .host()
        .ok_or_else(|| format!("connecting to {uri}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let attempt = async {
        let addr: SocketAddr = tokio::net::lookup_host((host, SIM_RAFT_DIRECT_PORT))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other("the name resolves to no address"))?;
        let endpoint = Endpoint::connect(addr).await?;
        let (tx, rx) = endpoint.connect1(addr).await?;
        Ok::<_, std::io::Error>(Connection { tx, rx })
    };
    match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), attempt).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(format!("connecting to {uri}: {e}")),
        Err(_) => Err(format!("connecting to {uri}: timed out")),
    }
}

impl Connection {
    /// The connection's two halves: where batches go, where acks come from.
    pub(crate) fn split(self) -> (BatchSink, Acks) {
        (BatchSink(self.tx), Acks(self.rx))
    }

    /// The connection as a forwarding stream: where requests go, where answers come
    /// from.
    pub(crate) fn split_forward(self) -> (ForwardSink, ForwardAnswers) {
        (ForwardSink(self.tx), ForwardAnswers(self.rx))
    }
}

/// The sending half of a forwarding connection.
pub(crate) struct ForwardSink(Sender);

impl ForwardSink {
    /// Sends one request; an error if the connection is closed.
    pub(crate) async fn send(&self, request: ForwardRequest) -> Result<(), ()> {
        self.0.send(Box::new(request)).await.map_err(|_| ())
    }
}

/// The receiving half of a forwarding connection: the leader's answers.
pub(crate) struct ForwardAnswers(Receiver);

impl ForwardAnswers {
    /// The next answer; an error if the leader refused the stream or the connection
    /// broke.
    pub(crate) async fn message(&mut self) -> Result<Option<ForwardResponse>, tonic::Status> {
        next_reply(&mut self.0, "forwarding").await
    }
}

/// The sending half: batches go out at once (the simulated connection is unbounded).
pub(crate) struct BatchSink(Sender);

/// Leave to send one batch (see [`BatchSink::reserve`]).
pub(crate) struct Permit<'a>(&'a Sender);

impl BatchSink {
    /// Room for one batch: at once, unless the connection is closed.
    pub(crate) async fn reserve(&self) -> Result<Permit<'_>, ()> {
        if self.0.is_closed() {
            Err(())
        } else {
            Ok(Permit(&self.0))
        }
    }
}

impl Permit<'_> {
    /// Sends `batch`. A connection that broke meanwhile loses it; the link notices
    /// through its acks.
    pub(crate) fn send(self, batch: RaftBatch) {
        // The simulator's send completes without waiting.
        let _ = self.0.send(Box::new(batch)).now_or_never();
    }
}

/// The receiving half: the peer's acks.
pub(crate) struct Acks(Receiver);

impl Acks {
    /// The next ack; `Ok(None)` if the peer ended the stream, an error if it refused
    /// it or the connection broke.
    pub(crate) async fn message(&mut self) -> Result<Option<RaftAck>, tonic::Status> {
        next_reply(&mut self.0, "raft").await
    }
}

/// The next reply on `rx` (an ack or an answer: `Result<T, Status>` as a value); an
/// error if the peer refused the stream, the connection broke, or something else came.
async fn next_reply<T: 'static>(rx: &mut Receiver, link: &str) -> Result<Option<T>, tonic::Status> {
    let payload = match rx.recv().await {
        Ok(payload) => payload,
        Err(e) => return Err(tonic::Status::unavailable(e.to_string())),
    };
    match payload.downcast::<Result<T, tonic::Status>>() {
        Ok(message) => (*message).map(Some),
        Err(_) => Err(tonic::Status::internal(format!(
            "unexpected message on the {link} link"
        ))),
    }
}

/// Starts the direct Raft listener on the current simulated host; it stops when
/// `stop`'s sender is dropped (the transport is gone).
pub(crate) fn listen<H: PeerHandler>(service: PeerService<H>, stop: oneshot::Receiver<()>) {
    tokio::spawn(async move {
        let addr = SocketAddr::from(([0, 0, 0, 0], SIM_RAFT_DIRECT_PORT));
        let endpoint = match Endpoint::bind(addr).await {
            Ok(endpoint) => endpoint,
            Err(error) => {
                tracing::warn!(%addr, %error, "direct raft listener failed to bind");
                return;
            }
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return,
                accepted = endpoint.accept1() => match accepted {
                    Ok((tx, rx, _)) => {
                        tokio::spawn(serve_connection(service.clone(), tx, rx));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "direct raft listener failed");
                        return;
                    }
                },
            }
        }
    });
}

/// Serves one inbound connection: a Raft link (its first message a batch) or a
/// forwarding stream (a request).
async fn serve_connection<H: PeerHandler>(service: PeerService<H>, tx: Sender, mut rx: Receiver) {
    let Ok(first) = rx.recv().await else {
        return;
    };
    let first = match first.downcast::<RaftBatch>() {
        Ok(batch) => return serve_raft(service, tx, rx, *batch).await,
        Err(other) => other,
    };
    match first.downcast::<ForwardRequest>() {
        Ok(request) => serve_forward(service, tx, rx, *request).await,
        Err(_) => tracing::warn!("unexpected message on an inbound peer connection"),
    }
}

/// The next value an inbound connection carries: `held` if it still holds one (the
/// message that told what the connection is), else the next message; `None` once the
/// sender went away or sent something of another kind.
async fn next_inbound<T: 'static>(
    held: &mut Option<T>,
    rx: &mut Receiver,
    link: &str,
) -> Option<T> {
    if let Some(value) = held.take() {
        return Some(value);
    }
    let payload = rx.recv().await.ok()?;
    match payload.downcast::<T>() {
        Ok(value) => Some(*value),
        Err(_) => {
            tracing::warn!(link, "unexpected message on an inbound peer link");
            None
        }
    }
}

/// Hands one connection's batches to the service in order, from `first`, sending the
/// acks asked for, until the sender goes away or a batch's header is wrong.
async fn serve_raft<H: PeerHandler>(
    service: PeerService<H>,
    tx: Sender,
    mut rx: Receiver,
    first: RaftBatch,
) {
    let mut state = InboundState::default();
    let mut next = Some(first);
    while let Some(batch) = next_inbound(&mut next, &mut rx, "raft").await {
        let reply: AckMessage = match service.receive(&mut state, batch) {
            Ok(None) => continue,
            Ok(Some(ack)) => Ok(ack),
            Err(status) => Err(status),
        };
        let refused = reply.is_err();
        if tx.send(Box::new(reply)).await.is_err() || refused {
            return;
        }
    }
}

/// Answers one connection's forwarded requests, from `first`, all at once on this task
/// (a read index waits for a heartbeat round; the others need not wait for it), until
/// the sender goes away and every answer is sent, or a request's header is wrong. One
/// task, not one per request: most forwarded proposals are answered as soon as the
/// leader's loop takes them, and a task per request cost a spawn and its polls.
async fn serve_forward<H: PeerHandler>(
    service: PeerService<H>,
    tx: Sender,
    mut rx: Receiver,
    first: ForwardRequest,
) {
    let mut next = Some(first);
    let mut open = true;
    let mut answering = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(answer) = answering.next(), if !answering.is_empty() => {
                let answer: AnswerMessage = Ok(answer);
                let _ = tx.send(Box::new(answer)).await;
            }
            request = next_inbound(&mut next, &mut rx, "forwarding"), if open => match request {
                Some(request) => {
                    if let Err(status) = service.check_forward_header(&request) {
                        let refused: AnswerMessage = Err(status);
                        let _ = tx.send(Box::new(refused)).await;
                        return;
                    }
                    let service = service.clone();
                    answering.push(async move { service.answer(request).await });
                }
                None => open = false,
            },
            else => return,
        }
    }
}
