//! The watch hub: which client streams watch which keys, and what each must be sent.
//!
//! A pure data structure in the style of the Raft core: the server tells it about
//! watch requests, applied revisions and time passing; it queues the responses each
//! stream must send, in order, and reports which streams have something new. It never
//! blocks, spawns or reads a clock, so the simulator and unit tests drive it directly.
//!
//! Guarantees it keeps, per watcher:
//! - events are delivered in revision order, each revision once and whole (all events
//!   of one revision in one response, or in consecutive fragments when the watcher asked
//!   for fragmentation);
//! - no revision is skipped: a watcher whose stream's queue is full stops receiving live
//!   events and becomes *unsynced*; [`WatchHub::catch_up`] later reads the missed
//!   revisions from history and resumes it;
//! - a watcher whose next revision has been compacted away is cancelled with the compact
//!   revision, as etcd does;
//! - a progress notification (an empty response carrying a revision) is sent only when
//!   every event up to that revision has been queued for the watchers it speaks for.
//!
//! It does not fill in response headers beyond the revision (the server adds cluster,
//! member and term), and it does not own the key space: history comes through
//! [`History`].

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use prost::Message as _;

use crate::mvcc::KeyRange;
use crate::pb::etcdserverpb::{
    ResponseHeader, WatchCreateRequest, WatchResponse, watch_create_request::FilterType,
};
use crate::pb::mvccpb::{Event, event::EventType};

/// Identifies one client watch stream (one gRPC `Watch` call).
pub type StreamId = u64;

/// The watch id a progress response for the whole stream carries.
pub const PROGRESS_WATCH_ID: i64 = -1;
/// Responses (with events) a stream may have queued before its watchers stop receiving
/// live events and fall back to catching up from history.
pub const STREAM_QUEUE_RESPONSES_MAX: usize = 1024;
/// Most events one catch-up pass reads per watcher, so one slow watcher cannot stall the
/// server (whole revisions are never split across passes).
pub const CATCH_UP_EVENTS_MAX: usize = 1000;
/// Reason given when a client reuses a watch id on its stream (etcd's text).
pub const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// Where a watch hub reads past events from (the key space).
pub trait History {
    /// The newest revision.
    fn current_revision(&self) -> i64;
    /// The oldest revision still readable.
    fn compact_revision(&self) -> i64;
    /// Events on keys in `key`/`range_end` with revisions in `[from, to]`, in revision
    /// order, with `prev_kv` filled where known; `None` when `from` is compacted.
    fn events(&self, key: &[u8], range_end: &[u8], from: i64, to: i64) -> Option<Vec<Event>>;
}

#[derive(Debug)]
struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    range: KeyRange,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
    /// The first revision not yet queued for this watcher.
    next_rev: i64,
    /// Whether live events are queued directly (else it catches up from history).
    synced: bool,
    /// Whether events were queued since the last periodic progress notification.
    active_since_progress: bool,
}

impl Watcher {
    fn wants(&self, event: &Event) -> bool {
        let Some(kv) = &event.kv else { return false };
        if !self.range.contains(&kv.key) {
            return false;
        }
        match EventType::try_from(event.r#type) {
            Ok(EventType::Put) => !self.no_put,
            Ok(EventType::Delete) => !self.no_delete,
            Err(_) => false,
        }
    }

    fn shape(&self, event: &Event) -> Event {
        let mut event = event.clone();
        if !self.prev_kv {
            event.prev_kv = None;
        }
        event
    }
}

#[derive(Debug, Default)]
struct Stream {
    watchers: BTreeMap<i64, Watcher>,
    next_auto_id: i64,
    queue: VecDeque<WatchResponse>,
    /// Responses in `queue` that carry events (control responses do not count against
    /// the bound).
    queued_event_responses: usize,
    /// A progress request waiting for its watchers to catch up.
    progress_requested: bool,
}

