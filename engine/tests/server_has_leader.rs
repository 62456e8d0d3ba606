//! The `hasleader` metadata on real `detcd` processes: a member of a three-member
//! cluster started alone refuses such calls with `etcdserver: no leader` (Unavailable)
//! but serves the same calls without the metadata; a watch that requires a leader is
//! ended once its member has lost the leader for good.

#![cfg(not(madsim))]

mod server_util;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use detcd_engine::pb::etcdserverpb::kv_client::KvClient;
use detcd_engine::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd_engine::pb::etcdserverpb::watch_client::WatchClient;
use detcd_engine::pb::etcdserverpb::watch_request::RequestUnion;
use detcd_engine::pb::etcdserverpb::{
    PutRequest, RangeRequest, StatusRequest, WatchCreateRequest, WatchRequest,
};
use server_util::{Cluster, eventually, free_port};
use tonic::transport::Channel;
use tonic::{Code, Request};

/// Kills the child when the test ends, however it ends.
struct Alone {
    child: Child,
    client_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Alone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Member m0 of a three-member cluster whose other members never start.
fn start_alone() -> Alone {
    let dir = tempfile::tempdir().expect("temp dir");
    let client_port = free_port();
    let peers: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let initial = peers
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{i}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let child = Command::new(env!("CARGO_BIN_EXE_detcd"))
        .arg("--name=m0")
        .arg(format!("--data-dir={}", dir.path().join("m0").display()))
        .arg(format!(
            "--listen-client-urls=http://127.0.0.1:{client_port}"
        ))
        .arg(format!(
            "--advertise-client-urls=http://127.0.0.1:{client_port}"
        ))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", peers[0]))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{}",
            peers[0]
        ))
        .arg(format!("--initial-cluster={initial}"))
        .arg("--heartbeat-interval=20")
        .arg("--election-timeout=200")
        .env("DETCD_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("detcd starts");
    Alone {
        child,
        client_port,
        _dir: dir,
    }
}

async fn channel(port: u16) -> Channel {
    eventually(Duration::from_secs(10), || async move {
        Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("a URL")
            .connect()
            .await
    })
    .await
}

fn with_leader<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("hasleader", "true".parse().expect("ascii"));
    request
}

fn serializable_range() -> RangeRequest {
    RangeRequest {
        key: b"k".to_vec(),
        serializable: true,
        ..RangeRequest::default()
    }
}

fn watch_all() -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: vec![0],
            range_end: vec![0],
            ..WatchCreateRequest::default()
        })),
    }
}

#[tokio::test]
async fn a_member_without_a_leader_refuses_calls_that_require_one() {
    let alone = start_alone();
    let channel = channel(alone.client_port).await;
    let mut kv = KvClient::new(channel.clone());

    // Without the metadata, a serializable read is served from the local state.
    kv.range(serializable_range())
        .await
        .expect("served without a leader");

    let refused = kv
        .range(with_leader(serializable_range()))
        .await
        .expect_err("no leader");
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(refused.message(), "etcdserver: no leader");

    let status = MaintenanceClient::new(channel.clone())
        .status(with_leader(StatusRequest {}))
        .await
        .expect_err("no leader");
    assert_eq!(status.code(), Code::Unavailable);

    let requests = tokio_stream_once(watch_all());
    let watch = WatchClient::new(channel).watch(with_leader(requests)).await;
    let refused = match watch {
        Err(status) => status,
        Ok(response) => {
            let mut stream = response.into_inner();
            stream.message().await.expect_err("the watch is refused")
        }
    };
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(refused.message(), "etcdserver: no leader");

    // The etcd-client crate's own option sets the same metadata.
    let endpoint = format!("127.0.0.1:{}", alone.client_port);
    let options = etcd_client::ConnectOptions::new().with_require_leader(true);
    let mut client = etcd_client::Client::connect([endpoint], Some(options))
        .await
        .expect("connects");
    let serializable = etcd_client::GetOptions::new().with_serializable();
    match client.get("k", Some(serializable)).await {
        Err(etcd_client::Error::GRpcStatus(status)) => {
            assert_eq!(status.code(), Code::Unavailable);
            assert_eq!(status.message(), "etcdserver: no leader");
        }
        other => panic!("expected no leader, got {other:?}"),
    }
}

/// A request stream of one message that then stays open.
fn tokio_stream_once(
    message: WatchRequest,
) -> impl tonic::codegen::tokio_stream::Stream<Item = WatchRequest> + Send + 'static {
    use tonic::codegen::tokio_stream::StreamExt as _;
    tonic::codegen::tokio_stream::once(message).chain(futures_util::stream::pending())
}

#[tokio::test]
async fn a_watch_that_requires_a_leader_ends_when_the_leader_is_gone() {
    let mut cluster = Cluster::start(3, &[]);
    let mut channels = Vec::new();
    for member in &cluster.members {
        channels.push(channel(member.client_port).await);
    }
    // A follower, once a leader is known.
    let follower = eventually(Duration::from_secs(10), || {
        let channels = channels.clone();
        async move {
            for (i, channel) in channels.into_iter().enumerate() {
                let status = MaintenanceClient::new(channel)
                    .status(StatusRequest {})
                    .await?
                    .into_inner();
                let me = status.header.map_or(0, |h| h.member_id);
                if status.leader != 0 && status.leader != me {
                    return Ok(i);
                }
            }
            Err(tonic::Status::unavailable("no follower with a leader yet"))
        }
    })
    .await;

    let mut watch = WatchClient::new(channels[follower].clone())
        .watch(with_leader(tokio_stream_once(watch_all())))
        .await
        .expect("the watch starts while there is a leader")
        .into_inner();
    let created = watch.message().await.expect("created").expect("a response");
    assert!(created.created);
    // The watch works while the cluster has a leader.
    KvClient::new(channels[follower].clone())
        .put(PutRequest {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
            ..PutRequest::default()
        })
        .await
        .expect("put");
    let event = watch
        .message()
        .await
        .expect("an event")
        .expect("a response");
    assert_eq!(event.events.len(), 1);

    for i in 0..3 {
        if i != follower {
            cluster.kill(i);
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the watch ends within a few election timeouts")
        .expect_err("ended with an error");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert_eq!(ended.message(), "etcdserver: no leader");
}
