//! The client port's fast path for the hot unary KV calls (Range, Put, DeleteRange,
//! Txn), real mode only.
//!
//! tonic serves a unary call through a streaming decoder and encoder, each with its own
//! 8 KiB buffer, and a boxed response body that polls a stream of one message. Here the
//! request body (one gRPC message: a compressed flag, a big-endian length, the protobuf)
//! is collected, decoded with prost, handed to the same `KvService::serve_*` code the
//! tonic service runs, and the reply is encoded into one buffer of its exact size and
//! sent as one DATA frame and `grpc-status: 0` trailers. Errors are the statuses tonic
//! would send, built by tonic (trailers-only responses): the services' own errors,
//! tonic's texts for a missing, truncated, oversize or flagged-compressed message and
//! prost's decode errors.
//!
//! It does not handle compression: a call with a `grpc-encoding` other than `identity`
//! takes the tonic path ([`fast_method`] returns `None`), which answers it as before. It
//! does not route, count calls or check `hasleader`: the client port does.

use http::{HeaderMap, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes, BytesMut};
use tonic::Status;

use crate::pb::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};
use crate::server::grpc::kv::KvService;

/// Bytes of a gRPC message's prefix: the compressed flag and the big-endian length.
pub const MESSAGE_PREFIX_BYTES: usize = 5;

/// A KV method the fast path serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvMethod {
    /// `/etcdserverpb.KV/Range`.
    Range,
    /// `/etcdserverpb.KV/Put`.
    Put,
    /// `/etcdserverpb.KV/DeleteRange`.
    DeleteRange,
    /// `/etcdserverpb.KV/Txn`.
    Txn,
}

/// The fast-path method of a request with this path and these headers, if it has one:
/// a KV unary method, a gRPC content type, and no message compression.
pub fn fast_method(path: &str, headers: &HeaderMap) -> Option<KvMethod> {
    let method = match path.strip_prefix("/etcdserverpb.KV/")? {
        "Put" => KvMethod::Put,
        "Range" => KvMethod::Range,
        "Txn" => KvMethod::Txn,
        "DeleteRange" => KvMethod::DeleteRange,
        _ => return None,
    };
    let grpc = headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        matches!(
            v.as_bytes(),
            b"application/grpc" | b"application/grpc+proto"
        )
    });
    let plain = headers
        .get("grpc-encoding")
        .is_none_or(|v| v.as_bytes() == b"identity");
    (grpc && plain).then_some(method)
}

/// Serves one call of `method`: its request body in, its framed reply message out.
/// `message_bytes_max` bounds the request message as tonic's decoder does.
pub async fn serve(
    kv: &KvService,
    method: KvMethod,
    request: Request<Incoming>,
    message_bytes_max: usize,
) -> Result<Bytes, Status> {
    let body = read_message(request.into_body(), message_bytes_max).await?;
    match method {
        KvMethod::Put => encode(&kv.serve_put(decode::<PutRequest>(body)?).await?),
        KvMethod::Range => encode(&kv.serve_range(decode::<RangeRequest>(body)?).await?),
        KvMethod::Txn => encode(&kv.serve_txn(decode::<TxnRequest>(body)?).await?),
        KvMethod::DeleteRange => encode(
            &kv.serve_delete_range(decode::<DeleteRangeRequest>(body)?)
                .await?,
        ),
    }
}

/// Reads the first gRPC message of `body` (its protobuf bytes, without the prefix).
/// Bytes after it are read and dropped (tonic ignores them in a unary call too).
async fn read_message<B>(mut body: B, message_bytes_max: usize) -> Result<Bytes, Status>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut held = Held::default();
    let mut wanted: Option<usize> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::internal(format!("request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // request trailers carry nothing a KV call reads
        };
        if wanted.is_some_and(|w| held.len() >= w) {
            continue;
        }
        held.push(data);
        if wanted.is_none() && held.len() >= MESSAGE_PREFIX_BYTES {
            wanted = Some(MESSAGE_PREFIX_BYTES + message_len(held.prefix(), message_bytes_max)?);
        }
    }
    let Some(wanted) = wanted else {
        return Err(if held.len() == 0 {
            Status::internal("Missing request message.")
        } else {
            Status::internal("Unexpected EOF decoding stream.")
        });
    };
    let mut bytes = held.into_bytes();
    if bytes.len() < wanted {
        return Err(Status::internal("Unexpected EOF decoding stream."));
    }
    bytes.truncate(wanted);
    bytes.advance(MESSAGE_PREFIX_BYTES);
    Ok(bytes)
}

