//! The real server code on madsim's simulated hosts: a 3-member cluster elects a leader,
//! serves puts and linearizable gets through simulated gRPC, survives its leader losing
//! power, and the same seed gives the same run.
//! Run with `RUSTFLAGS="--cfg madsim" cargo test -p detcd-engine --test cluster_sim`.

#![cfg(madsim)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd_engine::pb::etcdserverpb::kv_client::KvClient;
use detcd_engine::pb::etcdserverpb::{PutRequest, RangeRequest};
use detcd_engine::server::config::{self, Command, ServerConfig};
use detcd_engine::server::node::NodeHandle;
use detcd_engine::server::run;
use detcd_engine::storage::MemDisk;
use madsim::runtime::{Handle, Runtime};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const MEMBERS: u64 = 3;

fn member_config(i: u64) -> ServerConfig {
    let cluster = (1..=MEMBERS)
        .map(|j| format!("n{j}=http://10.0.0.{j}:2380"))
        .collect::<Vec<_>>()
        .join(",");
    let args = [
        "detcd".to_owned(),
        format!("--name=n{i}"),
        format!("--listen-client-urls=http://10.0.0.{i}:2379"),
        format!("--advertise-client-urls=http://10.0.0.{i}:2379"),
        format!("--listen-peer-urls=http://10.0.0.{i}:2380"),
        format!("--initial-advertise-peer-urls=http://10.0.0.{i}:2380"),
        format!("--initial-cluster={cluster}"),
    ];
    match config::parse(args, &BTreeMap::new()) {
        Ok(Command::Serve(config)) => *config,
        other => panic!("bad test configuration: {other:?}"),
    }
}

type Nodes = Arc<Mutex<BTreeMap<u64, NodeHandle>>>;

/// The member (1-based index) that leads, once one does.
async fn leader(nodes: &Nodes, among: &[u64]) -> u64 {
    for _ in 0..200 {
        let found = {
            let nodes = nodes.lock().expect("lock");
            among
                .iter()
                .copied()
                .find(|i| nodes.get(i).is_some_and(|n| n.status().is_leader))
        };
        if let Some(i) = found {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader among {among:?}");
}

async fn put(endpoint: u64, key: &str, value: &str) -> i64 {
    let mut client = KvClient::connect(format!("http://10.0.0.{endpoint}:2379"))
        .await
        .expect("connect");
    let response = client
        .put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..PutRequest::default()
        })
        .await
        .expect("put")
        .into_inner();
    response.header.expect("header").revision
}

async fn get(endpoint: u64, key: &str) -> (i64, Option<String>) {
    let mut client = KvClient::connect(format!("http://10.0.0.{endpoint}:2379"))
        .await
        .expect("connect");
    let response = client
        .range(RangeRequest {
            key: key.as_bytes().to_vec(),
            ..RangeRequest::default()
        })
        .await
        .expect("linearizable get")
        .into_inner();
    let value = response
        .kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
    (response.header.expect("header").revision, value)
}

/// One simulated run; returns a transcript of what the client saw.
fn run(seed: u64) -> String {
    let runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.block_on(async move {
        let handle = Handle::current();
        let nodes: Nodes = Arc::default();
        let disks: BTreeMap<u64, MemDisk> = (1..=MEMBERS).map(|i| (i, MemDisk::new())).collect();
        let mut hosts = BTreeMap::new();
        for i in 1..=MEMBERS {
            let disk = disks[&i].clone();
            let registry = Arc::clone(&nodes);
            let host = handle
                .create_node()
                .name(format!("n{i}"))
                .ip(format!("10.0.0.{i}").parse().expect("ip"))
                .init(move || {
                    let disk = disk.clone();
                    let registry = Arc::clone(&registry);
                    async move {
                        let server = run::start(&member_config(i), disk, seed)
                            .await
                            .expect("member starts");
                        registry
                            .lock()
                            .expect("lock")
                            .insert(i, server.node().clone());
                        std::future::pending::<()>().await;
                    }
                })
                .build();
            hosts.insert(i, host);
        }
        let client = handle
            .create_node()
            .name("client")
            .ip("10.0.0.100".parse().expect("ip"))
            .build();

        let mut transcript = String::new();
        let first = leader(&nodes, &[1, 2, 3]).await;
        writeln!(transcript, "leader n{first}").expect("write");
        let seen = client
            .spawn(async move {
                let mut seen = Vec::new();
                for k in 0..10 {
                    seen.push(put(1 + k % MEMBERS, &format!("k{k}"), &format!("v{k}")).await);
                }
                seen.push(get(2, "k9").await.0);
                seen
            })
            .await
            .expect("client");
        writeln!(transcript, "revisions {seen:?}").expect("write");

        // The leader loses power: its unsynced bytes are gone.
        handle.kill(hosts[&first].id());
        nodes.lock().expect("lock").remove(&first);
        disks[&first].power_loss(&mut ChaCha8Rng::seed_from_u64(seed));
        let survivors: Vec<u64> = (1..=MEMBERS).filter(|&i| i != first).collect();
        let second = leader(&nodes, &survivors).await;
        writeln!(transcript, "after the kill, leader n{second}").expect("write");
        let (a, b) = (survivors[0], survivors[1]);
        let after = client
            .spawn(async move {
                let revision = put(a, "after", "kill").await;
                (revision, get(b, "after").await, get(a, "k3").await)
            })
            .await
            .expect("client");
        assert_eq!(
            after.1.1.as_deref(),
            Some("kill"),
            "a linearizable get sees the put"
        );
        assert_eq!(
            after.2.1.as_deref(),
            Some("v3"),
            "acknowledged writes survive"
        );
        writeln!(transcript, "after {after:?}").expect("write");

        // The old leader comes back and catches up.
        handle.restart(hosts[&first].id());
        let back = client
            .spawn(async move {
                let mut value = None;
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Ok(mut c) =
                        KvClient::connect(format!("http://10.0.0.{first}:2379")).await
                        && let Ok(r) = c
                            .range(RangeRequest {
                                key: b"after".to_vec(),
                                ..RangeRequest::default()
                            })
                            .await
                    {
                        value = r.into_inner().kvs.first().map(|kv| kv.value.clone());
                        if value.is_some() {
                            break;
                        }
                    }
                }
                value
            })
            .await
            .expect("client");
        assert_eq!(
            back.as_deref(),
            Some(&b"kill"[..]),
            "the restarted member catches up"
        );
        writeln!(transcript, "restarted n{first} sees the write").expect("write");
        transcript
    })
}

#[test]
fn a_cluster_survives_its_leader_losing_power_and_replays_exactly() {
    let first = run(1);
    let again = run(1);
    assert_eq!(first, again, "the same seed must give the same run");
    let other = run(2);
    assert!(other.contains("restarted"), "{other}");
    println!("{first}");
}
