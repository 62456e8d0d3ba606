//! What the whole report tells about keys beyond a single response: which keys some
//! put gave a lease (reads of them cannot be judged: leases are not reported) and the
//! create revision of a key's incarnation where a watch saw it created. This module
//! only collects; it does not judge.

use std::collections::{BTreeMap, BTreeSet};

use super::format::{ReportOperation, ReportWatch};

/// Facts gathered from every client's files before conversion.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Keys some put of the report attached a lease to.
    leased: BTreeSet<String>,
    /// (key, mod revision) → set of (create revision, puts from the create to that mod
    /// revision inclusive), as seen on each watch stream that delivered both.
    creations: BTreeMap<(String, i64), BTreeSet<(i64, i64)>>,
}

impl Known {
    /// Notes the leases that `op` attaches.
    pub fn add_operation(&mut self, op: &ReportOperation) {
        let Some(txn) = op.input.as_ref().and_then(|i| i.txn.as_ref()) else {
            return;
        };
        let branches = [&txn.operations_on_success, &txn.operations_on_failure];
        for o in branches.into_iter().flatten().flatten() {
            if let Some(p) = &o.put
                && p.lease_id != 0
            {
                self.leased.insert(p.key.clone());
            }
        }
    }

    /// Notes, for every put a watch delivered, the create revision of its incarnation
    /// when the same stream delivered that creation and no delete in between.
    pub fn add_watch(&mut self, w: &ReportWatch) {
        // Per key: (revision, is put, is create) in delivered order.
        let mut per_key: BTreeMap<&str, Vec<(i64, bool, bool)>> = BTreeMap::new();
        for resp in w.responses.iter().flatten() {
            for e in resp.events.iter().flatten() {
                let put = e.kind == "put-operation";
                per_key.entry(e.key.as_str()).or_default().push((
                    e.revision,
                    put,
                    put && e.is_create,
                ));
            }
        }
        for (key, events) in per_key {
            for (i, &(rev, put, _)) in events.iter().enumerate() {
                if !put {
                    continue;
                }
                let mut puts = 0;
                for &(r, p, created) in events[..=i].iter().rev() {
                    if !p {
                        break;
                    }
                    puts += 1;
                    if created {
                        self.creations
                            .entry((key.to_string(), rev))
                            .or_default()
                            .insert((r, puts));
                        break;
                    }
                }
            }
        }
    }

    /// Whether some put of the report gave `key` a lease.
    pub fn leased(&self, key: &str) -> bool {
        self.leased.contains(key)
    }

    /// The create revision of `key` as read at `mod_revision` with `version`, when the
    /// watches saw exactly one creation that fits (the right number of puts since).
    pub fn create_revision(&self, key: &str, mod_revision: i64, version: i64) -> Option<i64> {
        if version == 1 {
            return Some(mod_revision);
        }
        let seen = self.creations.get(&(key.to_string(), mod_revision))?;
        let mut fits = seen
            .iter()
            .filter(|(_, puts)| *puts == version)
            .map(|(c, _)| *c);
        let c = fits.next()?;
        fits.all(|o| o == c).then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(json: &str) -> ReportWatch {
        serde_json::from_str(json).expect("watch json")
    }

    #[test]
    fn creations_follow_puts_back_to_the_create() {
        let mut k = Known::default();
        k.add_watch(&watch(
            r#"{"Request":{"Key":"a","WithPrefix":true},"Responses":[
            {"Events":[{"Type":"put-operation","Key":"a","Revision":2,"IsCreate":true}]},
            {"Events":[{"Type":"put-operation","Key":"b","Revision":3,"IsCreate":true},
                       {"Type":"put-operation","Key":"a","Revision":3}]},
            {"Events":[{"Type":"delete-operation","Key":"a","Revision":4}]},
            {"Events":[{"Type":"put-operation","Key":"a","Revision":5,"IsCreate":true}]},
            {"Events":[{"Type":"put-operation","Key":"a","Revision":6}]}]}"#,
        ));
        assert_eq!(k.create_revision("a", 3, 2), Some(2));
        assert_eq!(k.create_revision("a", 3, 3), None, "wrong version");
        assert_eq!(k.create_revision("a", 6, 2), Some(5));
        assert_eq!(k.create_revision("b", 3, 1), Some(3));
        assert_eq!(k.create_revision("c", 9, 4), None, "never watched");
    }

    #[test]
    fn a_put_whose_creation_was_not_delivered_stays_unknown() {
        let mut k = Known::default();
        k.add_watch(&watch(
            r#"{"Request":{"Key":"a"},"Responses":[
            {"Events":[{"Type":"put-operation","Key":"a","Revision":7}]},
            {"Events":[{"Type":"put-operation","Key":"a","Revision":8}]}]}"#,
        ));
        assert_eq!(k.create_revision("a", 8, 5), None);
    }
}
