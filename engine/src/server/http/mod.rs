//! HTTP on the client port, beside gRPC: `/health`, `/version`, `/metrics` and etcd's
//! JSON gateway (`/v3/...`).
//!
//! [`client_router`] is the axum `Router` of these HTTP routes; the client port
//! (`server::listen::client_port`) sends it every request that is not a gRPC call, so
//! gRPC (HTTP/2 cleartext) and HTTP/1.1 clients share one listener as they do with etcd.
//! [`grpc_call`] counts every gRPC call in `grpc_server_handled_total` and honours the
//! `hasleader` metadata ([`has_leader`]).
//!
//! Real mode only (`cfg(not(madsim))`): the simulator carries gRPC without HTTP, so these
//! routes are covered by real-tokio tests. This module does not bind sockets or handle
//! TLS; the binary owns the listener.

mod gateway;
mod gateway_stream;
pub mod grpc_call;
pub mod has_leader;
mod health;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::grpc::cluster::ClusterService;
use super::metrics::{CLUSTER_VERSION, Metrics, SERVER_VERSION};
use super::node::NodeHandle;

pub use gateway::{Gateway, grpc_code_name};

/// The HTTP routes' shared state.
#[derive(Clone)]
struct HttpState {
    node: NodeHandle,
    metrics: Arc<Metrics>,
}

/// The client port's HTTP router: `/health`, `/version`, `/metrics` and the JSON gateway
/// over `node` (whose Cluster service is `cluster`).
pub fn client_router(node: NodeHandle, cluster: ClusterService) -> Router {
    let state = HttpState {
        node: node.clone(),
        metrics: node.metrics(),
    };
    let plain = Router::new()
        .route("/health", get(health::health))
        .route("/version", get(version))
        .route("/metrics", get(metrics_text))
        .with_state(state);
    plain.merge(Gateway::new(node, cluster).router())
}

/// A JSON response with `status`.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn version() -> Response {
    let body = serde_json::json!({
        "etcdserver": SERVER_VERSION,
        "etcdcluster": CLUSTER_VERSION,
    });
    json_response(StatusCode::OK, body.to_string().into_bytes())
}

async fn metrics_text(axum::extract::State(state): axum::extract::State<HttpState>) -> Response {
    let keys = state.node.with_kv(|kv| {
        let all = crate::pb::etcdserverpb::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..Default::default()
        };
        kv.range(&all)
            .map_or(0, |r| u64::try_from(r.count).unwrap_or(0))
    });
    state.metrics.set_keys(keys);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
