//! Layout of figures: a title over a grid of panels, each panel a line chart or a bar chart
//! with its own axes, ticks, legend and labels.

use super::font::{text_width, LINE_H};
use super::raster::{Canvas, Rect, Rgb};
use super::{Panel, PanelKind, Series};

/// Width of every figure in pixels.
pub const FIGURE_WIDTH: u32 = 800;
/// Height of a one-panel figure in pixels.
pub const SINGLE_HEIGHT: u32 = 500;

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [20, 20, 20];
const AXIS: Rgb = [90, 90, 90];
const GRID: Rgb = [228, 228, 228];
const MUTED: Rgb = [120, 120, 120];
const REFERENCE: Rgb = [160, 160, 160];

/// Distinct series colours (matplotlib's tab10). Series `i` of a panel gets `PALETTE[i % 10]`.
pub const PALETTE: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Series with at most this many points also get a marker on each point.
const MARKER_MAX_POINTS: usize = 40;
const TEXT: usize = 2; // text scale of labels (5x7 glyphs drawn 2x)

/// Renders a figure: `title` on top, the panels in a grid of `columns` columns (at least 1).
pub fn render(title: &str, panels: &[Panel], columns: usize) -> Canvas {
    let w = FIGURE_WIDTH as i64;
    let title_scale = if text_width(title, 3) as i64 <= w - 20 {
        3
    } else {
        2
    };
    let title_h = (LINE_H * title_scale) as i64 + 14;
    let n = panels.len().max(1);
    let cols = columns.clamp(1, n);
    let rows = n.div_ceil(cols);
    let panel_h = if n == 1 {
        SINGLE_HEIGHT as i64 - title_h
    } else if rows <= 3 {
        320
    } else {
        270
    };
    let h = title_h + rows as i64 * panel_h;
    let mut c = Canvas::new(FIGURE_WIDTH, h as u32, WHITE);
    let title = fit_text(title, title_scale, w - 20);
    let tx = (w - text_width(&title, title_scale) as i64) / 2;
    c.text(tx, 8, &title, title_scale, BLACK);
    if panels.is_empty() {
        let msg = "no data";
        let x = (w - text_width(msg, TEXT) as i64) / 2;
        c.text(x, h / 2, msg, TEXT, MUTED);
        return c;
    }
    let panel_w = w / cols as i64;
    for (i, panel) in panels.iter().enumerate() {
        let (r, col) = ((i / cols) as i64, (i % cols) as i64);
        let rect = Rect {
            x0: col * panel_w,
            y0: title_h + r * panel_h,
            x1: (col + 1) * panel_w,
            y1: title_h + (r + 1) * panel_h,
        };
        draw_panel(&mut c, rect, panel);
    }
    c
}

/// `text` cut (with a trailing `..`) to fit `max_w` pixels at `scale`.
fn fit_text(text: &str, scale: usize, max_w: i64) -> String {
    if text_width(text, scale) as i64 <= max_w {
        return text.to_string();
    }
    let mut s: String = text.to_string();
    while !s.is_empty() && text_width(&format!("{s}.."), scale) as i64 > max_w {
        s.pop();
    }
    format!("{s}..")
}

/// A linear axis: data range `lo..hi` mapped onto pixels, with tick positions.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    step: f64,
}

impl Axis {
    /// An axis covering `lo..hi`. `round_out` extends the range to whole tick steps (y axes);
    /// `integer` forbids fractional tick steps (x axes of steps and iterations).
    fn new(lo: f64, hi: f64, target_ticks: usize, round_out: bool, integer: bool) -> Axis {
        let (mut lo, mut hi) = (lo, hi);
        if !(lo.is_finite() && hi.is_finite()) || lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo <= 1e-12 * lo.abs().max(hi.abs()).max(1e-300) {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            let pad = if integer { pad.max(1.0) } else { pad };
            (lo, hi) = (lo - pad, hi + pad);
        }
        if !(hi - lo).is_finite() {
            (lo, hi) = (lo / 2.0, hi / 2.0); // keeps the span finite; such data is unusual
        }
        let mut step = nice_step((hi - lo) / target_ticks.max(1) as f64);
        if integer {
            step = step.max(1.0);
        }
        if round_out {
            lo = (lo / step).floor() * step;
            hi = (hi / step).ceil() * step;
        }
        let first = (lo / step).ceil() as i64;
        let last = (hi / step).floor() as i64;
        let ticks = if last >= first && last - first <= 60 {
            (first..=last).map(|k| k as f64 * step).collect()
        } else {
            vec![lo, hi]
        };
        Axis {
            lo,
            hi,
            ticks,
            step,
        }
    }

