//! Free loopback ports for the servers a bench starts.
//!
//! Picked below Linux's ephemeral range (32768 and up by default): a port the kernel
//! hands out for `bind(0)` is free only until an outgoing connection takes it as its
//! source port, which can happen before the server binds it, and then the server cannot
//! listen there. Each process starts at its own place in the range, so benches run side
//! by side rarely try the same ports; every port is checked by binding it.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// First port handed out.
const FIRST: u32 = 20_000;
/// One past the last port handed out.
const END: u32 = 32_000;
/// Ports per process before the next process's starting place.
const PER_PROCESS: u32 = 16;

/// A loopback port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = END - FIRST;
    let start = (std::process::id() % (span / PER_PROCESS)) * PER_PROCESS;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(FIRST + (start + n) % span) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port between {FIRST} and {END}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let a = free_port().expect("a port");
        let b = free_port().expect("another port");
        assert_ne!(a, b);
        for port in [a, b] {
            assert!((FIRST..END).contains(&u32::from(port)), "{port}");
            TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }
}
