//! The mutual-exclusion check of the locks and elections workload ([`super::lock`]).
//!
//! Each time a client holds a lock (or leads an election) it records a [`Hold`]: the
//! revision the Lock (or Campaign) answer carried, and the revision of the guarded
//! write it then made in one transaction that also read every key queued under the
//! lock's prefix. Two facts must hold for a correct lock service on a linearizable
//! store:
//!
//! - at its guarded write, the holder's key is the first in line (lowest create
//!   revision) among the keys the same transaction read;
//! - the revision intervals `[acquired, wrote]` of two holds of one lock do not overlap:
//!   a later holder is answered only after the earlier holder's key is deleted, which
//!   is after every write the earlier holder made while its key existed.
//!
//! A hold whose guarded write did not happen (the lease expired, the outcome is
//! unknown) proves nothing and is not recorded. The check does not judge the key
//! space itself (the history checker does that).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One time a client held a lock or led an election, with the evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The lock or election name.
    pub name: String,
    /// The client that held it.
    pub client: u64,
    /// The holder's key (`<name>/<lease hex>`).
    pub key: String,
    /// The header revision of the Lock or Campaign answer.
    pub acquired: i64,
    /// The revision of the guarded write.
    pub wrote: i64,
    /// The key that was first in line (lowest create revision) at the guarded write,
    /// as the same transaction read it; `None` if it read no key at all.
    pub first_in_line: Option<String>,
}

/// Violations of mutual exclusion among `holds`, in a fixed order; empty = none.
pub fn mutual_exclusion(holds: &[Hold]) -> Vec<String> {
    let mut failures = Vec::new();
    for hold in holds {
        if hold.first_in_line.as_deref() != Some(hold.key.as_str()) {
            failures.push(format!(
                "mutual exclusion: client {} wrote under {} at revision {} holding {}, \
                 but {:?} was first in line",
                hold.client, hold.name, hold.wrote, hold.key, hold.first_in_line
            ));
        }
        if hold.acquired > hold.wrote {
            failures.push(format!(
                "mutual exclusion: client {} acquired {} at revision {} after its guarded \
                 write at {}",
                hold.client, hold.name, hold.acquired, hold.wrote
            ));
        }
    }
    let mut by_name: BTreeMap<&str, Vec<&Hold>> = BTreeMap::new();
    for hold in holds {
        by_name.entry(hold.name.as_str()).or_default().push(hold);
    }
    for (name, mut list) in by_name {
        list.sort_by_key(|h| (h.acquired, h.wrote, h.key.clone()));
        // Sorted by start: an overlap, if any, shows between a hold and the one with
        // the furthest end among those before it.
        let mut furthest: Option<&Hold> = None;
        for hold in list {
            if let Some(prev) = furthest
                && prev.key != hold.key
                && hold.acquired <= prev.wrote
            {
                failures.push(format!(
                    "mutual exclusion: {name} held by {} (client {}, revisions {}..={}) and \
                     {} (client {}, revisions {}..={}) at once",
                    prev.key,
                    prev.client,
                    prev.acquired,
                    prev.wrote,
                    hold.key,
                    hold.client,
                    hold.acquired,
                    hold.wrote
                ));
            }
            if furthest.is_none_or(|f| hold.wrote > f.wrote) {
                furthest = Some(hold);
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hold(client: u64, key: &str, acquired: i64, wrote: i64) -> Hold {
        Hold {
            name: "lock/l0".to_owned(),
            client,
            key: key.to_owned(),
            acquired,
            wrote,
            first_in_line: Some(key.to_owned()),
        }
    }

    #[test]
    fn holds_one_after_another_pass() {
        let holds = [hold(1, "lock/l0/a", 3, 5), hold(2, "lock/l0/b", 7, 9)];
        assert_eq!(mutual_exclusion(&holds), Vec::<String>::new());
    }

    /// Known bad: the second holder was answered before the first one's guarded write.
    #[test]
    fn overlapping_holds_of_one_lock_fail() {
        let holds = [hold(1, "lock/l0/a", 3, 8), hold(2, "lock/l0/b", 6, 9)];
        let failures = mutual_exclusion(&holds);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("at once"), "{failures:?}");
    }

    #[test]
    fn overlaps_on_different_locks_are_fine() {
        let mut other = hold(2, "lock/l1/b", 6, 9);
        other.name = "lock/l1".to_owned();
        other.first_in_line = Some("lock/l1/b".to_owned());
        let holds = [hold(1, "lock/l0/a", 3, 8), other];
        assert!(mutual_exclusion(&holds).is_empty());
    }

    /// Known bad: a guarded write while another key was first in line.
    #[test]
    fn writing_while_not_first_in_line_fails() {
        let mut bad = hold(2, "lock/l0/b", 6, 9);
        bad.first_in_line = Some("lock/l0/a".to_owned());
        let failures = mutual_exclusion(&[bad]);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("first in line"), "{failures:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Disjoint intervals pass in any order; stretching one into its successor
        /// fails, whatever the order of the list.
        #[test]
        fn only_overlaps_fail(
            lengths in prop::collection::vec((0i64..5, 1i64..5), 2..8),
            stretch in any::<prop::sample::Index>(),
            rotate in 0usize..8,
        ) {
            let mut holds = Vec::new();
            let mut rev = 1;
            for (n, (len, gap)) in lengths.iter().enumerate() {
                holds.push(hold(n as u64, &format!("lock/l0/{n}"), rev, rev + len));
                rev += len + gap;
            }
            let mut shuffled = holds.clone();
            shuffled.rotate_left(rotate % holds.len());
            prop_assert!(mutual_exclusion(&shuffled).is_empty());
            let i = stretch.index(holds.len() - 1);
            holds[i].wrote = holds[i + 1].acquired;
            holds.rotate_left(rotate % lengths.len());
            prop_assert!(!mutual_exclusion(&holds).is_empty());
        }
    }
}