/// Bounds of a hub.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// See [`STREAM_QUEUE_RESPONSES_MAX`].
    pub stream_queue_responses_max: usize,
    /// See [`CATCH_UP_EVENTS_MAX`].
    pub catch_up_events_max: usize,
    /// Largest response (encoded bytes) before a fragmenting watcher's events are split;
    /// the server's `--max-request-bytes`.
    pub response_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            stream_queue_responses_max: STREAM_QUEUE_RESPONSES_MAX,
            catch_up_events_max: CATCH_UP_EVENTS_MAX,
            response_bytes_max: 1_572_864,
        }
    }
}

/// All watch streams of one server. See the module documentation.
#[derive(Debug, Default)]
pub struct WatchHub {
    streams: BTreeMap<StreamId, Stream>,
    limits: Limits,
    /// Streams with responses queued since the last [`WatchHub::take_woken`].
    woken: BTreeSet<StreamId>,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    })
}

impl WatchHub {
    /// An empty hub with these bounds.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Registers a client stream (idempotent).
    pub fn open_stream(&mut self, stream: StreamId) {
        self.streams.entry(stream).or_default();
    }

    /// Forgets a stream and its watchers (the client went away).
    pub fn close_stream(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
        self.woken.remove(&stream);
    }

    /// Number of watchers on all streams.
    pub fn watcher_count(&self) -> usize {
        self.streams.values().map(|s| s.watchers.len()).sum()
    }

    /// Handles a create request: queues the `created` response (or a refusal) and, for a
    /// watch starting in the past, catches it up as far as the bounds allow.
    pub fn create(&mut self, stream: StreamId, req: &WatchCreateRequest, history: &dyn History) {
        let current = history.current_revision();
        let s = self.streams.entry(stream).or_default();
        let id = if req.watch_id != 0 {
            if s.watchers.contains_key(&req.watch_id) {
                s.queue.push_back(WatchResponse {
                    header: header(current),
                    watch_id: req.watch_id,
                    created: true,
                    canceled: true,
                    cancel_reason: DUPLICATE_WATCH_ID.to_owned(),
                    ..WatchResponse::default()
                });
                self.woken.insert(stream);
                return;
            }
            req.watch_id
        } else {
            while s.watchers.contains_key(&s.next_auto_id) {
                s.next_auto_id += 1;
            }
            let id = s.next_auto_id;
            s.next_auto_id += 1;
            id
        };
        let start = if req.start_revision > 0 {
            req.start_revision
        } else {
            current + 1
        };
        let filters: BTreeSet<i32> = req.filters.iter().copied().collect();
        let watcher = Watcher {
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            range: KeyRange::new(&req.key, &req.range_end),
            no_put: filters.contains(&(FilterType::Noput as i32)),
            no_delete: filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            next_rev: start,
            synced: start > current,
            active_since_progress: false,
        };
        s.watchers.insert(id, watcher);
        s.queue.push_back(WatchResponse {
            header: header(current),
            watch_id: id,
            created: true,
            ..WatchResponse::default()
        });
        self.woken.insert(stream);
        self.catch_up_stream(stream, history);
    }

