//! `GET /health`: whether this member can serve requests now.
//!
//! The checks run in etcd's order: a raised alarm (unless named in `?exclude=`), no known
//! leader (skipped with `?serializable=true`), then a read that must complete within
//! [`HEALTH_READ_TIMEOUT_MS`] (linearizable unless serializable). The answer is etcd
//! 3.4's byte for byte: `{"health":"true"}` with 200, or `{"health":"false"}` and a
//! newline with 503 (etcd writes the failure through Go's `http.Error`); the reason
//! (`RAFT NO LEADER`, `ALARM NOSPACE`, ...) goes to the log, as etcd keeps it out of
//! the body. It does not probe other members.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use crate::pb::etcdserverpb::AlarmType;
use crate::server::error::ServerError;
use crate::server::node::NodeHandle;

/// How long the health check's read may take (etcd's is one second).
pub const HEALTH_READ_TIMEOUT_MS: u64 = 1_000;

/// The query of `/health`: `exclude=<ALARM>` (repeatable) and `serializable=true`.
#[derive(Debug, Default)]
struct HealthQuery {
    excluded_alarms: Vec<String>,
    serializable: bool,
}

impl HealthQuery {
    fn parse(pairs: &[(String, String)]) -> HealthQuery {
        let mut query = HealthQuery::default();
        for (name, value) in pairs {
            match name.as_str() {
                "exclude" => query.excluded_alarms.push(value.clone()),
                "serializable" => query.serializable = value == "true",
                _ => {}
            }
        }
        query
    }
}

pub(super) async fn health(
    State(state): State<HttpState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let query = HealthQuery::parse(&pairs);
    let text_plain = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    match unhealthy_reason(&state.node, &query).await {
        None => {
            state.metrics.health_checked(true);
            (StatusCode::OK, text_plain, "{\"health\":\"true\"}").into_response()
        }
        Some(reason) => {
            state.metrics.health_checked(false);
            tracing::warn!(%reason, "/health is false");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                text_plain,
                "{\"health\":\"false\"}\n",
            )
                .into_response()
        }
    }
}

/// Why this member is not healthy, or `None` when it is.
async fn unhealthy_reason(node: &NodeHandle, query: &HealthQuery) -> Option<String> {
    for alarm in node.alarms() {
        let name = AlarmType::try_from(alarm.alarm).map_or("UNKNOWN", |a| a.as_str_name());
        if !query.excluded_alarms.iter().any(|e| e == name) {
            return Some(format!("ALARM {name}"));
        }
    }
    if query.serializable {
        return None;
    }
    if node.status().leader == 0 {
        return Some("RAFT NO LEADER".to_owned());
    }
    let timeout = Duration::from_millis(HEALTH_READ_TIMEOUT_MS);
    let barrier = tokio::time::timeout(timeout, node.read_barrier()).await;
    match barrier.unwrap_or(Err(ServerError::Timeout)) {
        Ok(()) => None,
        Err(e) => Some(format!("RANGE ERROR:{e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn query_names_excluded_alarms_and_serializable() {
        let q = HealthQuery::parse(&pairs("exclude=NOSPACE&serializable=true&exclude=CORRUPT"));
        assert_eq!(q.excluded_alarms, ["NOSPACE", "CORRUPT"]);
        assert!(q.serializable);
        let q = HealthQuery::parse(&pairs("serializable=yes&other=1"));
        assert!(q.excluded_alarms.is_empty());
        assert!(!q.serializable);
    }
}
