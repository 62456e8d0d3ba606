//! The CLI's contract: exit codes 0 OK, 1 Illegal, 2 Unknown, 3 bad input; `--json`
//! output; `--help` naming every format and model; the HTML report written.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_detcd-check"))
        .args(args)
        .output()
        .expect("run detcd-check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exit_codes_and_outputs() {
    let (code, out, _) = run(&["examples/etcd-ok.jsonl"]);
    assert_eq!((code, out.trim()), (0, "OK"));

    let (code, out, _) = run(&["--json", "examples/etcd-stale-read.jsonl"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["verdict"], "illegal");
    assert_eq!(v["property"], "real_time");
    assert!(v["sub_history"].as_array().is_some_and(|a| !a.is_empty()));

    // A budget of one step cannot resolve the unknown-outcome write.
    let (code, out, _) = run(&[
        "--step-budget",
        "1",
        "tests/histories/ok_unknown_write_resolved.jsonl",
    ]);
    assert_eq!(code, 2, "{out}");

    let dir = std::env::temp_dir().join(format!("detcd-check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "# comment\n{\"type\":\"op\",\"client\":1}\n").expect("write");
    let (code, _, err) = run(&[bad.to_str().expect("utf8")]);
    assert_eq!(code, 3);
    assert!(err.contains("line 2"), "{err}");

    let html = dir.join("r.html");
    let (code, _, _) = run(&[
        "--html",
        html.to_str().expect("utf8"),
        "examples/etcd-stale-read.jsonl",
    ]);
    assert_eq!(code, 1);
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.contains("<html") && page.contains("real_time"));

    // An Unknown verdict's report shows states up to where the search got, and the op
    // it stopped at with what it was checked against.
    let (code, _, _) = run(&[
        "--step-budget",
        "30",
        "--html",
        html.to_str().expect("utf8"),
        "tests/histories/ok_majority_partition_seed16.jsonl",
    ]);
    assert_eq!(code, 2);
    let page = std::fs::read_to_string(&html).expect("html written");
    let d = detcd_checker::report::embedded_data(&page).expect("embedded data");
    assert_eq!(d["verdict"], "Unknown");
    let ops = d["ops"].as_array().expect("ops");
    let states = ops.iter().filter(|o| o["state_after"].is_string()).count();
    assert!(states > 0, "no op carries a state");
    let failing: Vec<_> = ops.iter().filter(|o| o["highlighted"] == true).collect();
    assert!(!failing.is_empty());
    assert!(
        failing.iter().all(|o| o["failure"].is_string()),
        "{failing:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_documents_every_format_and_model() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for word in [
        "detcd",
        "jepsen",
        "etcd",
        "register",
        "cas-register",
        "kv",
        "watch_events",
        "watch_progress",
        "watch_cancel",
        "lease_grant",
        "txn",
        "compact",
        "EXIT CODES",
        "etcd-robustness",
        "operations.json",
        "watch.json",
    ] {
        assert!(out.contains(word), "--help lacks {word}");
    }
}

#[test]
fn robustness_reports_exit_codes() {
    let (code, out, _) = run(&["--format", "etcd-robustness", "examples/robustness-ok"]);
    assert_eq!((code, out.trim()), (0, "OK"));

    let (code, out, _) = run(&[
        "--format",
        "etcd-robustness",
        "examples/robustness-stale-read",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("real_time"), "{out}");
    assert!(out.contains("client-1/operations.json:4"), "{out}");

    let dir = std::env::temp_dir().join(format!("detcd-check-robustness-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("client-4")).expect("tmp");
    std::fs::write(dir.join("client-4/watch.json"), "{\"Request\": [}\n").expect("write");
    let (code, _, err) = run(&["--format", "etcd-robustness", dir.to_str().expect("utf8")]);
    assert_eq!(code, 3);
    assert!(err.contains("client-4/watch.json:1: bad JSON"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
