//! The client port's unary KV fast path against the tonic path: the same requests,
//! well-formed and malformed, sent to one port with the fast path and to one without,
//! must get the same gRPC outcome (status, message, reply). Real sockets, a single-member
//! node on an in-memory disk each.

#![cfg(not(madsim))]

mod services_support;

use std::net::SocketAddr;

use detcd_engine::pb::etcdserverpb::kv_server::KvServer;
use detcd_engine::pb::etcdserverpb::{
    DeleteRangeRequest, PutRequest, PutResponse, RangeRequest, RequestOp, TxnRequest, request_op,
};
use detcd_engine::server::grpc::cluster::ClusterService;
use detcd_engine::server::grpc::kv::KvService;
use detcd_engine::server::http::client_router;
use detcd_engine::server::listen::client_port::{ClientPort, GrpcServices, serve_connections};
use detcd_engine::server::node::NodeConfig;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use prost::Message;

/// The largest request the test node accepts.
const REQUEST_BYTES_MAX: usize = 4096;
/// The gRPC message limit of both paths (above the request limit, as in `listen.rs`).
const MESSAGE_BYTES_MAX: usize = REQUEST_BYTES_MAX + 1024;

/// Serves a fresh single-member node's client port, with the fast path or without.
async fn serve(fast: bool) -> SocketAddr {
    let node = services_support::single_node_with(NodeConfig {
        request_bytes_max: REQUEST_BYTES_MAX,
        ..services_support::config(0)
    })
    .await;
    let mut grpc = GrpcServices::default();
    if fast {
        grpc = grpc.with_unary_kv(KvService::new(node.clone()), MESSAGE_BYTES_MAX);
    }
    let grpc = grpc.add_service(
        KvServer::new(KvService::new(node.clone())).max_decoding_message_size(MESSAGE_BYTES_MAX),
    );
    let cluster = ClusterService::new(node.clone(), "tok".to_owned(), || 1_700_000_000);
    let port = ClientPort::new(grpc, client_router(node.clone(), cluster), node);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("an address");
    let (_, never) = tokio::sync::watch::channel(false);
    tokio::spawn(serve_connections(listener, port, never));
    addr
}

/// What a client sees of one call: HTTP status, grpc-status, grpc-message, reply bytes.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    http: u16,
    status: Option<String>,
    message: Option<String>,
    reply: Bytes,
}

