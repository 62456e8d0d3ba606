use super::edn::{Edn, parse_all};
use super::*;
use crate::models::{CasRegister, Kv, Register};
use crate::wgl::{Outcome, check_partitioned};

const BUDGET: u64 = 1_000_000;

fn kw(s: &str) -> Edn {
    Edn::Keyword(s.into())
}

#[test]
fn edn_reads_the_forms_jepsen_uses() {
    let text = r#"
; a comment
{:process 0, :type :invoke, :f :read, :value nil :ok? true :neg -3 :big 12N}
[1 2.5 "s\"x\n" \a (:l) #{:x} #_ :gone #inst "2020-01-01" sym]
#jepsen.history.Op{:index 0}
"#;
    let forms = parse_all(text, false).expect("parses");
    assert_eq!(forms.len(), 3);
    assert_eq!(forms[0].0, 3);
    let op = &forms[0].1;
    assert_eq!(op.get("process"), Some(&Edn::Int(0)));
    assert_eq!(op.get("type"), Some(&kw("invoke")));
    assert_eq!(op.get("value"), Some(&Edn::Nil));
    assert_eq!(op.get("ok?"), Some(&Edn::Bool(true)));
    assert_eq!(op.get("neg"), Some(&Edn::Int(-3)));
    assert_eq!(op.get("big"), Some(&Edn::Int(12)));
    let Edn::Vector(items) = &forms[1].1 else {
        panic!("not a vector: {:?}", forms[1].1);
    };
    assert_eq!(
        items,
        &vec![
            Edn::Int(1),
            Edn::Float(2.5),
            Edn::Str("s\"x\n".into()),
            Edn::Char('a'),
            Edn::List(vec![kw("l")]),
            Edn::Set(vec![kw("x")]),
            Edn::Tagged("inst".into(), Box::new(Edn::Str("2020-01-01".into()))),
            Edn::Symbol("sym".into()),
        ]
    );
    assert_eq!(forms[2].1.get("index"), Some(&Edn::Int(0)));
}

#[test]
fn edn_errors_name_the_line() {
    let cases = [
        ("{:a 1}\n{:b \"open\n\n", 2, "unterminated string"),
        ("{:a 1}\n\n[1 2", 3, "missing ']'"),
        ("{:a}\n", 1, "odd number"),
        ("\n\n)", 3, "unexpected ')'"),
        ("\n12abc", 2, "bad number"),
        ("\n#\"re\"", 2, "unsupported dispatch"),
    ];
    for (text, line, reason) in cases {
        let err = parse_all(text, false).expect_err(text);
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(err.reason.contains(reason), "{text:?}: {err}");
    }
    let deep = "[".repeat(10_000);
    let err = parse_all(&deep, false).expect_err("too deep");
    assert!(err.reason.contains("nesting"), "{err}");
}

const CAS_OK: &str = r#"{:process 0, :type :invoke, :f :write, :value 1, :time 10}
{:process 0, :type :ok, :f :write, :value 1, :time 20}
{:process 1, :type :invoke, :f :cas, :value [1 2], :time 30}
{:process 2, :type :invoke, :f :read, :value nil, :time 31}
{:process 1, :type :ok, :f :cas, :value [1 2], :time 40}
{:process 2, :type :ok, :f :read, :value 2, :time 41}
{:process 3, :type :invoke, :f :write, :value 9, :time 50}
{:process 3, :type :fail, :f :write, :value 9, :time 51}
{:process 4, :type :invoke, :f :write, :value 7, :time 52}
{:process 4, :type :info, :f :write, :value 7, :time 60}
{:process :nemesis, :type :info, :f :start, :value nil, :time 61}
{:process 5, :type :invoke, :f :read, :value nil, :time 70}
"#;

#[test]
fn import_pairs_invocations_and_completions() {
    let ops = import_register(CAS_OK, true).expect("imports");
    // The failed write is dropped, the nemesis skipped; info and the open read unknown.
    assert_eq!(ops.len(), 5);
    assert_eq!(ops[0].input, Keyed::single(RegisterOp::Write(1)));
    assert_eq!((ops[0].call, ops[0].ret), (10, Some(20)));
    assert_eq!(ops[0].line, Some(1));
    assert_eq!(ops[1].input.op, RegisterOp::Cas { from: 1, to: 2 });
    assert_eq!(ops[1].output, Some(RegisterOutput::Cas(true)));
    assert_eq!(ops[2].output, Some(RegisterOutput::Read(Some(2))));
    assert_eq!(
        (ops[3].client, ops[3].ret, &ops[3].output),
        (4, None, &None)
    );
    assert_eq!((ops[4].client, ops[4].ret), (5, None));
    assert_eq!(check_partitioned(&CasRegister, &ops, BUDGET), Outcome::Ok);
}

#[test]
fn import_detects_a_bad_history() {
    // The read of 1 after the cas to 2 completed is stale.
    let bad = CAS_OK.replace(
        "{:process 5, :type :invoke, :f :read, :value nil, :time 70}",
        "{:process 5, :type :invoke, :f :read, :value nil, :time 70}\n\
         {:process 5, :type :ok, :f :read, :value 1, :time 71}",
    );
    let ops = import_register(&bad, true).expect("imports");
    let Outcome::Illegal { failing, .. } = check_partitioned(&CasRegister, &ops, BUDGET) else {
        panic!("stale read accepted");
    };
    assert_eq!(ops[failing[0]].line, Some(12));
}

#[test]
fn import_uses_line_order_without_times_and_a_top_level_vector() {
    let text = "[{:process 0, :type :invoke, :f :write, :value 1}\n\
                {:process 0, :type :ok, :f :write, :value 1}\n\
                {:process 1, :type :invoke, :f :read, :value nil}\n\
                {:process 1, :type :ok, :f :read, :value nil}]";
    let ops = import_register(text, false).expect("imports");
    assert_eq!(ops[1].line, Some(3));
    assert_eq!((ops[1].call, ops[1].ret), (2, Some(3)));
    // The read of nil comes after the write returned: a lost write.
    assert!(matches!(
        check_partitioned(&Register, &ops, BUDGET),
        Outcome::Illegal { .. }
    ));
}

#[test]
fn import_reads_independent_keys() {
    let text = r#"{:process 0, :type :invoke, :f :write, :value [:a 1]}
{:process 1, :type :invoke, :f :cas, :value [:b [5 6]]}
{:process 0, :type :ok, :f :write, :value [:a 1]}
{:process 1, :type :info, :f :cas, :value [:b [5 6]]}
{:process 2, :type :invoke, :f :read, :value [:a nil]}
{:process 2, :type :ok, :f :read, :value [:a 1]}
{:process 3, :type :invoke, :f :read, :value [:b nil], :key "ignored-by-tuple?"}
"#;
    let ops = import_register(text, true).expect("imports");
    assert_eq!(ops[0].input.key, b":a".to_vec());
    assert_eq!(ops[1].input.key, b":b".to_vec());
    assert_eq!(ops[1].input.op, RegisterOp::Cas { from: 5, to: 6 });
    assert_eq!(ops[2].output, Some(RegisterOutput::Read(Some(1))));
    // An explicit :key wins over the tuple.
    assert_eq!(ops[3].input.key, b"\"ignored-by-tuple?\"".to_vec());
    assert_eq!(check_partitioned(&CasRegister, &ops, BUDGET), Outcome::Ok);
}

#[test]
fn import_reads_kv_and_list_append() {
    let text = r#"{:process 0, :type :invoke, :f :txn, :value [[:append 3 1]]}
{:process 0, :type :ok, :f :txn, :value [[:append 3 1]]}
{:process 1, :type :invoke, :f :append, :key 3, :value 2}
{:process 1, :type :ok, :f :append, :key 3, :value 2}
{:process 2, :type :invoke, :f :txn, :value [[:r 3 nil]]}
{:process 2, :type :ok, :f :txn, :value [[:r 3 [1 2]]]}
{:process 3, :type :invoke, :f :get, :key 4, :value nil}
{:process 3, :type :ok, :f :get, :key 4, :value nil}
"#;
    let ops = import_kv(text).expect("imports");
    assert_eq!(
        ops[0].input,
        Keyed {
            key: b"3".to_vec(),
            op: KvOp::Append(1)
        }
    );
    assert_eq!(ops[2].output, Some(KvOutput::Get(vec![1, 2])));
    assert_eq!(check_partitioned(&Kv, &ops, BUDGET), Outcome::Ok);
    let reordered = text.replace("[[:r 3 [1 2]]]", "[[:r 3 [2 1]]]");
    let ops = import_kv(&reordered).expect("imports");
    assert!(matches!(
        check_partitioned(&Kv, &ops, BUDGET),
        Outcome::Illegal { .. }
    ));
}

#[test]
fn import_errors_name_the_line() {
    let cases: [(&str, bool, usize, &str); 7] = [
        (
            "{:process 0, :type :invoke, :f :read}\n{:process 0, :type :invoke, :f :read}",
            true,
            2,
            "invokes again",
        ),
        (
            "{:process 0, :type :ok, :f :read, :value 1}",
            true,
            1,
            "without an invocation",
        ),
        (
            "{:process 0, :type :invoke, :f :read}\n{:process 0, :type :bogus, :f :read}",
            true,
            2,
            "unknown :type",
        ),
        (
            "\n\n{:process 0, :type :invoke, :f :write, :value \"x\"}",
            true,
            3,
            "integer",
        ),
        (
            "{:process 0, :type :invoke, :f :cas, :value [1 2]}",
            false,
            1,
            "cas in a register",
        ),
        ("{:type :invoke, :f :read}", true, 1, "without :process"),
        ("[1 2]\n", true, 1, "expected an operation map"),
    ];
    for (text, cas, line, reason) in cases {
        let err = import_register(text, cas).expect_err(text);
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(err.reason.contains(reason), "{text:?}: {err}");
    }
    let err = import_kv("{:process 0, :type :invoke, :f :txn, :value [[:r 1 nil] [:r 2 nil]]}")
        .expect_err("multi-op txn");
    assert!(err.reason.contains("micro-operations"), "{err}");
    let err =
        import_kv("{:process 0 :type :invoke :f :get :value nil}\n{:process 0").expect_err("eof");
    assert_eq!(err.line, 2, "{err}");
}

#[test]
fn written_histories_import_back_to_the_same_operations() {
    use crate::models::generate::{GenConfig, register_history};
    for keys in [1, 3] {
        let cfg = GenConfig {
            keys,
            ..GenConfig::new(11, 300, 4, 30)
        };
        let ops = register_history(&cfg, true);
        let text = write_register(&ops);
        let back = import_register(&text, true).expect("imports its own output");
        assert_eq!(back.len(), ops.len());
        let strip = |o: &crate::wgl::Operation<Keyed<RegisterOp>, RegisterOutput>| {
            (o.client, o.call, o.ret, o.input.clone(), o.output.clone())
        };
        let mut a: Vec<_> = ops.iter().map(strip).collect();
        let mut b: Vec<_> = back.iter().map(strip).collect();
        a.sort_by_key(|x| (x.1, x.0));
        b.sort_by_key(|x| (x.1, x.0));
        assert_eq!(a, b);
        assert_eq!(check_partitioned(&CasRegister, &back, BUDGET), Outcome::Ok);
    }
}

const RECORD_SAMPLE: &str = include_str!("testdata/etcd-register.edn");

#[test]
fn jepsen_record_syntax_sample_imports_and_checks() {
    let ops = import_register(RECORD_SAMPLE, true).expect("imports");
    // 8 client operations, of which the failed cas is dropped.
    assert_eq!(ops.len(), 7);
    let timed_out = ops
        .iter()
        .find(|o| o.output.is_none())
        .expect("the :info cas");
    assert_eq!(timed_out.input.op, RegisterOp::Cas { from: 3, to: 4 });
    assert_eq!(timed_out.line, Some(8));
    assert_eq!(ops[0].call, 11_700_000);
    // The read of 4 needs the timed-out cas to have happened.
    assert_eq!(check_partitioned(&CasRegister, &ops, BUDGET), Outcome::Ok);
    // A final read of 4 after the write of 5 returned is stale.
    let stale = RECORD_SAMPLE.replace(
        ":index 16, :time 5400300000, :type :ok, :process 7, :f :read, :value [7 5]",
        ":index 16, :time 5400300000, :type :ok, :process 7, :f :read, :value [7 4]",
    );
    assert_ne!(stale, RECORD_SAMPLE);
    let ops = import_register(&stale, true).expect("imports");
    let Outcome::Illegal { failing, .. } = check_partitioned(&CasRegister, &ops, BUDGET) else {
        panic!("stale read accepted");
    };
    assert_eq!(ops[failing[0]].line, Some(18));
}

#[test]
fn check_jepsen_gives_verdict_lines_and_timeline() {
    assert_eq!("cas-register".parse(), Ok(JepsenModel::CasRegister));
    assert!("queue".parse::<JepsenModel>().is_err());
    let ok = check_jepsen("sample", RECORD_SAMPLE, JepsenModel::CasRegister, BUDGET).expect("ok");
    assert_eq!((ok.outcome.verdict(), ok.operations), ("OK", 7));
    assert!(ok.failing_lines.is_empty());
    let stale = RECORD_SAMPLE.replace(
        ":index 16, :time 5400300000, :type :ok, :process 7, :f :read, :value [7 5]",
        ":index 16, :time 5400300000, :type :ok, :process 7, :f :read, :value [7 4]",
    );
    let bad = check_jepsen("sample", &stale, JepsenModel::CasRegister, BUDGET).expect("ok");
    assert_eq!(bad.outcome.verdict(), "Illegal");
    assert_eq!(bad.failing_lines.first(), Some(&18));
    let hot = bad
        .timeline
        .ops
        .iter()
        .find(|o| o.highlighted)
        .expect("highlighted");
    assert_eq!(hot.label, "7 read -> 4");
    assert_eq!(hot.state_before.as_deref(), Some("7 = 5"));
    // A cas in a plain register history is bad input, with its line.
    let err = check_jepsen("s", RECORD_SAMPLE, JepsenModel::Register, BUDGET).expect_err("cas");
    assert_eq!(err.line, 8);
}
