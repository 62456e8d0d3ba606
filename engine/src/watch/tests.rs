//! Watch hub behaviour: ids, filters, catch-up, slow streams, compaction, progress and
//! fragmentation. A small in-memory history stands in for the key space.

use super::*;
use crate::pb::mvccpb::KeyValue;

/// Every event ever made, by revision; reads below `compacted` fail.
#[derive(Default)]
struct FakeHistory {
    events: Vec<Event>,
    current: i64,
    compacted: i64,
}

impl FakeHistory {
    fn new() -> Self {
        Self {
            current: 1,
            ..Self::default()
        }
    }

    /// Makes one revision with these (key, is_put) changes and returns its events.
    fn write(&mut self, changes: &[(&str, bool)]) -> (i64, Vec<Event>) {
        self.current += 1;
        let rev = self.current;
        let events: Vec<Event> = changes
            .iter()
            .map(|(key, put)| Event {
                r#type: if *put {
                    EventType::Put
                } else {
                    EventType::Delete
                } as i32,
                kv: Some(KeyValue {
                    key: key.as_bytes().to_vec(),
                    mod_revision: rev,
                    value: if *put {
                        format!("v{rev}").into_bytes()
                    } else {
                        Vec::new()
                    },
                    ..KeyValue::default()
                }),
                prev_kv: Some(KeyValue {
                    key: key.as_bytes().to_vec(),
                    value: b"previous".to_vec(),
                    ..KeyValue::default()
                }),
            })
            .collect();
        self.events.extend(events.iter().cloned());
        (rev, events)
    }
}

impl History for FakeHistory {
    fn current_revision(&self) -> i64 {
        self.current
    }
    fn compact_revision(&self) -> i64 {
        self.compacted
    }
    fn events(&self, key: &[u8], range_end: &[u8], from: i64, to: i64) -> Option<Vec<Event>> {
        if from < self.compacted {
            return None;
        }
        let range = KeyRange::new(key, range_end);
        Some(
            self.events
                .iter()
                .filter(|e| {
                    let kv = e.kv.as_ref().expect("events carry kvs");
                    range.contains(&kv.key) && kv.mod_revision >= from && kv.mod_revision <= to
                })
                .cloned()
                .collect(),
        )
    }
}

fn create_req(key: &str, range_end: &str, start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        range_end: range_end.as_bytes().to_vec(),
        start_revision,
        ..WatchCreateRequest::default()
    }
}

/// (watch id, revisions of the events) of each event-carrying response.
fn event_revisions(responses: &[WatchResponse]) -> Vec<(i64, Vec<i64>)> {
    responses
        .iter()
        .filter(|r| !r.events.is_empty())
        .map(|r| {
            let revs = r
                .events
                .iter()
                .map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision))
                .collect();
            (r.watch_id, revs)
        })
        .collect()
}

fn write_and_notify(hub: &mut WatchHub, history: &mut FakeHistory, changes: &[(&str, bool)]) {
    let (rev, events) = history.write(changes);
    hub.notify(rev, &events);
    hub.catch_up(history);
}

#[test]
fn ids_are_assigned_from_zero_and_duplicates_are_refused() {
    let history = FakeHistory::new();
    let mut hub = WatchHub::new(Limits::default());
    hub.create(1, &create_req("a", "", 0), &history);
    hub.create(1, &create_req("b", "", 0), &history);
    let explicit = WatchCreateRequest {
        watch_id: 7,
        ..create_req("c", "", 0)
    };
    hub.create(1, &explicit, &history);
    hub.create(1, &explicit, &history);
    let out = hub.drain(1, 100);
    let summary: Vec<(i64, bool, bool)> = out
        .iter()
        .map(|r| (r.watch_id, r.created, r.canceled))
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, true, false),
            (1, true, false),
            (7, true, false),
            (7, true, true)
        ]
    );
    assert_eq!(out[3].cancel_reason, DUPLICATE_WATCH_ID);
    assert_eq!(hub.watcher_count(), 3);
    assert_eq!(hub.take_woken(), vec![1]);
}