    /// Handles a cancel request; unknown ids are ignored, as in etcd.
    pub fn cancel(&mut self, stream: StreamId, watch_id: i64, current_revision: i64) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.watchers.remove(&watch_id).is_some() {
            s.queue.push_back(WatchResponse {
                header: header(current_revision),
                watch_id,
                canceled: true,
                ..WatchResponse::default()
            });
            self.woken.insert(stream);
        }
    }

    /// Handles a progress request: answered at once with the current revision when every
    /// watcher of the stream is synced, else as soon as they are (never ahead of what was
    /// queued).
    pub fn request_progress(&mut self, stream: StreamId, current_revision: i64) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        s.progress_requested = true;
        Self::answer_progress(s, current_revision);
        self.woken.insert(stream);
    }

    fn answer_progress(s: &mut Stream, current_revision: i64) {
        if s.progress_requested && s.watchers.values().all(|w| w.synced) {
            s.progress_requested = false;
            s.queue.push_back(WatchResponse {
                header: header(current_revision),
                watch_id: PROGRESS_WATCH_ID,
                ..WatchResponse::default()
            });
        }
    }

    /// Delivers the events of one applied revision to the synced watchers that want them.
    /// `events` must all carry `revision` and come in the order they were made.
    pub fn notify(&mut self, revision: i64, events: &[Event]) {
        let limits = self.limits;
        for (stream_id, s) in &mut self.streams {
            let mut woke = false;
            for (watch_id, w) in &mut s.watchers {
                if !w.synced || w.next_rev > revision {
                    continue;
                }
                let wanted: Vec<Event> = events
                    .iter()
                    .filter(|e| w.wants(e))
                    .map(|e| w.shape(e))
                    .collect();
                if wanted.is_empty() {
                    w.next_rev = revision + 1;
                    continue;
                }
                if s.queued_event_responses >= limits.stream_queue_responses_max {
                    // Falls behind: catch_up will read this revision from history.
                    w.synced = false;
                    continue;
                }
                s.queued_event_responses += push_responses(
                    &mut s.queue,
                    *watch_id,
                    w.fragment,
                    revision,
                    wanted,
                    &limits,
                );
                w.next_rev = revision + 1;
                w.active_since_progress = true;
                woke = true;
            }
            if woke {
                self.woken.insert(*stream_id);
            }
        }
    }

    /// The key space was replaced by a newer one (a snapshot from the leader) whose
    /// newest revision is `current_revision`: the revisions in between were never
    /// applied here, so no live event announced them. Every watcher still short of
    /// `current_revision` reads them from the new history on the next
    /// [`WatchHub::catch_up`] (or is cancelled, if they are compacted there).
    pub fn history_replaced(&mut self, current_revision: i64) {
        for s in self.streams.values_mut() {
            for w in s.watchers.values_mut() {
                if w.next_rev <= current_revision {
                    w.synced = false;
                }
            }
        }
    }

    /// Moves unsynced watchers forward from history, within the bounds; cancels those
    /// whose next revision has been compacted. Call after applying a batch and whenever a
    /// stream's queue drained.
    pub fn catch_up(&mut self, history: &dyn History) {
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            self.catch_up_stream(id, history);
        }
    }

    fn catch_up_stream(&mut self, stream: StreamId, history: &dyn History) {
        let limits = self.limits;
        let current = history.current_revision();
        let compacted = history.compact_revision();
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let mut woke = false;
        let mut cancelled = Vec::new();
        for (watch_id, w) in &mut s.watchers {
            if w.synced {
                continue;
            }
            if w.next_rev < compacted {
                s.queue.push_back(WatchResponse {
                    header: header(current),
                    watch_id: *watch_id,
                    canceled: true,
                    compact_revision: compacted,
                    ..WatchResponse::default()
                });
                cancelled.push(*watch_id);
                woke = true;
                continue;
            }
            while !w.synced && s.queued_event_responses < limits.stream_queue_responses_max {
                let Some(events) = history.events(&w.key, &w.range_end, w.next_rev, current) else {
                    break;
                };
                // Whole revisions only, stopping at the first revision boundary after the
                // per-pass bound.
                let revision_of = |e: &Event| e.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                let mut take = 0;
                while take < events.len()
                    && (take < limits.catch_up_events_max
                        || revision_of(&events[take]) == revision_of(&events[take - 1]))
                {
                    take += 1;
                }
                let complete = take == events.len();
                let resume_at = events[..take].last().map(|e| revision_of(e) + 1);
                let wanted: Vec<Event> = events[..take]
                    .iter()
                    .filter(|e| w.wants(e))
                    .map(|e| w.shape(e))
                    .collect();
                if !wanted.is_empty() {
                    s.queued_event_responses += push_responses(
                        &mut s.queue,
                        *watch_id,
                        w.fragment,
                        current,
                        wanted,
                        &limits,
                    );
                    w.active_since_progress = true;
                    woke = true;
                }
                match (complete, resume_at) {
                    (false, Some(next)) => w.next_rev = next,
                    _ => {
                        w.next_rev = current + 1;
                        w.synced = true;
                    }
                }
            }
        }
        for id in cancelled {
            s.watchers.remove(&id);
        }
        if s.progress_requested {
            let before = s.queue.len();
            Self::answer_progress(s, current);
            woke |= s.queue.len() > before;
        }
        if woke {
            self.woken.insert(stream);
        }
    }

    /// Periodic progress notification: every synced watcher that asked for progress
    /// notifications and received no events since the last call gets an empty response
    /// with the current revision.
    pub fn progress_tick(&mut self, current_revision: i64) {
        for (stream_id, s) in &mut self.streams {
            let mut woke = false;
            for (watch_id, w) in &mut s.watchers {
                if w.progress_notify && w.synced && !w.active_since_progress {
                    s.queue.push_back(WatchResponse {
                        header: header(current_revision),
                        watch_id: *watch_id,
                        ..WatchResponse::default()
                    });
                    woke = true;
                }
                w.active_since_progress = false;
            }
            if woke {
                self.woken.insert(*stream_id);
            }
        }
    }

    /// Takes up to `max` queued responses of a stream, oldest first.
    pub fn drain(&mut self, stream: StreamId, max: usize) -> Vec<WatchResponse> {
        let Some(s) = self.streams.get_mut(&stream) else {
            return Vec::new();
        };
        let n = max.min(s.queue.len());
        let out: Vec<WatchResponse> = s.queue.drain(..n).collect();
        let with_events = out.iter().filter(|r| !r.events.is_empty()).count();
        s.queued_event_responses = s.queued_event_responses.saturating_sub(with_events);
        out
    }

    /// The streams that have had responses queued since the last call.
    pub fn take_woken(&mut self) -> Vec<StreamId> {
        std::mem::take(&mut self.woken).into_iter().collect()
    }
}

