//! Watch checks against the replayed history: each stream must deliver, in revision
//! order and without duplicates, exactly the events of every revision from its start
//! that match its range and filters (all events of one revision in one response), with
//! correct key-values and prev_kv; progress notifications must never run ahead of the
//! delivered events. Compaction cancels are judged in `compaction`; this module does
//! not look at time.

use std::collections::BTreeSet;

use crate::history::{
    Event, EventKind, History, WatchFilter, WatchRequest, WatchResponse, WatchStream,
};
use crate::verdict::{Property, Verdict};

use super::replay::json;
use super::store::{Store, in_range};

fn wanted(req: &WatchRequest, e: &Event) -> bool {
    let filtered = req.filters.iter().any(|f| {
        matches!(
            (f, e.kind),
            (WatchFilter::NoPut, EventKind::Put) | (WatchFilter::NoDelete, EventKind::Delete)
        )
    });
    !filtered && in_range(&e.kv.key, &req.key, req.range_end.as_deref())
}

fn expected(store: &Store, req: &WatchRequest, rev: i64) -> Vec<Event> {
    store
        .events(rev)
        .iter()
        .filter(|e| wanted(req, e))
        .map(|e| Event {
            kind: e.kind,
            kv: e.kv.clone(),
            prev_kv: if req.prev_kv { e.prev_kv.clone() } else { None },
        })
        .collect()
}

/// Checks every watch stream of `h` against `store`, the model after the replay.
pub fn check(h: &History, store: &Store) -> Result<(), Verdict> {
    h.watches.iter().try_for_each(|w| check_stream(w, store))
}

fn check_stream(w: &WatchStream, store: &Store) -> Result<(), Verdict> {
    let req = &w.create.request;
    let mut next: Option<i64> = if req.start_revision > 0 {
        Some(req.start_revision)
    } else {
        w.create.created_revision.map(|r| r + 1)
    };
    let mut last_event: i64 = 0;
    let mut last_event_line = w.line;
    let mut progress: (i64, usize) = (0, 0);
    let mut seen: BTreeSet<(i64, String)> = BTreeSet::new();
    let fail = |p: Property, msg: String, lines: Vec<usize>| {
        let mut all = vec![w.line];
        all.extend(lines);
        Err(Verdict::illegal(p, msg, all))
    };
    // The first revision in [from, to] whose matching events were never delivered.
    let gap = |from: i64, to: i64| {
        (from.max(2)..=to).find(|&r| store.events(r).iter().any(|e| wanted(req, e)))
    };
    // Where revision `r` is delivered after response `k`, if anywhere.
    let later = |k: usize, r: i64| {
        w.responses[k + 1..]
            .iter()
            .find_map(|(l, resp)| match resp {
                WatchResponse::Events(e) if e.events.iter().any(|ev| ev.kv.mod_revision == r) => {
                    Some(*l)
                }
                _ => None,
            })
    };
    for (k, (line, resp)) in w.responses.iter().enumerate() {
        let line = *line;
        match resp {
            WatchResponse::Events(e) => {
                let mut i = 0;
                let mut first_group = true;
                while i < e.events.len() {
                    let rev = e.events[i].kv.mod_revision;
                    let j = i + e.events[i..]
                        .iter()
                        .take_while(|x| x.kv.mod_revision == rev)
                        .count();
                    let group = &e.events[i..j];
                    i = j;
                    for ev in group {
                        if !seen.insert((rev, ev.kv.key.clone())) {
                            return fail(
                                Property::WatchDuplicate,
                                format!(
                                    "event for {} at revision {rev} delivered twice",
                                    ev.kv.key
                                ),
                                vec![last_event_line, line],
                            );
                        }
                    }
                    if rev < last_event || (rev == last_event && !first_group) {
                        return fail(
                            Property::WatchOrder,
                            format!(
                                "event at revision {rev} delivered after revision {last_event}"
                            ),
                            vec![last_event_line, line],
                        );
                    }
                    if rev == last_event {
                        return fail(
                            Property::WatchAtomic,
                            format!("events of revision {rev} split across responses"),
                            vec![last_event_line, line],
                        );
                    }
                    if rev <= progress.0 {
                        return fail(
                            Property::WatchProgress,
                            format!(
                                "event at revision {rev} arrived after a progress notification \
                                 at {}",
                                progress.0
                            ),
                            vec![progress.1, line],
                        );
                    }
                    if let Some(n) = next
                        && let Some(missing) = gap(n, rev - 1)
                    {
                        if let Some(l) = later(k, missing) {
                            return fail(
                                Property::WatchOrder,
                                format!(
                                    "events of revision {rev} delivered before those of \
                                     revision {missing}"
                                ),
                                vec![line, l],
                            );
                        }
                        return fail(
                            Property::WatchReliable,
                            format!(
                                "events of revision {missing} never delivered (next delivered: \
                                 {rev}); expected {}",
                                json(&expected(store, req, missing))
                            ),
                            vec![line],
                        );
                    }
                    let want = expected(store, req, rev);
                    if !events_match(group, &want) {
                        let (p, msg) = classify(req, group, &want);
                        return fail(p, format!("revision {rev}: {msg}"), vec![line]);
                    }
                    first_group = false;
                    last_event = rev;
                    last_event_line = line;
                    next = Some(rev + 1);
                }
            }
            WatchResponse::Progress(p) => {
                if let Some(n) = next
                    && let Some(missing) = gap(n, p.revision)
                {
                    return fail(
                        Property::WatchProgress,
                        format!(
                            "progress notification at revision {} ahead of undelivered events \
                             of revision {missing}",
                            p.revision
                        ),
                        vec![line],
                    );
                }
                if p.revision > progress.0 {
                    progress = (p.revision, line);
                }
                next = Some(next.unwrap_or(0).max(p.revision + 1));
            }
            WatchResponse::Cancel(_) => {}
        }
    }
    Ok(())
}

