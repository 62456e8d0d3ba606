//! The client port over real sockets: `/health`, `/version`, `/metrics`, the JSON gateway,
//! and gRPC sharing the same listener, against a single-member node on an in-memory disk.
//!
//! HTTP/1.1 requests are written by hand (one request per connection) so the test sees
//! exactly the status line and body a curl user would.

#![cfg(not(madsim))]

use std::net::SocketAddr;
use std::sync::Arc;

use detcd_engine::mvcc::KvConfig;
use detcd_engine::pb::etcdserverpb::PutRequest;
use detcd_engine::pb::etcdserverpb::kv_client::KvClient;
use detcd_engine::pb::etcdserverpb::kv_server::KvServer;
use detcd_engine::server::grpc::cluster::ClusterService;
use detcd_engine::server::grpc::kv::KvService;
use detcd_engine::server::http::client_router;
use detcd_engine::server::listen::client_port::{ClientPort, GrpcServices, serve_connections};
use detcd_engine::server::membership::MemberRecord;
use detcd_engine::server::metrics::sample;
use detcd_engine::server::node::{self, NoPeers, NodeConfig, NodeHandle};
use detcd_engine::storage::{MemDisk, Preallocation, WalOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest request the test node accepts (small, to test the limit cheaply).
const REQUEST_BYTES_MAX: usize = 4096;

/// Starts member 1 of a cluster of `members` (the others never answer) and serves its
/// client port on 127.0.0.1; returns the node and the bound address.
async fn serve(members: u64) -> (NodeHandle, SocketAddr) {
    let initial: Vec<MemberRecord> = (1..=members)
        .map(|id| MemberRecord {
            id,
            name: format!("n{id}"),
            peer_urls: vec![format!("http://n{id}:2380")],
            ..MemberRecord::default()
        })
        .collect();
    let config = NodeConfig {
        member_id: 1,
        cluster_id: 7,
        name: "n1".to_owned(),
        client_urls: vec!["http://127.0.0.1:2379".to_owned()],
        initial_members: initial,
        join_existing: false,
        tick_ms: 10,
        election_ticks: 5,
        pre_vote: true,
        strict_reconfig_check: true,
        snapshot_count: 10_000,
        kv: KvConfig::default(),
        request_bytes_max: REQUEST_BYTES_MAX,
        quota_backend_bytes: 1 << 30,
        seed: 11,
        wal: WalOptions {
            segment_bytes: 64 * 1024,
            record_bytes_max: 16 * 1024,
            preallocation: Preallocation::None,
        },
        watch_progress_interval_ms: 0,
    };
    let node = node::start(config, MemDisk::new(), Arc::new(NoPeers))
        .await
        .expect("node starts");
    let grpc = GrpcServices::default().add_service(KvServer::new(KvService::new(node.clone())));
    let cluster = ClusterService::new(node.clone(), "tok".to_owned(), || 1_700_000_000);
    let http = client_router(node.clone(), cluster);
    let port = ClientPort::new(grpc, http, node.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("an address");
    // The sender is dropped: the port serves until the test ends.
    let (_, never) = tokio::sync::watch::channel(false);
    tokio::spawn(serve_connections(listener, port, never));
    (node, addr)
}

async fn wait_leader(node: &NodeHandle) {
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        node.wait_status(|s| s.is_leader),
    )
    .await
    .expect("elected in time");
}

/// One HTTP/1.1 request; returns the status code and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: detcd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("reads");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

async fn post_json(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = http(addr, "POST", path, body).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, value)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn health_version_and_metrics() {
    let (node, addr) = serve(1).await;
    wait_leader(&node).await;

    let (status, body) = http(addr, "GET", "/health", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "{\"health\":\"true\"}");

    let (status, body) = http(addr, "GET", "/version", "").await;
    assert_eq!(status, 200);
    let version: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(version["etcdserver"], "3.4.23");
    assert_eq!(version["etcdcluster"], "3.4.0");

    let (status, before) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert_eq!(sample(&before, "etcd_server_has_leader"), Some(1.0));
    assert_eq!(sample(&before, "etcd_server_is_leader"), Some(1.0));
    assert_eq!(sample(&before, "etcd_debugging_mvcc_keys_total"), Some(0.0));
    let applied_before =
        sample(&before, "etcd_server_proposals_applied_total").expect("applied index");
    let fsyncs_before =
        sample(&before, "etcd_disk_wal_fsync_duration_seconds_count").expect("fsync histogram");
    assert!(fsyncs_before >= 1.0, "the election was persisted");

    for i in 0..3 {
        let put = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            b64(format!("k{i}").as_bytes()),
            b64(b"v")
        );
        let (status, _) = post_json(addr, "/v3/kv/put", &put).await;
        assert_eq!(status, 200);
    }
    let (_, after) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(sample(&after, "etcd_debugging_mvcc_keys_total"), Some(3.0));
    let applied_after =
        sample(&after, "etcd_server_proposals_applied_total").expect("applied index");
    assert!(
        applied_after >= applied_before + 3.0,
        "{applied_before} -> {applied_after}"
    );
    let fsyncs_after =
        sample(&after, "etcd_disk_wal_fsync_duration_seconds_count").expect("fsync histogram");
    assert!(fsyncs_after > fsyncs_before);
    assert_eq!(
        sample(
            &after,
            "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}"
        ),
        Some(3.0)
    );
    for line in after.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').expect("series and value");
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
}

