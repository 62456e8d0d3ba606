//! A per-key kv model with get, put and append, where each key holds a list.
//!
//! This follows Jepsen's list-append workload: a key starts empty (nil), an append
//! adds one element to the end of its list, and a read returns the whole list. A put
//! replaces the list with a single element, so a plain kv history (get/put of scalars)
//! fits too: the importer reads a scalar value `v` as the list `[v]`. An empty list and
//! nil read the same. Multi-key transactions are not modelled.

use std::collections::BTreeMap;

use super::{Keyed, Value, token};
use crate::wgl::{Model, Partition};

/// What a kv operation asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOp {
    /// Read the key's list.
    Get,
    /// Replace the key's list with `[value]`.
    Put(Value),
    /// Add `value` to the end of the key's list.
    Append(Value),
}

/// What a kv operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// A get's result (empty: nil or the empty list).
    Get(Vec<Value>),
    /// A put or append succeeded.
    Done,
}

impl std::fmt::Display for KvOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvOp::Get => write!(f, "get"),
            KvOp::Put(v) => write!(f, "put {v}"),
            KvOp::Append(v) => write!(f, "append {v}"),
        }
    }
}

impl std::fmt::Display for KvOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvOutput::Get(list) => write!(f, "{list:?}"),
            KvOutput::Done => write!(f, "ok"),
        }
    }
}

/// A list per key with get/put/append.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kv;

/// Lists of all non-empty keys.
pub type KvState = BTreeMap<Vec<u8>, Vec<Value>>;

impl Model for Kv {
    type State = KvState;
    type Input = Keyed<KvOp>;
    type Output = KvOutput;

    fn init(&self) -> KvState {
        KvState::new()
    }

    fn step(
        &self,
        state: &KvState,
        input: &Keyed<KvOp>,
        output: Option<&KvOutput>,
    ) -> Option<KvState> {
        match (&input.op, output) {
            (KvOp::Get, None) => Some(state.clone()),
            (KvOp::Get, Some(KvOutput::Get(seen))) => {
                let current = state.get(&input.key).map_or(&[][..], Vec::as_slice);
                (seen.as_slice() == current).then(|| state.clone())
            }
            (KvOp::Put(v), None | Some(KvOutput::Done)) => {
                let mut next = state.clone();
                next.insert(input.key.clone(), vec![*v]);
                Some(next)
            }
            (KvOp::Append(v), None | Some(KvOutput::Done)) => {
                let mut next = state.clone();
                next.entry(input.key.clone()).or_default().push(*v);
                Some(next)
            }
            _ => None,
        }
    }

    fn effects(&self, input: &Keyed<KvOp>) -> Option<Vec<u64>> {
        match input.op {
            KvOp::Get => Some(Vec::new()),
            KvOp::Put(v) | KvOp::Append(v) => Some(vec![token(&input.key, v)]),
        }
    }

    fn interchangeable(&self, a: &Keyed<KvOp>, b: &Keyed<KvOp>) -> bool {
        a == b
    }

    /// A get sees the elements of its list. An unseen append or put changed no read.
    fn observed(&self, input: &Keyed<KvOp>, output: Option<&KvOutput>) -> Option<Vec<u64>> {
        match output {
            Some(KvOutput::Get(list)) => Some(list.iter().map(|v| token(&input.key, *v)).collect()),
            _ => Some(Vec::new()),
        }
    }
}

impl Partition for Kv {
    fn key(&self, input: &Keyed<KvOp>) -> Vec<u8> {
        input.key.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_steps() {
        let m = Kv;
        let k = |op| Keyed {
            key: b"x".to_vec(),
            op,
        };
        let s0 = m.init();
        assert!(
            m.step(&s0, &k(KvOp::Get), Some(&KvOutput::Get(vec![])))
                .is_some()
        );
        let s1 = m.step(&s0, &k(KvOp::Append(1)), None).expect("append");
        let s2 = m
            .step(&s1, &k(KvOp::Append(2)), Some(&KvOutput::Done))
            .expect("append");
        assert!(
            m.step(&s2, &k(KvOp::Get), Some(&KvOutput::Get(vec![1, 2])))
                .is_some()
        );
        assert!(
            m.step(&s2, &k(KvOp::Get), Some(&KvOutput::Get(vec![2, 1])))
                .is_none()
        );
        let s3 = m.step(&s2, &k(KvOp::Put(7)), None).expect("put");
        assert!(
            m.step(&s3, &k(KvOp::Get), Some(&KvOutput::Get(vec![7])))
                .is_some()
        );
        // Another key is untouched.
        let other = Keyed {
            key: b"y".to_vec(),
            op: KvOp::Get,
        };
        assert!(m.step(&s3, &other, Some(&KvOutput::Get(vec![]))).is_some());
    }
}