    /// Pixel coordinate of `v` on a screen interval `p0..p1` (`p0` is where `lo` goes).
    fn map(&self, v: f64, p0: f64, p1: f64) -> f64 {
        p0 + (v - self.lo) / (self.hi - self.lo) * (p1 - p0)
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A tick label: as many decimals as the step needs; scientific notation for very large or
/// very small magnitudes.
pub(crate) fn format_tick(v: f64, step: f64) -> String {
    if v.abs() < step.abs() * 1e-6 {
        return "0".into();
    }
    let mag = v.abs().max(step.abs());
    if !(1e-3..1e6).contains(&mag) {
        let exp_v = v.abs().log10().floor();
        let exp_s = step.abs().log10().floor();
        let dec = (exp_v - exp_s).clamp(0.0, 3.0) as usize;
        return format!("{v:.dec$e}");
    }
    let dec = (-step.abs().log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.dec$}")
}

/// A bar's value label.
fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn draw_panel(c: &mut Canvas, rect: Rect, panel: &Panel) {
    let pad = 10;
    let text_h = (LINE_H * TEXT) as i64;
    let mut y = rect.y0 + 6;
    if !panel.title.is_empty() {
        let t = fit_text(&panel.title, TEXT, rect.width() - 2 * pad);
        let x = rect.x0 + (rect.width() - text_width(&t, TEXT) as i64) / 2;
        c.text(x, y, &t, TEXT, BLACK);
        y += text_h + 4;
    }
    // Legend: one entry per series, wrapped into rows, when there is more than one series.
    if let PanelKind::Lines(series) = &panel.kind {
        if series.len() > 1 {
            y = draw_legend(c, rect.x0 + pad + 30, rect.x1 - pad, y, series);
        }
    }
    // Data ranges.
    let (xs, ys) = data_ranges(panel);
    let has_data = xs.is_some() || matches!(&panel.kind, PanelKind::Bars(b) if !b.is_empty());
    let (xlo, xhi) = xs.unwrap_or((0.0, 1.0));
    let (mut ylo, mut yhi) = ys.unwrap_or((0.0, 1.0));
    for (v, _) in &panel.hlines {
        if v.is_finite() {
            ylo = ylo.min(*v);
            yhi = yhi.max(*v);
        }
    }
    if let PanelKind::Bars(_) = panel.kind {
        ylo = ylo.min(0.0);
        yhi = yhi.max(0.0);
        let span = (yhi - ylo).max(1e-12);
        // Room for the value labels above (and below) the bars.
        if yhi > 0.0 {
            yhi += 0.12 * span;
        }
        if ylo < 0.0 {
            ylo -= 0.12 * span;
        }
    }
    let integer_x = match &panel.kind {
        PanelKind::Lines(s) => s
            .iter()
            .flat_map(|s| &s.points)
            .all(|(x, _)| !x.is_finite() || x.fract() == 0.0),
        PanelKind::Bars(_) => false,
    };
    let yaxis = Axis::new(ylo, yhi, 5, true, false);
    let xaxis = Axis::new(xlo, xhi, 6, false, integer_x);
    let ylabels: Vec<String> = yaxis
        .ticks
        .iter()
        .map(|v| format_tick(*v, yaxis.step))
        .collect();
    let label_w = ylabels
        .iter()
        .map(|l| text_width(l, TEXT))
        .max()
        .unwrap_or(0) as i64;
    let bottom = match &panel.kind {
        PanelKind::Lines(_) => {
            text_h
                + 8
                + if panel.x_label.is_empty() {
                    0
                } else {
                    text_h + 4
                }
        }
        PanelKind::Bars(_) => text_h + 10,
    };
    let plot = Rect {
        x0: rect.x0 + pad + label_w + 8,
        y0: y + 8,
        x1: rect.x1 - pad - 8,
        y1: (rect.y1 - pad - bottom).max(y + 40),
    };
    let (px0, px1) = (plot.x0 as f64, (plot.x1 - 1) as f64);
    let (py0, py1) = ((plot.y1 - 1) as f64, plot.y0 as f64); // y grows upwards
                                                             // Grid and y ticks.
    for (v, label) in yaxis.ticks.iter().zip(&ylabels) {
        let py = yaxis.map(*v, py0, py1).round() as i64;
        c.line(px0, py as f64, px1, py as f64, 1, GRID, plot);
        let lx = plot.x0 - 6 - text_width(label, TEXT) as i64;
        c.text(lx, py - (7 * TEXT as i64) / 2, label, TEXT, AXIS);
    }
    if let PanelKind::Lines(_) = panel.kind {
        for v in &xaxis.ticks {
            let px = xaxis.map(*v, px0, px1).round() as i64;
            c.line(px as f64, py1, px as f64, py0, 1, GRID, plot);
            if has_data {
                let label = format_tick(*v, xaxis.step);
                let lx = px - text_width(&label, TEXT) as i64 / 2;
                c.text(lx, plot.y1 + 6, &label, TEXT, AXIS);
            }
        }
        if !panel.x_label.is_empty() {
            let t = fit_text(&panel.x_label, TEXT, rect.width() - 2 * pad);
            let lx = plot.x0 + (plot.width() - text_width(&t, TEXT) as i64) / 2;
            c.text(lx, plot.y1 + 6 + text_h + 4, &t, TEXT, AXIS);
        }
    }
    c.outline(plot, AXIS);
    // Reference lines.
    for (v, label) in &panel.hlines {
        if !v.is_finite() {
            continue;
        }
        let py = yaxis.map(*v, py0, py1);
        c.dashed(px0, py, px1, py, 2, REFERENCE, plot, (8, 6));
        if !label.is_empty() {
            let lx = plot.x1 - 6 - text_width(label, TEXT) as i64;
            c.text(lx, py as i64 - text_h, label, TEXT, MUTED);
        }
    }
    if !has_data {
        let msg = "no data";
        let lx = plot.x0 + (plot.width() - text_width(msg, TEXT) as i64) / 2;
        c.text(lx, plot.y0 + plot.height() / 2 - 7, msg, TEXT, MUTED);
        return;
    }
    match &panel.kind {
        PanelKind::Lines(series) => {
            let inner = Rect {
                x0: plot.x0 + 1,
                y0: plot.y0 + 1,
                x1: plot.x1 - 1,
                y1: plot.y1 - 1,
            };
            for (i, s) in series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|&(x, y)| (xaxis.map(x, px0, px1), yaxis.map(y, py0, py1)))
                    .collect();
                for w in pts.windows(2) {
                    c.line(w[0].0, w[0].1, w[1].0, w[1].1, 2, color, inner);
                }
                if pts.len() <= MARKER_MAX_POINTS {
                    for &(x, y) in &pts {
                        c.dot(x.round() as i64, y.round() as i64, 6, color, inner);
                    }
                }
            }
        }
        PanelKind::Bars(bars) => {
            let n = bars.len() as i64;
            let slot = plot.width() as f64 / n as f64;
            let zero = yaxis.map(0.0, py0, py1);
            for (i, (name, v)) in bars.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let cx = plot.x0 as f64 + slot * (i as f64 + 0.5);
                let half = (slot * 0.3).clamp(1.0, 45.0);
                let label = format_value(*v);
                let lw = text_width(&label, TEXT) as i64;
                if v.is_finite() {
                    let top = yaxis.map(*v, py0, py1);
                    let (a, b) = if top < zero { (top, zero) } else { (zero, top) };
                    let bar = Rect {
                        x0: (cx - half).round() as i64,
                        y0: a.round() as i64,
                        x1: (cx + half).round() as i64,
                        y1: b.round() as i64 + 1,
                    };
                    c.fill(bar, color);
                    let ly = if *v >= 0.0 {
                        a.round() as i64 - text_h
                    } else {
                        b.round() as i64 + 4
                    };
                    c.text(cx.round() as i64 - lw / 2, ly, &label, TEXT, BLACK);
                } else {
                    c.text(
                        cx.round() as i64 - lw / 2,
                        zero as i64 - text_h,
                        &label,
                        TEXT,
                        MUTED,
                    );
                }
                // Category label under the axis, smaller or cut when it does not fit its slot.
                let scale = if text_width(name, TEXT) as f64 <= slot - 4.0 {
                    TEXT
                } else {
                    1
                };
                let name = fit_text(name, scale, slot as i64 - 4);
                let nx = cx.round() as i64 - text_width(&name, scale) as i64 / 2;
                c.text(nx, plot.y1 + 6, &name, scale, BLACK);
            }
            if ylo < 0.0 {
                c.line(px0, zero, px1, zero, 1, AXIS, plot);
            }
        }
    }
}

