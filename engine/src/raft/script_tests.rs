//! Interaction tests that read like scripts: `engine/testdata/raft/*.txt` hold commands
//! (`campaign 1`, `deliver-msgs`, `propose 1 foo`, `partition 1 / 2 3`, `status`, ...),
//! each followed by `----` and the expected output, blocks separated by blank lines.
//! This interpreter replays them on the model cluster and diffs the output; run with
//! `REWRITE=1` to regenerate the expectations (then read the diff before committing).
//!
//! A script fails if the cluster records a safety violation, unless its first line is
//! `# expect-violation` (used for the known-bad scripts, which must then show one).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::harness::{Cluster, describe, describe_data};
use super::{BugSwitches, ConfChange, ConfChangeKind, ConfState, Config, EntryKind, NodeId};

/// Interpreter state for one script.
struct Interp {
    cluster: Option<Cluster>,
    base: Config,
}

fn parse_id(s: &str) -> Result<NodeId, String> {
    s.parse().map_err(|_| format!("bad node id {s:?}"))
}

impl Interp {
    fn new() -> Self {
        Interp {
            cluster: None,
            base: Config::new(1),
        }
    }

    fn cluster(&mut self) -> Result<&mut Cluster, String> {
        self.cluster
            .as_mut()
            .ok_or_else(|| "no cluster yet (use `cluster 1 2 3`)".to_string())
    }

    fn config(&self, id: NodeId) -> Config {
        Config {
            id,
            seed: id,
            ..self.base.clone()
        }
    }

