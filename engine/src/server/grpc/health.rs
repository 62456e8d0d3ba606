//! The `grpc.health.v1.Health` service: SERVING while this member knows a leader,
//! NOT_SERVING otherwise. It answers for every service name alike and does not probe
//! the disk or the key space.

use tonic::{Request, Response, Status};

use crate::pb::health::health_check_response::ServingStatus;
use crate::pb::health::health_server::Health;
use crate::pb::health::{HealthCheckRequest, HealthCheckResponse};
use crate::server::node::{NodeHandle, NodeStatus};

use super::{ResponseStream, STREAM_BUFFER_RESPONSES_MAX, receiver_stream};

/// The Health service of one member.
#[derive(Clone)]
pub struct HealthService {
    node: NodeHandle,
}

impl HealthService {
    /// The service for `node`.
    pub fn new(node: NodeHandle) -> Self {
        HealthService { node }
    }
}

fn serving(status: &NodeStatus) -> i32 {
    if status.leader != 0 && !status.stopped {
        ServingStatus::Serving as i32
    } else {
        ServingStatus::NotServing as i32
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: serving(&self.node.status()),
        }))
    }

    type WatchStream = ResponseStream<HealthCheckResponse>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER_RESPONSES_MAX);
        let mut changes = self.node.status_changes();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let now = serving(&changes.borrow_and_update());
                if last != Some(now) {
                    last = Some(now);
                    if tx
                        .send(Ok(HealthCheckResponse { status: now }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                tokio::select! {
                    biased;
                    _ = tx.closed() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
        });
        Ok(Response::new(receiver_stream(rx)))
    }
}
