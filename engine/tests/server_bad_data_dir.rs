//! The real `detcd` binary started on damaged data directories.
//!
//! One member writes 70 keys with `--snapshot-count=20` (so its data dir holds a WAL
//! segment and two snapshots) and is killed; each case copies that dir, damages one
//! file, and starts the binary on the copy. Damage that loses acknowledged data (a
//! flipped byte in the middle of the WAL, a broken segment header) must stop the
//! process with a non-zero exit and a message naming the file, without a panic; damage
//! that is safe to recover from (a torn final WAL record, a damaged newest snapshot
//! beside an older one or beside a WAL that still holds every entry) must leave a
//! member that serves all the keys.

#![cfg(not(madsim))]

mod server_util;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use server_util::{free_port, single_member_flags, wait_for_exit};

/// Keys the template member writes.
const KEYS: usize = 70;
/// How long a damaged member gets to exit, and a healthy one to start serving.
const PROCESS_WAIT_MS: u64 = 10_000;
const WAL_SEGMENT: &str = "wal/0000000000000001-0000000000000001.wal";

/// Flags of the one member; the data dir is passed separately.
struct Member {
    client_port: u16,
    peer_port: u16,
}

impl Member {
    fn new() -> Member {
        Member {
            client_port: free_port(),
            peer_port: free_port(),
        }
    }

    fn command(&self, data_dir: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_detcd"));
        command
            .args(single_member_flags(
                data_dir,
                self.client_port,
                self.peer_port,
            ))
            .arg("--snapshot-count=20")
            .arg("--heartbeat-interval=20")
            .arg("--election-timeout=200")
            .env("DETCD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// One HTTP POST to the gateway; `None` while nothing listens or on a non-200.
    fn post(&self, path: &str, body: &str) -> Option<serde_json::Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.client_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: detcd\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") {
            return None;
        }
        serde_json::from_str(body).ok()
    }