#[test]
fn live_events_respect_range_filters_and_prev_kv() {
    let mut history = FakeHistory::new();
    let mut hub = WatchHub::new(Limits::default());
    hub.create(1, &create_req("a", "", 0), &history); // id 0: key a
    hub.create(1, &create_req("p/", "p0", 0), &history); // id 1: prefix p/
    let no_put = WatchCreateRequest {
        filters: vec![FilterType::Noput as i32],
        prev_kv: true,
        ..create_req("p/", "p0", 0)
    };
    hub.create(1, &no_put, &history); // id 2: prefix p/, deletes only, with prev_kv
    hub.drain(1, 100);

    write_and_notify(&mut hub, &mut history, &[("a", true)]); // rev 2
    write_and_notify(&mut hub, &mut history, &[("p/x", true), ("b", true)]); // rev 3
    write_and_notify(&mut hub, &mut history, &[("p/x", false)]); // rev 4
    let out = hub.drain(1, 100);
    assert_eq!(
        event_revisions(&out),
        vec![(0, vec![2]), (1, vec![3]), (1, vec![4]), (2, vec![4])]
    );
    let without_prev = &out[1].events[0];
    assert!(
        without_prev.prev_kv.is_none(),
        "prev_kv only when asked for"
    );
    let with_prev = &out[3].events[0];
    assert_eq!(
        with_prev.prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b"previous".to_vec())
    );
    assert!(
        out.iter()
            .all(|r| r.header.as_ref().is_some_and(|h| h.revision > 0))
    );
}

#[test]
fn a_watch_from_the_past_catches_up_then_continues_live_in_order() {
    let mut history = FakeHistory::new();
    for _ in 0..5 {
        history.write(&[("k", true)]); // revs 2..=6
    }
    let mut hub = WatchHub::new(Limits {
        catch_up_events_max: 2,
        ..Limits::default()
    });
    hub.create(1, &create_req("k", "", 3), &history);
    write_and_notify(&mut hub, &mut history, &[("k", true)]); // rev 7
    let revs: Vec<i64> = event_revisions(&hub.drain(1, 100))
        .into_iter()
        .flat_map(|(_, r)| r)
        .collect();
    assert_eq!(revs, vec![3, 4, 5, 6, 7]);
}

#[test]
fn a_slow_stream_falls_back_to_history_without_gaps_or_duplicates() {
    let mut history = FakeHistory::new();
    let mut hub = WatchHub::new(Limits {
        stream_queue_responses_max: 2,
        ..Limits::default()
    });
    hub.create(1, &create_req("k", "", 0), &history);
    let mut delivered = Vec::new();
    for round in 0..20 {
        write_and_notify(&mut hub, &mut history, &[("k", true), ("k2", true)]);
        // The client reads one response every third revision: it falls behind.
        if round % 3 == 0 {
            delivered.extend(hub.drain(1, 1));
            hub.catch_up(&history);
        }
    }
    loop {
        hub.catch_up(&history);
        let batch = hub.drain(1, 100);
        if batch.is_empty() {
            break;
        }
        delivered.extend(batch);
    }
    let revs: Vec<i64> = event_revisions(&delivered)
        .into_iter()
        .flat_map(|(_, r)| r)
        .collect();
    let expected: Vec<i64> = (2..=21).collect();
    assert_eq!(revs, expected, "every revision once, in order");
}

#[test]
fn a_replaced_history_is_caught_up_from_not_skipped() {
    let mut history = FakeHistory::new();
    let mut hub = WatchHub::new(Limits::default());
    hub.create(1, &create_req("k", "", 0), &history);
    write_and_notify(&mut hub, &mut history, &[("k", true)]); // rev 2, live
    // A snapshot from the leader brings revisions 3..=5 without applying them here.
    for _ in 0..3 {
        history.write(&[("k", true)]);
    }
    hub.catch_up(&history);
    let before_replace = event_revisions(&hub.drain(1, 100));
    // Without being told, the hub still believes the watcher is live: 3..=5 are lost.
    assert_eq!(before_replace, vec![(0, vec![2])]);
    hub.history_replaced(history.current);
    hub.catch_up(&history);
    write_and_notify(&mut hub, &mut history, &[("k", true)]); // rev 6, live again
    let revs: Vec<i64> = event_revisions(&hub.drain(1, 100))
        .into_iter()
        .flat_map(|(_, r)| r)
        .collect();
    assert_eq!(revs, vec![3, 4, 5, 6], "every revision once, in order");
    // Revisions the replacement compacted away cancel the watcher instead.
    for _ in 0..3 {
        history.write(&[("k", true)]); // 7..=9
    }
    history.compacted = 8;
    hub.history_replaced(history.current);
    hub.catch_up(&history);
    let out = hub.drain(1, 100);
    assert!(out.iter().any(|r| r.canceled && r.compact_revision == 8));
}

#[test]
fn a_compacted_start_revision_cancels_with_the_compact_revision() {
    let mut history = FakeHistory::new();
    for _ in 0..5 {
        history.write(&[("k", true)]);
    }
    history.compacted = 4;
    let mut hub = WatchHub::new(Limits::default());
    hub.create(1, &create_req("k", "", 2), &history);
    let out = hub.drain(1, 100);
    assert_eq!(out.len(), 2);
    assert!(out[0].created);
    assert!(out[1].canceled);
    assert_eq!(out[1].compact_revision, 4);
    assert_eq!(hub.watcher_count(), 0);
    // Starting exactly at the compact revision is still allowed.
    hub.create(1, &create_req("k", "", 4), &history);
    let revs: Vec<i64> = event_revisions(&hub.drain(1, 100))
        .into_iter()
        .flat_map(|(_, r)| r)
        .collect();
    assert_eq!(revs, vec![4, 5, 6]);
}

