//! Shared pieces of the transport tests: a stub node that records what arrives, and a
//! peer server on its own runtime so a test can kill it (connections and all) and
//! bring it back on the same port.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd_engine::pb::detcdpeerpb::InternalRequest;
use detcd_engine::pb::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use detcd_engine::raft::{Message, MessageKind};
use detcd_engine::server::error::ServerError;
use detcd_engine::server::transport::{BoxFuture, PeerHandler, Transport};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen soon.
pub const WAIT_MS_MAX: u64 = 10_000;

/// Records stepped messages; answers forwarded requests from fixed rules.
pub struct StubNode {
    pub stepped: mpsc::UnboundedSender<(u64, Vec<Message>)>,
    /// Proposals seen, by request id.
    pub proposals: Mutex<Vec<u64>>,
    /// Members this node counts as removed from the cluster.
    pub removed: Mutex<Vec<u64>>,
}

impl StubNode {
    pub fn new() -> (Arc<StubNode>, mpsc::UnboundedReceiver<(u64, Vec<Message>)>) {
        let (stepped, receiver) = mpsc::unbounded_channel();
        let node = StubNode {
            stepped,
            proposals: Mutex::new(Vec::new()),
            removed: Mutex::new(Vec::new()),
        };
        (Arc::new(node), receiver)
    }
}

impl PeerHandler for StubNode {
    fn step(&self, from: u64, messages: Vec<Message>) {
        let _ = self.stepped.send((from, messages));
    }

    /// Even ids are accepted; odd ids fail with "no space".
    fn propose(&self, request: InternalRequest) -> BoxFuture<'static, Result<(), ServerError>> {
        self.proposals.lock().expect("lock").push(request.id);
        Box::pin(async move {
            if request.id.is_multiple_of(2) {
                Ok(())
            } else {
                Err(ServerError::NoSpace)
            }
        })
    }

    fn read_index(&self) -> BoxFuture<'static, Result<u64, ServerError>> {
        Box::pin(async { Ok(42) })
    }

    /// Echoes the lease id with a TTL of 7 s; lease 0 is unknown.
    fn lease_keep_alive(
        &self,
        request: LeaseKeepAliveRequest,
    ) -> BoxFuture<'static, Result<LeaseKeepAliveResponse, ServerError>> {
        Box::pin(async move {
            if request.id == 0 {
                return Err(ServerError::Mvcc(
                    detcd_engine::mvcc::MvccError::LeaseNotFound,
                ));
            }
            Ok(LeaseKeepAliveResponse {
                id: request.id,
                ttl: 7,
                ..Default::default()
            })
        })
    }

    fn lease_time_to_live(
        &self,
        _request: LeaseTimeToLiveRequest,
    ) -> BoxFuture<'static, Result<LeaseTimeToLiveResponse, ServerError>> {
        Box::pin(async { Err(ServerError::Timeout) })
    }

    fn is_removed(&self, member: u64) -> bool {
        self.removed.lock().expect("lock").contains(&member)
    }

    fn members(&self) -> detcd_engine::pb::detcdpeerpb::MembersResponse {
        detcd_engine::pb::detcdpeerpb::MembersResponse::default()
    }
}

/// A peer server on its own runtime; dropping the runtime kills every connection.
pub struct PeerServerProcess {
    runtime: Option<tokio::runtime::Runtime>,
    pub addr: SocketAddr,
}

impl PeerServerProcess {
    /// Serves `transport`'s Peer service for `handler` on `addr` (port 0: any port).
    pub fn start(transport: &Transport, handler: Arc<StubNode>, addr: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        let service = transport.service(handler);
        // A restart on the port of a server just killed may find its listener still
        // open for a moment: the killed runtime drops its tasks in the background.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let listener = loop {
            let _context = runtime.enter();
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.set_reuseaddr(true).expect("reuseaddr");
            match socket.bind(addr) {
                Ok(()) => break socket.listen(1024).expect("listen"),
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("bind peer port {addr}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("local addr");
        runtime.spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = result {
                tracing::warn!(%e, "test peer server ended");
            }
        });
        PeerServerProcess {
            runtime: Some(runtime),
            addr,
        }
    }

    /// The URL peers dial.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the server and all its connections at once.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for PeerServerProcess {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A loopback address nothing listens on.
pub fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// An Append message from `from` to `to` carrying `index` as a sequence number.
pub fn append(from: u64, to: u64, index: u64) -> Message {
    let mut message = Message::new(MessageKind::Append, from, to, 1);
    message.index = index;
    message
}

/// Receives until `count` messages arrived (or the wait runs out), flattened.
pub async fn receive_messages(
    receiver: &mut mpsc::UnboundedReceiver<(u64, Vec<Message>)>,
    count: usize,
) -> Vec<(u64, Message)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while got.len() < count {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some((from, messages))) => got.extend(messages.into_iter().map(|m| (from, m))),
            Ok(None) | Err(_) => break,
        }
    }
    got
}
