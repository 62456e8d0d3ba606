//! The `etcdserverpb.Maintenance` service: Status, Hash, HashKV, Snapshot, Defragment,
//! Alarm, MoveLeader.
//!
//! Status reports an etcd 3.4 version string so etcdctl accepts the member, the key
//! space's snapshot size as the database size, and the raised alarms as errors. Snapshot
//! streams the key space's own snapshot encoding (not a bolt database: etcdctl
//! `snapshot save` stores it, but etcdctl `snapshot status/restore` cannot read it).
//! Defragment has nothing to do (the key space lives in memory) and only answers.

use tonic::{Request, Response, Status};

use crate::pb::detcdpeerpb::internal_request::Request as Write;
use crate::pb::etcdserverpb::alarm_request::AlarmAction;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::pb::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::server::error::ServerError;
use crate::server::node::{Applied, NodeHandle};

use super::{ResponseStream, STREAM_BUFFER_RESPONSES_MAX, header_now, receiver_stream, unexpected};

/// The server version Status reports (etcdctl 3.4 expects a 3.4 server).
pub const SERVER_VERSION: &str = "3.4.23";

/// Bytes of snapshot per streamed message.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 32 * 1024;

/// The Maintenance service of one member.
#[derive(Clone)]
pub struct MaintenanceService {
    node: NodeHandle,
}

impl MaintenanceService {
    /// The service for `node`.
    pub fn new(node: NodeHandle) -> Self {
        MaintenanceService { node }
    }
}

/// An alarm as etcd's Status lists it among its errors.
fn alarm_text(alarm: &AlarmMember) -> String {
    let name = AlarmType::try_from(alarm.alarm).map_or("UNKNOWN", |a| a.as_str_name());
    format!("memberID:{} alarm:{} ", alarm.member_id, name)
}

/// The snapshot split into messages, each telling how many bytes follow it.
/// Magic at the start of a snapshot file streamed by `Maintenance.Snapshot`.
pub const SNAPSHOT_FILE_MAGIC: &[u8; 8] = b"DTCDSNAP";
/// etcdctl accepts a snapshot whose length before the trailing SHA-256 is a multiple of
/// this (etcd's are bolt files, whole pages).
pub const SNAPSHOT_FILE_ALIGN_BYTES: usize = 512;

/// The snapshot as a file etcdctl's `snapshot save` accepts: magic, payload length (u64
/// little-endian), the payload, zero padding to [`SNAPSHOT_FILE_ALIGN_BYTES`], and the
/// SHA-256 of everything before it.
pub fn snapshot_file(payload: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let mut file = Vec::with_capacity(payload.len() + SNAPSHOT_FILE_ALIGN_BYTES + 48);
    file.extend_from_slice(SNAPSHOT_FILE_MAGIC);
    file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    file.extend_from_slice(payload);
    file.resize(file.len().next_multiple_of(SNAPSHOT_FILE_ALIGN_BYTES), 0);
    let digest = sha2::Sha256::digest(&file);
    file.extend_from_slice(&digest);
    file
}

/// The payload of a file made by [`snapshot_file`], after checking its checksum.
pub fn snapshot_payload(file: &[u8]) -> Result<&[u8], String> {
    use sha2::Digest as _;
    let body_len = file
        .len()
        .checked_sub(32)
        .ok_or_else(|| "snapshot file too short".to_owned())?;
    let (body, digest) = file.split_at(body_len);
    if sha2::Sha256::digest(body).as_slice() != digest {
        return Err("snapshot file checksum mismatch".to_owned());
    }
    if body.len() < 16 || &body[..8] != SNAPSHOT_FILE_MAGIC {
        return Err("not a detcd snapshot file".to_owned());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&body[8..16]);
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| "bad length".to_owned())?;
    body.get(16..16 + len)
        .ok_or_else(|| "snapshot file length exceeds its contents".to_owned())
}

