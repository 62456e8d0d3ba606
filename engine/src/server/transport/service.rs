//! The receiving end of the peer link: the `detcdpeerpb.Peer` gRPC service. It checks
//! that each Raft stream is meant for this cluster and member, decodes the messages and
//! hands them to the node's [`PeerHandler`], and answers each batch that asks for it
//! with an ack (the sender's liveness check, see [`super::watchdog`]); forwarded
//! requests go to the same handler.
//!
//! Not here: what the node does with them.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use futures_util::Stream;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::batch::decode_message;
use super::errors::status_from_server_error;
use super::{Inner, Shared, Transport};
use crate::pb::detcdpeerpb::peer_server::{Peer, PeerServer};
use crate::pb::detcdpeerpb::{
    ForwardRequest, ForwardResponse, MembersRequest, MembersResponse, ProposeRequest,
    ProposeResponse, RaftAck, RaftBatch, ReadIndexRequest, ReadIndexResponse, forward_request,
};
use crate::pb::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::raft::Message;
use crate::server::error::ServerError;

/// What the node does with what peers send. Implemented by the node runtime.
pub trait PeerHandler: Send + Sync + 'static {
    /// Raft messages from member `from` addressed to this member, decoded and checked,
    /// in arrival order.
    fn step(&self, from: u64, messages: Vec<Message>);
    /// A follower forwarded a proposal: propose it here (on the leader) and finish once
    /// it is accepted into the log (not once committed).
    fn propose(
        &self,
        request: crate::pb::detcdpeerpb::InternalRequest,
    ) -> BoxFuture<'static, Result<(), ServerError>>;
    /// A follower asks for a read index: confirm leadership, then give the index.
    fn read_index(&self) -> BoxFuture<'static, Result<u64, ServerError>>;
    /// A follower forwarded a lease keep-alive (the leader is the primary lessor).
    fn lease_keep_alive(
        &self,
        request: LeaseKeepAliveRequest,
    ) -> BoxFuture<'static, Result<LeaseKeepAliveResponse, ServerError>>;
    /// A follower forwarded a lease time-to-live query.
    fn lease_time_to_live(
        &self,
        request: LeaseTimeToLiveRequest,
    ) -> BoxFuture<'static, Result<LeaseTimeToLiveResponse, ServerError>>;
    /// Whether `member` was removed from the cluster: such a member is never linked
    /// back to when it reaches this member.
    fn is_removed(&self, member: u64) -> bool;
    /// The cluster's ID and members, for a member about to join it.
    fn members(&self) -> MembersResponse;
}

/// The `Peer` service as tonic mounts it (the simulator's generated server also names
/// its interceptor type).
#[cfg(not(madsim))]
pub type PeerGrpcServer<H> = PeerServer<PeerService<H>>;
/// The `Peer` service as tonic mounts it (the simulator's generated server also names
/// its interceptor type).
#[cfg(madsim)]
pub type PeerGrpcServer<H> = PeerServer<PeerService<H>, tonic::codegen::IdentityInterceptor>;

/// The `Peer` service of one member (built by [`super::Transport::service`]).
pub struct PeerService<H> {
    shared: Arc<Shared>,
    /// The transport, to link back to senders it does not know (not kept alive by the
    /// service: once the member's transport is gone, so are its links).
    transport: Weak<Inner>,
    handler: Arc<H>,
}

impl<H> Clone for PeerService<H> {
    fn clone(&self) -> Self {
        PeerService {
            shared: Arc::clone(&self.shared),
            transport: Weak::clone(&self.transport),
            handler: Arc::clone(&self.handler),
        }
    }
}

/// The answers a `Forward` stream sends back, one per request, in the order they finish.
pub type ForwardAnswerStream =
    Pin<Box<dyn Stream<Item = Result<ForwardResponse, tonic::Status>> + Send + 'static>>;

/// The acks a `Raft` stream sends back, one per batch that asked for one.
pub type AckStream = Pin<Box<dyn Stream<Item = Result<RaftAck, tonic::Status>> + Send + 'static>>;

/// What one inbound `Raft` stream has seen so far (the tonic stream and, under the
/// simulator, the direct connection keep one each).
#[derive(Default)]
pub(crate) struct InboundState {
    /// Batches received on this stream, probes included.
    batches_received: u64,
    /// The sender's peer URLs, from the stream's first batch.
    sender_urls: Vec<String>,
    /// The transport's peer list generation when this stream last made sure the sender
    /// is linked back; a changed list (a snapshot's older member list, say) may have
    /// dropped the link, so it is checked again.
    linked_at_generation: Option<u64>,
}

/// One inbound `Raft` stream being read: batches are handed to the node as they come,
/// and the stream of acks is pulled from here.
struct Receiving<H> {
    service: PeerService<H>,
    inbound: tonic::Streaming<RaftBatch>,
    state: InboundState,
    /// The stream ended or failed: no more acks.
    done: bool,
}

