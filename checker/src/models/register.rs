//! Register and cas-register: read, write and compare-and-set of one value per key.
//!
//! A key that was never written reads as nil (`None`). A cas whose outcome is known
//! reports whether it took effect; Jepsen records a cas that did not take effect as
//! `:fail`, which the importer drops, so `Cas(false)` is rare but accepted. This file
//! does not parse histories.

use std::collections::BTreeMap;

use super::{Keyed, Value, token};
use crate::wgl::{Model, Partition};

/// What a register operation asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    /// Read the value.
    Read,
    /// Set the value.
    Write(Value),
    /// Set the value to `to` if it is `from` (cas-register only).
    Cas {
        /// The expected value.
        from: Value,
        /// The value to set.
        to: Value,
    },
}

/// What a register operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    /// A read's result (None: nil, never written).
    Read(Option<Value>),
    /// A write succeeded.
    Write,
    /// Whether a cas took effect.
    Cas(bool),
}

impl std::fmt::Display for RegisterOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterOp::Read => write!(f, "read"),
            RegisterOp::Write(v) => write!(f, "write {v}"),
            RegisterOp::Cas { from, to } => write!(f, "cas {from}->{to}"),
        }
    }
}

impl std::fmt::Display for RegisterOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterOutput::Read(None) => write!(f, "nil"),
            RegisterOutput::Read(Some(v)) => write!(f, "{v}"),
            RegisterOutput::Write => write!(f, "ok"),
            RegisterOutput::Cas(applied) => write!(f, "{}", if *applied { "ok" } else { "failed" }),
        }
    }
}

/// A read/write register per key. A cas operation is impossible in this model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

/// A read/write/compare-and-set register per key.
#[derive(Debug, Clone, Copy, Default)]
pub struct CasRegister;

/// Values of all keys written so far.
pub type RegisterState = BTreeMap<Vec<u8>, Value>;

fn step_register(
    state: &RegisterState,
    input: &Keyed<RegisterOp>,
    output: Option<&RegisterOutput>,
    cas_allowed: bool,
) -> Option<RegisterState> {
    let current = state.get(&input.key).copied();
    match (&input.op, output) {
        (RegisterOp::Read, None) => Some(state.clone()),
        (RegisterOp::Read, Some(RegisterOutput::Read(seen))) => {
            (*seen == current).then(|| state.clone())
        }
        (RegisterOp::Write(v), None | Some(RegisterOutput::Write)) => {
            let mut next = state.clone();
            next.insert(input.key.clone(), *v);
            Some(next)
        }
        (RegisterOp::Cas { from, to }, out) if cas_allowed => {
            let applies = current == Some(*from);
            match out {
                None | Some(RegisterOutput::Cas(true)) if applies => {
                    let mut next = state.clone();
                    next.insert(input.key.clone(), *to);
                    Some(next)
                }
                // Unknown outcome and the value differs: the cas failed, no effect.
                None | Some(RegisterOutput::Cas(false)) if !applies => Some(state.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The value a write or cas may leave behind.
fn effects_register(input: &Keyed<RegisterOp>) -> Option<Vec<u64>> {
    match input.op {
        RegisterOp::Read => Some(Vec::new()),
        RegisterOp::Write(v) | RegisterOp::Cas { to: v, .. } => Some(vec![token(&input.key, v)]),
    }
}

/// The value a read returned or a cas expected. A cas known to have failed saw some
/// value other than its expected one, which any effect could explain: None.
fn observed_register(
    input: &Keyed<RegisterOp>,
    output: Option<&RegisterOutput>,
) -> Option<Vec<u64>> {
    match (&input.op, output) {
        (RegisterOp::Cas { .. }, Some(RegisterOutput::Cas(false))) => None,
        (RegisterOp::Cas { from, .. }, _) => Some(vec![token(&input.key, *from)]),
        (RegisterOp::Read, Some(RegisterOutput::Read(Some(v)))) => {
            Some(vec![token(&input.key, *v)])
        }
        _ => Some(Vec::new()),
    }
}

/// The `Model` and `Partition` impls of a register flavour; `$cas` says whether it also
/// accepts compare-and-set.
macro_rules! register_model {
    ($model:ty, $cas:expr) => {
        impl Model for $model {
            type State = RegisterState;
            type Input = Keyed<RegisterOp>;
            type Output = RegisterOutput;

            fn init(&self) -> RegisterState {
                RegisterState::new()
            }

            fn step(
                &self,
                state: &RegisterState,
                input: &Self::Input,
                output: Option<&RegisterOutput>,
            ) -> Option<RegisterState> {
                step_register(state, input, output, $cas)
            }

            fn effects(&self, input: &Self::Input) -> Option<Vec<u64>> {
                effects_register(input)
            }

            fn observed(
                &self,
                input: &Self::Input,
                output: Option<&RegisterOutput>,
            ) -> Option<Vec<u64>> {
                observed_register(input, output)
            }

            fn interchangeable(&self, a: &Self::Input, b: &Self::Input) -> bool {
                a == b
            }
        }

        impl Partition for $model {
            fn key(&self, input: &Self::Input) -> Vec<u8> {
                input.key.clone()
            }
        }
    };
}

register_model!(Register, false);
register_model!(CasRegister, true);

#[cfg(test)]
mod tests {
    use super::*;

    fn op(o: RegisterOp) -> Keyed<RegisterOp> {
        Keyed::single(o)
    }

    #[test]
    fn register_steps() {
        let m = CasRegister;
        let s0 = m.init();
        let read_nil = RegisterOutput::Read(None);
        assert!(
            m.step(&s0, &op(RegisterOp::Read), Some(&read_nil))
                .is_some()
        );
        let s1 = m
            .step(&s0, &op(RegisterOp::Write(3)), Some(&RegisterOutput::Write))
            .expect("write");
        let read3 = RegisterOutput::Read(Some(3));
        assert!(m.step(&s1, &op(RegisterOp::Read), Some(&read3)).is_some());
        assert!(m.step(&s0, &op(RegisterOp::Read), Some(&read3)).is_none());
        let cas = op(RegisterOp::Cas { from: 3, to: 4 });
        let s2 = m
            .step(&s1, &cas, Some(&RegisterOutput::Cas(true)))
            .expect("cas");
        assert_eq!(s2.get(&Vec::new()), Some(&4));
        assert!(
            m.step(&s2, &cas, Some(&RegisterOutput::Cas(true)))
                .is_none()
        );
        assert_eq!(m.step(&s2, &cas, None), Some(s2.clone()));
        assert!(
            m.step(&s1, &cas, Some(&RegisterOutput::Cas(false)))
                .is_none()
        );
        // The plain register has no cas.
        assert!(Register.step(&s1, &cas, None).is_none());
    }
}
