//! etcd's strict reconfiguration check (`--strict-reconfig-check`, on by default): the
//! leader refuses to add or remove a voter when the membership after the change would
//! hold fewer members it has heard from lately than that membership's quorum. Such a
//! change commits, and then nothing commits again, not even the change that would undo
//! it (remove a member while another is down, and a two-voter cluster with one dead
//! voter is left). Learners are added without the check, as etcd does.

use crate::raft::{ConfChange, ConfChangeKind, ConfState, NodeId};

/// When each peer was last heard from (any Raft message), on the raft loop's tick count.
#[derive(Debug, Default)]
pub(super) struct HeardFrom {
    last: Vec<(NodeId, u64)>,
}

impl HeardFrom {
    /// Notes a message from `peer` at tick `now`.
    pub(super) fn record(&mut self, peer: NodeId, now: u64) {
        match self.last.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, at)) => *at = now,
            None => self.last.push((peer, now)),
        }
    }

    /// Whether `peer` was heard from in the `window` ticks up to tick `now`.
    pub(super) fn recent(&self, peer: NodeId, now: u64, window: u64) -> bool {
        self.last
            .iter()
            .any(|&(p, at)| p == peer && now.saturating_sub(at) <= window)
    }
}

/// Whether `change` to `conf` leaves a quorum of voters that are `active` (the leader
/// `me` always is). A lone voter may take a second one, which cannot be active yet: etcd
/// allows it so that a cluster restored from one member's data can grow again.
pub(super) fn keeps_quorum(
    conf: &ConfState,
    change: &ConfChange,
    me: NodeId,
    active: impl Fn(NodeId) -> bool,
) -> bool {
    if change.kind == ConfChangeKind::AddLearner {
        return true;
    }
    let next = conf.applied(change);
    if change.kind == ConfChangeKind::AddVoter && conf.voters.len() == 1 && next.voters.len() == 2 {
        return true;
    }
    let active = next
        .voters
        .iter()
        .filter(|&&v| v == me || active(v))
        .count();
    active >= next.quorum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: ConfChangeKind, node_id: NodeId) -> ConfChange {
        ConfChange {
            kind,
            node_id,
            context: Vec::new(),
        }
    }

    fn voters(ids: &[NodeId]) -> ConfState {
        ConfState::with_voters(ids.iter().copied())
    }

    #[test]
    fn removing_a_live_member_while_another_is_down_is_refused() {
        // Three voters, 2 is down; removing 1 would leave {2, 3} with only 3 alive.
        let up = |v| v == 1;
        let conf = voters(&[1, 2, 3]);
        assert!(!keeps_quorum(
            &conf,
            &change(ConfChangeKind::RemoveNode, 1),
            3,
            up
        ));
        // Removing the dead one leaves {1, 3}, both alive.
        assert!(keeps_quorum(
            &conf,
            &change(ConfChangeKind::RemoveNode, 2),
            3,
            up
        ));
    }

    #[test]
    fn adding_a_voter_needs_a_live_quorum_of_the_larger_membership() {
        let conf = voters(&[1, 2, 3]);
        let add = change(ConfChangeKind::AddVoter, 4);
        // Four voters need three alive: the leader and both others.
        assert!(keeps_quorum(&conf, &add, 1, |v| v != 4));
        assert!(!keeps_quorum(&conf, &add, 1, |v| v == 2));
        // A learner is added whatever is down.
        let learner = change(ConfChangeKind::AddLearner, 4);
        assert!(keeps_quorum(&conf, &learner, 1, |_| false));
        // A lone voter may take a second.
        assert!(keeps_quorum(&voters(&[1]), &add, 1, |_| false));
        // Two voters with one down may not take a third.
        assert!(!keeps_quorum(&voters(&[1, 2]), &add, 1, |_| false));
    }

    #[test]
    fn promoting_a_learner_counts_it_when_heard_from() {
        let mut conf = voters(&[1, 2]);
        conf.learners.insert(3);
        let promote = change(ConfChangeKind::AddVoter, 3);
        assert!(keeps_quorum(&conf, &promote, 1, |v| v == 3));
        assert!(!keeps_quorum(&conf, &promote, 1, |_| false));
    }

    #[test]
    fn heard_from_is_a_sliding_window() {
        let mut heard = HeardFrom::default();
        heard.record(2, 10);
        heard.record(3, 15);
        heard.record(2, 18);
        assert!(heard.recent(2, 25, 10));
        assert!(heard.recent(3, 25, 10));
        assert!(!heard.recent(3, 26, 10));
        assert!(!heard.recent(4, 25, 10));
    }
}
