//! What the bench's programs share: clocks, process costs, statistics, the plot.

#![forbid(unsafe_code)]

use std::fmt::Write;
use std::time::Duration;

pub use ipfailover_e2e::process::{cpu_ns, mono_ns, rss_kib, signal_pid, with_children};

/// Min, median and max of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Smallest.
    pub min: f64,
    /// Median (the mean of the middle two for an even count).
    pub median: f64,
    /// Largest.
    pub max: f64,
    /// How many.
    pub n: usize,
}

impl Summary {
    /// Summarises durations; `None` for an empty sample.
    pub fn of(sample: &[Duration]) -> Option<Summary> {
        let mut ms: Vec<f64> = sample.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        Some(Summary {
            min: ms[0],
            median,
            max: ms[n - 1],
            n,
        })
    }

    /// `min / median / max` with a precision that suits the size.
    pub fn cell(&self) -> String {
        format!(
            "{} / **{}** / {}",
            ms(self.min),
            ms(self.median),
            ms(self.max)
        )
    }
}

/// A millisecond figure with sensible precision.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One series of the plot: a label, a colour, and its points in ms.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// CSS colour.
    pub colour: String,
    /// The values, ms.
    pub values: Vec<f64>,
}

/// One panel of the plot: a title, a reference line (the configured timeout) and series.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title, e.g. "1 s / 3 s".
    pub title: String,
    /// Where to draw the dashed reference line, ms.
    pub reference: Option<(f64, String)>,
    /// The series, drawn as rows of dots with the median marked.
    pub series: Vec<Series>,
}

/// A strip plot: one panel per setting, one row of dots per daemon, each panel on its own
/// linear axis from 0 to a bit past the largest value.
pub fn svg(title: &str, panels: &[Panel]) -> String {
    let width = 900.0;
    let row_h = 34.0;
    let panel_gap = 56.0;
    let left = 130.0;
    let right = 30.0;
    let mut y = 60.0;
    let mut body = String::new();
    for p in panels {
        let max = p
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .chain(p.reference.iter().map(|r| r.0))
            .fold(0.0_f64, f64::max)
            .max(1.0)
            * 1.08;
        let scale = (width - left - right) / max;
        let x = |v: f64| left + v * scale;
        let top = y;
        let h = row_h * p.series.len() as f64;
        let _ = writeln!(
            body,
            r#"<text x="{left}" y="{:.1}" font-size="15" font-weight="bold">{}</text>"#,
            top - 12.0,
            esc(&p.title)
        );
        // Axis with ticks.
        let step = nice_step(max);
        let mut t = 0.0;
        while t <= max {
            let _ = writeln!(
                body,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#ddd"/><text x="{0:.1}" y="{3:.1}" font-size="11" text-anchor="middle" fill="#555">{4}</text>"##,
                x(t),
                top,
                top + h,
                top + h + 14.0,
                ms(t)
            );
            t += step;
        }
        let _ = writeln!(
            body,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555">ms</text>"##,
            width - right + 4.0,
            top + h + 14.0
        );
        if let Some((v, label)) = &p.reference {
            let _ = writeln!(
                body,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#444" stroke-dasharray="4 3"/><text x="{0:.1}" y="{3:.1}" font-size="11" text-anchor="middle" fill="#444">{4}</text>"##,
                x(*v),
                top - 4.0,
                top + h,
                top - 2.0 + 0.0,
                esc(label)
            );
        }
        for (i, s) in p.series.iter().enumerate() {
            let cy = top + row_h * i as f64 + row_h / 2.0;
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="end" fill="{}">{}</text>"#,
                left - 10.0,
                cy + 4.0,
                s.colour,
                esc(&s.label)
            );
            for (j, v) in s.values.iter().enumerate() {
                // A small deterministic vertical spread so equal values stay visible.
                let dy = ((j * 7919) % 13) as f64 - 6.0;
                let _ = writeln!(
                    body,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.2" fill="{}" fill-opacity="0.55"/>"#,
                    x(*v),
                    cy + dy,
                    s.colour
                );
            }
            let durations: Vec<Duration> = s
                .values
                .iter()
                .map(|v| Duration::from_secs_f64(v / 1000.0))
                .collect();
            if let Some(sum) = Summary::of(&durations) {
                let _ = writeln!(
                    body,
                    r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="{3}" stroke-width="3"/><text x="{4:.1}" y="{5:.1}" font-size="11" fill="{3}">median {6} ms</text>"#,
                    x(sum.median),
                    cy - 12.0,
                    cy + 12.0,
                    s.colour,
                    x(sum.median) + 5.0,
                    cy - 9.0,
                    ms(sum.median)
                );
            }
        }
        y = top + h + panel_gap;
    }
    let height = y;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" viewBox="0 0 {width} {height:.0}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="28" font-size="18" font-weight="bold">{}</text>
{body}</svg>
"##,
        esc(title)
    )
}

fn nice_step(max: f64) -> f64 {
    let raw = max / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if raw <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_and_even_samples() {
        let d = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        let s = Summary::of(&d(&[5, 1, 3])).unwrap();
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 3.0, 5.0, 3));
        let s = Summary::of(&d(&[4, 1, 3, 2])).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn own_cpu_time_and_memory_are_readable() {
        let me = std::process::id();
        let a = cpu_ns(me).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        let b = cpu_ns(me).unwrap();
        assert!(b > a, "{x}");
        assert!(rss_kib(me).unwrap() > 100);
    }

    #[test]
    fn the_plot_is_an_svg_with_every_point() {
        let p = Panel {
            title: "100 ms / 300 ms".into(),
            reference: Some((300.0, "timeout".into())),
            series: vec![Series {
                label: "ipfailover".into(),
                colour: "#1f6f3f".into(),
                values: vec![250.0, 260.0, 270.0],
            }],
        };
        let s = svg("crash takeover", &[p]);
        assert!(s.starts_with("<svg"));
        assert_eq!(s.matches("<circle").count(), 3);
        assert!(s.contains("median 260 ms"));
    }
}
