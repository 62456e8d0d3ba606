//! `GET /health`: whether this member can serve linearizable requests now.
//!
//! Healthy means a leader is known, no alarm is raised, and a linearizable read barrier
//! completes within [`HEALTH_READ_TIMEOUT_MS`]. The body is etcd's:
//! `{"health":"true","reason":""}` with 200, or `{"health":"false","reason":"..."}` with
//! 503, the reason in etcd's words (`RAFT NO LEADER`, `ALARM NOSPACE`, `QGET ERROR:...`).
//! It does not probe other members.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::{HttpState, json_response};
use crate::pb::etcdserverpb::AlarmType;
use crate::server::error::ServerError;
use crate::server::node::NodeHandle;

/// How long the health check's read barrier may take.
pub const HEALTH_READ_TIMEOUT_MS: u64 = 1_000;

/// etcd's health body.
#[derive(Debug, Serialize)]
struct Health {
    health: &'static str,
    reason: String,
}

pub(super) async fn health(State(state): State<HttpState>) -> Response {
    let (status, body) = match unhealthy_reason(&state.node).await {
        None => (
            StatusCode::OK,
            Health {
                health: "true",
                reason: String::new(),
            },
        ),
        Some(reason) => {
            tracing::debug!(%reason, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Health {
                    health: "false",
                    reason,
                },
            )
        }
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    json_response(status, bytes)
}

/// Why this member is not healthy, or `None` when it is.
async fn unhealthy_reason(node: &NodeHandle) -> Option<String> {
    if node.status().leader == 0 {
        return Some("RAFT NO LEADER".to_owned());
    }
    if let Some(alarm) = node.alarms().first() {
        let name = AlarmType::try_from(alarm.alarm).map_or("UNKNOWN", |a| a.as_str_name());
        return Some(format!("ALARM {name}"));
    }
    let timeout = Duration::from_millis(HEALTH_READ_TIMEOUT_MS);
    let barrier = tokio::time::timeout(timeout, node.read_barrier()).await;
    match barrier.unwrap_or(Err(ServerError::Timeout)) {
        Ok(()) => None,
        Err(e) => Some(format!("QGET ERROR:{e}")),
    }
}
