//! The real `detcd` binary given a port it cannot listen on: it must stop at once with a
//! non-zero exit and a message naming the address, not run on as a member that clients
//! reach but peers cannot (it would never learn of a leader).

#![cfg(not(madsim))]

mod server_util;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use server_util::{free_port, single_member_flags, wait_for_exit};

/// How long the member gets to give up.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// Starts a one-member cluster on `client` and `peer`; returns its exit status and
/// stderr, or panics if it is still running after [`EXIT_WITHIN`].
fn start_and_wait(client: u16, peer: u16) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let child = Command::new(env!("CARGO_BIN_EXE_detcd"))
        .args(single_member_flags(&dir.path().join("m"), client, peer))
        .env("DETCD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("detcd starts");
    wait_for_exit(
        child,
        EXIT_WITHIN,
        "detcd kept running without one of its listeners",
    )
}

#[test]
fn a_taken_peer_port_stops_the_member() {
    let taken = TcpListener::bind(("127.0.0.1", free_port())).expect("bind");
    let peer = taken.local_addr().expect("addr").port();
    let (status, stderr) = start_and_wait(free_port(), peer);
    assert!(!status.success(), "exit {status:?}\n{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{peer}")),
        "stderr does not name the peer address:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_taken_client_port_stops_the_member() {
    let taken = TcpListener::bind(("127.0.0.1", free_port())).expect("bind");
    let client = taken.local_addr().expect("addr").port();
    let (status, stderr) = start_and_wait(client, free_port());
    assert!(!status.success(), "exit {status:?}\n{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{client}")),
        "stderr does not name the client address:\n{stderr}"
    );
}
