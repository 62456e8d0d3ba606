//! Script-driven checks: every file in `tests/histories/` and `examples/` holds
//! `# expect: <property>` (or `# expect: ok`) and must get exactly that verdict. There is
//! one known-bad history per property; the shrunk sub-history of each must fail the
//! same way on its own.

use std::path::Path;

use detcd_checker::etcd::{self, Options};
use detcd_checker::history::History;
use detcd_checker::shrink::shrink;
use detcd_checker::{Property, Verdict};

fn expected(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("history lacks an '# expect:' line"))
}

#[test]
fn every_history_gets_its_expected_verdict() {
    let root = Path::new(".");
    let mut names: Vec<_> = ["tests/histories", "examples"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).expect("histories dir"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    names.sort();
    let mut bad_properties = std::collections::BTreeSet::new();
    for path in &names {
        let text = std::fs::read_to_string(path).expect("read");
        let want = expected(&text);
        let h = History::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let v = etcd::check(&h, &Options::default());
        let got = match &v {
            Verdict::Ok => "ok".to_owned(),
            Verdict::Illegal(x) => x.property.to_string(),
            Verdict::Unknown { reason } => format!("unknown ({reason})"),
        };
        assert_eq!(got, want, "{}: {v:?}", path.display());
        if let Verdict::Illegal(x) = &v {
            bad_properties.insert(x.property);
            let sub = shrink(&h, x, &Options::default());
            assert!(
                sub.reproduces,
                "{}: shrinking lost the failure",
                path.display()
            );
            assert!(sub.history.ops.len() <= h.ops.len());
            let again = etcd::check(
                &sub.history,
                &Options {
                    allow_gaps: sub.needs_gaps,
                    ..Options::default()
                },
            );
            assert_eq!(
                again.property(),
                Some(x.property),
                "{}: shrunk {again:?}",
                path.display()
            );
        }
    }
    // One known-bad history for every property the etcd checker reports.
    let all = [
        Property::DuplicateRevision,
        Property::UnexplainedRevision,
        Property::Result,
        Property::RealTime,
        Property::Compaction,
        Property::Lease,
        Property::WatchOrder,
        Property::WatchDuplicate,
        Property::WatchAtomic,
        Property::WatchReliable,
        Property::WatchFilter,
        Property::WatchEvent,
        Property::WatchPrevKv,
        Property::WatchProgress,
        Property::WatchCompaction,
    ];
    for p in all {
        assert!(bad_properties.contains(&p), "no known-bad history for {p}");
    }
}
