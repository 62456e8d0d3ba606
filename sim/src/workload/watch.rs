//! Config watchers: each client keeps one watch stream over every key open on a random
//! member, records the creation, every event batch, progress notification and cancel in
//! the checker's watch format, and when a stream breaks or stalls resumes on another
//! member from the revision after the last one it saw (from the compact revision when
//! the server says that history is gone). It sends no writes and judges nothing.

use std::time::Duration;

use detcd_checker::history::{
    self as h, Event, EventKind, Record, WatchCancelRecord, WatchEventsRecord, WatchProgressRecord,
    WatchRecord,
};
use detcd_engine::pb::etcdserverpb::watch_client::WatchClient;
use detcd_engine::pb::etcdserverpb::watch_request::RequestUnion;
use detcd_engine::pb::etcdserverpb::{WatchCreateRequest, WatchRequest};
use detcd_engine::pb::mvccpb::event::EventType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::Recorder;
use super::kv::{BACKOFF_MS, KvClientConfig, connect, since};
use super::wire::kv_to_history;
use crate::trace::TraceLog;

/// A stream with no response for this long is dropped and resumed elsewhere, ms.
pub const WATCH_IDLE_MS: u64 = 2_000;
/// How long to wait for the created response, ms.
pub const CREATE_TIMEOUT_MS: u64 = 1_000;
/// The watched range: every key (`"\0"` with range end `"\0"`).
pub const WATCH_KEY: &str = "\u{0}";

/// Runs one watcher until `cfg.stop`.
pub async fn run_client(cfg: KvClientConfig, recorder: Recorder, trace: TraceLog) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut watch_id = 0;
    let mut start_revision = 0;
    while Instant::now() < cfg.stop {
        watch_id += 1;
        let endpoint = rng.random_range(1..=cfg.members.max(1));
        let next = stream(&cfg, endpoint, watch_id, start_revision, &recorder, &trace).await;
        start_revision = next.unwrap_or(start_revision);
        tokio::time::sleep(Duration::from_millis(BACKOFF_MS)).await;
    }
}

/// One stream on `endpoint` until it breaks, stalls or the run stops. Returns the
/// revision to resume from, when one is known.
async fn stream(
    cfg: &KvClientConfig,
    endpoint: u64,
    watch: u64,
    start_revision: i64,
    recorder: &Recorder,
    trace: &TraceLog,
) -> Option<i64> {
    let client = cfg.client;
    let channel = connect(endpoint).await.ok()?;
    let request = h::WatchRequest {
        key: WATCH_KEY.to_owned(),
        range_end: Some(WATCH_KEY.to_owned()),
        start_revision,
        prev_kv: false,
        progress_notify: true,
        filters: Vec::new(),
    };
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: WATCH_KEY.as_bytes().to_vec(),
            range_end: WATCH_KEY.as_bytes().to_vec(),
            start_revision,
            progress_notify: true,
            ..WatchCreateRequest::default()
        })),
    };
    // The request stream stays open (no cancel is ever sent) until the sender drops.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(create).await.ok()?;
    let call = since(cfg.start);
    let idle = Duration::from_millis(WATCH_IDLE_MS);
    let opened = tokio::time::timeout(
        Duration::from_millis(CREATE_TIMEOUT_MS),
        WatchClient::new(channel).watch(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .ok()?
    .ok()?;
    let mut responses = opened.into_inner();
    let created = tokio::time::timeout(idle, responses.message())
        .await
        .ok()?
        .ok()??;
    if !created.created || created.canceled {
        return Some(created.compact_revision).filter(|r| *r > 0);
    }
    let created_revision = created.header.as_ref().map_or(0, |hd| hd.revision);
    recorder.record_watch(Record::Watch(WatchRecord {
        client,
        watch,
        call,
        created_revision: Some(created_revision),
        request,
    }));
    trace.push(format!(
        "{call} c{client} n{endpoint} watch {watch} from {start_revision} created at {created_revision}"
    ));
    let mut resume = created_revision + 1;
    loop {
        let left = cfg.stop.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let next = tokio::time::timeout(idle.min(left), responses.message()).await;
        let Ok(Ok(Some(r))) = next else {
            break;
        };
        let time = since(cfg.start);
        let revision = r.header.as_ref().map_or(0, |hd| hd.revision);
        if r.canceled {
            recorder.record_watch(Record::WatchCancel(WatchCancelRecord {
                client,
                watch,
                time,
                reason: r.cancel_reason.clone(),
                compact_revision: r.compact_revision,
            }));
            trace.push(format!(
                "{time} c{client} watch {watch} canceled {}",
                r.compact_revision
            ));
            return Some(if r.compact_revision > 0 {
                r.compact_revision
            } else {
                resume
            });
        }
        if r.events.is_empty() {
            recorder.record_watch(Record::WatchProgress(WatchProgressRecord {
                client,
                watch,
                time,
                revision,
            }));
            resume = resume.max(revision + 1);
            continue;
        }
        let events: Vec<Event> = r
            .events
            .iter()
            .map(|e| {
                let kind = if e.r#type == EventType::Delete as i32 {
                    EventKind::Delete
                } else {
                    EventKind::Put
                };
                let kv = e.kv.as_ref().map(kv_to_history).unwrap_or_default();
                Event {
                    kind,
                    kv,
                    prev_kv: e.prev_kv.as_ref().map(kv_to_history),
                }
            })
            .collect();
        let last = events.iter().map(|e| e.kv.mod_revision).max().unwrap_or(0);
        resume = resume.max(last + 1);
        trace.push(format!(
            "{time} c{client} watch {watch} events up to {last}"
        ));
        recorder.record_watch(Record::WatchEvents(WatchEventsRecord {
            client,
            watch,
            time,
            revision,
            events,
        }));
    }
    drop(tx);
    Some(resume)
}
