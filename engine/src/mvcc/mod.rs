//! mvcc (to be written).