#[tokio::test]
async fn health_is_false_without_a_leader() {
    // Member 1 of 3 with silent peers never wins an election.
    let (_node, addr) = serve(3).await;
    let (status, body) = http(addr, "GET", "/health", "").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "{\"health\":\"false\"}\n");
    // A serializable check asks only this member, which is up.
    let (status, body) = http(addr, "GET", "/health?serializable=true", "").await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(sample(&metrics, "etcd_server_has_leader"), Some(0.0));
    assert_eq!(sample(&metrics, "etcd_server_health_failures"), Some(1.0));
    assert_eq!(sample(&metrics, "etcd_server_health_success"), Some(1.0));
}

#[tokio::test]
async fn gateway_put_then_range() {
    let (node, addr) = serve(1).await;
    wait_leader(&node).await;

    let put = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(b"foo"), b64(b"bar"));
    let (status, put_response) = post_json(addr, "/v3/kv/put", &put).await;
    assert_eq!(status, 200, "{put_response}");
    let revision = put_response["header"]["revision"]
        .as_str()
        .expect("revision as a string");
    assert!(revision.parse::<i64>().expect("a number") >= 2);
    assert_eq!(put_response["header"]["member_id"], "1");

    let range = format!(r#"{{"key":"{}"}}"#, b64(b"foo"));
    let (status, got) = post_json(addr, "/v3/kv/range", &range).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["count"], "1");
    let kv = &got["kvs"][0];
    assert_eq!(kv["key"], b64(b"foo"));
    assert_eq!(kv["value"], b64(b"bar"));
    assert_eq!(kv["create_revision"], revision);
    assert_eq!(kv["mod_revision"], revision);
    assert_eq!(kv["version"], "1");

    // The older prefix serves the same API; an empty body is the default request.
    let (status, got) = post_json(addr, "/v3beta/kv/range", "").await;
    assert_eq!(status, 400, "an empty key is refused: {got}");
    assert_eq!(got["code"], 3);
    assert_eq!(got["error"], "etcdserver: key is not provided");

    let txn = format!(
        r#"{{"compare":[{{"key":"{}","target":"VALUE","result":"EQUAL","value":"{}"}}],
            "success":[{{"request_delete_range":{{"key":"{}"}}}}]}}"#,
        b64(b"foo"),
        b64(b"bar"),
        b64(b"foo")
    );
    let (status, txn_response) = post_json(addr, "/v3/kv/txn", &txn).await;
    assert_eq!(status, 200, "{txn_response}");
    assert_eq!(txn_response["succeeded"], true);
    assert_eq!(
        txn_response["responses"][0]["response_delete_range"]["deleted"],
        "1"
    );
}

#[tokio::test]
async fn gateway_refuses_bad_json_and_oversize_requests() {
    let (node, addr) = serve(1).await;
    wait_leader(&node).await;

    let (status, error) = post_json(addr, "/v3/kv/put", "{\"key\": ").await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["code"], 3);
    assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(error["error"], error["message"]);

    let (status, error) = post_json(addr, "/v3/kv/put", r#"{"key":"not base64!"}"#).await;
    assert_eq!(status, 400, "{error}");

    let (status, error) = post_json(addr, "/v3/auth/enable", "{}").await;
    assert_eq!(status, 501, "{error}");
    assert_eq!(error["code"], 12);

    let big = vec![b'x'; REQUEST_BYTES_MAX + 1];
    let put = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(b"big"), b64(&big));
    let (status, error) = post_json(addr, "/v3/kv/put", &put).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["code"], 3);
    assert_eq!(error["error"], "etcdserver: request is too large");
    // Nothing was written.
    let (_, got) = post_json(
        addr,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, b64(b"big")),
    )
    .await;
    assert!(got.get("kvs").is_none(), "{got}");
}

#[tokio::test]
async fn grpc_shares_the_port_and_is_counted() {
    let (node, addr) = serve(1).await;
    wait_leader(&node).await;
    let mut client = KvClient::connect(format!("http://{addr}"))
        .await
        .expect("gRPC connects");
    client
        .put(PutRequest {
            key: b"g".to_vec(),
            value: b"1".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put over gRPC");
    let refused = client
        .put(PutRequest::default())
        .await
        .expect_err("an empty key is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let (_, metrics) = http(addr, "GET", "/metrics", "").await;
    let series = |code: &str| {
        format!(
            "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}}"
        )
    };
    assert_eq!(sample(&metrics, &series("OK")), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, &series("InvalidArgument")), Some(1.0));
    let (_, got) = post_json(
        addr,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, b64(b"g")),
    )
    .await;
    assert_eq!(got["kvs"][0]["value"], b64(b"1"));
}

#[tokio::test]
async fn health_is_false_under_an_alarm_unless_excluded() {
    use detcd_engine::pb::detcdpeerpb::internal_request::Request;
    use detcd_engine::pb::etcdserverpb::{AlarmRequest, AlarmType, alarm_request::AlarmAction};
    let (node, addr) = serve(1).await;
    wait_leader(&node).await;
    node.write(Request::Alarm(AlarmRequest {
        action: AlarmAction::Activate as i32,
        member_id: 1,
        alarm: AlarmType::Nospace as i32,
    }))
    .await
    .expect("alarm raised");
    let (status, body) = http(addr, "GET", "/health", "").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "{\"health\":\"false\"}\n");
    let (status, body) = http(addr, "GET", "/health?exclude=NOSPACE", "").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(addr, "GET", "/health?exclude=CORRUPT", "").await;
    assert_eq!(status, 503);
}
