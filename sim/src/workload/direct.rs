//! One long-lived simulated connection per client and member for the workloads' unary
//! KV and lease calls, served on the member's host by the member's own gRPC service
//! handlers (`KvService`, `LeaseService`, called through their tonic traits, as
//! madsim-tonic's server calls them).
//!
//! Why: madsim-tonic opens a new simulated connection (a port bind, two channels, two
//! timers) and spawns a server task for every unary call, which was a large part of a
//! simulated op's cost. Here a request and its response are one message each on a
//! connection that lives until it breaks, the way a real etcd client keeps its gRPC
//! connection. The messages travel as typed values: there is no encoding on either side
//! (madsim-tonic does not encode either).
//!
//! What a client sees stays what it saw through madsim-tonic: a member that is down, was
//! restarted since the connection was opened, or is clogged is found out before the
//! request is sent ([`Reach`], kept by the world), and the connection is then opened
//! again, which fails at once if the member cannot be reached. A request on a
//! connection that breaks after sending has an unknown outcome, as before. Streaming
//! calls (watch, keep-alive, lock, election) still go through madsim-tonic.
//! This module records nothing and decides nothing about outcomes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use detcd_engine::pb::etcdserverpb::kv_server::Kv;
use detcd_engine::pb::etcdserverpb::lease_server::Lease;
use detcd_engine::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, TxnRequest, TxnResponse,
};
use detcd_engine::server::grpc::kv::KvService;
use detcd_engine::server::grpc::lease::LeaseService;
use detcd_engine::server::node::NodeHandle;
use madsim::net::{Endpoint, Receiver, Sender};
use tonic::{Request, Status};

/// The port of a member's direct client listener (next to the client port, 2379).
pub const DIRECT_PORT: u16 = 2390;

/// A unary call a workload sends.
#[derive(Debug)]
pub enum Call {
    /// KV Range.
    Range(RangeRequest),
    /// KV Put.
    Put(PutRequest),
    /// KV DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// KV Txn.
    Txn(TxnRequest),
    /// KV Compact.
    Compact(CompactionRequest),
    /// Lease LeaseGrant.
    LeaseGrant(LeaseGrantRequest),
    /// Lease LeaseRevoke.
    LeaseRevoke(LeaseRevokeRequest),
    /// Lease LeaseTimeToLive.
    LeaseTimeToLive(LeaseTimeToLiveRequest),
}

/// The answer to a [`Call`], of the same kind.
#[derive(Debug)]
pub enum Reply {
    /// KV Range.
    Range(RangeResponse),
    /// KV Put.
    Put(PutResponse),
    /// KV DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// KV Txn.
    Txn(TxnResponse),
    /// KV Compact.
    Compact(CompactionResponse),
    /// Lease LeaseGrant.
    LeaseGrant(LeaseGrantResponse),
    /// Lease LeaseRevoke.
    LeaseRevoke(LeaseRevokeResponse),
    /// Lease LeaseTimeToLive.
    LeaseTimeToLive(LeaseTimeToLiveResponse),
}

/// Which members can be reached and which life each is in, kept by the world: a
/// connection opened to one life of a member is not used after it ends, nor while the
/// member is clogged (a new connection would be refused then).
#[derive(Clone, Debug, Default)]
pub struct Reach(Arc<Mutex<ReachState>>);

#[derive(Debug, Default)]
struct ReachState {
    /// Running members and their start count.
    boots: BTreeMap<u64, u64>,
    clogged: BTreeSet<u64>,
}

impl Reach {
    fn state(&self) -> std::sync::MutexGuard<'_, ReachState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Member `member` started (its `boot`-th start) and serves clients.
    pub fn up(&self, member: u64, boot: u64) {
        self.state().boots.insert(member, boot);
    }

    /// Member `member`'s process stopped.
    pub fn down(&self, member: u64) {
        self.state().boots.remove(&member);
    }

    /// Member `member` was clogged (`true`) or unclogged.
    pub fn set_clogged(&self, member: u64, clogged: bool) {
        let mut s = self.state();
        if clogged {
            s.clogged.insert(member);
        } else {
            s.clogged.remove(&member);
        }
    }

    fn boot(&self, member: u64) -> Option<u64> {
        self.state().boots.get(&member).copied()
    }

    /// Whether a connection opened to `member`'s life `boot` may carry a request now.
    fn usable(&self, member: u64, boot: Option<u64>) -> bool {
        let s = self.state();
        boot.is_some() && s.boots.get(&member).copied() == boot && !s.clogged.contains(&member)
    }
}

/// The address of member `i`'s direct listener.
fn member_addr(i: u64) -> SocketAddr {
    let last = u8::try_from(i).unwrap_or(u8::MAX);
    SocketAddr::from(([10, 0, 0, last], DIRECT_PORT))
}

