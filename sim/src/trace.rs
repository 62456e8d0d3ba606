//! The trace: an ordered list of what happened in a run (faults applied, client
//! results, member status changes), each line stamped with simulated time, and a
//! stable 64-bit hash over it. Two runs of the same seed must give the same lines; the
//! first differing line says where they diverged. It records no wall-clock data.

use std::sync::{Arc, Mutex};

/// A shared, append-only trace that clients, the world and watchers write to.
#[derive(Clone, Default)]
pub struct TraceLog {
    lines: Arc<Mutex<Vec<String>>>,
}

impl TraceLog {
    /// An empty log with room for `lines` lines.
    pub fn with_capacity(lines: usize) -> Self {
        TraceLog {
            lines: Arc::new(Mutex::new(Vec::with_capacity(lines))),
        }
    }

    /// Appends one line.
    pub fn push(&self, line: String) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    /// The lines so far, taken out of the log (it is empty afterwards).
    pub fn take_lines(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The hash of a list of trace lines (FNV-1a over the lines, each ended by a newline),
/// stable across platforms and compiler versions.
pub fn hash(lines: &[String]) -> u64 {
    let mut h = FNV_OFFSET;
    for line in lines {
        for &b in line.as_bytes().iter().chain(b"\n") {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// The first index where two traces differ (one ending early counts), or `None` when
/// they are equal.
pub fn first_divergence(a: &[String], b: &[String]) -> Option<usize> {
    let common = a.iter().zip(b).position(|(x, y)| x != y);
    match common {
        Some(i) => Some(i),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_hash_depends_on_content_order_and_line_breaks() {
        let a = lines(&["x", "y"]);
        assert_eq!(hash(&a), hash(&a.clone()));
        assert_ne!(hash(&a), hash(&lines(&["y", "x"])));
        assert_ne!(hash(&a), hash(&lines(&["xy"])));
        assert_ne!(hash(&a), hash(&[]));
    }

    #[test]
    fn first_divergence_finds_the_first_difference() {
        let a = lines(&["a", "b", "c"]);
        assert_eq!(first_divergence(&a, &a), None);
        assert_eq!(first_divergence(&a, &lines(&["a", "x", "c"])), Some(1));
        assert_eq!(first_divergence(&a, &lines(&["a", "b"])), Some(2));
    }
}
