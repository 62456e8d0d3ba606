//! The streaming half of the JSON gateway: a request body holding a sequence of JSON
//! request objects becomes a stream of requests, and a stream of responses becomes a
//! chunked body of newline-separated `{"result":...}` objects, as etcd's gateway
//! streams them.
//!
//! A stream that fails after it has started ends with one
//! `{"error":{"grpc_code":..,"http_code":..,"message":..,"http_status":..}}` line (the
//! gateway cannot change the HTTP status once the body has begun). This module does not
//! know which service it serves: the gateway passes the call in.

use std::pin::Pin;

use axum::body::Body;
use futures_util::stream::{self, Stream, StreamExt};
use http_body_util::BodyExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;

use crate::server::error::ServerError;

/// A boxed stream of decoded requests (what the services' stream loops take).
pub(crate) type RequestStream<Req> =
    Pin<Box<dyn Stream<Item = Result<Req, Status>> + Send + 'static>>;

/// State of the incremental decoder: the body, the bytes not yet decoded, whether the
/// body has ended, and whether a decode error already ended the stream.
struct Decoder {
    body: Body,
    pending: Vec<u8>,
    body_done: bool,
    failed: bool,
    message_bytes_max: usize,
}

impl Decoder {
    /// The next request in the body: `None` at the end, an error (then the end) on JSON
    /// that is not a `Req` or a message over the limit.
    async fn next<Req: DeserializeOwned>(&mut self) -> Option<Result<Req, Status>> {
        if self.failed {
            return None;
        }
        loop {
            let start = self
                .pending
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.pending.len());
            self.pending.drain(..start);
            if !self.pending.is_empty() {
                let mut values =
                    serde_json::Deserializer::from_slice(&self.pending).into_iter::<Req>();
                match values.next() {
                    Some(Ok(req)) => {
                        let used = values.byte_offset();
                        self.pending.drain(..used);
                        return Some(Ok(req));
                    }
                    Some(Err(e)) if !e.is_eof() || self.body_done => {
                        self.failed = true;
                        return Some(Err(Status::unknown(e.to_string())));
                    }
                    _ => {}
                }
            } else if self.body_done {
                return None;
            }
            if self.body_done {
                // An incomplete object at the end of the body.
                self.failed = true;
                return Some(Err(Status::unknown("unexpected EOF")));
            }
            match self.body.frame().await {
                None => self.body_done = true,
                Some(Err(e)) => {
                    self.failed = true;
                    return Some(Err(Status::unknown(e.to_string())));
                }
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if self.pending.len() + data.len() > self.message_bytes_max {
                            self.failed = true;
                            return Some(Err(ServerError::RequestTooLarge.into()));
                        }
                        self.pending.extend_from_slice(data);
                    }
                }
            }
        }
    }
}

/// The requests in `body`, decoded one JSON object at a time as the bytes arrive. Each
/// object may take at most `message_bytes_max` bytes.
pub(crate) fn json_requests<Req>(body: Body, message_bytes_max: usize) -> RequestStream<Req>
where
    Req: DeserializeOwned + Send + 'static,
{
    let decoder = Decoder {
        body,
        pending: Vec::new(),
        body_done: false,
        failed: false,
        message_bytes_max,
    };
    Box::pin(stream::unfold(decoder, |mut decoder| async move {
        let item = decoder.next::<Req>().await?;
        Some((item, decoder))
    }))
}

/// The JSON line for one streamed response or error. The response is encoded straight
/// into the line (not through a `serde_json::Value`), so its fields keep the proto's
/// order, as etcd's lines do.
pub(crate) fn result_line<Resp: Serialize>(item: Result<Resp, Status>) -> Vec<u8> {
    let mut line = match item.map(|response| serde_json::to_vec(&response)) {
        Ok(Ok(result)) => {
            let mut line = b"{\"result\":".to_vec();
            line.extend(result);
            line.push(b'}');
            line
        }
        Ok(Err(e)) => {
            let status = Status::internal(format!("cannot encode JSON: {e}"));
            stream_error(&status).to_string().into_bytes()
        }
        Err(status) => stream_error(&status).to_string().into_bytes(),
    };
    line.push(b'\n');
    line
}

