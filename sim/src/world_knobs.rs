//! The workload phase's event loop: applies the schedule's faults at their times and,
//! under the crash-after-vote knob ([`crate::knobs::Knobs`]), crashes members right
//! after they grant a vote and restarts them later. Without knobs it is exactly the
//! timed walk through the schedule. It does not heal (the caller does, at the end).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::World;
use crate::fault::FaultEvent;
use crate::knobs::{CANDIDATE_ISOLATE_DELAY_MS, VOTE_CRASH_DELAY_MS};
use crate::run::RunConfig;

/// Applies `config.schedule` (and the knobs' own faults) until its last event, or until
/// `stop` when a knob is on (knob faults stop there; the final heal restarts any member
/// a knob left down).
pub(super) async fn run_schedule(world: &mut World, config: &RunConfig, stop: Instant) {
    let start = world.start;
    let down_ms = config.knobs.crash_after_vote_down_ms;
    let mut votes = world.votes.take();
    let mut events = config.schedule.events.iter().peekable();
    // Members the knob crashed and the schedule has not touched since, with the time
    // each is due back.
    let mut knob_down: BTreeMap<u64, Instant> = BTreeMap::new();
    // Terms a vote crashed a member in: at most one crash per term, so the cluster
    // still makes progress between elections.
    let mut crashed_for: BTreeSet<u64> = BTreeSet::new();
    loop {
        let next_event = events
            .peek()
            .map(|t| start + Duration::from_millis(t.at_ms));
        let due = knob_down.iter().min_by_key(|(m, at)| (**at, **m));
        let (next_restart, due_member) = (due.map(|(_, at)| *at), due.map(|(m, _)| *m));
        let wake = match (next_event, next_restart) {
            (None, None) if down_ms == 0 || Instant::now() >= stop => break,
            (None, None) => stop,
            (Some(e), None) => e,
            (None, Some(r)) => r,
            (Some(e), Some(r)) => e.min(r),
        };
        let vote = async {
            match votes.as_mut() {
                Some(rx) if down_ms > 0 => rx.recv().await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(wake) => {
                if next_restart.is_some_and(|r| r <= wake) {
                    if let Some(member) = due_member
                        && knob_down.remove(&member).is_some()
                        && world.down.contains(&member)
                    {
                        let event = FaultEvent::Restart { member };
                        let note = world.effect(&event);
                        world.record_fault(&event, &format!("{note} (knob: after its vote)"));
                    }
                } else if let Some(timed) = events.next() {
                    for m in timed.event.members() {
                        knob_down.remove(&m);
                    }
                    world.apply_async(&timed.event).await;
                }
            }
            Some((member, term)) = vote => {
                if Instant::now() >= stop || crashed_for.contains(&term) {
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(VOTE_CRASH_DELAY_MS)).await;
                let current = super::lock(&world.nodes).get(&member).map(|n| n.status());
                let Some(vote) = current.filter(|s| s.term == term && s.vote != 0).map(|s| s.vote)
                else {
                    continue;
                };
                if world.paused.contains(&member) || world.down.contains(&member) {
                    continue;
                }
                crashed_for.insert(term);
                let event = FaultEvent::Crash { member };
                let note = world.effect(&event);
                world.record_fault(&event, &format!("{note} (knob: voted in term {term})"));
                if config.knobs.isolate_voted_candidate
                    && let Some(candidate) = world.index_of_id(vote)
                {
                    // After the vote reply has arrived and the candidate has counted it.
                    tokio::time::sleep(Duration::from_millis(CANDIDATE_ISOLATE_DELAY_MS)).await;
                    let event = FaultEvent::Clog { member: candidate };
                    let note = world.effect(&event);
                    world.record_fault(&event, &format!("{note} (knob: n{member} voted for it)"));
                }
                let at = Instant::now() + Duration::from_millis(down_ms);
                if at < stop {
                    knob_down.insert(member, at);
                }
            }
        }
    }
}
