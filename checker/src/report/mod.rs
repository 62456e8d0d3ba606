//! A self-contained HTML timeline of a checked history.
//!
//! One lane per client; each operation is a bar from its call to its return (an
//! operation of unknown outcome runs open-ended to the right edge). Failing operations
//! are highlighted, and hovering a bar shows its details, including the model state
//! before and after it when the checker knows them and, for a failing one, what it was
//! checked against. Times are drawn by rank (each distinct call or return time gets the
//! next slot), so long quiet gaps do not squash the interesting part. The page carries
//! its own CSS and script and loads nothing from the network; every piece of text is
//! HTML-escaped. The operations' details are embedded once as JSON (a
//! `<script type="application/json" id="timeline-data">` element, read back by
//! [`embedded_data`]), which the hover script and other tools read. This module does
//! not decide what is highlighted or which states to show: the caller fills in a
//! [`Timeline`].

mod wgl;

pub use wgl::wgl_timeline;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Everything the page shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timeline {
    /// Page title (e.g. the history file's name).
    pub title: String,
    /// The verdict ("OK", "Illegal", "Unknown").
    pub verdict: String,
    /// The property violated, or the reason for Unknown.
    pub property: Option<String>,
    /// Where the states shown come from (e.g. how far a replay got), if worth saying.
    pub note: Option<String>,
    /// The operations to draw.
    pub ops: Vec<TimelineOp>,
}

/// One operation on the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimelineOp {
    /// The client's lane.
    pub client: u64,
    /// Call time.
    pub call: u64,
    /// Return time; None: unknown outcome (drawn open-ended).
    pub ret: Option<u64>,
    /// Text in the bar, e.g. `write 3` or `read -> 4`.
    pub label: String,
    /// Whether the operation is part of the failure.
    pub highlighted: bool,
    /// Model state before the operation, if known.
    pub state_before: Option<String>,
    /// Model state after the operation, if known.
    pub state_after: Option<String>,
    /// What the server answered, if worth showing.
    pub response: Option<String>,
    /// For a failing operation: the state it was checked against and what was expected
    /// against what was observed.
    pub failure: Option<String>,
}

/// Horizontal space per distinct event time, in pixels.
const SLOT_WIDTH_PX: usize = 14;
/// Narrowest bar drawn, in pixels.
const BAR_WIDTH_MIN_PX: usize = 6;
/// Height of one client lane, in pixels.
const LANE_HEIGHT_PX: usize = 28;
/// Width of the lane label column, in pixels.
const LABEL_WIDTH_PX: usize = 110;