/// The message length a prefix declares, checked against the flag and the limit with
/// tonic's texts.
fn message_len(
    prefix: [u8; MESSAGE_PREFIX_BYTES],
    message_bytes_max: usize,
) -> Result<usize, Status> {
    match prefix[0] {
        0 => {}
        1 => {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ));
        }
        f => {
            return Err(Status::internal(format!(
                "protocol error: received message with invalid compression flag: {f} (valid flags are 0 and 1), while sending request"
            )));
        }
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > message_bytes_max {
        return Err(Status::out_of_range(format!(
            "Error, decoded message length too large: found {len} bytes, the limit is: {message_bytes_max} bytes"
        )));
    }
    Ok(len)
}

/// The request body's bytes so far: the first chunk as is (the usual case is one DATA
/// frame), copied into one buffer only when a second one comes.
#[derive(Default)]
struct Held {
    first: Bytes,
    more: Option<BytesMut>,
}

impl Held {
    fn len(&self) -> usize {
        self.more.as_ref().map_or(self.first.len(), BytesMut::len)
    }

    fn push(&mut self, data: Bytes) {
        match &mut self.more {
            Some(more) => more.extend_from_slice(&data),
            None if self.first.is_empty() => self.first = data,
            None => {
                let mut more = BytesMut::with_capacity(self.first.len() + data.len());
                more.extend_from_slice(&self.first);
                more.extend_from_slice(&data);
                self.more = Some(more);
            }
        }
    }

    /// The first [`MESSAGE_PREFIX_BYTES`] bytes (the caller checked there are that many).
    fn prefix(&self) -> [u8; MESSAGE_PREFIX_BYTES] {
        let bytes: &[u8] = self.more.as_deref().unwrap_or(&self.first);
        let mut prefix = [0u8; MESSAGE_PREFIX_BYTES];
        let n = bytes.len().min(MESSAGE_PREFIX_BYTES);
        prefix[..n].copy_from_slice(&bytes[..n]);
        prefix
    }

    fn into_bytes(self) -> Bytes {
        self.more.map_or(self.first, BytesMut::freeze)
    }
}

/// Decodes a request message as tonic's prost codec does (errors are INTERNAL).
fn decode<M: Message + Default>(bytes: Bytes) -> Result<M, Status> {
    M::decode(bytes).map_err(|e| Status::internal(e.to_string()))
}