/// The error object that ends a stream that has already begun.
fn stream_error(status: &Status) -> serde_json::Value {
    let http = super::gateway::http_status(status.code());
    serde_json::json!({
        "error": {
            "grpc_code": status.code() as i32,
            "http_code": http.as_u16(),
            "message": status.message(),
            "http_status": http.canonical_reason().unwrap_or(""),
        }
    })
}

/// A chunked body of one JSON line per response; it ends after the first error.
pub(crate) fn lines_body<Resp, S>(responses: S) -> Body
where
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
{
    let lines = responses
        .scan(false, |ended, item| {
            if *ended {
                return std::future::ready(None);
            }
            *ended = item.is_err();
            std::future::ready(Some(Ok::<_, std::convert::Infallible>(result_line(item))))
        })
        .boxed();
    Body::from_stream(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};

    async fn decode(chunks: Vec<&'static str>) -> Vec<Result<LeaseKeepAliveRequest, Status>> {
        let frames = stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::convert::Infallible>(c.as_bytes().to_vec())),
        );
        json_requests::<LeaseKeepAliveRequest>(Body::from_stream(frames), 64)
            .collect()
            .await
    }

    #[tokio::test]
    async fn objects_split_across_chunks_decode_in_order() {
        let got = decode(vec![r#"{"ID":"1"} {"I"#, r#"D":2}"#, "\n", r#"{}"#]).await;
        let ids: Vec<i64> = got.into_iter().map(|r| r.expect("decodes").id).collect();
        assert_eq!(ids, vec![1, 2, 0]);
        assert!(decode(vec!["", "  \n"]).await.is_empty());
    }

    #[tokio::test]
    async fn bad_json_ends_the_stream_with_one_error() {
        let got = decode(vec![r#"{"ID":"1"}{bad"#, r#"{"ID":"3"}"#]).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].is_ok());
        assert_eq!(
            got[1].as_ref().expect_err("bad").code(),
            tonic::Code::Unknown
        );
        let truncated = decode(vec![r#"{"ID":"1""#]).await;
        assert!(truncated[0].is_err(), "{truncated:?}");
        let big = decode(vec![
            r#"{"ID":"1                                                                  "#,
        ])
        .await;
        assert_eq!(
            big[0].as_ref().expect_err("too big").message(),
            "etcdserver: request is too large"
        );
    }

    #[tokio::test]
    async fn responses_become_result_lines_and_an_error_ends_them() {
        let responses = stream::iter(vec![
            Ok(LeaseKeepAliveResponse {
                id: 5,
                ttl: 9,
                ..Default::default()
            }),
            Err(Status::unavailable("etcdserver: no leader")),
            Ok(LeaseKeepAliveResponse::default()),
        ]);
        let bytes = lines_body(responses)
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], r#"{"result":{"ID":"5","TTL":"9"}}"#);
        let with_header = String::from_utf8(result_line(Ok(LeaseKeepAliveResponse {
            header: Some(crate::pb::etcdserverpb::ResponseHeader {
                revision: 3,
                ..Default::default()
            }),
            id: 5,
            ttl: 9,
        })))
        .expect("utf-8");
        assert_eq!(
            with_header,
            "{\"result\":{\"header\":{\"revision\":\"3\"},\"ID\":\"5\",\"TTL\":\"9\"}}\n",
            "the header comes first, as in the proto"
        );
        let error: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
        assert_eq!(error["error"]["grpc_code"], 14);
        assert_eq!(error["error"]["http_code"], 503);
        assert_eq!(error["error"]["message"], "etcdserver: no leader");
    }
}