/// Whether delivered events equal the expected ones, field by field where the recorder
/// gave everything, and on the fields it gave where it marked an event partial (see
/// [`kv_matches`], [`prev_matches`]).
fn events_match(got: &[Event], want: &[Event]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| g.kind == w.kind && kv_matches(g, w) && prev_matches(g, w))
}

/// A put event with version 0 (which etcd never sends) comes from a recorder that only
/// knows the key, value, mod revision and whether the put created the key (create
/// revision equal to the mod revision); only those are compared. Otherwise the whole
/// key-value must match.
fn kv_matches(g: &Event, w: &Event) -> bool {
    if g.kind == EventKind::Put && g.kv.version == 0 {
        g.kv.key == w.kv.key
            && g.kv.value == w.kv.value
            && g.kv.mod_revision == w.kv.mod_revision
            && (g.kv.create_revision == g.kv.mod_revision) == (w.kv.version == 1)
    } else {
        g.kv == w.kv
    }
}

/// A prev_kv with create revision 0 (impossible for a key that exists) is compared on
/// key, value, mod revision and, when not 0, version; otherwise it must match whole.
fn prev_matches(g: &Event, w: &Event) -> bool {
    match (&g.prev_kv, &w.prev_kv) {
        (Some(gp), Some(wp)) if gp.create_revision == 0 => {
            gp.key == wp.key
                && gp.value == wp.value
                && gp.mod_revision == wp.mod_revision
                && (gp.version == 0 || gp.version == wp.version)
        }
        (gp, wp) => gp == wp,
    }
}

/// Names what is wrong with a delivered revision's events.
fn classify(req: &WatchRequest, got: &[Event], want: &[Event]) -> (Property, String) {
    let show = || format!("expected {} but got {}", json(&want), json(&got));
    if let Some(e) = got.iter().find(|e| !wanted(req, e)) {
        return (
            Property::WatchFilter,
            format!(
                "event {:?} on {} is outside the watch or filtered",
                e.kind, e.kv.key
            ),
        );
    }
    let keys = |v: &[Event]| v.iter().map(|e| e.kv.key.clone()).collect::<BTreeSet<_>>();
    let (gk, wk) = (keys(got), keys(want));
    if gk.is_subset(&wk) && gk != wk {
        return (
            Property::WatchAtomic,
            format!("only part of the revision's events: {}", show()),
        );
    }
    if gk != wk || got.len() != want.len() {
        return (Property::WatchEvent, show());
    }
    for g in got {
        let Some(w) = want.iter().find(|w| w.kv.key == g.kv.key) else {
            continue;
        };
        if g.kind != w.kind || !kv_matches(g, w) {
            let create = (g.kv.create_revision == g.kv.mod_revision)
                != (w.kv.create_revision == w.kv.mod_revision);
            let what = if create {
                "is-create (version 1) wrong"
            } else {
                "key-value wrong"
            };
            return (Property::WatchEvent, format!("{what}: {}", show()));
        }
        if !prev_matches(g, w) {
            return (Property::WatchPrevKv, show());
        }
    }
    (
        Property::WatchOrder,
        format!("events of one revision out of order: {}", show()),
    )
}
