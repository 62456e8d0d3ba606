//! etcd v3 wire types and gRPC services, generated at build time from `engine/proto/`.
//!
//! Module names follow the protobuf packages, so paths read as in etcd:
//! `pb::etcdserverpb::RangeRequest`, `pb::mvccpb::KeyValue`, `pb::v3lockpb::LockRequest`.
//! The client-API packages also carry serde impls in the proto3 JSON mapping (proto field
//! names, 64-bit integers as strings, bytes as base64) for the HTTP gateway.
//! Nothing here is written by hand; behaviour lives in the modules that use these types.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Key-value records and watch events (`mvccpb`).
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// Auth records (`authpb`).
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// The client API: KV, Watch, Lease, Cluster, Maintenance, Auth (`etcdserverpb`).
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// The lock service (`v3lockpb`).
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// The election service (`v3electionpb`).
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// detcd's peer protocol and Raft entry payloads (`detcdpeerpb`); not etcd's API.
pub mod detcdpeerpb {
    tonic::include_proto!("detcdpeerpb");
}

/// The standard gRPC health service (`grpc.health.v1`).
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

#[cfg(test)]
mod tests {
    //! Pins a few wire facts by hand-encoded bytes, so a renumbered field is caught here
    //! rather than by a confused client.

    use super::etcdserverpb::{Compare, RangeRequest, WatchResponse, compare};
    use prost::Message;

    #[test]
    fn range_request_fields_have_etcds_numbers() {
        let request = RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            limit: 5,
            keys_only: true,
            ..Default::default()
        };
        // field 1 bytes "a", field 2 bytes "b", field 3 varint 5, field 8 varint 1
        assert_eq!(
            request.encode_to_vec(),
            [0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x18, 0x05, 0x40, 0x01]
        );
    }

    #[test]
    fn compare_range_end_is_field_64() {
        let compare = Compare {
            range_end: b"z".to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(7)),
            ..Default::default()
        };
        // field 6 varint 7, then field 64 (tag 0x202 as a varint: 0x82 0x04) bytes "z"
        assert_eq!(
            compare.encode_to_vec(),
            [0x30, 0x07, 0x82, 0x04, 0x01, b'z']
        );
    }

    #[test]
    fn watch_response_events_are_field_11() {
        let response = WatchResponse {
            events: vec![Default::default()],
            ..Default::default()
        };
        assert_eq!(response.encode_to_vec(), [0x5a, 0x00]);
        let decoded = WatchResponse::decode(&[0x5a, 0x00][..]).expect("valid bytes");
        assert_eq!(decoded.events.len(), 1);
    }
}
