//! Sequential models for the generic search: register, cas-register and a per-key kv.
//!
//! These are the models Knossos and Porcupine users check Jepsen histories against.
//! Every operation names a key ([`Keyed`]); a history of a single register simply uses
//! one key. The state maps keys to values, so checking a multi-key history without
//! partitioning is still correct, only slower; each model implements
//! [`crate::wgl::Partition`] because its keys are independent. The etcd KV model
//! (revisions, Txn, leases) is not here.

mod kv;
mod register;

pub mod generate;

pub use kv::{Kv, KvOp, KvOutput, KvState};
pub use register::{CasRegister, Register, RegisterOp, RegisterOutput, RegisterState};

/// A value held by a register or appended to a kv list.
pub type Value = i64;

/// An operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Keyed<Op> {
    /// The key (empty for a single-register history).
    pub key: Vec<u8>,
    /// What is done to it.
    pub op: Op,
}

impl<Op: std::fmt::Display> std::fmt::Display for Keyed<Op> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.op)
        } else {
            write!(f, "{} {}", String::from_utf8_lossy(&self.key), self.op)
        }
    }
}

/// A short label for an operation of these models: `write 3 -> ok`, `read -> ?`.
pub fn label<I: std::fmt::Display, O: std::fmt::Display>(
    op: &crate::wgl::Operation<I, O>,
) -> String {
    match &op.output {
        Some(out) => format!("{} -> {out}", op.input),
        None => format!("{} -> ?", op.input),
    }
}

impl<Op> Keyed<Op> {
    /// `op` on the single, unnamed register.
    pub fn single(op: Op) -> Self {
        Keyed {
            key: Vec::new(),
            op,
        }
    }
}

/// The pruning token of `value` written to `key` (see [`crate::wgl::Model::effects`]).
pub(crate) fn token(key: &[u8], value: Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    value.hash(&mut h);
    h.finish()
}
