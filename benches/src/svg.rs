//! A hand-written SVG line plot of latency distributions (CDF, log-scale latency axis)
//! that a person can open in a browser. It draws nothing else: no interactivity, no
//! styling beyond distinct colours.

use std::fmt::Write;

/// One curve: a label and `(latency_us, cumulative fraction)` points.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points, latency ascending.
    pub points: Vec<(u64, f64)>,
}

const WIDTH_PX: f64 = 800.0;
const HEIGHT_PX: f64 = 480.0;
const MARGIN_PX: f64 = 60.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders `series` as an SVG document: x = latency (µs, log10), y = fraction of
/// operations at or below it.
pub fn cdf_svg(title: &str, series: &[Series]) -> String {
    let all = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0.max(1)));
    let lo = all.clone().min().unwrap_or(1) as f64;
    let hi = all.max().unwrap_or(10) as f64;
    let (lo_log, mut hi_log) = (lo.log10().floor(), hi.log10().ceil());
    if hi_log <= lo_log {
        hi_log = lo_log + 1.0;
    }
    let plot_w = WIDTH_PX - 2.0 * MARGIN_PX;
    let plot_h = HEIGHT_PX - 2.0 * MARGIN_PX;
    let x_of =
        |us: u64| MARGIN_PX + ((us.max(1) as f64).log10() - lo_log) / (hi_log - lo_log) * plot_w;
    let y_of = |f: f64| HEIGHT_PX - MARGIN_PX - f * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{HEIGHT_PX}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="16">{}</text>"#,
        WIDTH_PX / 2.0,
        escape(title)
    );
    // Axes, decade ticks and quantile grid lines.
    let (x0, y0) = (MARGIN_PX, HEIGHT_PX - MARGIN_PX);
    let _ = writeln!(
        out,
        r#"<path d="M{x0},{MARGIN_PX} V{y0} H{}" stroke="black" fill="none"/>"#,
        WIDTH_PX - MARGIN_PX
    );
    let mut decade = lo_log;
    while decade <= hi_log {
        let us = 10f64.powf(decade) as u64;
        let x = x_of(us);
        let label = if us >= 1000 {
            format!("{} ms", us as f64 / 1000.0)
        } else {
            format!("{us} µs")
        };
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{MARGIN_PX}" x2="{x}" y2="{y0}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"##,
            y0 + 16.0
        );
        decade += 1.0;
    }
    for q in [0.5, 0.9, 0.99, 1.0] {
        let y = y_of(q);
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">p{}</text>"##,
            WIDTH_PX - MARGIN_PX,
            x0 - 4.0,
            y + 4.0,
            q * 100.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">latency (log scale)</text>"#,
        WIDTH_PX / 2.0,
        HEIGHT_PX - 20.0
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(us, f)| format!("{:.1},{:.1}", x_of(us), y_of(f)))
            .collect();
        if !path.is_empty() {
            let _ = writeln!(
                out,
                r#"<polyline points="{}" stroke="{colour}" stroke-width="2" fill="none"/>"#,
                path.join(" ")
            );
        }
        let ly = MARGIN_PX + 16.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{ly}" fill="{colour}">{}</text>"#,
            x0 + 10.0,
            escape(&s.label)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_polyline_per_nonempty_series_with_escaped_labels() {
        let s = vec![
            Series {
                label: "a<b".into(),
                points: vec![(10, 0.5), (1000, 1.0)],
            },
            Series {
                label: "empty".into(),
                points: vec![],
            },
        ];
        let svg = cdf_svg("t", &s);
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