    fn run(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (cmd, args) = words.split_first().ok_or("empty command")?;
        let mut out = String::new();
        match *cmd {
            "cluster" => {
                let mut ids = Vec::new();
                let mut read_heartbeats_auto = true;
                for a in args {
                    match a.split_once('=') {
                        Some(("pre-vote", v)) => self.base.pre_vote = v == "true",
                        Some(("check-quorum", v)) => self.base.check_quorum = v == "true",
                        Some(("max-append", v)) => {
                            self.base.append_entries_max =
                                v.parse().map_err(|_| "bad max-append")?
                        }
                        Some(("read-heartbeats", v)) => read_heartbeats_auto = v == "auto",
                        Some(("bug", "commit-earlier-term")) => {
                            self.base.bugs = BugSwitches {
                                commit_earlier_term_by_count: true,
                                ..self.base.bugs
                            }
                        }
                        Some(("bug", "read-ignore-stamps")) => {
                            self.base.bugs = BugSwitches {
                                read_ignore_stamps: true,
                                ..self.base.bugs
                            }
                        }
                        Some(("bug", "vote-twice")) => {
                            self.base.bugs = BugSwitches {
                                vote_twice_in_term: true,
                                ..self.base.bugs
                            }
                        }
                        Some((k, _)) => return Err(format!("unknown option {k}")),
                        None => ids.push(parse_id(a)?),
                    }
                }
                let base = self.base.clone();
                let cluster = Cluster::new(&ids, |id| Config {
                    id,
                    seed: id,
                    ..base.clone()
                })
                .map_err(|e| e.to_string())?;
                let mut cluster = cluster;
                cluster.read_heartbeats_auto = read_heartbeats_auto;
                self.cluster = Some(cluster);
                out.push_str("ok");
            }
            "add-node" => {
                let id = parse_id(args.first().ok_or("add-node <id>")?)?;
                let cfg = self.config(id);
                let c = self.cluster()?;
                c.add_node(cfg, ConfState::default())
                    .map_err(|e| e.to_string())?;
                out.push_str("ok");
            }
            "campaign" => {
                let id = parse_id(args.first().ok_or("campaign <id>")?)?;
                let c = self.cluster()?;
                if let Some(raw) = c.raw_mut(id) {
                    raw.campaign();
                }
                c.settle(id);
                out.push_str("ok");
            }
            "tick" | "tick-heartbeat" | "tick-election" => {
                let id = parse_id(args.first().ok_or("tick <id> [n]")?)?;
                let n = match *cmd {
                    "tick-heartbeat" => self.base.heartbeat_ticks,
                    "tick-election" => 2 * self.base.election_ticks,
                    _ => args
                        .get(1)
                        .map_or(Ok(1), |s| s.parse().map_err(|_| "bad tick count"))?,
                };
                let c = self.cluster()?;
                for _ in 0..n {
                    c.tick(id);
                }
                out.push_str("ok");
            }
            "deliver-msgs" | "stabilize" => {
                let c = self.cluster()?;
                let mut rounds = 0;
                while !c.in_flight.is_empty() {
                    rounds += 1;
                    if rounds > 10_000 {
                        return Err("messages never stop".into());
                    }
                    let m = c.in_flight[0].clone();
                    match c.deliver(0) {
                        Some(_) => writeln!(out, "{}", describe(&m)).ok(),
                        None => writeln!(out, "dropped {}", describe(&m)).ok(),
                    };
                }
                if out.is_empty() {
                    out.push_str("no messages");
                }
            }
            "deliver-except" => {
                // Like `stabilize`, but messages to `id` stay in flight, in order.
                let id = parse_id(args.first().ok_or("deliver-except <id>")?)?;
                let c = self.cluster()?;
                let mut rounds = 0;
                while let Some(pos) = c.in_flight.iter().position(|m| m.to != id) {
                    rounds += 1;
                    if rounds > 10_000 {
                        return Err("messages never stop".into());
                    }
                    let m = c.in_flight[pos].clone();
                    match c.deliver(pos) {
                        Some(_) => writeln!(out, "{}", describe(&m)).ok(),
                        None => writeln!(out, "dropped {}", describe(&m)).ok(),
                    };
                }
                if out.is_empty() {
                    out.push_str("no messages");
                }
            }
            "deliver-round" => {
                // Only what is in flight now; answers wait for the next round.
                let c = self.cluster()?;
                let count = c.in_flight.len();
                for _ in 0..count {
                    let m = c.in_flight[0].clone();
                    match c.deliver(0) {
                        Some(_) => writeln!(out, "{}", describe(&m)).ok(),
                        None => writeln!(out, "dropped {}", describe(&m)).ok(),
                    };
                }
                if out.is_empty() {
                    out.push_str("no messages");
                }
            }
            "drop-msgs" => {
                let c = self.cluster()?;
                write!(out, "dropped {}", c.in_flight.len()).ok();
                c.in_flight.clear();
            }
            "propose" => {
                let id = parse_id(args.first().ok_or("propose <id> <data>")?)?;
                let data = args.get(1).copied().unwrap_or("").as_bytes().to_vec();
                let c = self.cluster()?;
                match c.propose(id, data) {
                    Ok(index) => write!(out, "index {index}").ok(),
                    Err(e) => write!(out, "error: {e}").ok(),
                };
            }
            "conf-change" => {
                let [leader, kind, node] = args else {
                    return Err("conf-change <leader> add-voter|add-learner|remove <id>".into());
                };
                let leader = parse_id(leader)?;
                let kind = match *kind {
                    "add-voter" => ConfChangeKind::AddVoter,
                    "add-learner" => ConfChangeKind::AddLearner,
                    "remove" => ConfChangeKind::RemoveNode,
                    other => return Err(format!("unknown change {other}")),
                };
                let change = ConfChange {
                    kind,
                    node_id: parse_id(node)?,
                    context: Vec::new(),
                };
                let c = self.cluster()?;
                let r = c
                    .raw_mut(leader)
                    .ok_or("node is down")?
                    .propose_conf_change(change);
                c.settle(leader);
                match r {
                    Ok(index) => write!(out, "index {index}").ok(),
                    Err(e) => write!(out, "error: {e}").ok(),
                };
            }
            "read-index" => {
                let id = parse_id(args.first().ok_or("read-index <id> <ctx>")?)?;
                let ctx = args.get(1).copied().unwrap_or("").as_bytes().to_vec();
                let c = self.cluster()?;
                let r = c.read_index(id, ctx);
                match r {
                    Ok(()) => out.push_str("ok"),
                    Err(e) => write!(out, "error: {e}").ok().map_or((), |_| ()),
                }
            }
            "read-heartbeats" => {
                let id = parse_id(args.first().ok_or("read-heartbeats <id>")?)?;
                let c = self.cluster()?;
                let due = c.raw(id).is_some_and(|r| r.read_heartbeats_due());
                c.send_read_heartbeats(id);
                out.push_str(if due { "sent" } else { "none due" });
            }
            "reads" => {
                let c = self.cluster()?;
                for (id, index, ctx) in c.reads.drain(..) {
                    writeln!(
                        out,
                        "node {id}: read {} safe at index {index}",
                        String::from_utf8_lossy(&ctx)
                    )
                    .ok();
                }
                if out.is_empty() {
                    out.push_str("no reads");
                }
            }
            "transfer" => {
                let [from, to] = args else {
                    return Err("transfer <leader> <to>".into());
                };
                let (from, to) = (parse_id(from)?, parse_id(to)?);
                let c = self.cluster()?;
                let r = c.raw_mut(from).ok_or("node is down")?.transfer_leader(to);
                c.settle(from);
                match r {
                    Ok(()) => out.push_str("ok"),
                    Err(e) => write!(out, "error: {e}").ok().map_or((), |_| ()),
                }
            }
            "partition" => {
                let joined = args.join(" ");
                let groups: Vec<Vec<NodeId>> = joined
                    .split('/')
                    .map(|g| {
                        g.split_whitespace()
                            .map(parse_id)
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<_, _>>()?;
                let refs: Vec<&[NodeId]> = groups.iter().map(|g| g.as_slice()).collect();
                self.cluster()?.partition(&refs);
                out.push_str("ok");
            }
            "heal" => {
                self.cluster()?.heal();
                out.push_str("ok");
            }
            "crash" => {
                let id = parse_id(args.first().ok_or("crash <id>")?)?;
                self.cluster()?.crash(id);
                out.push_str("ok");
            }
            "restart" => {
                let id = parse_id(args.first().ok_or("restart <id>")?)?;
                let c = self.cluster()?;
                c.restart(id).map_err(|e| e.to_string())?;
                c.settle(id);
                out.push_str("ok");
            }
            "compact" => {
                let id = parse_id(args.first().ok_or("compact <id>")?)?;
                match self.cluster()?.compact(id) {
                    Ok(index) => write!(out, "compacted to {index}").ok(),
                    Err(e) => write!(out, "error: {e}").ok(),
                };
            }
            "status" => {
                let c = self.cluster()?;
                for id in c.ids() {
                    match c.raw(id).map(|r| r.status()) {
                        None => writeln!(out, "{id}: down").ok(),
                        Some(s) => writeln!(
                            out,
                            "{id}: {:<12} term={} vote={} lead={} commit={} applied={} last={} snap={} voters={:?} learners={:?}",
                            format!("{:?}", s.role),
                            s.term,
                            s.vote,
                            s.leader,
                            s.commit,
                            s.applied,
                            s.last_index,
                            s.snapshot_index,
                            s.conf_state.voters,
                            s.conf_state.learners
                        )
                        .ok(),
                    };
                }
            }
            "log" => {
                let id = parse_id(args.first().ok_or("log <id>")?)?;
                let c = self.cluster()?;
                let raw = c.raw(id).ok_or("node is down")?;
                let log = raw.log();
                writeln!(
                    out,
                    "snapshot {}/{}",
                    log.snapshot_meta().index,
                    log.snapshot_meta().term
                )
                .ok();
                for e in log.entries() {
                    let what = if e.kind == EntryKind::Normal && e.data.is_empty() {
                        "(empty)".to_string()
                    } else {
                        describe_data(e)
                    };
                    writeln!(out, "{}/{} {what}", e.index, e.term).ok();
                }
            }
            "leader" => {
                let c = self.cluster()?;
                match c.leader() {
                    Some(id) => {
                        let term = c.raw(id).map_or(0, |r| r.status().term);
                        write!(out, "leader {id} term {term}").ok()
                    }
                    None => write!(out, "no leader").ok(),
                };
            }
            other => return Err(format!("unknown command {other:?}")),
        }
        if let Some(c) = self.cluster.as_mut() {
            c.check_log_matching();
            for v in c.violations.drain(..) {
                writeln!(out, "VIOLATION: {v}").ok();
            }
        }
        Ok(out.trim_end().to_string())
    }
}

/// Runs one script; returns (rewritten text, whether a violation was printed).
fn run_script(text: &str) -> (String, bool) {
    let mut interp = Interp::new();
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    let mut violated = false;
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
        // Skip the old expectation: `----` then lines up to a blank line.
        if lines.peek() == Some(&"----") {
            lines.next();
            while let Some(l) = lines.peek() {
                if l.trim().is_empty() {
                    break;
                }
                lines.next();
            }
        }
        let result = interp.run(line).unwrap_or_else(|e| format!("error: {e}"));
        violated |= result.contains("VIOLATION");
        out.push_str("----\n");
        out.push_str(&result);
        out.push('\n');
    }
    (out, violated)
}

fn scripts() -> Vec<PathBuf> {
    let dir = Path::new("testdata/raft").to_path_buf();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "txt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn raft_scripts() {
    let rewrite = std::env::var("REWRITE").is_ok();
    let files = scripts();
    assert!(!files.is_empty(), "no scripts found in testdata/raft");
    let mut failures = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("script readable");
        let (actual, violated) = run_script(&text);
        let expect_violation = text.starts_with("# expect-violation");
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if violated != expect_violation {
            failures.push(format!(
                "{name}: violation found = {violated}, expected {expect_violation}"
            ));
        }
        if rewrite {
            std::fs::write(&path, &actual).expect("script writable");
        } else if actual != text {
            let diff = first_difference(&text, &actual);
            failures.push(format!(
                "{name}: output differs (REWRITE=1 to update)\n{diff}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let at = e
        .iter()
        .zip(a.iter())
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let from = at.saturating_sub(3);
    let show = |v: &[&str]| {
        v.iter()
            .skip(from)
            .take(8)
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "at line {}:\nexpected:\n{}\nactual:\n{}",
        at + 1,
        show(&e),
        show(&a)
    )
}
