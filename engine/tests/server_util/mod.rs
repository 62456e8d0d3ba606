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

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let member = &mut self.members[i];
        let log = std::fs::File::create(member.data_dir.with_extension("log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_detcd"))
            .args(&member.args)
            .env("DETCD_LOG", "warn")
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