/// Queues events for a watcher: one response, or consecutive fragments (all but the last
/// marked `fragment`) when the watcher asked for that and they exceed the response bound.
/// Returns how many responses were queued.
fn push_responses(
    queue: &mut VecDeque<WatchResponse>,
    watch_id: i64,
    fragment: bool,
    header_revision: i64,
    events: Vec<Event>,
    limits: &Limits,
) -> usize {
    let whole = WatchResponse {
        header: header(header_revision),
        watch_id,
        events,
        ..WatchResponse::default()
    };
    if !fragment || whole.encoded_len() <= limits.response_bytes_max {
        queue.push_back(whole);
        return 1;
    }
    let mut parts: Vec<Vec<Event>> = vec![Vec::new()];
    let mut part_bytes = 0usize;
    for event in whole.events {
        let bytes = event.encoded_len() + 4;
        if part_bytes + bytes > limits.response_bytes_max && !parts.last().is_none_or(Vec::is_empty)
        {
            parts.push(Vec::new());
            part_bytes = 0;
        }
        part_bytes += bytes;
        if let Some(part) = parts.last_mut() {
            part.push(event);
        }
    }
    let count = parts.len();
    for (i, events) in parts.into_iter().enumerate() {
        queue.push_back(WatchResponse {
            header: header(header_revision),
            watch_id,
            events,
            fragment: i + 1 < count,
            ..WatchResponse::default()
        });
    }
    count
}

impl History for crate::mvcc::KvState {
    fn current_revision(&self) -> i64 {
        self.store().current_revision()
    }

    fn compact_revision(&self) -> i64 {
        self.store().compact_revision()
    }

    fn events(&self, key: &[u8], range_end: &[u8], from: i64, to: i64) -> Option<Vec<Event>> {
        crate::mvcc::KvState::events(self, key, range_end, from, to).ok()
    }
}
