//! Fault events and schedules: what the world does to the cluster and when, as plain
//! data that round-trips through JSON, so a failing run can be saved and replayed after
//! the code changes. This module only describes faults; the world applies them.

use serde::{Deserialize, Serialize};

use crate::disk::DiskProfile;

/// One fault (or repair). Members are named by their 1-based index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FaultEvent {
    /// Cut the network between the groups (members in no group keep all links).
    Partition {
        /// Disjoint groups of members that can talk only within their group.
        groups: Vec<Vec<u64>>,
    },
    /// Cut whoever leads at that moment off from every other member.
    PartitionLeaderAway,
    /// Drop messages from `from` to `to` only.
    Asymmetric {
        /// Sending member.
        from: u64,
        /// Receiving member.
        to: u64,
    },
    /// Drop every message to and from `member` (clients included).
    Clog {
        /// The member.
        member: u64,
    },
    /// Undo a [`FaultEvent::Clog`].
    Unclog {
        /// The member.
        member: u64,
    },
    /// Drop each message with this probability, in parts per million.
    PacketLoss {
        /// Loss probability, parts per million.
        rate_ppm: u32,
    },
    /// Power loss: the process dies, unsynced bytes are dropped (a prefix may survive,
    /// possibly torn). The member stays down until restarted.
    Kill {
        /// The member.
        member: u64,
    },
    /// Power loss on whoever leads at that moment.
    KillLeader,
    /// Process crash: the process dies, the page cache (unsynced bytes) survives. The
    /// member stays down until restarted.
    Crash {
        /// The member.
        member: u64,
    },
    /// Start a down member, or crash and start a running one.
    Restart {
        /// The member.
        member: u64,
    },
    /// Freeze the member's process (no task runs, its timers stall).
    Pause {
        /// The member.
        member: u64,
    },
    /// Undo a [`FaultEvent::Pause`].
    Resume {
        /// The member.
        member: u64,
    },
    /// Switch the member's disk to another latency profile.
    DiskSlow {
        /// The member.
        member: u64,
        /// The new profile.
        profile: DiskProfile,
    },
    /// Make the member's next `count` syncs fail.
    FsyncError {
        /// The member.
        member: u64,
        /// Syncs to fail.
        count: u32,
    },
    /// Remove the member through the Cluster service (MemberRemove), then power its
    /// host off. It stays out of the cluster until a [`FaultEvent::MemberAdd`].
    MemberRemove {
        /// The member.
        member: u64,
    },
    /// Add a removed member back as a fresh member (MemberAdd, then boot it with an
    /// empty disk and `--initial-cluster-state=existing`).
    MemberAdd {
        /// The member.
        member: u64,
    },
    /// Fill the member's disk: growing any file fails with ENOSPC until freed.
    DiskFull {
        /// The member.
        member: u64,
    },
    /// Undo a [`FaultEvent::DiskFull`].
    DiskFree {
        /// The member.
        member: u64,
    },
    /// Flip one bit (file, offset and bit drawn from `seed`) in the member's files, in
    /// the page cache and the durable image alike (a media error). The running process
    /// keeps its memory; the flip matters when the member reads its files again.
    BitFlip {
        /// The member.
        member: u64,
        /// Picks the file, byte and bit.
        seed: u64,
    },
    /// Repair everything: links, packet loss, pauses, disks; restart down members.
    HealAll,
}

/// A fault at a simulated time (milliseconds since the cluster booted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimedFault {
    /// When, in simulated ms since boot.
    pub at_ms: u64,
    /// What.
    pub event: FaultEvent,
}

/// A fault schedule, sorted by `at_ms` (ties keep their order).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The events, sorted by time.
    pub events: Vec<TimedFault>,
}

/// A schedule that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Not valid schedule JSON.
    #[error("schedule is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Events out of time order.
    #[error("schedule event {index} at {at_ms} ms comes before the previous one")]
    Unsorted {
        /// Index of the offending event.
        index: usize,
        /// Its time.
        at_ms: u64,
    },
    /// A member index outside `1..=members`.
    #[error("schedule event {index} names member {member}, but the cluster has {members}")]
    NoSuchMember {
        /// Index of the offending event.
        index: usize,
        /// The member named.
        member: u64,
        /// Cluster size.
        members: u64,
    },
}

