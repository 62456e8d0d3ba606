//! Real `detcd` processes on loopback ports with data in temp dirs, for tests that drive
//! them with clients nobody here wrote (the `etcd-client` crate, etcdctl).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One member's process and addresses.
pub struct Member {
    /// Its name.
    pub name: String,
    /// Client port.
    pub client_port: u16,
    /// Peer port.
    pub peer_port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Member {
    /// The client endpoint, `127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

/// A cluster of `detcd` processes.
pub struct Cluster {
    /// The members, in order.
    pub members: Vec<Member>,
    _dir: tempfile::TempDir,
}

/// Ports handed out lie below Linux's ephemeral range (32768 and up): a port the
/// kernel picked for `bind(0)` can be taken as the source port of any outgoing
/// connection before the server binds it, which made member starts fail now and then.
const PORT_FIRST: u32 = 10_000;
/// One past the last port handed out.
const PORT_END: u32 = 32_000;
/// Ports per process slot before a process moves into the next slot.
const PORTS_PER_SLOT: u32 = 16;

/// A port nobody listens on right now, from this process's own slot of the range (test
/// processes run side by side and must not pick the same ports).
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let span = PORT_END - PORT_FIRST;
    let slot = (std::process::id() % (span / PORTS_PER_SLOT)) * PORTS_PER_SLOT;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = PORT_FIRST + (slot + n) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {PORT_FIRST} and {PORT_END}");
}

/// The flags of a one-member cluster (member name `default`) with its data in
/// `data_dir`, serving clients on loopback port `client` and peers on `peer`. etcd takes
/// the same flags.
pub fn single_member_flags(data_dir: &std::path::Path, client: u16, peer: u16) -> Vec<String> {
    vec![
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-cluster=default=http://127.0.0.1:{peer}"),
    ]
}

/// Waits for `child` to exit within `within` and returns its status and stderr (piped);
/// kills it and panics with `still_running` if it is still running by then.
pub fn wait_for_exit(
    mut child: Child,
    within: Duration,
    still_running: &str,
) -> (std::process::ExitStatus, String) {
    use std::io::Read as _;
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{still_running}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("stderr");
    }
    (status, stderr)
}

/// How long a member may take to open its client port.
const LISTEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

impl Member {
    /// Waits until the member accepts connections on its client port (clients that
    /// pick any endpoint must not meet one still starting).
    fn wait_listening(&self) {
        let deadline = std::time::Instant::now() + LISTEN_WITHIN;
        while std::net::TcpStream::connect(("127.0.0.1", self.client_port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "member {} did not open its client port {} within {LISTEN_WITHIN:?}",
                self.name,
                self.client_port
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Cluster {
    /// Starts `n` members with extra flags `extra` (e.g. `--snapshot-count=100`).
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, &(client_port, peer_port))| {
                let data_dir = dir.path().join(format!("m{i}"));
                let mut args = vec![
                    format!("--name=m{i}"),
                    format!("--data-dir={}", data_dir.display()),
                    format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
                    format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
                    format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                    format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                    format!("--initial-cluster={initial}"),
                    "--initial-cluster-token=itest".to_owned(),
                    "--heartbeat-interval=20".to_owned(),
                    "--election-timeout=200".to_owned(),
                ];
                args.extend(extra.iter().map(|s| (*s).to_owned()));
                Member {
                    name: format!("m{i}"),
                    client_port,
                    peer_port,
                    data_dir,
                    args,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Cluster { members, _dir: dir };
        for i in 0..n {
            cluster.spawn(i);
        }
        for member in &cluster.members {
            member.wait_listening();
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let member = &mut self.members[i];
        let log = std::fs::File::create(member.data_dir.with_extension("log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_detcd"))
            .args(&member.args)
            .env(
                "DETCD_LOG",
                std::env::var("DETCD_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("detcd starts");
        member.child = Some(child);
    }

    /// Kills member `i` with SIGKILL (no shutdown, nothing flushed).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Every member's client endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// The log a member wrote, for failure messages.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.members[i].data_dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// Retries `f` until it succeeds or `within` passes.
pub async fn eventually<T, E: std::fmt::Debug, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("did not succeed within {within:?}: {e:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