    /// Waits until the member answers a linearizable count of all keys; returns it.
    fn wait_count(&self) -> Option<u64> {
        let deadline = Instant::now() + Duration::from_millis(PROCESS_WAIT_MS);
        while Instant::now() < deadline {
            let all = r#"{"key":"AA==","range_end":"AA==","count_only":true}"#;
            if let Some(answer) = self.post("/v3/kv/range", all) {
                return Some(
                    answer["count"]
                        .as_str()
                        .map_or(0, |c| c.parse().expect("a count")),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A data dir with [`KEYS`] keys, two snapshots and a WAL, left by a killed member.
fn template(member: &Member, root: &Path) -> PathBuf {
    let dir = root.join("template");
    let mut child = member.command(&dir).spawn().expect("detcd starts");
    assert_eq!(member.wait_count(), Some(0), "the template member serves");
    for i in 0..KEYS {
        let put = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            b64(&format!("k{i:03}")),
            b64("v")
        );
        assert!(member.post("/v3/kv/put", &put).is_some(), "put {i}");
    }
    child.kill().expect("kill");
    child.wait().expect("reaped");
    let snapshots = std::fs::read_dir(dir.join("snap"))
        .expect("snap dir")
        .count();
    assert!(
        snapshots >= 2,
        "two snapshots to damage the newest: {snapshots}"
    );
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The snapshot files, oldest first (names sort by index).
fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("snap"))
        .expect("snap dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

/// Changes `file` with `damage` (which gets the bytes and the length actually used:
/// the WAL segment is preallocated with zeros).
fn damage(file: &Path, damage: impl FnOnce(&mut Vec<u8>, usize)) {
    let mut bytes = std::fs::read(file).expect("read");
    let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    damage(&mut bytes, used);
    std::fs::write(file, bytes).expect("write");
}

/// Starts the binary on `dir` and waits for it to exit; returns its status and stderr.
fn run_to_exit(member: &Member, dir: &Path) -> (ExitStatus, String) {
    let child = member.command(dir).spawn().expect("detcd starts");
    wait_for_exit(
        child,
        Duration::from_millis(PROCESS_WAIT_MS),
        "detcd kept running on a damaged data dir",
    )
}

/// Starts the binary on `dir`; returns how many keys it serves, then stops it.
fn run_and_count(member: &Member, dir: &Path) -> (Option<u64>, String) {
    let mut child = member.command(dir).spawn().expect("detcd starts");
    let count = member.wait_count();
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("stderr");
    }
    (count, stderr)
}

fn assert_refused(case: &str, status: ExitStatus, stderr: &str, file: &str) {
    assert!(!status.success(), "{case}: exit {status:?}\n{stderr}");
    assert_eq!(
        status.code(),
        Some(1),
        "{case}: an error exit, not a signal\n{stderr}"
    );
    assert!(stderr.contains(file), "{case}: names {file}\n{stderr}");
    assert!(
        stderr.contains("corrupt"),
        "{case}: says what is wrong\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{case}: no panic\n{stderr}");
    assert!(
        !stderr.contains("RUST_BACKTRACE"),
        "{case}: no backtrace\n{stderr}"
    );
}

#[test]
fn damaged_data_dirs_stop_the_member_or_recover_when_safe() {
    let root = tempfile::tempdir().expect("temp dir");
    let member = Member::new();
    let template = template(&member, root.path());

    // A flipped byte in the middle of the WAL: acknowledged entries follow it.
    let dir = root.path().join("wal-middle");
    copy_dir(&template, &dir);
    damage(&dir.join(WAL_SEGMENT), |bytes, used| {
        bytes[used / 2] ^= 0x5a
    });
    let (status, stderr) = run_to_exit(&member, &dir);
    assert_refused("flipped WAL byte", status, &stderr, WAL_SEGMENT);

    // A broken segment header.
    let dir = root.path().join("wal-header");
    copy_dir(&template, &dir);
    damage(&dir.join(WAL_SEGMENT), |bytes, _| bytes[2] ^= 0x01);
    let (status, stderr) = run_to_exit(&member, &dir);
    assert_refused("WAL header", status, &stderr, WAL_SEGMENT);

    // A torn final record (a write cut off by a crash) is cut, and the member serves.
    let dir = root.path().join("wal-torn-tail");
    copy_dir(&template, &dir);
    damage(&dir.join(WAL_SEGMENT), |bytes, used| {
        bytes[used - 8..used].fill(0);
    });
    let (count, stderr) = run_and_count(&member, &dir);
    let count = count.unwrap_or_else(|| panic!("serves after a torn tail\n{stderr}"));
    assert!(
        count + 1 >= KEYS as u64,
        "at most the torn write is lost: {count}"
    );
    assert!(stderr.contains("torn"), "the cut is logged\n{stderr}");

    // The newest snapshot damaged, an older one beside it.
    let dir = root.path().join("snap-newest");
    copy_dir(&template, &dir);
    let newest = snapshots(&dir).pop().expect("a snapshot");
    damage(&newest, |bytes, used| bytes[used / 2] ^= 0x5a);
    let (count, stderr) = run_and_count(&member, &dir);
    assert_eq!(
        count,
        Some(KEYS as u64),
        "recovers from the older one\n{stderr}"
    );
    let name = newest.file_name().expect("a name").to_string_lossy();
    assert!(
        stderr.contains(name.as_ref()),
        "the skipped file is named\n{stderr}"
    );

    // The only snapshot damaged (older ones gone): the WAL still holds every entry.
    let dir = root.path().join("snap-only");
    copy_dir(&template, &dir);
    let mut all = snapshots(&dir);
    let newest = all.pop().expect("a snapshot");
    for older in all {
        std::fs::remove_file(older).expect("remove");
    }
    damage(&newest, |bytes, _| bytes.truncate(10));
    let (count, stderr) = run_and_count(&member, &dir);
    assert_eq!(count, Some(KEYS as u64), "replays the whole WAL\n{stderr}");
}
