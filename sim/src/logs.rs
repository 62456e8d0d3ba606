//! Members' tracing output, per member, with simulated time: a `tracing` layer that
//! finds the madsim host an event was emitted on (madsim enters a `node` span named
//! after the host around every task) and appends one line to that member's log. The
//! lines go into the run's `logs` (and so into failure artifacts). It keeps no lines
//! from clients or the world's own tasks, and never writes files itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The most verbose level recorded from members.
pub const MEMBER_LOG_LEVEL: Level = Level::DEBUG;
/// Lines kept per member; later ones are counted, not kept.
pub const MEMBER_LOG_LINES_MAX: usize = 20_000;

/// The member index a madsim host name such as `n3` stands for.
fn member_of(host: &str) -> Option<u64> {
    host.strip_prefix('n')?.parse().ok()
}

/// The member a span belongs to (stored in the span's extensions).
struct Member(u64);

#[derive(Default)]
struct Inner {
    start: Option<Instant>,
    lines: BTreeMap<u64, Vec<String>>,
    dropped: BTreeMap<u64, u64>,
}

/// Per-member tracing lines, shared between the layer and the run.
#[derive(Clone, Default)]
pub struct MemberLogs {
    inner: Arc<Mutex<Inner>>,
    counts: Arc<Counts>,
}

/// Spans and events the layer saw, for [`crate::cost::RunCost`].
#[derive(Default)]
struct Counts {
    spans: AtomicU64,
    tasks: AtomicU64,
    events: AtomicU64,
}

impl MemberLogs {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets time zero of the log lines (the world's boot).
    pub fn set_start(&self, start: Instant) {
        self.lock().start = Some(start);
    }

    /// The lines so far, by member, plus a last line per member that overflowed.
    pub fn lines(&self) -> BTreeMap<u64, Vec<String>> {
        let inner = self.lock();
        let mut lines = inner.lines.clone();
        for (m, n) in &inner.dropped {
            lines
                .entry(*m)
                .or_default()
                .push(format!("({n} more lines not kept)"));
        }
        lines
    }

    fn push(&self, member: u64, line: impl FnOnce(u64) -> String) {
        let mut inner = self.lock();
        let ms = inner.start.map_or(0, |s| {
            u64::try_from(Instant::now().saturating_duration_since(s).as_millis())
                .unwrap_or(u64::MAX)
        });
        let kept = inner.lines.entry(member).or_default();
        if kept.len() < MEMBER_LOG_LINES_MAX {
            kept.push(line(ms));
        } else {
            *inner.dropped.entry(member).or_default() += 1;
        }
    }

    /// Spans created, of which madsim task spans (one per spawned task), and events
    /// seen by the layer so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.counts.spans.load(Ordering::Relaxed),
            self.counts.tasks.load(Ordering::Relaxed),
            self.counts.events.load(Ordering::Relaxed),
        )
    }

    /// The layer that feeds these logs.
    pub fn layer(&self) -> MemberLogLayer {
        MemberLogLayer { logs: self.clone() }
    }
}

/// The `tracing` layer of [`MemberLogs`].
pub struct MemberLogLayer {
    logs: MemberLogs,
}

/// Collects a span's `name` field (madsim's node spans carry the host name there).
#[derive(Default)]
struct NameVisitor(Option<String>);

impl Visit for NameVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "name" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "name" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

/// Formats an event's fields: the message first, then `key=value` pairs.
#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl Visit for LineVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl<S> Layer<S> for MemberLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.logs.counts.spans.fetch_add(1, Ordering::Relaxed);
        if attrs.metadata().name() == "task" {
            self.logs.counts.tasks.fetch_add(1, Ordering::Relaxed);
        }
        if attrs.metadata().name() != "node" {
            return;
        }
        let mut name = NameVisitor::default();
        attrs.record(&mut name);
        if let (Some(member), Some(span)) = (name.0.as_deref().and_then(member_of), ctx.span(id)) {
            span.extensions_mut().insert(Member(member));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.logs.counts.events.fetch_add(1, Ordering::Relaxed);
        let meta = event.metadata();
        if *meta.level() > MEMBER_LOG_LEVEL {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let Some(member) = scope
            .from_root()
            .find_map(|span| span.extensions().get::<Member>().map(|m| m.0))
        else {
            return;
        };
        let mut line = LineVisitor::default();
        event.record(&mut line);
        self.logs.push(member, |ms| {
            format!(
                "{ms} {} {}: {}{}",
                meta.level(),
                meta.target(),
                line.message,
                line.fields
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_map_to_members() {
        assert_eq!(member_of("n12"), Some(12));
        assert_eq!(member_of("client1"), None);
        assert_eq!(member_of("madsim-main"), None);
    }
}
