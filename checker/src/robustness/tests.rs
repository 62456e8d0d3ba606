use std::path::{Path, PathBuf};

use super::*;
use crate::etcd::{self, Options};
use crate::history::{Op, Outcome};
use crate::verdict::{Property, Verdict};

fn example(name: &str) -> PathBuf {
    // Relative to the package directory, where the test runner starts every test: a
    // binary reused from a build in another clone still has that clone's
    // CARGO_MANIFEST_DIR compiled in.
    Path::new("examples").join(name)
}

fn check(h: &History) -> Verdict {
    etcd::check(h, &Options::default())
}

fn one_client(ops: &str, watch: Option<&str>) -> Result<Imported, RobustnessError> {
    import(&[ClientFiles {
        client: 1,
        dir: PathBuf::from("client-1"),
        operations: Some(ops.into()),
        watch: watch.map(Into::into),
    }])
}

#[test]
fn example_report_is_ok() {
    let imp = import_dir(&example("robustness-ok")).expect("imports");
    let h = &imp.history;
    assert_eq!(h.ops.len(), 9);
    assert_eq!(h.watches.len(), 1);
    assert_eq!(h.watches[0].responses.len(), 5);
    // The timed-out put is unknown, without a return time.
    let unknown: Vec<_> = h
        .ops
        .iter()
        .filter(|o| o.rec.outcome == Outcome::Unknown)
        .collect();
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].rec.ret, None);
    // The read of key0 at version 2 is judged: the watch saw key0 created at 2.
    let read = h
        .ops
        .iter()
        .find(|o| o.rec.call == 905)
        .expect("the version-2 read");
    let Outcome::Ok(ok) = &read.rec.outcome else {
        panic!("version-2 read not judged: {read:?}");
    };
    let crate::history::OpResult::Range(r) = &ok.result else {
        panic!("not a range result");
    };
    assert_eq!(r.kvs[0].create_revision, 2);
    assert_eq!(check(h), Verdict::Ok);
    assert_eq!(imp.source(1), Some("client-1/operations.json:1"));
}

/// The example report with `edit` applied to client 2's operations file.
fn example_with_ops2(edit: impl Fn(&str) -> String) -> Imported {
    let dir = example("robustness-ok");
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).expect("example file");
    import(&[
        ClientFiles {
            client: 1,
            dir: "client-1".into(),
            operations: Some(read("client-1/operations.json")),
            watch: Some(read("client-1/watch.json")),
        },
        ClientFiles {
            client: 2,
            dir: "client-2".into(),
            operations: Some(edit(&read("client-2/operations.json"))),
            watch: None,
        },
    ])
    .expect("imports")
}