impl FaultEvent {
    /// The members this event names explicitly.
    pub fn members(&self) -> Vec<u64> {
        match self {
            FaultEvent::Partition { groups } => groups.iter().flatten().copied().collect(),
            FaultEvent::Asymmetric { from, to } => vec![*from, *to],
            FaultEvent::Clog { member }
            | FaultEvent::Unclog { member }
            | FaultEvent::Kill { member }
            | FaultEvent::Crash { member }
            | FaultEvent::Restart { member }
            | FaultEvent::Pause { member }
            | FaultEvent::Resume { member }
            | FaultEvent::DiskSlow { member, .. }
            | FaultEvent::FsyncError { member, .. }
            | FaultEvent::MemberRemove { member }
            | FaultEvent::MemberAdd { member }
            | FaultEvent::DiskFull { member }
            | FaultEvent::DiskFree { member }
            | FaultEvent::BitFlip { member, .. } => vec![*member],
            FaultEvent::PartitionLeaderAway
            | FaultEvent::PacketLoss { .. }
            | FaultEvent::KillLeader
            | FaultEvent::HealAll => Vec::new(),
        }
    }
}

impl Schedule {
    /// A schedule from events, sorted by time (stable for ties).
    pub fn new(mut events: Vec<TimedFault>) -> Schedule {
        events.sort_by_key(|e| e.at_ms);
        Schedule { events }
    }

    /// A schedule from `(at_ms, event)` pairs, sorted by time (stable for ties).
    pub fn at_times(events: impl IntoIterator<Item = (u64, FaultEvent)>) -> Schedule {
        Schedule::new(
            events
                .into_iter()
                .map(|(at_ms, event)| TimedFault { at_ms, event })
                .collect(),
        )
    }

    /// Parses schedule JSON.
    pub fn from_json(text: &str) -> Result<Schedule, ScheduleError> {
        let schedule: Schedule = serde_json::from_str(text)?;
        if let Some(index) = schedule
            .events
            .windows(2)
            .position(|w| w[1].at_ms < w[0].at_ms)
        {
            return Err(ScheduleError::Unsorted {
                index: index + 1,
                at_ms: schedule.events[index + 1].at_ms,
            });
        }
        Ok(schedule)
    }

    /// Pretty JSON, the form saved with failing runs.
    pub fn to_json(&self) -> String {
        // Serializing plain enums and integers into a string cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks that every member named exists in a cluster of `members`.
    pub fn validate(&self, members: u64) -> Result<(), ScheduleError> {
        for (index, timed) in self.events.iter().enumerate() {
            if let Some(&member) = timed
                .event
                .members()
                .iter()
                .find(|&&m| m == 0 || m > members)
            {
                return Err(ScheduleError::NoSuchMember {
                    index,
                    member,
                    members,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Schedule {
        Schedule::new(vec![
            TimedFault {
                at_ms: 900,
                event: FaultEvent::HealAll,
            },
            TimedFault {
                at_ms: 100,
                event: FaultEvent::Partition {
                    groups: vec![vec![1], vec![2, 3]],
                },
            },
            TimedFault {
                at_ms: 300,
                event: FaultEvent::DiskSlow {
                    member: 2,
                    profile: DiskProfile::Hdd,
                },
            },
        ])
    }

    #[test]
    fn schedules_round_trip_through_json_sorted() {
        let s = sample();
        assert_eq!(s.events[0].at_ms, 100);
        let back = Schedule::from_json(&s.to_json()).expect("parses");
        assert_eq!(back, s);
    }

    #[test]
    fn unsorted_and_bad_members_are_rejected() {
        let mut s = sample();
        s.events.swap(0, 2);
        let text = serde_json::to_string(&s).expect("json");
        assert!(matches!(
            Schedule::from_json(&text),
            Err(ScheduleError::Unsorted { index: 1, .. })
        ));
        assert!(sample().validate(3).is_ok());
        assert!(matches!(
            sample().validate(2),
            Err(ScheduleError::NoSuchMember { member: 3, .. })
        ));
        assert!(Schedule::from_json("{").is_err());
    }
}
