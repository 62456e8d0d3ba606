//! Forwarding to the leader on one long-lived `Forward` stream per peer: a follower's
//! proposals and read-index requests travel as numbered requests, many in flight at
//! once, and the leader answers each by number, in any order.
//!
//! One stream instead of one call per request: every new call costs the receiving
//! listener an accepted connection, which the simulator serves one at a time with a
//! simulated millisecond or more each, so a call per request capped a cluster near 400
//! forwarded requests per simulated second.
//!
//! The stream opens with the first request and stays open. When it breaks, or its
//! oldest request waits longer than [`FORWARD_STREAM_STALL_MS`] (a partitioned leader;
//! the simulator has no HTTP/2 keep-alive), every request in flight fails with a
//! transport status, which the caller maps like a failed call; the next request opens
//! a new stream.
//!
//! Under the simulator the stream is one plain simulated connection to the leader's
//! direct listener (`sim_link.rs`), requests and answers travelling as values; faults
//! act on it as on the `Raft` link's.
//!
//! Not here: the deadline of a single request (the caller's), the lease calls (unary;
//! rare), and what the leader does with the requests (the service).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
#[cfg(not(madsim))]
use tonic::transport::Channel;

use super::Shared;
use super::timer::{LoopClock, QuietSleep};
#[cfg(not(madsim))]
use crate::pb::detcdpeerpb::peer_client::PeerClient;
use crate::pb::detcdpeerpb::{ForwardRequest, ForwardResponse, forward_request};

/// A request in flight this long without an answer ends the stream.
pub const FORWARD_STREAM_STALL_MS: u64 = 3_000;
/// Requests waiting for the forwarding task, and requests handed to the stream but
/// not yet sent, per peer.
const FORWARD_QUEUE_REQUESTS_MAX: usize = 1024;

/// The leader's answer, or the transport's failure.
pub(crate) type ForwardReply = Result<ForwardResponse, tonic::Status>;

/// A request for the forwarding task, with where its answer goes.
struct Queued {
    request: forward_request::Request,
    reply: oneshot::Sender<ForwardReply>,
}

/// The handle on one peer's forwarding task. Dropping it ends the task, failing what
/// is in flight (when the last clone drops).
#[derive(Clone)]
pub(crate) struct Forwarder {
    queue: mpsc::Sender<Queued>,
}

/// Where a forwarding stream opens: a gRPC client of the peer (under the simulator, the
/// peer's URI, for a direct connection).
#[cfg(not(madsim))]
pub(crate) type Target = PeerClient<Channel>;
#[cfg(madsim)]
pub(crate) type Target = tonic::codegen::http::Uri;

impl Forwarder {
    /// Starts the forwarding task to `peer` at `target`.
    pub(crate) fn start(shared: Arc<Shared>, peer: u64, target: Target) -> Self {
        let (queue, receiver) = mpsc::channel(FORWARD_QUEUE_REQUESTS_MAX);
        tokio::spawn(run(shared, peer, target, receiver));
        Forwarder { queue }
    }

    /// Sends `request` to the peer and waits for its answer (no deadline of its own).
    pub(crate) async fn call(&self, request: forward_request::Request) -> ForwardReply {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Queued { request, reply }).await.is_err() {
            return Err(tonic::Status::unavailable("forwarding to the peer stopped"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(tonic::Status::unavailable("forwarding stream ended")))
    }
}

/// The forwarding task: a stream session per burst of use, until the handle drops.
async fn run(shared: Arc<Shared>, peer: u64, target: Target, mut queue: mpsc::Receiver<Queued>) {
    while let Some(first) = queue.recv().await {
        if !session(&shared, peer, &target, first, &mut queue).await {
            return;
        }
    }
}

/// Where a stream's requests go.
#[cfg(not(madsim))]
struct Requests(mpsc::Sender<ForwardRequest>);
#[cfg(madsim)]
struct Requests(super::sim_link::ForwardSink);

/// Where a stream's answers come from.
#[cfg(not(madsim))]
struct Answers(tonic::Streaming<ForwardResponse>);
#[cfg(madsim)]
struct Answers(super::sim_link::ForwardAnswers);

impl Requests {
    /// Sends one request; an error if the stream is closed.
    async fn send(&self, request: ForwardRequest) -> Result<(), ()> {
        #[cfg(not(madsim))]
        {
            self.0.send(request).await.map_err(|_| ())
        }
        #[cfg(madsim)]
        {
            self.0.send(request).await
        }
    }
}

impl Answers {
    /// The next answer; `Ok(None)` once the leader ended the stream.
    async fn message(&mut self) -> Result<Option<ForwardResponse>, tonic::Status> {
        self.0.message().await
    }
}

/// Opens a stream to `target` carrying `first`, within `stall`.
async fn open(
    target: &Target,
    first: ForwardRequest,
    stall: Duration,
) -> Result<(Requests, Answers), tonic::Status> {
    let not_answered = || tonic::Status::unavailable("forwarding stream not answered");
    #[cfg(not(madsim))]
    {
        let (requests, receiver) = mpsc::channel::<ForwardRequest>(FORWARD_QUEUE_REQUESTS_MAX);
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|request| (request, receiver))
        });
        // Room for the first request: the channel is new.
        let _ = requests.try_send(first);
        let mut client = target.clone();
        match tokio::time::timeout(stall, client.forward(stream)).await {
            Ok(Ok(response)) => Ok((Requests(requests), Answers(response.into_inner()))),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(not_answered()),
        }
    }
    #[cfg(madsim)]
    {
        let opened = tokio::time::timeout(stall, super::sim_link::connect(target)).await;
        let (sink, answers) = match opened {
            Ok(Ok(connection)) => connection.split_forward(),
            Ok(Err(error)) => return Err(tonic::Status::unavailable(error)),
            Err(_) => return Err(not_answered()),
        };
        sink.send(first)
            .await
            .map_err(|()| tonic::Status::unavailable("forwarding stream closed"))?;
        Ok((Requests(sink), Answers(answers)))
    }
}