impl<H: PeerHandler> Receiving<H> {
    /// Reads batches, handing each to the node, until one asks for an ack; that ack is
    /// the item. `None` once the sender ends the stream or it breaks; a bad header ends
    /// it with an error the sender sees.
    async fn next_ack(&mut self) -> Option<Result<RaftAck, tonic::Status>> {
        while !self.done {
            let batch = match self.inbound.message().await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%status, "inbound raft stream broke");
                    break;
                }
            };
            match self.service.receive(&mut self.state, batch) {
                Ok(None) => {}
                Ok(Some(ack)) => return Some(Ok(ack)),
                Err(status) => {
                    self.done = true;
                    return Some(Err(status));
                }
            }
        }
        self.done = true;
        None
    }
}

impl<H: PeerHandler> PeerService<H> {
    /// The service itself, unwrapped.
    pub(crate) fn new(shared: Arc<Shared>, transport: Weak<Inner>, handler: Arc<H>) -> Self {
        PeerService {
            shared,
            transport,
            handler,
        }
    }

    /// The service wrapped for tonic, with the message size limits raised.
    pub(crate) fn server(
        shared: Arc<Shared>,
        transport: Weak<Inner>,
        handler: Arc<H>,
    ) -> PeerGrpcServer<H> {
        PeerServer::new(PeerService::new(shared, transport, handler))
            .max_decoding_message_size(super::PEER_GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(super::PEER_GRPC_MESSAGE_BYTES_MAX)
    }

    /// Takes one batch of an inbound `Raft` stream: checks its header, links back to
    /// a sender this member does not know, hands its messages to the node. The ack to
    /// send if the batch asks for one; a bad header is an error that ends the stream.
    pub(crate) fn receive(
        &self,
        state: &mut InboundState,
        mut batch: RaftBatch,
    ) -> Result<Option<RaftAck>, tonic::Status> {
        self.check_header(&batch)?;
        state.batches_received += 1;
        let from = batch.from;
        if !batch.from_peer_urls.is_empty() {
            state.sender_urls = std::mem::take(&mut batch.from_peer_urls);
        }
        let generation = self.shared.peers_generation();
        if !state.sender_urls.is_empty() && state.linked_at_generation != Some(generation) {
            state.linked_at_generation = Some(generation);
            self.link_back(from, &state.sender_urls);
        }
        let ack_requested = batch.ack_requested;
        let messages = self.decode_batch(batch);
        if !messages.is_empty() {
            self.handler.step(from, messages);
        }
        Ok(ack_requested.then_some(RaftAck {
            batches_received: state.batches_received,
        }))
    }

    /// Checks a batch's header; a mismatch ends the stream with this status.
    fn check_header(&self, batch: &RaftBatch) -> Result<(), tonic::Status> {
        if batch.cluster_id != self.shared.cluster_id {
            return Err(tonic::Status::failed_precondition(format!(
                "peer stream from member {:x} is for cluster {:x}, this is cluster {:x}",
                batch.from, batch.cluster_id, self.shared.cluster_id
            )));
        }
        if batch.to != self.shared.member_id {
            return Err(tonic::Status::failed_precondition(format!(
                "peer stream from member {:x} is for member {:x}, this is member {:x}",
                batch.from, batch.to, self.shared.member_id
            )));
        }
        Ok(())
    }

    /// A sender introduced itself with its peer URLs: link back to it if the transport
    /// does not know it (yet, or any more); if it was removed from the cluster, drop
    /// a link made that way instead.
    fn link_back(&self, from: u64, urls: &[String]) {
        let Some(inner) = self.transport.upgrade() else {
            return;
        };
        let transport = Transport { inner };
        // Asked without the transport's lock held (the node may be setting peers).
        if self.handler.is_removed(from) {
            transport.drop_remote(from);
        } else {
            transport.add_remote(from, urls.to_vec());
        }
    }

    /// Checks a forwarded request's addresses, like a batch's header.
    pub(super) fn check_forward_header(
        &self,
        request: &ForwardRequest,
    ) -> Result<(), tonic::Status> {
        self.check_header(&RaftBatch {
            cluster_id: request.cluster_id,
            from: request.from,
            to: request.to,
            messages: Vec::new(),
            ack_requested: false,
            from_peer_urls: Vec::new(),
        })
    }

    /// Answers one forwarded request (its errors as text, like the unary calls).
    pub(super) async fn answer(&self, request: ForwardRequest) -> ForwardResponse {
        let seq = request.seq;
        let result = match request.request {
            Some(forward_request::Request::Propose(ProposeRequest {
                request: Some(inner),
            })) => self.handler.propose(inner).await.map(|()| 0),
            Some(forward_request::Request::ReadIndex(_)) => self.handler.read_index().await,
            _ => Err(ServerError::InvalidArgument(
                "forwarded request carries nothing to do".to_string(),
            )),
        };
        match result {
            Ok(index) => ForwardResponse {
                seq,
                error: String::new(),
                index,
            },
            Err(error) => ForwardResponse {
                seq,
                error: error.to_string(),
                index: 0,
            },
        }
    }

    /// Decodes a batch's messages, dropping it whole if any fails to decode and any
    /// message whose addresses disagree with the batch.
    fn decode_batch(&self, batch: RaftBatch) -> Vec<Message> {
        let mut messages = Vec::with_capacity(batch.messages.len());
        for bytes in &batch.messages {
            match decode_message(bytes) {
                Ok(message) => messages.push(message),
                Err(error) => {
                    tracing::warn!(from = batch.from, %error, "undecodable raft batch dropped");
                    self.count_invalid(batch.messages.len());
                    return Vec::new();
                }
            }
        }
        let before = messages.len();
        messages.retain(|m| m.from == batch.from && m.to == self.shared.member_id);
        if messages.len() != before {
            tracing::warn!(from = batch.from, "misaddressed raft messages dropped");
            self.count_invalid(before - messages.len());
        }
        messages
    }

    fn count_invalid(&self, count: usize) {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        self.shared
            .dropped_inbound_invalid
            .fetch_add(count, Ordering::Relaxed);
    }
}

#[tonic::async_trait]
impl<H: PeerHandler> Peer for PeerService<H> {
    type RaftStream = AckStream;
    type ForwardStream = ForwardAnswerStream;

