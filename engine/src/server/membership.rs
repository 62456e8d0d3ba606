//! The replicated member table: who is in the cluster, as voter or learner, with which
//! names and URLs.
//!
//! Every member derives the same table: it starts from `--initial-cluster` (founders
//! compute identical IDs from it) and changes only by applying committed membership
//! changes, whose context carries the member record, or member-attribute updates. It is
//! part of the state snapshot. It does not decide whether a change is safe; the node does
//! that before proposing, and the Raft core enforces one change at a time.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message as _;
use serde::{Deserialize, Serialize};

use crate::pb::detcdpeerpb::{Member as PeerMember, MemberAttributes};
use crate::pb::etcdserverpb::Member as ApiMember;
use crate::raft::{ConfChange, ConfChangeKind};

/// One member as the table keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The member's ID.
    pub id: u64,
    /// Its name; empty until the member has started and published it.
    pub name: String,
    /// Where peers reach it.
    pub peer_urls: Vec<String>,
    /// Where clients reach it; empty until published.
    pub client_urls: Vec<String>,
    /// A non-voting member.
    pub is_learner: bool,
}

impl MemberRecord {
    /// The record as etcd's API shows it.
    pub fn to_api(&self) -> ApiMember {
        ApiMember {
            id: self.id,
            name: self.name.clone(),
            peer_ur_ls: self.peer_urls.clone(),
            client_ur_ls: self.client_urls.clone(),
            is_learner: self.is_learner,
        }
    }

    /// The record in the peer protocol's form.
    pub fn to_peer(&self) -> PeerMember {
        PeerMember {
            id: self.id,
            name: self.name.clone(),
            peer_urls: self.peer_urls.clone(),
            client_urls: self.client_urls.clone(),
            is_learner: self.is_learner,
        }
    }

    /// The record from the peer protocol's form.
    pub fn from_peer(m: PeerMember) -> Self {
        MemberRecord {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        }
    }

    /// Encodes the record as the context of a membership change.
    pub fn to_context(&self) -> Vec<u8> {
        self.to_peer().encode_to_vec()
    }

    fn from_context(bytes: &[u8]) -> Option<Self> {
        PeerMember::decode(bytes).ok().map(Self::from_peer)
    }
}

/// The member table. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    members: BTreeMap<u64, MemberRecord>,
    removed: BTreeSet<u64>,
}

impl Membership {
    /// The table of a cluster's founding members.
    pub fn from_initial(members: impl IntoIterator<Item = MemberRecord>) -> Self {
        Membership {
            members: members.into_iter().map(|m| (m.id, m)).collect(),
            removed: BTreeSet::new(),
        }
    }

    /// Applies a committed membership change. Founding members' changes carry no
    /// context: their records come from the initial table.
    pub fn apply_conf_change(&mut self, change: &ConfChange) {
        let id = change.node_id;
        match change.kind {
            ConfChangeKind::AddVoter | ConfChangeKind::AddLearner => {
                let learner = change.kind == ConfChangeKind::AddLearner;
                let record = self.members.entry(id).or_insert_with(|| MemberRecord {
                    id,
                    ..MemberRecord::default()
                });
                if let Some(from_context) = MemberRecord::from_context(&change.context) {
                    if record.peer_urls.is_empty() {
                        record.peer_urls = from_context.peer_urls;
                    }
                    if record.name.is_empty() {
                        record.name = from_context.name;
                    }
                }
                record.is_learner = learner;
                self.removed.remove(&id);
            }
            ConfChangeKind::RemoveNode => {
                self.members.remove(&id);
                self.removed.insert(id);
            }
        }
    }

    /// Applies a member's published name and client URLs.
    pub fn apply_attributes(&mut self, attrs: &MemberAttributes) {
        if let Some(m) = self.members.get_mut(&attrs.id) {
            m.name = attrs.name.clone();
            m.client_urls = attrs.client_urls.clone();
        }
    }

    /// Replaces a member's peer URLs (member update).
    pub fn replace_peer_urls(&mut self, id: u64, peer_urls: Vec<String>) {
        if let Some(m) = self.members.get_mut(&id) {
            m.peer_urls = peer_urls;
        }
    }

    /// A member by ID.
    pub fn get(&self, id: u64) -> Option<&MemberRecord> {
        self.members.get(&id)
    }

    /// All members, by ID.
    pub fn members(&self) -> impl Iterator<Item = &MemberRecord> {
        self.members.values()
    }

    /// All members as etcd's API shows them, by ID.
    pub fn to_api(&self) -> Vec<ApiMember> {
        self.members.values().map(MemberRecord::to_api).collect()
    }

    /// Whether `id` was removed from the cluster (it may not rejoin).
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    /// Peer URLs of every member, for the transport.
    pub fn peer_urls(&self) -> BTreeMap<u64, Vec<String>> {
        self.members
            .values()
            .map(|m| (m.id, m.peer_urls.clone()))
            .collect()
    }

    /// Whether some member already uses one of these peer URLs.
    pub fn peer_url_in_use(&self, urls: &[String]) -> bool {
        self.members
            .values()
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, name: &str) -> MemberRecord {
        MemberRecord {
            id,
            name: name.to_owned(),
            peer_urls: vec![format!("http://{name}:2380")],
            ..MemberRecord::default()
        }
    }

    #[test]
    fn changes_add_promote_and_remove_members() {
        let mut table = Membership::from_initial([record(1, "a"), record(2, "b")]);
        // A founder's change without context keeps the initial record.
        table.apply_conf_change(&ConfChange {
            kind: ConfChangeKind::AddVoter,
            node_id: 1,
            context: Vec::new(),
        });
        assert_eq!(table.get(1).map(|m| m.name.as_str()), Some("a"));

        let new = MemberRecord {
            id: 3,
            peer_urls: vec!["http://c:2380".into()],
            is_learner: true,
            ..MemberRecord::default()
        };
        table.apply_conf_change(&ConfChange {
            kind: ConfChangeKind::AddLearner,
            node_id: 3,
            context: new.to_context(),
        });
        assert!(
            table
                .get(3)
                .is_some_and(|m| m.is_learner && m.name.is_empty())
        );
        assert!(table.peer_url_in_use(&["http://c:2380".to_owned()]));

        table.apply_conf_change(&ConfChange {
            kind: ConfChangeKind::AddVoter,
            node_id: 3,
            context: Vec::new(),
        });
        assert!(
            table
                .get(3)
                .is_some_and(|m| !m.is_learner && m.peer_urls == ["http://c:2380"])
        );

        table.apply_attributes(&MemberAttributes {
            id: 3,
            name: "c".into(),
            client_urls: vec!["http://c:2379".into()],
        });
        assert_eq!(
            table.get(3).map(|m| m.to_api().client_ur_ls),
            Some(vec!["http://c:2379".to_owned()])
        );

        table.apply_conf_change(&ConfChange {
            kind: ConfChangeKind::RemoveNode,
            node_id: 2,
            context: Vec::new(),
        });
        assert!(table.get(2).is_none());
        assert!(table.is_removed(2));
        assert_eq!(
            table.peer_urls().keys().copied().collect::<Vec<_>>(),
            vec![1, 3]
        );
    }
}
