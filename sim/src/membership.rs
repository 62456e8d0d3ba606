//! Membership changes through the Cluster service, as an operator would make them:
//! list, remove by peer URL, add a fresh member, and the server configuration a newly
//! added member boots with (`--initial-cluster-state=existing`, the ID the cluster
//! assigned). It only talks to members and builds configs; the world decides when.
//!
//! A member added back listens on a new peer port: the simulated clock gives every
//! MemberAdd of one URL the same ID, and an ID once removed may not rejoin.

use std::collections::BTreeMap;
use std::time::Duration;

use detcd_engine::pb::etcdserverpb::cluster_client::ClusterClient;
use detcd_engine::pb::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberRemoveRequest,
};
use detcd_engine::server::config::{self, ClusterState, Command, ServerConfig};

use crate::workload::kv::connect;

/// How long one membership request may take, simulated ms.
pub const REQUEST_TIMEOUT_MS: u64 = 2_000;

/// The peer port members boot with; a member added back gets a higher one.
pub const PEER_PORT_FIRST: u16 = 2380;

/// The peer URL of member `i` on `port`.
pub fn peer_url(i: u64, port: u16) -> String {
    format!("http://10.0.0.{i}:{port}")
}

/// The member index behind a peer URL, if it is one of the world's.
pub fn index_of(url: &str) -> Option<u64> {
    url.strip_prefix("http://10.0.0.")?
        .split(':')
        .next()?
        .parse()
        .ok()
}

/// Whether a listed member is member `index` (on any port).
pub fn is_member(m: &Member, index: u64) -> bool {
    m.peer_ur_ls.iter().any(|u| index_of(u) == Some(index))
}

async fn client(endpoint: u64) -> Result<ClusterClient<tonic::transport::Channel>, String> {
    Ok(ClusterClient::new(connect(endpoint).await?))
}

async fn timed<T>(f: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), f)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// The cluster ID and members, as `endpoint` sees them.
pub async fn list(endpoint: u64) -> Result<(u64, Vec<Member>), String> {
    timed(async {
        let r = client(endpoint)
            .await?
            .member_list(MemberListRequest::default())
            .await
            .map_err(|e| e.message().to_owned())?
            .into_inner();
        Ok((r.header.map_or(0, |h| h.cluster_id), r.members))
    })
    .await
}

/// Removes member `index` through `endpoint`.
pub async fn remove(endpoint: u64, index: u64) -> Result<(), String> {
    let (_, members) = list(endpoint).await?;
    let Some(id) = members.iter().find(|m| is_member(m, index)).map(|m| m.id) else {
        return Ok(());
    };
    timed(async {
        client(endpoint)
            .await?
            .member_remove(MemberRemoveRequest { id })
            .await
            .map_err(|e| e.message().to_owned())?;
        Ok(())
    })
    .await
}

/// Adds member `index` on peer `port` (as a voter) through `endpoint`; returns the
/// cluster ID and the members after the change.
pub async fn add(endpoint: u64, index: u64, port: u16) -> Result<(u64, Vec<Member>), String> {
    timed(async {
        let r = client(endpoint)
            .await?
            .member_add(MemberAddRequest {
                peer_ur_ls: vec![peer_url(index, port)],
                is_learner: false,
            })
            .await
            .map_err(|e| e.message().to_owned())?
            .into_inner();
        Ok((r.header.map_or(0, |h| h.cluster_id), r.members))
    })
    .await
}

/// The server config of member `index` joining on peer `port` a cluster with these
/// members: the member list and IDs come from the cluster, not from the flags' hash.
pub fn joining_config(
    index: u64,
    port: u16,
    cluster_id: u64,
    members: &[Member],
) -> Result<ServerConfig, String> {
    // Index → (ID, peer URL).
    let listed: BTreeMap<u64, (u64, String)> = members
        .iter()
        .filter_map(|m| {
            let url = m.peer_ur_ls.first()?;
            Some((index_of(url)?, (m.id, url.clone())))
        })
        .collect();
    if listed.get(&index).map(|(_, u)| u.as_str()) != Some(peer_url(index, port).as_str()) {
        return Err(format!(
            "member {index} is not in the cluster's list on port {port}"
        ));
    }
    let cluster = listed
        .iter()
        .map(|(j, (_, url))| format!("n{j}={url}"))
        .collect::<Vec<_>>()
        .join(",");
    let args = [
        "detcd".to_owned(),
        format!("--name=n{index}"),
        format!("--listen-client-urls=http://10.0.0.{index}:2379"),
        format!("--advertise-client-urls=http://10.0.0.{index}:2379"),
        format!("--listen-peer-urls={}", peer_url(index, port)),
        format!("--initial-advertise-peer-urls={}", peer_url(index, port)),
        format!("--initial-cluster={cluster}"),
        "--initial-cluster-state=existing".to_owned(),
    ];
    let mut c = match config::parse(args, &BTreeMap::new()) {
        Ok(Command::Serve(c)) => *c,
        other => return Err(format!("bad joining configuration: {other:?}")),
    };
    c.initial_cluster_state = ClusterState::Existing;
    for m in &mut c.initial_cluster {
        let index = m.peer_urls.first().and_then(|u| index_of(u));
        if let Some((id, _)) = index.and_then(|i| listed.get(&i)) {
            m.id = *id;
        }
    }
    c.member_id = listed.get(&index).map_or(0, |(id, _)| *id);
    c.cluster_id = cluster_id;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_map_back_to_indexes() {
        assert_eq!(index_of(&peer_url(4, 2380)), Some(4));
        assert_eq!(index_of(&peer_url(12, 2391)), Some(12));
        assert_eq!(index_of("http://10.0.1.4:2380"), None);
    }

    #[test]
    fn a_joining_member_takes_the_ids_the_cluster_assigned() {
        let members: Vec<Member> = [(1, 11, 2380), (2, 22, 2380), (4, 44, 2383)]
            .iter()
            .map(|&(i, id, port)| Member {
                id,
                peer_ur_ls: vec![peer_url(i, port)],
                ..Member::default()
            })
            .collect();
        assert!(joining_config(4, 2380, 99, &members).is_err(), "wrong port");
        let c = joining_config(4, 2383, 99, &members).expect("config");
        assert_eq!((c.member_id, c.cluster_id), (44, 99));
        assert_eq!(c.initial_cluster_state, ClusterState::Existing);
        let ids: Vec<u64> = c.initial_cluster.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![11, 22, 44]);
        assert!(joining_config(3, 2380, 99, &members).is_err());
    }
}
