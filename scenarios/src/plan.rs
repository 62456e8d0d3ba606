//! A builder for timed fault schedules, shared by the named scenarios and swarm mode.
//!
//! It only lays events out in time from a seeded RNG; it does not know what a fault does
//! (that is `detcd-sim`'s business) and never reads a clock.

use detcd_sim::fault::{FaultEvent, Schedule, TimedFault};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Builds a [`Schedule`] from a seed: events at chosen times, plus seeded jitter.
pub struct Plan {
    rng: ChaCha8Rng,
    events: Vec<TimedFault>,
}

impl Plan {
    /// A plan whose random choices all come from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            events: Vec::new(),
        }
    }

    /// The plan's seeded RNG, for choices a scenario makes itself (which member, how long).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// A time drawn uniformly from `low_ms..=high_ms`.
    pub fn between_ms(&mut self, low_ms: u64, high_ms: u64) -> u64 {
        self.rng.random_range(low_ms..=high_ms.max(low_ms))
    }

    /// A member index drawn uniformly from `1..=members`.
    pub fn member(&mut self, members: u64) -> u64 {
        self.rng.random_range(1..=members.max(1))
    }

    /// `count` distinct members drawn from `1..=members`, sorted.
    pub fn members(&mut self, members: u64, count: u64) -> Vec<u64> {
        let mut all: Vec<u64> = (1..=members).collect();
        for i in 0..all.len() {
            let j = self.rng.random_range(i..all.len());
            all.swap(i, j);
        }
        let mut chosen: Vec<u64> = all.into_iter().take(count as usize).collect();
        chosen.sort_unstable();
        chosen
    }

    /// Schedules `event` at `at_ms` (simulated milliseconds from the start of the run).
    pub fn at(&mut self, at_ms: u64, event: FaultEvent) -> &mut Self {
        self.events.push(TimedFault { at_ms, event });
        self
    }

    /// The schedule, sorted by time; events at the same time keep their insertion order.
    pub fn finish(mut self) -> Schedule {
        self.events.sort_by_key(|e| e.at_ms);
        Schedule {
            events: self.events,
        }
    }
}

/// The members of a `members`-sized cluster that are not in `group`, sorted.
pub fn rest(members: u64, group: &[u64]) -> Vec<u64> {
    (1..=members).filter(|m| !group.contains(m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_sorted_and_stable_for_a_seed() {
        let build = |seed| {
            let mut p = Plan::new(seed);
            let late = p.between_ms(5_000, 9_000);
            p.at(late, FaultEvent::HealAll);
            let m = p.member(3);
            p.at(1_000, FaultEvent::Kill { member: m });
            p.finish()
        };
        let a = build(7);
        assert_eq!(a, build(7));
        assert!(a.events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(matches!(a.events[0].event, FaultEvent::Kill { .. }));
    }

    #[test]
    fn members_are_distinct_and_in_range() {
        let mut p = Plan::new(3);
        for count in 0..=5 {
            let m = p.members(5, count);
            assert_eq!(m.len() as u64, count);
            assert!(m.windows(2).all(|w| w[0] < w[1]));
            assert!(m.iter().all(|&i| (1..=5).contains(&i)));
        }
        assert_eq!(rest(5, &[2, 4]), vec![1, 3, 5]);
    }
}