/// Draws legend entries (a colour swatch and the name) from `(x0, y)`, wrapping before `x1`.
/// Returns the y below the legend.
fn draw_legend(c: &mut Canvas, x0: i64, x1: i64, y: i64, series: &[Series]) -> i64 {
    let text_h = (LINE_H * TEXT) as i64;
    let (mut x, mut y) = (x0, y);
    let bounds = c.bounds();
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let empty = !s.points.iter().any(|(a, b)| a.is_finite() && b.is_finite());
        let name = if empty {
            format!("{} (no data)", s.name)
        } else {
            s.name.clone()
        };
        let name = fit_text(&name, TEXT, x1 - x0 - 30);
        let entry_w = 26 + text_width(&name, TEXT) as i64 + 18;
        if x > x0 && x + entry_w > x1 {
            x = x0;
            y += text_h;
        }
        let mid = (y + 7) as f64;
        c.line(x as f64, mid, (x + 20) as f64, mid, 4, color, bounds);
        c.text(x + 26, y, &name, TEXT, BLACK);
        x += entry_w;
    }
    y + text_h
}

/// A closed interval `(lo, hi)`.
type Range = (f64, f64);

/// The finite data ranges of a panel: `(x range, y range)`; `None` where there is no finite
/// point. Bar charts have no x range.
fn data_ranges(panel: &Panel) -> (Option<Range>, Option<Range>) {
    fn extend(r: &mut Option<Range>, v: f64) {
        *r = Some(match *r {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
    }
    let (mut xr, mut yr) = (None, None);
    match &panel.kind {
        PanelKind::Lines(series) => {
            for (x, y) in series.iter().flat_map(|s| &s.points) {
                if x.is_finite() && y.is_finite() {
                    extend(&mut xr, *x);
                    extend(&mut yr, *y);
                }
            }
        }
        PanelKind::Bars(bars) => {
            for (_, v) in bars {
                if v.is_finite() {
                    extend(&mut yr, *v);
                }
            }
        }
    }
    (xr, yr)
}