/// A client's open connection to one member.
pub struct Conn {
    tx: Sender,
    rx: Receiver,
    member: u64,
    boot: Option<u64>,
}

impl Conn {
    /// Opens a connection to member `member` (refused if it is down or clogged).
    pub async fn open(member: u64, reach: &Reach) -> std::io::Result<Conn> {
        let addr = member_addr(member);
        let endpoint = Endpoint::connect(addr).await?;
        let (tx, rx) = endpoint.connect1(addr).await?;
        Ok(Conn {
            tx,
            rx,
            member,
            boot: reach.boot(member),
        })
    }

    /// Whether this connection may still carry a request (see [`Reach`]).
    pub fn usable(&self, reach: &Reach) -> bool {
        !self.tx.is_closed() && reach.usable(self.member, self.boot)
    }

    /// Sends `call` and waits for its reply: the member's answer, `Ok(Err(message))` for
    /// a gRPC error (the connection stays usable). `Err((sent, message))` when the
    /// connection broke; `sent` is false when the request never left (no effect).
    pub async fn call(&mut self, call: Call) -> Result<Result<Reply, String>, (bool, String)> {
        self.tx
            .send(Box::new(call))
            .await
            .map_err(|e| (false, format!("connect: {e}")))?;
        let msg = self.rx.recv().await.map_err(|e| (true, e.to_string()))?;
        match msg.downcast::<Result<Reply, Status>>() {
            Ok(reply) => Ok((*reply).map_err(|s| s.message().to_owned())),
            Err(_) => Err((true, "unexpected reply type".to_owned())),
        }
    }
}

/// Serves direct connections on the member's host until the member stops (its tasks
/// end with it). Call from a task on the member's host, once the member runs.
pub async fn serve(member: u64, node: NodeHandle) {
    let endpoint = match Endpoint::bind(member_addr(member)).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(member, error = %e, "direct client listener failed to bind");
            return;
        }
    };
    let kv = KvService::new(node.clone());
    let lease = LeaseService::new(node);
    while let Ok((tx, rx, _)) = endpoint.accept1().await {
        tokio::spawn(serve_connection(tx, rx, kv.clone(), lease.clone()));
    }
}

/// Answers one connection's calls in order until the client goes away.
async fn serve_connection(tx: Sender, mut rx: Receiver, kv: KvService, lease: LeaseService) {
    while let Ok(msg) = rx.recv().await {
        let Ok(call) = msg.downcast::<Call>() else {
            return;
        };
        let reply = dispatch(&kv, &lease, *call).await;
        if tx.send(Box::new(reply)).await.is_err() {
            return;
        }
    }
}

/// Runs one call through the member's service handlers.
async fn dispatch(kv: &KvService, lease: &LeaseService, call: Call) -> Result<Reply, Status> {
    Ok(match call {
        Call::Range(r) => Reply::Range(kv.range(Request::new(r)).await?.into_inner()),
        Call::Put(r) => Reply::Put(kv.put(Request::new(r)).await?.into_inner()),
        Call::DeleteRange(r) => {
            Reply::DeleteRange(kv.delete_range(Request::new(r)).await?.into_inner())
        }
        Call::Txn(r) => Reply::Txn(kv.txn(Request::new(r)).await?.into_inner()),
        Call::Compact(r) => Reply::Compact(kv.compact(Request::new(r)).await?.into_inner()),
        Call::LeaseGrant(r) => {
            Reply::LeaseGrant(lease.lease_grant(Request::new(r)).await?.into_inner())
        }
        Call::LeaseRevoke(r) => {
            Reply::LeaseRevoke(lease.lease_revoke(Request::new(r)).await?.into_inner())
        }
        Call::LeaseTimeToLive(r) => Reply::LeaseTimeToLive(
            lease
                .lease_time_to_live(Request::new(r))
                .await?
                .into_inner(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_usable_only_in_the_life_it_was_opened_in_and_unclogged() {
        let reach = Reach::default();
        assert!(!reach.usable(1, reach.boot(1)), "a member never up");
        reach.up(1, 0);
        let boot = reach.boot(1);
        assert!(reach.usable(1, boot));
        reach.set_clogged(1, true);
        assert!(!reach.usable(1, boot), "clogged");
        reach.set_clogged(1, false);
        assert!(reach.usable(1, boot));
        reach.down(1);
        assert!(!reach.usable(1, boot), "down");
        reach.up(1, 1);
        assert!(!reach.usable(1, boot), "restarted since");
        assert!(reach.usable(1, reach.boot(1)));
        assert!(!reach.usable(2, boot), "another member");
    }
}