#[test]
fn progress_requests_wait_for_unsynced_watchers() {
    let mut history = FakeHistory::new();
    for _ in 0..3 {
        history.write(&[("k", true)]); // revs 2..=4
    }
    let mut hub = WatchHub::new(Limits {
        stream_queue_responses_max: 1,
        catch_up_events_max: 1,
        ..Limits::default()
    });
    hub.create(1, &create_req("k", "", 2), &history); // queues created + rev 2, then full
    hub.request_progress(1, history.current);
    let first = hub.drain(1, 100);
    assert!(
        first.iter().all(|r| r.watch_id != PROGRESS_WATCH_ID),
        "no progress while revisions 3 and 4 are not queued"
    );
    let mut rest = Vec::new();
    loop {
        hub.catch_up(&history);
        let batch = hub.drain(1, 100);
        if batch.is_empty() {
            break;
        }
        rest.extend(batch);
    }
    let kinds: Vec<String> = rest
        .iter()
        .map(|r| {
            if r.watch_id == PROGRESS_WATCH_ID {
                format!("progress@{}", r.header.as_ref().map_or(0, |h| h.revision))
            } else {
                format!("{:?}", event_revisions(std::slice::from_ref(r)))
            }
        })
        .collect();
    assert_eq!(kinds, vec!["[(0, [3])]", "[(0, [4])]", "progress@4"]);
}

#[test]
fn periodic_progress_only_for_idle_watchers_that_asked() {
    let mut history = FakeHistory::new();
    let mut hub = WatchHub::new(Limits::default());
    let notify = WatchCreateRequest {
        progress_notify: true,
        ..create_req("a", "", 0)
    };
    hub.create(1, &notify, &history); // id 0
    hub.create(
        1,
        &WatchCreateRequest {
            progress_notify: true,
            ..create_req("b", "", 0)
        },
        &history,
    ); // id 1
    hub.create(1, &create_req("c", "", 0), &history); // id 2, no progress
    hub.drain(1, 100);
    write_and_notify(&mut hub, &mut history, &[("a", true)]);
    hub.drain(1, 100);
    hub.progress_tick(history.current);
    let out = hub.drain(1, 100);
    let ids: Vec<i64> = out.iter().map(|r| r.watch_id).collect();
    assert_eq!(ids, vec![1], "watcher 0 had events, watcher 2 did not ask");
    assert!(out[0].events.is_empty());
}

#[test]
fn large_revisions_are_fragmented_only_when_asked() {
    let mut history = FakeHistory::new();
    let mut hub = WatchHub::new(Limits {
        response_bytes_max: 64,
        ..Limits::default()
    });
    hub.create(
        1,
        &WatchCreateRequest {
            fragment: true,
            ..create_req("k", "l", 0)
        },
        &history,
    ); // id 0
    hub.create(1, &create_req("k", "l", 0), &history); // id 1
    hub.drain(1, 100);
    let keys: Vec<String> = (0..6)
        .map(|i| format!("k{i}-with-a-longish-name"))
        .collect();
    let changes: Vec<(&str, bool)> = keys.iter().map(|k| (k.as_str(), true)).collect();
    write_and_notify(&mut hub, &mut history, &changes);
    let out = hub.drain(1, 100);
    let fragments: Vec<&WatchResponse> = out.iter().filter(|r| r.watch_id == 0).collect();
    assert!(fragments.len() > 1, "split into several responses");
    assert!(fragments[..fragments.len() - 1].iter().all(|r| r.fragment));
    assert!(!fragments[fragments.len() - 1].fragment);
    assert_eq!(fragments.iter().map(|r| r.events.len()).sum::<usize>(), 6);
    let whole: Vec<&WatchResponse> = out.iter().filter(|r| r.watch_id == 1).collect();
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].events.len(), 6);
}

#[test]
fn cancel_answers_known_ids_only() {
    let history = FakeHistory::new();
    let mut hub = WatchHub::new(Limits::default());
    hub.create(1, &create_req("a", "", 0), &history);
    hub.drain(1, 100);
    hub.cancel(1, 5, 1);
    assert!(hub.drain(1, 100).is_empty());
    hub.cancel(1, 0, 1);
    let out = hub.drain(1, 100);
    assert_eq!(out.len(), 1);
    assert!(out[0].canceled);
    assert_eq!(hub.watcher_count(), 0);
}
