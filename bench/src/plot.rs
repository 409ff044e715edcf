//! Plots of a run as hand-written SVG (no plotting dependency): grouped
//! horizontal bar charts, linear or log scale, with the value printed at each
//! bar's end so the figure reads without hovering.

use std::fmt::Write;

/// One bar: series name (colour, legend) and value; None draws "NA".
pub type Bar = (String, Option<f64>);

pub struct Chart {
    pub title: String,
    pub unit: String,
    pub log: bool,
    /// (group label, bars)
    pub groups: Vec<(String, Vec<Bar>)>,
}

const COLOURS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw > 0.0 && raw.is_finite()) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Chart {
    pub fn svg(&self) -> String {
        let mut series: Vec<&str> = Vec::new();
        for (_, bars) in &self.groups {
            for (s, _) in bars {
                if !series.contains(&s.as_str()) {
                    series.push(s);
                }
            }
        }
        let values: Vec<f64> = self
            .groups
            .iter()
            .flat_map(|(_, b)| b.iter().filter_map(|(_, v)| *v))
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let max = values.iter().cloned().fold(0.0f64, f64::max).max(1e-9);
        let min = values
            .iter()
            .cloned()
            .fold(f64::INFINITY, f64::min)
            .min(max);
        // Log scale: from one decade below the smallest value.
        let lo = if self.log {
            (min / 10.0).log10().floor()
        } else {
            0.0
        };
        let step = nice_step(max * 1.1 / 4.0);
        let hi = if self.log {
            max.log10().ceil().max(lo + 1.0)
        } else {
            (max * 1.1 / step).ceil() * step
        };
        let (left, plot_w, bar_h, gap) = (230.0, 470.0, 16.0, 10.0);
        let width = left + plot_w + 90.0;
        // Legend items flow left to right (about 7 px per character), wrapping.
        let mut legend: Vec<(f64, f64)> = Vec::with_capacity(series.len());
        let (mut lx, mut ly) = (10.0, 34.0);
        for name in &series {
            let w = 16.0 + 7.0 * name.chars().count() as f64 + 18.0;
            if lx + w > width - 10.0 && lx > 10.0 {
                lx = 10.0;
                ly += 22.0;
            }
            legend.push((lx, ly));
            lx += w;
        }
        let top = ly + 28.0;
        let rows: usize = self.groups.iter().map(|(_, b)| b.len()).sum();
        let height = top + rows as f64 * bar_h + self.groups.len() as f64 * gap + 50.0;
        let x_of = |v: f64| -> f64 {
            if self.log {
                ((v.max(10f64.powf(lo)).log10() - lo) / (hi - lo)) * plot_w
            } else {
                v / hi * plot_w
            }
        };
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">{}</text>
"#,
            esc(&self.title)
        );
        for (i, (name, &(lx, ly))) in series.iter().zip(&legend).enumerate() {
            let _ = writeln!(
                s,
                r#"<rect x="{lx}" y="{ly}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
                COLOURS[i % COLOURS.len()],
                lx + 16.0,
                ly + 11.0,
                esc(name)
            );
        }
        // Grid: decades (log) or quarters (linear).
        let ticks: Vec<f64> = if self.log {
            (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
        } else {
            (0..=(hi / step).round() as i32)
                .map(|k| step * f64::from(k))
                .collect()
        };
        let bottom = height - 40.0;
        for t in ticks {
            let x = left + x_of(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
                bottom + 15.0,
                fmt_value(t)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">{}{}</text>"##,
            left + plot_w / 2.0,
            bottom + 32.0,
            esc(&self.unit),
            if self.log { " (log scale)" } else { "" }
        );
        let mut y = top;
        for (label, bars) in &self.groups {
            let gh = bars.len() as f64 * bar_h;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                left - 8.0,
                y + gh / 2.0 + 4.0,
                esc(label)
            );
            for (name, v) in bars {
                let ci = series.iter().position(|x| x == name).unwrap_or(0);
                match v {
                    Some(v) if v.is_finite() && *v > 0.0 => {
                        let w = x_of(*v).max(1.0);
                        let _ = writeln!(
                            s,
                            r#"<rect x="{left}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}">{}</text>"#,
                            y + 1.0,
                            bar_h - 2.0,
                            COLOURS[ci % COLOURS.len()],
                            esc(name),
                            fmt_value(*v),
                            left + w + 4.0,
                            y + bar_h - 4.0,
                            fmt_value(*v)
                        );
                    }
                    _ => {
                        let _ = writeln!(
                            s,
                            r##"<text x="{}" y="{:.1}" fill="#999">NA ({})</text>"##,
                            left + 4.0,
                            y + bar_h - 4.0,
                            esc(name)
                        );
                    }
                }
                y += bar_h;
            }
            y += gap;
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bar_and_label_is_drawn_and_scales_hold() {
        let c = Chart {
            title: "Mpps <1 core>".into(),
            unit: "Mpps".into(),
            log: false,
            groups: vec![
                (
                    "NAT".into(),
                    vec![("1k".into(), Some(8.0)), ("1M".into(), Some(4.0))],
                ),
                ("FULLNAT".into(), vec![("1k".into(), None)]),
            ],
        };
        let s = c.svg();
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("Mpps &lt;1 core&gt;"), "title escaped");
        assert_eq!(s.matches("<title>").count(), 2, "one bar per value");
        assert!(s.contains("NA (1k)"));
        // Linear: the 8.0 bar is twice as long as the 4.0 bar.
        let widths: Vec<f64> = s
            .match_indices(" width=\"")
            .filter_map(|(i, _)| {
                let rest = &s[i + 8..];
                rest[..rest.find('"')?].parse().ok()
            })
            .filter(|w: &f64| *w < 470.0)
            .collect();
        let bars: Vec<f64> = widths.into_iter().filter(|w| *w > 12.0).collect();
        assert_eq!(bars.len(), 2, "{bars:?}");
        assert!((bars[0] / bars[1] - 2.0).abs() < 1e-2, "{bars:?}");
        assert_eq!(nice_step(3565.0), 5000.0);
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(nice_step(0.04), 0.05);
        let l = Chart { log: true, ..c };
        let s = l.svg();
        assert!(s.contains("(log scale)"));
    }
}
