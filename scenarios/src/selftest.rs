//! The harness self-test: for every deliberate server bug ([`Bug`]), a small sweep over
//! scenarios chosen to make that bug observable must fail (with a named reason) within a
//! stated number of runs, and the run that caught it must pass with the bug switched off.
//! That shows the checks can fail, and that the failure is the bug's doing.
//!
//! This module decides what to run and judges the outcomes; running a configuration is
//! the caller's (`detcd-sim selftest`), and it prints nothing itself.

use detcd_sim::bugs::Bug;
use detcd_sim::run::{RunConfig, RunResult};

use crate::{ScenarioError, sweep};

/// The self-test's scenario names, re-exported for the probes.
pub use crate::probes::{CATCH_UP, FIGURE_8, VOTE_SPLIT};

/// The configuration of a catalog scenario, swarm, or a self-test scenario.
pub fn config_for(scenario: &str, seed: u64) -> Result<RunConfig, ScenarioError> {
    sweep::config_for(scenario, seed)
}

/// Where to look for one bug.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// The bug.
    pub bug: Bug,
    /// Scenarios that expose it, tried in this order for each seed.
    pub scenarios: &'static [&'static str],
    /// Seeds `0..seeds_max` per scenario at most; the probe fails if none catches it.
    pub seeds_max: u64,
    /// Scenarios (of `scenarios`) whose runs count only when they fail a check a client
    /// or an operator can see (lost write, convergence, liveness, checker), not only one
    /// of the white-box checks ([`WHITE_BOX_KINDS`]).
    pub visible_only: &'static [&'static str],
    /// Why these scenarios.
    pub why: &'static str,
    /// Whether the self-test fails when the probe misses (every probe is required now;
    /// kept so a new bug can be added before a scenario exposes it).
    pub required: bool,
}

/// Failure kinds from the simulator's white-box checks on the members' Raft state,
/// which no client sees.
pub const WHITE_BOX_KINDS: [&str; 2] = ["commit rule", "election safety"];

/// Whether `failure` comes from a white-box check ([`WHITE_BOX_KINDS`]).
pub fn is_white_box(failure: &str) -> bool {
    let kind = failure.split(':').next().unwrap_or_default().trim();
    WHITE_BOX_KINDS.contains(&kind)
}

/// The probes, one per bug.
pub const PROBES: [Probe; 5] = [
    Probe {
        bug: Bug::AckWriteBeforeSync,
        scenarios: &["power-loss-all"],
        seeds_max: 4,
        visible_only: &[],
        why: "every member loses its page cache at once, so unsynced acknowledged writes vanish",
        required: true,
    },
    Probe {
        bug: Bug::FollowerLocalLinearizableRead,
        scenarios: &["minority-partition", "leader-partition"],
        seeds_max: 4,
        visible_only: &[],
        why: "a cut-off follower keeps answering reads from its stale state",
        required: true,
    },
    Probe {
        bug: Bug::ForgetVoteOnRestart,
        scenarios: &[VOTE_SPLIT],
        seeds_max: 16,
        visible_only: &[],
        why: "two members that cannot reach each other campaign in one term through a hub \
              that crashes right after voting while its candidate is cut off (knobs); with \
              the bug it votes again: two leaders in one term (26 of seeds 0..40)",
        required: true,
    },
    Probe {
        bug: Bug::CommitEarlierTermByCount,
        scenarios: &[FIGURE_8],
        seeds_max: 48,
        visible_only: &[FIGURE_8],
        why: "Raft's Figure 8 (knobs: one-entry appends, each new leader crashed ms after \
              it wins): an earlier-term entry counted onto a majority is overwritten by a \
              later leader, and members diverge or stall; only such visible failures count \
              here, not the commit-rule check alone (visible in 14 of seeds 0..100; the \
              commit-rule check also fires in catch-up-after-leader-loss)",
        required: true,
    },
    Probe {
        bug: Bug::LeaseExpiryWithoutRaft,
        scenarios: &["lease-expiry-across-leader-change"],
        seeds_max: 4,
        visible_only: &[],
        why: "only a workload with expiring leases can see keys vanish on the leader alone",
        required: true,
    },
];

/// One run of a probe's sweep.
pub type RunFn<'a> = &'a dyn Fn(&RunConfig) -> RunResult;

/// What a probe found.
#[derive(Clone, Debug)]
pub enum Finding {
    /// A run failed with the bug on, and the same run passed with it off.
    Caught {
        /// The scenario of the catching run.
        scenario: String,
        /// Its seed.
        seed: u64,
        /// Runs done until (and including) the catching one.
        runs: u64,
        /// The kinds of failure seen (`convergence, lost write x8, checker`), then the
        /// first failure in words.
        reason: String,
    },
    /// A run failed with the bug on, but it also fails without it: not evidence.
    FailsWithoutBug {
        /// The scenario.
        scenario: String,
        /// The seed.
        seed: u64,
        /// The failure without the bug.
        reason: String,
    },
    /// No run within the budget failed.
    Missed {
        /// Runs done.
        runs: u64,
    },
    /// None of the probe's scenarios exists in this build (no workload exposes the bug).
    NotObservable,
}

impl Finding {
    /// Whether this finding counts as a pass of the self-test for a probe that is
    /// `required` (or not).
    pub fn passed(&self, required: bool) -> bool {
        match self {
            Finding::Caught { .. } | Finding::NotObservable => true,
            Finding::Missed { .. } => !required,
            Finding::FailsWithoutBug { .. } => false,
        }
    }
}

