//! Members' tracing output, per member, with simulated time: a `tracing` layer that
//! finds the madsim host an event was emitted on (madsim answers `gethostname` with
//! the name of the host whose task is running) and appends one line to that member's
//! log. The lines go into the run's `logs` (and so into failure artifacts). It keeps no
//! lines from clients or the world's own tasks, and never writes files itself.
//!
//! Its filter ([`member_log_filter`]) turns every span off at the callsite: madsim
//! creates a span per task and enters it on every poll, which cost several per cent of
//! a run for nothing the logs use.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{FilterFn, Targets};
use tracing_subscriber::layer::{Context, Layer};

/// The most verbose level recorded from members.
pub const MEMBER_LOG_LEVEL: Level = Level::DEBUG;
/// Lines kept per member; later ones are counted, not kept.
pub const MEMBER_LOG_LINES_MAX: usize = 20_000;

/// The member index a madsim host name such as `n3` stands for.
fn member_of(host: &str) -> Option<u64> {
    host.strip_prefix('n')?.parse().ok()
}

/// The member whose task is running, if any: madsim answers `gethostname` with the
/// running task's host name (`n3`); outside a task the real host name does not parse
/// as one (and outside a runtime it is not asked).
fn current_member() -> Option<u64> {
    madsim::runtime::Handle::try_current().ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0)?;
    member_of(std::str::from_utf8(&buf[..len]).ok()?)
}

/// What the members' logs keep: the project's own events down to
/// [`MEMBER_LOG_LEVEL`], warnings from everything else (the simulator's and gRPC's
/// debug chatter left out), and no spans at all.
pub fn member_log_filter() -> FilterFn<impl Fn(&Metadata<'_>) -> bool> {
    let targets = Targets::new()
        .with_default(Level::WARN)
        .with_target("detcd", MEMBER_LOG_LEVEL);
    FilterFn::new(move |meta| meta.is_event() && targets.would_enable(meta.target(), meta.level()))
}

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

    /// Spans created (none pass the filter) and events seen by the layer so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.spans.load(Ordering::Relaxed),
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

impl<S: Subscriber> Layer<S> for MemberLogLayer {
    fn on_new_span(
        &self,
        _attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: Context<'_, S>,
    ) {
        self.logs.counts.spans.fetch_add(1, Ordering::Relaxed);
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        self.logs.counts.events.fetch_add(1, Ordering::Relaxed);
        let meta = event.metadata();
        if *meta.level() > MEMBER_LOG_LEVEL {
            return;
        }
        let Some(member) = current_member() else {
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