fn snapshot_chunks(bytes: &[u8]) -> Vec<SnapshotResponse> {
    let total = bytes.len();
    let mut sent = 0usize;
    let mut chunks = Vec::new();
    for blob in bytes.chunks(SNAPSHOT_CHUNK_BYTES_MAX) {
        sent += blob.len();
        chunks.push(SnapshotResponse {
            header: None,
            remaining_bytes: (total - sent) as u64,
            blob: blob.to_vec(),
        });
    }
    chunks
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let req = request.into_inner();
        let target = AlarmMember {
            member_id: req.member_id,
            alarm: req.alarm,
        };
        let alarms = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => self.node.alarms(),
            Ok(AlarmAction::Activate) => match self.node.write(Write::Alarm(req)).await? {
                Applied::Alarms(now) => now.into_iter().filter(|a| *a == target).collect(),
                other => return Err(unexpected(&other)),
            },
            Ok(AlarmAction::Deactivate) => {
                let was_raised = self.node.alarms().contains(&target);
                match self.node.write(Write::Alarm(req)).await? {
                    Applied::Alarms(_) if was_raised => vec![target],
                    Applied::Alarms(_) => Vec::new(),
                    other => return Err(unexpected(&other)),
                }
            }
            Err(_) => {
                return Err(ServerError::InvalidArgument(format!(
                    "etcdserver: unknown alarm action {}",
                    req.action
                ))
                .into());
            }
        };
        Ok(Response::new(AlarmResponse {
            header: Some(header_now(&self.node)),
            alarms,
        }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let status = self.node.status();
        // The length of the state's snapshot encoding, taking the records after the kept
        // encoding under the lock and encoding only those, outside it.
        let mut source = self.node.with_kv(|kv| kv.snapshot_source());
        let db_size = source.encoded_len();
        let db_size = i64::try_from(db_size).unwrap_or(i64::MAX);
        let mut errors = Vec::new();
        if status.leader == 0 {
            errors.push(ServerError::NoLeader.to_string());
        }
        errors.extend(self.node.alarms().iter().map(alarm_text));
        Ok(Response::new(StatusResponse {
            header: Some(header_now(&self.node)),
            version: SERVER_VERSION.to_owned(),
            db_size,
            leader: status.leader,
            raft_index: status.commit,
            raft_term: status.term,
            raft_applied_index: status.applied,
            errors,
            db_size_in_use: db_size,
            is_learner: status.is_learner,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Ok(Response::new(DefragmentResponse {
            header: Some(header_now(&self.node)),
        }))
    }

    async fn hash(&self, _request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let response = self
            .node
            .with_kv(|kv| kv.hash_kv(0))
            .map_err(ServerError::from)?;
        Ok(Response::new(HashResponse {
            header: Some(header_now(&self.node)),
            hash: response.hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let req = request.into_inner();
        let mut response = self
            .node
            .with_kv(|kv| kv.hash_kv(req.revision))
            .map_err(ServerError::from)?;
        response.header = Some(self.node.header(response.header.map_or(0, |h| h.revision)));
        Ok(Response::new(response))
    }

    type SnapshotStream = ResponseStream<SnapshotResponse>;

    async fn snapshot(
        &self,
        _request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let bytes = snapshot_file(&self.node.with_kv(|kv| kv.snapshot()));
        let header = header_now(&self.node);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER_RESPONSES_MAX);
        tokio::spawn(async move {
            for mut chunk in snapshot_chunks(&bytes) {
                chunk.header = Some(header);
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(receiver_stream(rx)))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let req = request.into_inner();
        if !self.node.status().is_leader {
            return Err(ServerError::NotLeader.into());
        }
        self.node.move_leader(req.target_id).await?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(header_now(&self.node)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_chunks_count_down_to_zero_and_rejoin_to_the_bytes() {
        let bytes: Vec<u8> = (0..(SNAPSHOT_CHUNK_BYTES_MAX * 2 + 5))
            .map(|i| i as u8)
            .collect();
        let chunks = snapshot_chunks(&bytes);
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[0].remaining_bytes,
            (SNAPSHOT_CHUNK_BYTES_MAX + 5) as u64
        );
        assert_eq!(chunks[2].remaining_bytes, 0);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.blob.clone()).collect();
        assert_eq!(joined, bytes);
    }

    #[test]
    fn alarms_read_as_etcd_prints_them() {
        let alarm = AlarmMember {
            member_id: 7,
            alarm: AlarmType::Nospace as i32,
        };
        assert_eq!(alarm_text(&alarm), "memberID:7 alarm:NOSPACE ");
    }
}