    async fn forward(
        &self,
        request: tonic::Request<tonic::Streaming<ForwardRequest>>,
    ) -> Result<tonic::Response<ForwardAnswerStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (answers, receiver) = mpsc::unbounded_channel();
        let service = self.clone();
        // Reads requests and answers each on a task of its own, so a slow one (a read
        // index waiting for a heartbeat round) does not hold up the others. The answer
        // stream ends once the requests end and every answer is out.
        tokio::spawn(async move {
            loop {
                let request = match inbound.message().await {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "inbound forwarding stream broke");
                        break;
                    }
                };
                if let Err(status) = service.check_forward_header(&request) {
                    let _ = answers.send(Err(status));
                    break;
                }
                let (service, answers) = (service.clone(), answers.clone());
                tokio::spawn(async move {
                    let _ = answers.send(Ok(service.answer(request).await));
                });
            }
        });
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|answer| (answer, receiver))
        });
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn raft(
        &self,
        request: tonic::Request<tonic::Streaming<RaftBatch>>,
    ) -> Result<tonic::Response<AckStream>, tonic::Status> {
        let receiving = Receiving {
            service: self.clone(),
            inbound: request.into_inner(),
            state: InboundState::default(),
            done: false,
        };
        let acks = futures_util::stream::unfold(receiving, |mut receiving| async move {
            let ack = receiving.next_ack().await?;
            Some((ack, receiving))
        });
        Ok(tonic::Response::new(Box::pin(acks)))
    }

    async fn propose(
        &self,
        request: tonic::Request<ProposeRequest>,
    ) -> Result<tonic::Response<ProposeResponse>, tonic::Status> {
        let Some(inner) = request.into_inner().request else {
            return Err(tonic::Status::invalid_argument(
                "forwarded proposal carries no request",
            ));
        };
        let error = match self.handler.propose(inner).await {
            Ok(()) => String::new(),
            Err(error) => error.to_string(),
        };
        Ok(tonic::Response::new(ProposeResponse { error }))
    }

    async fn read_index(
        &self,
        _request: tonic::Request<ReadIndexRequest>,
    ) -> Result<tonic::Response<ReadIndexResponse>, tonic::Status> {
        let response = match self.handler.read_index().await {
            Ok(index) => ReadIndexResponse {
                index,
                error: String::new(),
            },
            Err(error) => ReadIndexResponse {
                index: 0,
                error: error.to_string(),
            },
        };
        Ok(tonic::Response::new(response))
    }

    async fn lease_keep_alive(
        &self,
        request: tonic::Request<LeaseKeepAliveRequest>,
    ) -> Result<tonic::Response<LeaseKeepAliveResponse>, tonic::Status> {
        self.handler
            .lease_keep_alive(request.into_inner())
            .await
            .map(tonic::Response::new)
            .map_err(|e| status_from_server_error(&e))
    }

    async fn lease_time_to_live(
        &self,
        request: tonic::Request<LeaseTimeToLiveRequest>,
    ) -> Result<tonic::Response<LeaseTimeToLiveResponse>, tonic::Status> {
        self.handler
            .lease_time_to_live(request.into_inner())
            .await
            .map(tonic::Response::new)
            .map_err(|e| status_from_server_error(&e))
    }

    async fn members(
        &self,
        _request: tonic::Request<MembersRequest>,
    ) -> Result<tonic::Response<MembersResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.handler.members()))
    }
}