/// One HTTP/2 connection to `addr`.
async fn connect(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

type Body = http_body_util::StreamBody<
    futures_util::stream::Iter<
        std::vec::IntoIter<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>,
    >,
>;

/// Calls `method` with `chunks` as the request body's DATA frames and `headers` added.
async fn call(
    send: &mut hyper::client::conn::http2::SendRequest<Body>,
    method: &str,
    chunks: Vec<Vec<u8>>,
    headers: &[(&'static str, &'static str)],
) -> Outcome {
    let frames: Vec<_> = chunks
        .into_iter()
        .map(|c| Ok(hyper::body::Frame::data(Bytes::from(c))))
        .collect();
    let mut request = http::Request::post(format!("http://detcd/etcdserverpb.KV/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
        .expect("a request");
    send.ready().await.expect("connection ready");
    let response = send.send_request(request).await.expect("a response");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("a body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        parts
            .headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| v.to_str().expect("ASCII").to_owned())
    };
    Outcome {
        http: parts.status.as_u16(),
        status: field("grpc-status"),
        message: field("grpc-message"),
        reply: collected.to_bytes(),
    }
}

/// `message` framed as one uncompressed gRPC message.
fn framed(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn put(key: &[u8], value_len: usize) -> PutRequest {
    PutRequest {
        key: key.to_vec(),
        value: vec![b'v'; value_len],
        ..Default::default()
    }
}

/// One call: its name, the KV method, the request body's DATA frames, extra headers.
type Case = (
    &'static str,
    &'static str,
    Vec<Vec<u8>>,
    Vec<(&'static str, &'static str)>,
);

/// The calls both ports get, in order (later ones see the writes of earlier ones).
fn cases() -> Vec<Case> {
    let whole_put = framed(&put(b"a", 10));
    let (head, tail) = whole_put.split_at(3);
    let mut long_prefix = vec![0u8];
    long_prefix.extend_from_slice(&100u32.to_be_bytes());
    long_prefix.extend_from_slice(b"short");
    let mut compressed = framed(&put(b"c", 1));
    compressed[0] = 1;
    let mut odd_flag = framed(&put(b"c", 1));
    odd_flag[0] = 7;
    let mut over_limit = vec![0u8];
    over_limit.extend_from_slice(
        &u32::try_from(MESSAGE_BYTES_MAX + 1)
            .expect("small")
            .to_be_bytes(),
    );
    let txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put(b"t", 3))),
        }],
        ..Default::default()
    };
    let read_txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: b"a".to_vec(),
                serializable: true,
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    let range_all = RangeRequest {
        key: b"\0".to_vec(),
        range_end: b"\0".to_vec(),
        ..Default::default()
    };
    let delete = DeleteRangeRequest {
        key: b"t".to_vec(),
        prev_kv: true,
        ..Default::default()
    };
    vec![
        ("put", "Put", vec![framed(&put(b"a", 10))], vec![]),
        (
            "put split over two frames",
            "Put",
            vec![head.to_vec(), tail.to_vec()],
            vec![],
        ),
        (
            "put with an empty key",
            "Put",
            vec![framed(&put(b"", 1))],
            vec![],
        ),
        (
            "put over the request limit",
            "Put",
            vec![framed(&put(b"big", REQUEST_BYTES_MAX + 10))],
            vec![],
        ),
        ("no message", "Put", vec![], vec![]),
        ("a partial prefix", "Put", vec![vec![0, 0, 0]], vec![]),
        ("a truncated message", "Put", vec![long_prefix], vec![]),
        ("the compressed flag", "Put", vec![compressed], vec![]),
        ("an unknown flag", "Put", vec![odd_flag], vec![]),
        ("a message over the limit", "Put", vec![over_limit], vec![]),
        (
            "bytes that are no protobuf",
            "Put",
            vec![vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff]],
            vec![],
        ),
        (
            "gzip encoding",
            "Put",
            vec![framed(&put(b"z", 1))],
            vec![("grpc-encoding", "gzip")],
        ),
        ("txn put", "Txn", vec![framed(&txn)], vec![]),
        ("read-only txn", "Txn", vec![framed(&read_txn)], vec![]),
        ("range of all", "Range", vec![framed(&range_all)], vec![]),
        (
            "range with an empty key",
            "Range",
            vec![framed(&RangeRequest::default())],
            vec![],
        ),
        ("delete", "DeleteRange", vec![framed(&delete)], vec![]),
        (
            "hasleader on a leader",
            "Put",
            vec![framed(&put(b"h", 1))],
            vec![("hasleader", "true")],
        ),
    ]
}

#[tokio::test]
async fn the_fast_path_answers_every_call_as_the_tonic_path_does() {
    let fast_addr = serve(true).await;
    let tonic_addr = serve(false).await;
    let mut fast = connect(fast_addr).await;
    let mut slow = connect(tonic_addr).await;
    let mut failures = 0;
    for (name, method, chunks, headers) in cases() {
        let got = call(&mut fast, method, chunks.clone(), &headers).await;
        let want = call(&mut slow, method, chunks, &headers).await;
        assert_eq!(got, want, "{name}");
        if want.status.as_deref() != Some("0") {
            failures += 1;
        }
    }
    // The cases cover both outcomes (so equality is not trivially about errors only).
    assert!(failures >= 9, "{failures} failing cases");
    let first = call(&mut fast, "Put", vec![framed(&put(b"a", 1))], &[]).await;
    assert_eq!(first.status.as_deref(), Some("0"));
    let reply = PutResponse::decode(&first.reply[5..]).expect("a PutResponse");
    assert!(reply.header.is_some_and(|h| h.revision > 1));
}
