//! The lease table: which leases exist, their TTLs, the keys attached to each, and
//! (on the leader only) when each expires.
//!
//! Time is passed in as a monotonic millisecond count; the table never reads a clock
//! and never deletes anything on its own: [`LeaseTable::expired`] tells the leader which
//! leases to revoke, and the revoke goes through Raft like any write. Only the primary
//! (the leader's table, see [`LeaseTable::promote`]) tracks expiries; other members keep
//! leases alive forever until told to revoke them, as in etcd.
//!
//! Deliberately not here: deleting the attached keys (the [`crate::mvcc::KvState`] does
//! that in one revision), lease checkpoints, and etcd's spreading of mass expiries.

mod table;

pub use table::{LEASE_TTL_S_MAX, LeaseTable, TimeToLive};