/// Requests in flight on one stream, by sequence number, with when each was sent.
type InFlight = BTreeMap<u64, (Instant, oneshot::Sender<ForwardReply>)>;

/// Fails every request in flight with `status`.
fn fail_all(in_flight: &mut InFlight, status: &tonic::Status) {
    for (_, (_, reply)) in std::mem::take(in_flight) {
        let _ = reply.send(Err(status.clone()));
    }
}

/// One stream: opens it with `first`, then sends what is queued and hands out answers
/// until the stream fails or stalls (true: open another on the next request) or the
/// queue closes (false).
async fn session(
    shared: &Shared,
    peer: u64,
    target: &Target,
    first: Queued,
    queue: &mut mpsc::Receiver<Queued>,
) -> bool {
    let header = |seq: u64, request: forward_request::Request| ForwardRequest {
        cluster_id: shared.cluster_id,
        from: shared.member_id,
        to: peer,
        seq,
        request: Some(request),
    };
    let mut seq = 1;
    let mut in_flight = InFlight::new();
    let clock = LoopClock::new();
    in_flight.insert(seq, (clock.now(), first.reply));
    let stall = Duration::from_millis(FORWARD_STREAM_STALL_MS);
    let (requests, mut answers) = match open(target, header(seq, first.request), stall).await {
        Ok(stream) => stream,
        Err(status) => {
            fail_all(&mut in_flight, &status);
            return true;
        }
    };
    let mut stalled = QuietSleep::until(clock.now() + stall);
    loop {
        if let Some((_, (sent, _))) = in_flight.first_key_value() {
            stalled.reset(*sent + stall);
        }
        tokio::select! {
            biased;
            answer = answers.message() => match answer {
                Ok(Some(answer)) => {
                    if let Some((_, reply)) = in_flight.remove(&answer.seq) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Ok(None) => {
                    let status = tonic::Status::unavailable("the leader ended the forwarding stream");
                    fail_all(&mut in_flight, &status);
                    return true;
                }
                Err(status) => {
                    tracing::debug!(peer, %status, "forwarding stream failed");
                    fail_all(&mut in_flight, &status);
                    return true;
                }
            },
            queued = queue.recv() => match queued {
                Some(Queued { request, reply }) => {
                    seq += 1;
                    if requests.send(header(seq, request)).await.is_err() {
                        let status = tonic::Status::unavailable("forwarding stream closed");
                        let _ = reply.send(Err(status.clone()));
                        fail_all(&mut in_flight, &status);
                        return true;
                    }
                    in_flight.insert(seq, (clock.now(), reply));
                }
                None => {
                    fail_all(&mut in_flight, &tonic::Status::unavailable("forwarding stopped"));
                    return false;
                }
            },
            () = &mut stalled, if !in_flight.is_empty() => {
                tracing::debug!(peer, "forwarding stream stalled; reopening");
                let status = tonic::Status::unavailable(format!(
                    "forwarded request unanswered for {FORWARD_STREAM_STALL_MS} ms"
                ));
                fail_all(&mut in_flight, &status);
                return true;
            },
        }
    }
}
