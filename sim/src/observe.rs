//! Run invariants fed by every status change of every member, not by samples: a
//! leader that lasts a few milliseconds is seen as surely as one that lasts seconds.
//!
//! Each member's host runs [`follow`] next to the server; it records, per term, every
//! leader that the member names (itself when it leads, or the leader it follows). At
//! the end of a run [`election_safety`] turns two leaders in one term into a failure.
//! It also reports fresh votes to the world, for the crash-after-vote knob.
//! This module does not sample on a timer and does not write the trace (the world's
//! status watcher does that).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use detcd_engine::server::node::{NodeHandle, NodeStatus};
use tokio::sync::mpsc::UnboundedSender;

/// Every leader some member named for each term: term → leader IDs.
pub(crate) type Leaders = Arc<Mutex<BTreeMap<u64, BTreeSet<u64>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records the leader `status` names, if any.
pub(crate) fn record(leaders: &Leaders, status: &NodeStatus) {
    if status.leader != 0 {
        lock(leaders)
            .entry(status.term)
            .or_default()
            .insert(status.leader);
    }
}

/// A member (by index) granted its vote in a term: `(member, term)`.
pub(crate) type VoteNotice = (u64, u64);

/// Records every status change of `node` until its host dies (never returns); when
/// `votes` is given, also reports each fresh vote the member (index `member`) grants to
/// another member.
pub(crate) async fn follow(
    node: NodeHandle,
    member: u64,
    leaders: Leaders,
    votes: Option<UnboundedSender<VoteNotice>>,
) {
    let me = node.member_id();
    let mut last = node.status();
    let mut reported = (0, 0);
    loop {
        record(&leaders, &last);
        if let Some(tx) = &votes
            && last.vote != 0
            && last.vote != me
            && reported != (last.term, last.vote)
        {
            reported = (last.term, last.vote);
            let _ = tx.send((member, last.term));
        }
        last = node.status_change(last).await;
    }
}

/// Election safety: at most one leader per term, among every leader a member named.
pub(crate) fn election_safety(leaders: &BTreeMap<u64, BTreeSet<u64>>) -> Vec<String> {
    leaders
        .iter()
        .filter(|(_, named)| named.len() > 1)
        .map(|(term, named)| format!("election safety: term {term} had leaders {named:?}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_leaders_named_for_one_term_break_election_safety() {
        let leaders: Leaders = Arc::default();
        let status = |leader, term| NodeStatus {
            leader,
            term,
            ..NodeStatus::default()
        };
        record(&leaders, &status(1, 2));
        record(&leaders, &status(0, 3));
        record(&leaders, &status(2, 3));
        record(&leaders, &status(2, 3));
        assert!(election_safety(&lock(&leaders)).is_empty());
        record(&leaders, &status(3, 3));
        let failures = election_safety(&lock(&leaders));
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("term 3"), "{failures:?}");
    }
}
