//! Tests of the etcd timeline: model states for OK, Illegal and Unknown verdicts, read
//! back from the page's embedded data.

use super::*;
use crate::etcd::check;
use crate::report::{embedded_data, html};

/// The embedded data of the page for `h` checked with `opts`.
fn page_data(h: &History, opts: &Options) -> (Verdict, serde_json::Value) {
    let v = check(h, opts);
    let page = html(&timeline("t", h, &v, opts));
    (v, embedded_data(&page).expect("embedded data parses"))
}

fn text(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
fn ok_history_shows_model_state_before_and_after_a_put() {
    let text = concat!(
        r#"{"type":"op","client":1,"call":1,"ret":2,"op":{"put":{"key":"a","value":"1"}},"outcome":{"ok":{"revision":2,"result":{"put":{}}}}}"#,
        "\n",
        r#"{"type":"op","client":1,"call":3,"ret":4,"op":{"put":{"key":"a","value":"2"}},"outcome":{"ok":{"revision":3,"result":{"put":{}}}}}"#,
        "\n",
    );
    let h = History::parse(text).expect("parses");
    let t = timeline("t", &h, &Verdict::Ok, &Options::default());
    let second = &t.ops[1];
    assert_eq!(
        second.state_before.as_deref(),
        Some("revision 2: a=1 (version 1, created 2, modified 2)")
    );
    assert_eq!(
        second.state_after.as_deref(),
        Some("revision 3: a=2 (version 2, created 2, modified 3)")
    );
}

#[test]
fn illegal_history_shows_the_state_the_failing_read_was_checked_against() {
    let text_in = concat!(
        r#"{"type":"op","client":1,"call":1,"ret":2,"op":{"put":{"key":"a","value":"1"}},"outcome":{"ok":{"revision":2,"result":{"put":{}}}}}"#,
        "\n",
        r#"{"type":"op","client":1,"call":3,"ret":4,"op":{"put":{"key":"a","value":"2"}},"outcome":{"ok":{"revision":3,"result":{"put":{}}}}}"#,
        "\n",
        r#"{"type":"op","client":2,"call":5,"ret":6,"op":{"range":{"key":"a"}},"outcome":{"ok":{"revision":3,"result":{"range":{"kvs":[{"key":"a","value":"1","create_revision":2,"mod_revision":2,"version":1}],"count":1}}}}}"#,
        "\n",
    );
    let h = History::parse(text_in).expect("parses");
    let (v, d) = page_data(&h, &Options::default());
    assert_eq!(v.exit_code(), 1, "{v:?}");
    assert_eq!(d["verdict"], "Illegal");
    assert!(
        !text(&d["note"]).is_empty(),
        "the note says where states come from"
    );
    let ops = d["ops"].as_array().expect("ops");
    assert_eq!(ops.len(), h.ops.len());
    // The read's revision and what the history says the writer of it put there.
    let (Outcome::Ok(read), Op::Range(q)) = (&h.ops[2].rec.outcome, &h.ops[2].rec.op) else {
        panic!("op 2 is an acknowledged range");
    };
    let writer = h
        .ops
        .iter()
        .find(|o| {
            matches!(&o.rec.outcome, Outcome::Ok(ok) if ok.revision == read.revision
            && matches!(o.rec.op, Op::Put(_)))
        })
        .expect("writer of the read's revision");
    let Op::Put(w) = &writer.rec.op else {
        panic!("a put");
    };
    let failing = &ops[2];
    assert_eq!(failing["highlighted"], true);
    let before = text(&failing["state_before"]);
    assert!(
        before.starts_with(&format!(
            "revision {}: {}={}",
            read.revision, q.key, w.value
        )),
        "{before}"
    );
    let failure = text(&failing["failure"]);
    let field = |name: &str| -> serde_json::Value {
        let line = failure
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {failure}"));
        serde_json::from_str(line).expect("json")
    };
    let expected = field("expected (model): ");
    assert_eq!(expected["range"]["kvs"][0]["value"], w.value.as_str());
    let observed = field("observed (history): ");
    assert_eq!(observed, serde_json::to_value(&read.result).expect("json"));
    // Every op before the failure carries its states.
    for (o, e) in ops.iter().zip(&h.ops).take(2) {
        let Op::Put(p) = &e.rec.op else { continue };
        let after = text(&o["state_after"]);
        assert!(after.contains(&format!("{}={}", p.key, p.value)), "{after}");
    }
}

#[test]
fn unknown_verdict_shows_states_up_to_the_deepest_failure() {
    let h = History::parse(include_str!(
        "../../tests/histories/ok_majority_partition_seed16.jsonl"
    ))
    .expect("parses");
    let opts = Options {
        step_budget: 30,
        ..Options::default()
    };
    let (v, d) = page_data(&h, &opts);
    assert_eq!(v.exit_code(), 2, "{v:?}");
    assert_eq!(d["verdict"], "Unknown");
    assert!(text(&d["note"]).contains("replayed up to revision"));
    let ops = d["ops"].as_array().expect("ops");
    let mut with_state = 0;
    for (o, e) in ops.iter().zip(&h.ops) {
        // A put's state after it shows its own key and value.
        if let (Op::Put(p), Some(after)) = (&e.rec.op, o["state_after"].as_str()) {
            with_state += 1;
            assert!(after.contains(&format!("{}={}", p.key, p.value)), "{after}");
        }
    }
    assert!(with_state >= 10, "only {with_state} puts carry states");
    let failing: Vec<_> = ops.iter().filter(|o| o["highlighted"] == true).collect();
    assert!(
        !failing.is_empty(),
        "the op the replay stopped at is highlighted"
    );
    for o in failing {
        assert!(!text(&o["failure"]).is_empty(), "{o}");
        assert!(o["state_before"].is_string(), "{o}");
    }
}