#[test]
fn a_read_with_a_create_revision_from_the_watch_is_judged() {
    let from = r#""Value":{"Value":"b"},"ModRevision":4,"Version":2"#;
    let wrong = example_with_ops2(|t| {
        assert!(t.contains(from));
        t.replace(from, r#""Value":{"Value":"x"},"ModRevision":4,"Version":2"#)
    });
    let Verdict::Illegal(v) = check(&wrong.history) else {
        panic!("the wrong value at version 2 was not found");
    };
    assert_eq!(v.property, Property::Result, "{}", v.message);
    // A version no watched creation fits leaves the read unjudged, not Illegal.
    let unfit = example_with_ops2(|t| {
        t.replace(from, r#""Value":{"Value":"x"},"ModRevision":4,"Version":3"#)
    });
    assert_eq!(check(&unfit.history), Verdict::Ok);
    assert!(
        unfit
            .history
            .ops
            .iter()
            .any(|o| o.rec.call == 905 && o.rec.outcome == Outcome::Unknown)
    );
}

#[test]
fn mutated_example_is_illegal_and_names_the_report_line() {
    let imp = import_dir(&example("robustness-stale-read")).expect("imports");
    let Verdict::Illegal(v) = check(&imp.history) else {
        panic!("the stale read was not found");
    };
    assert_eq!(v.property, Property::RealTime, "{}", v.message);
    let named: Vec<_> = v.lines.iter().filter_map(|l| imp.source(*l)).collect();
    assert!(
        named.contains(&"client-1/operations.json:4"),
        "lines {:?} name {named:?}",
        v.lines
    );
}

/// The example report with `edit` applied to client 1's watch file.
fn example_with_watch(edit: impl Fn(&str) -> String) -> Imported {
    let dir = example("robustness-ok");
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).expect("example file");
    import(&[
        ClientFiles {
            client: 1,
            dir: "client-1".into(),
            operations: Some(read("client-1/operations.json")),
            watch: Some(edit(&read("client-1/watch.json"))),
        },
        ClientFiles {
            client: 2,
            dir: "client-2".into(),
            operations: Some(read("client-2/operations.json")),
            watch: None,
        },
    ])
    .expect("imports")
}

#[test]
fn a_wrong_watch_value_or_is_create_is_illegal() {
    let edits: [(&str, &str); 3] = [
        (r#""Value":{"Value":"b"}"#, r#""Value":{"Value":"z"}"#),
        (
            r#""Revision":4,"IsCreate":false"#,
            r#""Revision":4,"IsCreate":true"#,
        ),
        (
            r#""Hash":3735928559},"Revision":3"#,
            r#""Hash":1},"Revision":3"#,
        ),
    ];
    for (from, to) in edits {
        let imp = example_with_watch(|t| {
            assert!(t.contains(from), "example lacks {from}");
            t.replace(from, to)
        });
        let Verdict::Illegal(v) = check(&imp.history) else {
            panic!("{to}: the wrong watch event was not found");
        };
        assert_eq!(v.property, Property::WatchEvent, "{to}: {}", v.message);
    }
    // Unchanged, the same import is OK: the edits alone make it Illegal.
    assert_eq!(
        check(&example_with_watch(str::to_string).history),
        Verdict::Ok
    );
}

proptest::proptest! {
    /// A hashed value never reads as a plain one: plain values are under 20 bytes.
    #[test]
    fn hashed_and_plain_values_never_collide(plain in "[ -~]{0,19}", hash in 1u32..) {
        let h = convert::value_text(&Some(format::ValueOrHash { value: String::new(), hash }));
        let p = convert::value_text(&Some(format::ValueOrHash { value: plain.clone(), hash: 0 }));
        proptest::prop_assert_eq!(&p, &plain);
        proptest::prop_assert_ne!(h, p);
    }
}

#[test]
fn bad_json_names_file_and_line() {
    let ops = "{\"ClientId\":1,\"Input\":{\"Type\":\"range\"}}\n{\"ClientId\": oops}\n";
    let err = one_client(ops, None).expect_err("bad JSON is refused");
    let RobustnessError::Record { file, line, reason } = &err else {
        panic!("wrong error {err:?}");
    };
    assert_eq!(file, Path::new("client-1/operations.json"));
    assert_eq!(*line, 2);
    assert!(reason.contains("bad JSON"), "{reason}");
    assert!(
        err.to_string().starts_with("client-1/operations.json:2: "),
        "{err}"
    );
}

#[test]
fn bad_watch_json_names_the_watch_file() {
    let err = one_client("", Some("{\"Request\":")).expect_err("truncated watch file");
    let RobustnessError::Record { file, .. } = &err else {
        panic!("wrong error {err:?}");
    };
    assert_eq!(file, Path::new("client-1/watch.json"));
}

#[test]
fn records_that_make_no_sense_are_refused() {
    let cases = [
        (
            r#"{"Input":{"Type":"range","Range":{"Start":"a"}},"Call":1}"#,
            "without Output",
        ),
        (
            r#"{"Input":{"Type":"bogus"},"Call":1,"Output":{}}"#,
            "unknown request type",
        ),
        (
            r#"{"Input":{"Type":"range","Range":{"Start":"a"}},"Call":5,"Output":{"Range":{}},"Return":4}"#,
            "before Call",
        ),
        (
            r#"{"Input":{"Type":"txn"},"Call":1,"Output":{}}"#,
            "without Txn",
        ),
        (
            r#"{"Input":{"Type":"txn","Txn":{"OperationsOnSuccess":[{"Type":"put-operation","Put":{"Key":"a"}}]}},"Call":1,"Output":{"Txn":{"Results":[]},"Revision":2},"Return":2}"#,
            "1 operations but 0 results",
        ),
    ];
    for (text, want) in cases {
        let err = one_client(text, None).expect_err(text);
        assert!(err.to_string().contains(want), "{text}: {err}");
        assert!(err.to_string().contains(":1: "), "{err}");
    }
}

#[test]
fn unjudgeable_responses_become_unknown() {
    let ops = [
        // Version 2: the create revision is not in the report.
        r#"{"Input":{"Type":"range","Range":{"Start":"a"}},"Call":1,"Output":{"Range":{"KVs":[{"Key":"a","ModRevision":3,"Version":2}],"Count":1},"Revision":3},"Return":2}"#,
        // Not linearizable: no revision.
        r#"{"Input":{"Type":"range","Range":{"Start":"a"}},"Call":3,"Output":{"Range":{},"Revision":-1},"Return":4}"#,
        // Persisted without an answer.
        r#"{"Input":{"Type":"txn","Txn":{}},"Call":5,"Output":{"Persisted":true,"PersistedRevision":4},"Return":6}"#,
    ]
    .join("\n");
    let imp = one_client(&ops, None).expect("imports");
    assert_eq!(imp.history.ops.len(), 3);
    for o in &imp.history.ops {
        assert_eq!(o.rec.outcome, Outcome::Unknown, "{o:?}");
        assert_eq!(o.rec.ret, None);
    }
}

#[test]
fn reads_of_leased_keys_are_not_judged_and_server_errors_fail() {
    let ops = [
        r#"{"Input":{"Type":"txn","Txn":{"OperationsOnSuccess":[{"Type":"put-operation","Put":{"Key":"a","Value":{"Value":"1"},"LeaseID":7}}]}},"Call":1,"Output":{"Txn":{"Results":[{}]},"Revision":2},"Return":2}"#,
        r#"{"Input":{"Type":"range","Range":{"Start":"a"}},"Call":3,"Output":{"Range":{"KVs":[{"Key":"a","Value":{"Value":"1"},"ModRevision":2,"Version":1}],"Count":1},"Revision":2},"Return":4}"#,
        r#"{"Input":{"Type":"compact","Compact":{"Revision":9}},"Call":5,"Output":{"ClientError":"etcdserver: mvcc: required revision is a future revision"},"Return":6}"#,
        r#"{"Input":{"Type":"defragment","Defragment":{}},"Call":7,"Output":{"Defragment":{}},"Return":8}"#,
    ]
    .join("\n");
    let imp = one_client(&ops, None).expect("imports");
    let h = &imp.history;
    assert_eq!(h.ops.len(), 3, "defragment is left out");
    assert!(matches!(h.ops[0].rec.op, Op::Txn(_)));
    assert!(matches!(h.ops[0].rec.outcome, Outcome::Ok(_)));
    assert_eq!(h.ops[1].rec.outcome, Outcome::Unknown);
    assert!(matches!(&h.ops[2].rec.outcome, Outcome::Fail(m) if m.contains("future")));
}
