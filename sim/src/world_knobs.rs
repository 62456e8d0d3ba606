//! The workload phase's event loop: applies the schedule's faults at their times and,
//! under the crash-after-vote knob ([`crate::knobs::Knobs`]), crashes members right
//! after they grant a vote and restarts them later; under the crash-new-leader knob it
//! crashes each new leader a few ms after it wins and restarts it later. Without knobs
//! it is exactly the timed walk through the schedule. It does not heal (the caller
//! does, at the end).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::World;
use crate::fault::FaultEvent;
use crate::knobs::{CANDIDATE_ISOLATE_DELAY_MS, VOTE_CRASH_DELAY_MS, new_leader_crash_delay_ms};
use crate::run::RunConfig;

/// How often the crash-new-leader knob looks for new leaders, simulated ms.
const LEADER_POLL_MS: u64 = 1;

/// Applies `config.schedule` (and the knobs' own faults) until its last event, or until
/// `stop` when a knob is on (knob faults stop there; the final heal restarts any member
/// a knob left down).
pub(super) async fn run_schedule(world: &mut World, config: &RunConfig, stop: Instant) {
    let start = world.start;
    let down_ms = config.knobs.crash_after_vote_down_ms;
    let leaders_on = config.knobs.crashes_new_leaders();
    let mut votes = world.votes.take();
    let mut events = config.schedule.events.iter().peekable();
    // Members a knob crashed and the schedule has not touched since, with the time
    // each is due back and why it went down.
    let mut knob_down: BTreeMap<u64, (Instant, &'static str)> = BTreeMap::new();
    // Terms a vote crashed a member in: at most one crash per term, so the cluster
    // still makes progress between elections.
    let mut crashed_for: BTreeSet<u64> = BTreeSet::new();
    // Terms whose leader the crash-new-leader knob has seen, and the crashes it has
    // planned: member → (due time, term).
    let mut leader_terms: BTreeSet<u64> = BTreeSet::new();
    let mut leader_crash: BTreeMap<u64, (Instant, u64)> = BTreeMap::new();
    loop {
        let now = Instant::now();
        let next_event = events
            .peek()
            .map(|t| start + Duration::from_millis(t.at_ms));
        let due = knob_down.iter().min_by_key(|(m, (at, _))| (*at, **m));
        let next_restart = due.map(|(m, (at, why))| (*at, *m, *why));
        let next_crash = leader_crash
            .iter()
            .min_by_key(|(m, (at, _))| (*at, **m))
            .map(|(m, (at, term))| (*at, *m, *term));
        let polling = leaders_on && now < stop;
        let poll = polling.then(|| now + Duration::from_millis(LEADER_POLL_MS));
        let knob_wait = (down_ms > 0 || leaders_on) && now < stop;
        let wake = [
            next_event,
            next_restart.map(|r| r.0),
            next_crash.map(|c| c.0),
            poll,
        ]
        .into_iter()
        .flatten()
        .min();
        let wake = match wake {
            Some(w) => w,
            None if knob_wait => stop,
            None => break,
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
                let now = Instant::now();
                if let Some((_, member, why)) = next_restart.filter(|r| r.0 <= now) {
                    knob_down.remove(&member);
                    if world.down.contains(&member) {
                        let event = FaultEvent::Restart { member };
                        let note = world.effect(&event);
                        world.record_fault(&event, &format!("{note} (knob: {why})"));
                    }
                } else if let Some((_, member, term)) = next_crash.filter(|c| c.0 <= now) {
                    leader_crash.remove(&member);
                    crash_leader(world, member, term, now, stop, config, &mut knob_down);
                } else if next_event.is_some_and(|e| e <= now)
                    && let Some(timed) = events.next()
                {
                    for m in timed.event.members() {
                        knob_down.remove(&m);
                        leader_crash.remove(&m);
                    }
                    world.apply_async(&timed.event).await;
                } else if polling {
                    plan_leader_crashes(world, config, &mut leader_terms, &mut leader_crash);
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
                    knob_down.insert(member, (at, "after its vote"));
                }
            }
        }
    }
}

/// Plans a crash for every up member leading a term the knob has not seen led yet.
fn plan_leader_crashes(
    world: &World,
    config: &RunConfig,
    leader_terms: &mut BTreeSet<u64>,
    leader_crash: &mut BTreeMap<u64, (Instant, u64)>,
) {
    let within_ms = config.knobs.crash_new_leader_within_ms;
    let leading: Vec<(u64, u64)> = super::lock(&world.nodes)
        .iter()
        .filter(|(m, _)| !world.down.contains(m) && !world.paused.contains(m))
        .map(|(m, n)| (*m, n.status()))
        .filter(|(_, s)| s.is_leader)
        .map(|(m, s)| (m, s.term))
        .collect();
    for (member, term) in leading {
        if leader_terms.insert(term) {
            let delay_ms = new_leader_crash_delay_ms(world.seed, term, within_ms);
            let at = Instant::now() + Duration::from_millis(delay_ms);
            leader_crash.insert(member, (at, term));
        }
    }
}

/// Crashes `member` if it still leads `term` and schedules its restart.
fn crash_leader(
    world: &mut World,
    member: u64,
    term: u64,
    now: Instant,
    stop: Instant,
    config: &RunConfig,
    knob_down: &mut BTreeMap<u64, (Instant, &'static str)>,
) {
    let current = super::lock(&world.nodes).get(&member).map(|n| n.status());
    let leads = current.is_some_and(|s| s.is_leader && s.term == term);
    if !leads || now >= stop || world.paused.contains(&member) || world.down.contains(&member) {
        return;
    }
    let event = FaultEvent::Crash { member };
    let note = world.effect(&event);
    world.record_fault(&event, &format!("{note} (knob: led term {term})"));
    let at = now + Duration::from_millis(config.knobs.crash_new_leader_down_ms);
    if at < stop {
        knob_down.insert(member, (at, "after leading"));
    }
}
