//! The ideal server of the single-stream fsync bound: a loopback TCP server that does
//! nothing but what a durable put cannot avoid. Each fixed-size request is answered
//! after one WAL-like record append + `fdatasync` ([`AppendProbe`]); there is no
//! protocol, no framing, no consensus and no async runtime, one blocking thread per
//! side. Its rate for one client, next to the raw append rate measured in the same
//! round, is the physical edge of "put 1×1 / raw fdatasync" on this host and disk:
//! no networked server can do better than a request round trip plus the sync.
//!
//! Not here: the measurement schedule and the report ([`crate::fsync_bound`]).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;

use crate::bodies::BodyError;
use crate::fsync_bound::AppendProbe;

/// Bytes of one request (about a small put's gRPC frame).
pub const IDEAL_REQUEST_BYTES: usize = 64;

/// Bytes of one response.
pub const IDEAL_RESPONSE_BYTES: usize = 16;

/// A running ideal server and the one client connection to it.
pub struct IdealServer {
    client: TcpStream,
    thread: Option<JoinHandle<()>>,
}

impl IdealServer {
    /// Creates the server's append probe in `dir`, starts the server on a loopback
    /// port and connects to it.
    pub fn start(dir: &Path) -> Result<Self, BodyError> {
        let mut probe = AppendProbe::create(dir)?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let thread = std::thread::Builder::new()
            .name("ideal-server".into())
            .spawn(move || {
                let Ok((mut conn, _)) = listener.accept() else {
                    return;
                };
                if conn.set_nodelay(true).is_err() {
                    return;
                }
                let mut request = [0u8; IDEAL_REQUEST_BYTES];
                let response = [1u8; IDEAL_RESPONSE_BYTES];
                // Ends when the client closes the connection or the disk fails (the
                // client then sees the connection end, an error).
                while conn.read_exact(&mut request).is_ok()
                    && probe.append_sync().is_ok()
                    && conn.write_all(&response).is_ok()
                {}
            })?;
        let client = TcpStream::connect(addr)?;
        client.set_nodelay(true)?;
        Ok(IdealServer {
            client,
            thread: Some(thread),
        })
    }

    /// One request and its response: a round trip that includes one durable append.
    pub fn request(&mut self) -> Result<(), BodyError> {
        self.client.write_all(&[0u8; IDEAL_REQUEST_BYTES])?;
        let mut response = [0u8; IDEAL_RESPONSE_BYTES];
        self.client.read_exact(&mut response)?;
        Ok(())
    }
}

impl Drop for IdealServer {
    fn drop(&mut self) {
        // Closing the client's side ends the server's loop; then reap its thread.
        let _ = self.client.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_is_answered_after_a_durable_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = IdealServer::start(dir.path()).expect("server");
        for _ in 0..3 {
            server.request().expect("answered");
        }
        drop(server);
        // The probe writes record k at k * its size, its first byte set to k + 1.
        let bytes = std::fs::read(dir.path().join("append-probe")).expect("probe file");
        let at = |k: usize| bytes[k * crate::fsync_bound::WAL_PROBE_RECORD_BYTES];
        assert_eq!(
            (at(0), at(1), at(2), at(3)),
            (1, 2, 3, 0),
            "three appends reached the file"
        );
    }
}