/// Escapes `s` for use in HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em;color:#222}\
h1{font-size:1.3em}.verdict{font-weight:bold;padding:2px 8px;border-radius:4px}\
.v-OK{background:#c8f0c8}.v-Illegal{background:#f6c0c0}.v-Unknown{background:#f3e3a8}\
#scroll{overflow-x:auto;border:1px solid #ccc;position:relative}\
.lane{position:relative;border-bottom:1px solid #eee}\
.who{position:absolute;left:0;width:100px;font-size:12px;padding:6px 4px;\
background:#fafafa;height:100%;box-sizing:border-box;z-index:2}\
.op{position:absolute;top:4px;height:20px;box-sizing:border-box;background:#9cc3ea;\
border:1px solid #4a7fb5;border-radius:3px;font-size:11px;overflow:hidden;\
white-space:nowrap;padding:2px 3px;cursor:default}\
.op.open{border-right:2px dashed #4a7fb5;background:linear-gradient(90deg,#9cc3ea,#fff)}\
.op.bad{background:#f08a8a;border-color:#b22}.op.open.bad{background:\
linear-gradient(90deg,#f08a8a,#fff)}.op:hover{outline:2px solid #000;z-index:3}\
#detail{position:fixed;right:1em;top:1em;max-width:40%;background:#fff;\
border:1px solid #888;padding:8px;font-size:12px;white-space:pre-wrap;display:none;\
z-index:10;font-family:monospace}";

/// Id of the element holding the embedded JSON.
const DATA_ID: &str = "timeline-data";

/// The hover text is built from the embedded JSON, in the order of [`info`].
const SCRIPT: &str = "(function(){var d=document.getElementById('detail');\
var D=JSON.parse(document.getElementById('timeline-data').textContent);\
function info(o){var s=o.label+'\\nclient '+o.client+'  call '+o.call+'  return '+\
(o.ret===null?'unknown':o.ret);if(o.highlighted)s+='\\nFAILING';\
if(o.failure!==null)s+='\\n'+o.failure;\
if(o.state_before!==null)s+='\\nstate before: '+o.state_before;\
if(o.state_after!==null)s+='\\nstate after: '+o.state_after;\
if(o.response!==null)s+='\\nresponse: '+o.response;return s;}\
document.querySelectorAll('.op').forEach(function(e){\
e.addEventListener('mouseenter',function(){\
d.textContent=info(D.ops[+e.getAttribute('data-op')]);d.style.display='block';});\
e.addEventListener('mouseleave',function(){d.style.display='none';});});})();";

/// One operation as embedded in the page (times as text: JavaScript numbers cannot
/// hold every u64).
#[derive(Serialize)]
struct EmbeddedOp<'a> {
    client: u64,
    call: String,
    ret: Option<String>,
    label: &'a str,
    highlighted: bool,
    state_before: Option<&'a str>,
    state_after: Option<&'a str>,
    response: Option<&'a str>,
    failure: Option<&'a str>,
}

#[derive(Serialize)]
struct Embedded<'a> {
    title: &'a str,
    verdict: &'a str,
    property: Option<&'a str>,
    note: Option<&'a str>,
    ops: Vec<EmbeddedOp<'a>>,
}

/// `t` as JSON safe inside a script element: `<`, `>` and `&` (which JSON holds only
/// inside strings) are written as `\u` escapes, so no `</script>` can occur.
fn embedded_json(t: &Timeline) -> String {
    let e = Embedded {
        title: &t.title,
        verdict: &t.verdict,
        property: t.property.as_deref(),
        note: t.note.as_deref(),
        ops: t
            .ops
            .iter()
            .map(|o| EmbeddedOp {
                client: o.client,
                call: o.call.to_string(),
                ret: o.ret.map(|r| r.to_string()),
                label: &o.label,
                highlighted: o.highlighted,
                state_before: o.state_before.as_deref(),
                state_after: o.state_after.as_deref(),
                response: o.response.as_deref(),
                failure: o.failure.as_deref(),
            })
            .collect(),
    };
    // Plain strings, numbers and booleans: serializing cannot fail.
    let json = serde_json::to_string(&e).unwrap_or_else(|_| "{\"ops\":[]}".to_owned());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            _ => out.push(c),
        }
    }
    out
}

/// Reads the embedded JSON back from a page made by [`html`] (for tests and tools):
/// an object with `title`, `verdict`, `property`, `note` and `ops`, each op with
/// `client`, `call`, `ret` (times as strings), `label`, `highlighted`, `state_before`,
/// `state_after`, `response` and `failure`.
pub fn embedded_data(page: &str) -> Result<serde_json::Value, String> {
    let open = format!("<script type=\"application/json\" id=\"{DATA_ID}\">");
    let start = page
        .find(&open)
        .ok_or_else(|| "no embedded timeline data".to_owned())?
        + open.len();
    let len = page[start..]
        .find("</script>")
        .ok_or_else(|| "embedded timeline data not closed".to_owned())?;
    serde_json::from_str(&page[start..start + len]).map_err(|e| e.to_string())
}

/// Renders `t` as one self-contained HTML page.
pub fn html(t: &Timeline) -> String {
    // Rank distinct times: each call or return time gets one slot.
    let mut slots: BTreeMap<u64, usize> = BTreeMap::new();
    for op in &t.ops {
        slots.insert(op.call, 0);
        if let Some(r) = op.ret {
            slots.insert(r, 0);
        }
    }
    for (rank, slot) in slots.values_mut().enumerate() {
        *slot = rank;
    }
    let width_px = LABEL_WIDTH_PX + (slots.len() + 2) * SLOT_WIDTH_PX;
    let x_of = |time: u64| LABEL_WIDTH_PX + slots.get(&time).copied().unwrap_or(0) * SLOT_WIDTH_PX;

    let mut lanes: BTreeMap<u64, Vec<(usize, &TimelineOp)>> = BTreeMap::new();
    for (i, op) in t.ops.iter().enumerate() {
        lanes.entry(op.client).or_default().push((i, op));
    }

    let mut out = String::new();
    let title = escape(&t.title);
    let verdict = escape(&t.verdict);
    // Only a known verdict becomes part of a class name.
    let verdict_class = match t.verdict.as_str() {
        "OK" | "Illegal" | "Unknown" => t.verdict.as_str(),
        _ => "other",
    };
    let _ = write!(
        out,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1>\
         <p>Verdict: <span class=\"verdict v-{verdict_class}\">{verdict}</span>"
    );
    if let Some(p) = &t.property {
        let _ = write!(out, " &mdash; {}", escape(p));
    }
    let highlighted = t.ops.iter().filter(|o| o.highlighted).count();
    let _ = write!(
        out,
        "</p><p>{} operations, {} clients, {highlighted} highlighted. \
         Hover an operation for details; dashed right edge: unknown outcome.</p>\
         <div id=\"scroll\"><div style=\"width:{width_px}px\">",
        t.ops.len(),
        lanes.len()
    );
    if let Some(n) = &t.note {
        let _ = write!(out, "<p>{}</p>", escape(n));
    }
    for (client, ops) in &lanes {
        let _ = write!(
            out,
            "<div class=\"lane\" style=\"height:{LANE_HEIGHT_PX}px\">\
             <div class=\"who\">client {client}</div>"
        );
        for &(i, op) in ops {
            let left = x_of(op.call);
            let right = op.ret.map_or(width_px, x_of);
            let w = right.saturating_sub(left).max(BAR_WIDTH_MIN_PX);
            let mut class = String::from("op");
            if op.ret.is_none() {
                class.push_str(" open");
            }
            if op.highlighted {
                class.push_str(" bad");
            }
            let _ = write!(
                out,
                "<div class=\"{class}\" style=\"left:{left}px;width:{w}px\" \
                 data-op=\"{i}\">{}</div>",
                escape(&op.label)
            );
        }
        out.push_str("</div>");
    }
    let _ = write!(
        out,
        "</div></div><div id=\"detail\"></div>\
         <script type=\"application/json\" id=\"{DATA_ID}\">{}</script>\
         <script>{SCRIPT}</script></body></html>",
        embedded_json(t)
    );
    out
}

/// The hover text of one operation, as the page's script builds it.
pub fn info(op: &TimelineOp) -> String {
    let ret = op
        .ret
        .map_or_else(|| "unknown".to_string(), |r| r.to_string());
    let mut s = format!(
        "{}\nclient {}  call {}  return {}",
        op.label, op.client, op.call, ret
    );
    if op.highlighted {
        s.push_str("\nFAILING");
    }
    if let Some(f) = &op.failure {
        let _ = write!(s, "\n{f}");
    }
    if let Some(b) = &op.state_before {
        let _ = write!(s, "\nstate before: {b}");
    }
    if let Some(a) = &op.state_after {
        let _ = write!(s, "\nstate after: {a}");
    }
    if let Some(r) = &op.response {
        let _ = write!(s, "\nresponse: {r}");
    }
    s
}

#[cfg(test)]
mod tests;
