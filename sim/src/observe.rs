//! Run invariants fed by every status change of every member, not by samples: a
//! leader that lasts a few milliseconds is seen as surely as one that lasts seconds.
//!
//! Each member's host runs [`follow`] next to the server. It records, per term, every
//! leader the member names (itself when it leads, or the leader it follows), and checks
//! Raft's commit rule on the member while it leads: a leader moves its commit index only
//! to an entry of its own term (entries of earlier terms become committed with it, never
//! by counting their replicas). At the end of a run [`failures`] turns two leaders in
//! one term, or a broken commit rule, into failures. This module does not sample on a
//! timer and does not write the trace (the world's status watcher does that).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use detcd_engine::server::node::{NodeHandle, NodeStatus};
use tokio::sync::mpsc::UnboundedSender;

/// What the members' status changes showed.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// Every leader some member named for each term: term → leader IDs.
    pub(crate) leaders: BTreeMap<u64, BTreeSet<u64>>,
    /// Commit-rule violations, in words.
    pub(crate) commit_rule: Vec<String>,
}

/// [`Observed`], shared by every member's follower task.
pub(crate) type Observations = Arc<Mutex<Observed>>;

/// A member (by index) granted its vote in a term: `(member, term)`.
pub(crate) type VoteNotice = (u64, u64);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The commit-rule check of one member across its status changes.
#[derive(Debug, Default)]
pub(crate) struct CommitRule {
    /// While leading: (term, commit index when first seen leading in it).
    leading: Option<(u64, u64)>,
}

impl CommitRule {
    /// Feeds the next status of member `member`; returns a violation, if any.
    pub(crate) fn check(&mut self, member: u64, s: &NodeStatus) -> Option<String> {
        if !s.is_leader {
            self.leading = None;
            return None;
        }
        let (term, start) = match self.leading {
            Some((term, start)) if term == s.term => (term, start),
            _ => {
                self.leading = Some((s.term, s.commit));
                return None;
            }
        };
        (s.commit > start && s.commit_term != term).then(|| {
            format!(
                "commit rule: leader n{member} of term {term} moved its commit index to {} \
                 (an entry of term {}) without an entry of its own term",
                s.commit, s.commit_term
            )
        })
    }
}

/// Records the leader `status` names, if any.
pub(crate) fn record(observed: &Observations, status: &NodeStatus) {
    if status.leader != 0 {
        lock(observed)
            .leaders
            .entry(status.term)
            .or_default()
            .insert(status.leader);
    }
}

/// Records every status change of `node` (member index `member`) until its host dies
/// (never returns); when `votes` is given, also reports each fresh vote the member
/// grants to another member.
pub(crate) async fn follow(
    node: NodeHandle,
    member: u64,
    observed: Observations,
    votes: Option<UnboundedSender<VoteNotice>>,
) {
    let me = node.member_id();
    let mut last = node.status();
    let mut reported = (0, 0);
    let mut rule = CommitRule::default();
    loop {
        record(&observed, &last);
        if let Some(v) = rule.check(member, &last) {
            lock(&observed).commit_rule.push(v);
        }
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

/// The run's failures from what was observed: election safety (at most one leader per
/// term, among every leader a member named) and the commit rule (first few).
pub(crate) fn failures(observed: &Observed) -> Vec<String> {
    /// Commit-rule violations listed; more only repeat the point.
    const COMMIT_RULE_SHOWN_MAX: usize = 3;
    observed
        .leaders
        .iter()
        .filter(|(_, named)| named.len() > 1)
        .map(|(term, named)| format!("election safety: term {term} had leaders {named:?}"))
        .chain(
            observed
                .commit_rule
                .iter()
                .take(COMMIT_RULE_SHOWN_MAX)
                .cloned(),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(leader: u64, term: u64) -> NodeStatus {
        NodeStatus {
            leader,
            term,
            ..NodeStatus::default()
        }
    }

    #[test]
    fn two_leaders_named_for_one_term_break_election_safety() {
        let leaders: Observations = Arc::default();
        record(&leaders, &status(1, 2));
        record(&leaders, &status(0, 3));
        record(&leaders, &status(2, 3));
        record(&leaders, &status(2, 3));
        assert!(failures(&lock(&leaders)).is_empty());
        record(&leaders, &status(3, 3));
        let f = failures(&lock(&leaders));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].starts_with("election safety: term 3"), "{f:?}");
    }

    fn leading(term: u64, commit: u64, commit_term: u64) -> NodeStatus {
        NodeStatus {
            leader: 1,
            term,
            is_leader: true,
            commit,
            commit_term,
            ..NodeStatus::default()
        }
    }

    #[test]
    fn a_leader_may_only_commit_through_an_entry_of_its_own_term() {
        let mut rule = CommitRule::default();
        // Inherited commit index on an old entry: fine; then own-term commits.
        assert_eq!(rule.check(1, &leading(4, 10, 2)), None);
        assert_eq!(rule.check(1, &leading(4, 10, 2)), None);
        assert_eq!(rule.check(1, &leading(4, 13, 4)), None);
        // Stepping down and leading a later term starts over.
        assert_eq!(rule.check(1, &status(2, 5)), None);
        assert_eq!(rule.check(1, &leading(6, 13, 4)), None);
        // Known bad: the commit index moves onto an earlier term's entry.
        let bad = rule.check(1, &leading(6, 14, 4));
        assert!(
            bad.as_deref()
                .is_some_and(|b| b.starts_with("commit rule: leader n1 of term 6")),
            "{bad:?}"
        );
        let observed = Observed {
            commit_rule: vec![bad.unwrap_or_default(); 5],
            ..Observed::default()
        };
        assert_eq!(failures(&observed).len(), 3);
    }
}