/// `message` framed as one uncompressed gRPC message, in a buffer of its exact size.
fn encode<M: Message>(message: &M) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    let prefix_len = u32::try_from(len)
        .map_err(|_| Status::resource_exhausted("response message too large to frame"))?;
    let mut buf = BytesMut::with_capacity(MESSAGE_PREFIX_BYTES + len);
    buf.put_u8(0);
    buf.put_u32(prefix_len);
    message
        .encode(&mut buf)
        .map_err(|e| Status::internal(format!("encoding the response: {e}")))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;

    use http_body::Frame;
    use http_body_util::StreamBody;

    type Chunks = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>,
    >;

    fn body(chunks: &[&[u8]]) -> Chunks {
        let frames: Vec<_> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn grpc_headers(content_type: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        headers
    }

    #[test]
    fn only_plain_grpc_calls_of_the_four_methods_take_the_fast_path() {
        let grpc = grpc_headers("application/grpc");
        assert_eq!(
            fast_method("/etcdserverpb.KV/Put", &grpc),
            Some(KvMethod::Put)
        );
        assert_eq!(
            fast_method("/etcdserverpb.KV/Range", &grpc),
            Some(KvMethod::Range)
        );
        assert_eq!(
            fast_method("/etcdserverpb.KV/Txn", &grpc),
            Some(KvMethod::Txn)
        );
        assert_eq!(
            fast_method(
                "/etcdserverpb.KV/DeleteRange",
                &grpc_headers("application/grpc+proto")
            ),
            Some(KvMethod::DeleteRange)
        );
        assert_eq!(fast_method("/etcdserverpb.KV/Compact", &grpc), None);
        assert_eq!(fast_method("/etcdserverpb.Lease/Put", &grpc), None);
        assert_eq!(
            fast_method("/etcdserverpb.KV/Put", &grpc_headers("application/json")),
            None
        );
        assert_eq!(fast_method("/etcdserverpb.KV/Put", &HeaderMap::new()), None);
        let mut gzip = grpc.clone();
        gzip.insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
        assert_eq!(fast_method("/etcdserverpb.KV/Put", &gzip), None);
        let mut identity = grpc;
        identity.insert("grpc-encoding", http::HeaderValue::from_static("identity"));
        assert_eq!(
            fast_method("/etcdserverpb.KV/Put", &identity),
            Some(KvMethod::Put)
        );
    }

    #[tokio::test]
    async fn a_message_is_read_whole_from_any_split_and_extra_bytes_are_dropped() {
        let framed = encode(&PutRequest {
            key: b"k".to_vec(),
            value: b"value".to_vec(),
            ..Default::default()
        })
        .expect("encodes");
        let want = framed.slice(MESSAGE_PREFIX_BYTES..);
        for split in 0..=framed.len() {
            let (a, b) = framed.split_at(split);
            let got = read_message(body(&[a, b, b"trailing"]), 64).await;
            assert_eq!(got.expect("a message"), want, "split at {split}");
        }
        let put = decode::<PutRequest>(want).expect("decodes");
        assert_eq!(put.value, b"value");
    }

    #[tokio::test]
    async fn bad_bodies_are_clean_errors() {
        let cases: [(&[&[u8]], tonic::Code, &str); 6] = [
            (&[], tonic::Code::Internal, "Missing request message."),
            (
                &[&[0, 0]],
                tonic::Code::Internal,
                "Unexpected EOF decoding stream.",
            ),
            (
                &[&[0, 0, 0, 0, 9, 1, 2]],
                tonic::Code::Internal,
                "Unexpected EOF decoding stream.",
            ),
            (
                &[&[1, 0, 0, 0, 1, 8]],
                tonic::Code::Internal,
                "compressed-flag",
            ),
            (
                &[&[9, 0, 0, 0, 1, 8]],
                tonic::Code::Internal,
                "invalid compression flag: 9",
            ),
            (
                &[&[0, 0, 0, 1, 0]],
                tonic::Code::OutOfRange,
                "found 256 bytes, the limit is: 64",
            ),
        ];
        for (chunks, code, text) in cases {
            let err = read_message(body(chunks), 64).await.expect_err("refused");
            assert_eq!(err.code(), code, "{chunks:?}");
            assert!(
                err.message().contains(text),
                "{chunks:?}: {}",
                err.message()
            );
        }
        let garbage = decode::<PutRequest>(Bytes::from_static(&[0xff, 0xff, 0xff]));
        assert_eq!(
            garbage.expect_err("not protobuf").code(),
            tonic::Code::Internal
        );
    }

    #[test]
    fn replies_are_framed_in_a_buffer_of_their_exact_size() {
        let reply = crate::pb::etcdserverpb::PutResponse::default();
        let framed = encode(&reply).expect("encodes");
        assert_eq!(framed.as_ref(), &[0, 0, 0, 0, 0]);
        let range = crate::pb::etcdserverpb::RangeResponse {
            count: 300,
            ..Default::default()
        };
        let framed = encode(&range).expect("encodes");
        assert_eq!(framed.len(), MESSAGE_PREFIX_BYTES + range.encoded_len());
        assert_eq!(
            &framed[1..5],
            &u32::try_from(range.encoded_len())
                .expect("small")
                .to_be_bytes()
        );
    }
}