/// The configurations a probe tries, in order: seed-major over its known scenarios.
pub fn probe_configs(probe: &Probe) -> Result<Vec<(String, RunConfig)>, ScenarioError> {
    let known: Vec<&str> = probe
        .scenarios
        .iter()
        .copied()
        .filter(|s| config_for(s, 0).is_ok())
        .collect();
    let mut out = Vec::new();
    for seed in 0..probe.seeds_max {
        for s in &known {
            let mut config = config_for(s, seed)?;
            config.bugs = vec![probe.bug];
            out.push(((*s).to_owned(), config));
        }
    }
    Ok(out)
}

/// Runs one probe with `run`: stops at the first failing run, then reruns that one
/// without the bug.
pub fn probe(p: &Probe, run: RunFn<'_>) -> Result<Finding, ScenarioError> {
    let configs = probe_configs(p)?;
    if configs.is_empty() {
        return Ok(Finding::NotObservable);
    }
    let mut runs = 0;
    for (scenario, config) in configs {
        runs += 1;
        let with_bug = run(&config);
        let white_box_only = with_bug.failures.iter().all(|f| is_white_box(f));
        if with_bug.failures.is_empty()
            || (white_box_only && p.visible_only.contains(&scenario.as_str()))
        {
            continue;
        }
        let reason = summarize(&with_bug.failures);
        let control = run(&RunConfig {
            bugs: Vec::new(),
            ..config.clone()
        });
        return Ok(match control.failures.first() {
            None => Finding::Caught {
                scenario,
                seed: config.seed,
                runs,
                reason,
            },
            Some(other) => Finding::FailsWithoutBug {
                scenario,
                seed: config.seed,
                reason: other.clone(),
            },
        });
    }
    Ok(Finding::Missed { runs })
}

/// `failures` as their kinds with counts (the text before the first `:`), then the
/// first failure: `convergence, lost write x8: convergence: members differ ...`.
pub fn summarize(failures: &[String]) -> String {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for f in failures {
        let kind = f.split(':').next().unwrap_or_default().trim();
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let kinds: Vec<String> = kinds
        .into_iter()
        .map(|(k, n)| {
            if n == 1 {
                k.to_owned()
            } else {
                format!("{k} x{n}")
            }
        })
        .collect();
    format!(
        "[{}] {}",
        kinds.join(", "),
        failures.first().map(String::as_str).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bug_has_one_probe_and_known_scenarios_or_none() {
        for bug in Bug::ALL {
            assert_eq!(PROBES.iter().filter(|p| p.bug == bug).count(), 1, "{bug}");
        }
        for p in &PROBES {
            for (_, c) in probe_configs(p).expect("configs") {
                assert_eq!(c.bugs, vec![p.bug]);
            }
        }
        let power = probe_configs(&PROBES[0]).expect("configs");
        assert_eq!(power.len() as u64, PROBES[0].seeds_max);
    }

    #[test]
    fn summaries_count_failure_kinds() {
        let f = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            summarize(&f(&[
                "lost write: a",
                "checker: Illegal: x",
                "lost write: b"
            ])),
            "[lost write x2, checker] lost write: a"
        );
    }

    fn result(failures: Vec<String>) -> RunResult {
        RunResult {
            failures,
            ..RunResult::default()
        }
    }

    #[test]
    fn a_probe_needs_a_failure_with_the_bug_and_a_pass_without() {
        let p = PROBES[0];
        let caught = probe(&p, &|c: &RunConfig| {
            result(if c.bugs.is_empty() || c.seed < 2 {
                Vec::new()
            } else {
                vec!["lost write: k".to_owned()]
            })
        })
        .expect("probe");
        assert!(
            matches!(
                &caught,
                Finding::Caught {
                    seed: 2,
                    runs: 3,
                    ..
                }
            ),
            "{caught:?}"
        );
        let missed = probe(&p, &|_: &RunConfig| result(Vec::new())).expect("probe");
        assert!(matches!(missed, Finding::Missed { runs: 4 }));
        assert!(!missed.passed(true) && missed.passed(false));
        let always =
            probe(&p, &|_: &RunConfig| result(vec!["liveness".to_owned()])).expect("probe");
        assert!(matches!(always, Finding::FailsWithoutBug { seed: 0, .. }));
        assert!(!always.passed(false));
    }

    #[test]
    fn visible_only_scenarios_do_not_count_white_box_failures() {
        assert!(is_white_box("commit rule: leader n1 of term 6 moved"));
        assert!(!is_white_box("liveness: not settled"));
        let p = Probe {
            scenarios: &[FIGURE_8],
            visible_only: &[FIGURE_8],
            ..PROBES[3]
        };
        let white = |c: &RunConfig| {
            let mut f = vec!["commit rule: x".to_owned()];
            if c.seed >= 5 {
                f.push("convergence: members differ".to_owned());
            }
            result(if c.bugs.is_empty() { Vec::new() } else { f })
        };
        let found = probe(&p, &white).expect("probe");
        assert!(
            matches!(&found, Finding::Caught { seed: 5, runs: 6, reason, .. }
                if reason.starts_with("[commit rule, convergence]")),
            "{found:?}"
        );
        let counted = Probe {
            visible_only: &[],
            ..p
        };
        let found = probe(&counted, &white).expect("probe");
        assert!(
            matches!(found, Finding::Caught { seed: 0, .. }),
            "{found:?}"
        );
    }
}
