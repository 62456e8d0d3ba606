//! raft (to be written).
