//! Layout of figures, drawn with `plotters`: a title over a grid of panels, each panel a line
//! chart or a bar chart with its own axes, ticks, legend and labels. Text uses DejaVu Sans,
//! embedded (the `dejavu` crate), so plots render the same on a machine without fonts.

use super::{Panel, PanelKind, Series};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// Width of every figure in pixels.
pub const FIGURE_WIDTH: u32 = 800;
/// Height of a one-panel figure in pixels.
pub const SINGLE_HEIGHT: u32 = 500;

/// An 8-bit RGB colour.
pub type Rgb = [u8; 3];

/// A rendered figure: `width x height` RGB pixels, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

const BLACK: RGBColor = RGBColor(20, 20, 20);
const GRID: RGBColor = RGBColor(228, 228, 228);
const MUTED: RGBColor = RGBColor(120, 120, 120);
const REFERENCE: RGBColor = RGBColor(160, 160, 160);

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
const FONT: &str = "sans-serif";

fn colour(i: usize) -> RGBColor {
    let [r, g, b] = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Registers the embedded DejaVu Sans as plotters' `sans-serif` (once per process).
fn ensure_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans is a valid font"));
    });
}

/// Renders a figure: `title` on top, the panels in a grid of `columns` columns (at least 1).
/// Drawing errors (none are expected on an in-memory bitmap) are returned.
pub fn render(title: &str, panels: &[Panel], columns: usize) -> anyhow::Result<Canvas> {
    ensure_font();
    let w = FIGURE_WIDTH;
    let title_h = 40u32;
    let n = panels.len().max(1);
    let cols = columns.clamp(1, n);
    let rows = n.div_ceil(cols) as u32;
    let panel_h = if n == 1 {
        SINGLE_HEIGHT - title_h
    } else if rows <= 3 {
        320
    } else {
        270
    };
    let h = title_h + rows * panel_h;
    let mut pixels = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, body) = root.split_vertically(title_h);
        let size = if title.len() <= 60 { 24 } else { 18 };
        let style = TextStyle::from((FONT, size).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        top.draw_text(
            &fit(title, 95),
            &style,
            ((w / 2) as i32, (title_h / 2) as i32),
        )?;
        if panels.is_empty() {
            no_data(&body)?;
        } else {
            let areas = body.split_evenly((rows as usize, cols));
            for (area, panel) in areas.iter().zip(panels) {
                draw_panel(area, panel)?;
            }
        }
        root.present()?;
    }
    Ok(Canvas {
        width: w,
        height: h,
        pixels,
    })
}

/// `text` cut (with a trailing `..`) to at most `max` characters.
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let s: String = text.chars().take(max.saturating_sub(2)).collect();
    format!("{s}..")
}

fn no_data(area: &DrawingArea<BitMapBackend, Shift>) -> anyhow::Result<()> {
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from((FONT, 18).into_font())
        .color(&MUTED)
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text("no data", &style, ((w / 2) as i32, (h / 2) as i32))?;
    Ok(())
}

/// A data range made safe for an axis: finite, increasing, and padded when flat (`integer`
/// axes by at least 1).
fn axis_range(lo: f64, hi: f64, integer: bool, margin: f64) -> (f64, f64) {
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
    let m = (hi - lo) * margin;
    (lo - m, hi + m)
}

/// A tick label: as many decimals as the axis span needs; scientific notation for very large
/// or very small magnitudes.
pub(crate) fn format_tick(v: f64, span: f64) -> String {
    let step = span / 5.0;
    if v.abs() < step.abs() * 1e-6 {
        return "0".into();
    }
    let mag = v.abs().max(step.abs());
    if !(1e-3..1e6).contains(&mag) {
        return format!("{v:.1e}");
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

/// The runs of consecutive finite points of a series (a non-finite point breaks the line).
fn finite_runs(s: &Series) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![];
    let mut cur = vec![];
    for &(x, y) in &s.points {
        if x.is_finite() && y.is_finite() {
            cur.push((x, y));
        } else if !cur.is_empty() {
            runs.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        runs.push(cur);
    }
    runs
}

fn draw_panel(area: &DrawingArea<BitMapBackend, Shift>, panel: &Panel) -> anyhow::Result<()> {
    let area = area.margin(6, 6, 8, 14);
    if !panel.has_data() {
        let caption = area.titled(&fit(&panel.title, 60), (FONT, 16))?;
        return no_data(&caption);
    }
    match &panel.kind {
        PanelKind::Lines(series) => draw_lines(&area, panel, series),
        PanelKind::Bars(bars) => draw_bars(&area, panel, bars),
    }
}

fn draw_lines(
    area: &DrawingArea<BitMapBackend, Shift>,
    panel: &Panel,
    series: &[Series],
) -> anyhow::Result<()> {
    let runs: Vec<Vec<Vec<(f64, f64)>>> = series.iter().map(finite_runs).collect();
    let pts = || runs.iter().flatten().flatten();
    let fold = |f: fn(&(f64, f64)) -> f64| {
        pts()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let (x0, x1) = fold(|p| p.0);
    let (mut y0, mut y1) = fold(|p| p.1);
    for (y, _) in &panel.hlines {
        if y.is_finite() {
            (y0, y1) = (y0.min(*y), y1.max(*y));
        }
    }
    let integer_x = pts().all(|p| p.0.fract() == 0.0);
    let (x0, x1) = axis_range(x0, x1, integer_x, 0.0);
    let (y0, y1) = axis_range(y0, y1, false, 0.05);
    let mut chart = ChartBuilder::on(area)
        .caption(fit(&panel.title, 60), (FONT, 16))
        .x_label_area_size(if panel.x_label.is_empty() { 24 } else { 40 })
        .y_label_area_size(62)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let (xs, ys) = (x1 - x0, y1 - y0);
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .x_labels(6)
        .y_labels(6)
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(MUTED)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .x_label_formatter(&|v| format_tick(*v, xs))
        .y_label_formatter(&|v| format_tick(*v, ys))
        .draw()?;
    draw_hlines(&mut chart, &panel.hlines, (x0, x1), ys)?;
    for (i, (s, runs)) in series.iter().zip(&runs).enumerate() {
        let c = colour(i);
        let n: usize = runs.iter().map(Vec::len).sum();
        for (k, run) in runs.iter().enumerate() {
            // plotters joins the segments of a thick polyline with miters, which shoot far
            // past the data (and out of the axes) where a jagged line turns sharply: dense
            // series are drawn 1 pixel wide (no joins), sparse ones 2 pixels wide one segment
            // at a time.
            let drawn = if n > MARKER_MAX_POINTS {
                chart.draw_series(LineSeries::new(run.iter().copied(), c.stroke_width(1)))?
            } else if run.len() == 1 {
                chart.draw_series(LineSeries::new(run.iter().copied(), c.stroke_width(2)))?
            } else {
                chart.draw_series(
                    run.windows(2)
                        .map(|w| PathElement::new(vec![w[0], w[1]], c.stroke_width(2))),
                )?
            };
            if k == 0 {
                drawn.label(fit(&s.name, 40)).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                });
            }
        }
        if n <= MARKER_MAX_POINTS {
            chart.draw_series(
                runs.iter()
                    .flatten()
                    .map(|&p| Circle::new(p, 3, c.filled())),
            )?;
        }
    }
    if series.len() > 1 {
        // The legend's size as a share of the plotting area, to find the corner it hides least.
        let (w, h) = chart.plotting_area().dim_in_pixel();
        let longest = series
            .iter()
            .map(|s| fit(&s.name, 40).chars().count())
            .max();
        let box_w = (40.0 + 7.5 * longest.unwrap_or(0) as f64) / w.max(1) as f64;
        let box_h = (12.0 + 19.0 * series.len() as f64) / h.max(1) as f64;
        let corner = legend_corner(&runs, (x0, x1), (y0, y1), (box_w, box_h));
        chart
            .configure_series_labels()
            .position(match corner {
                Corner::UpperRight => SeriesLabelPosition::UpperRight,
                Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
                Corner::LowerRight => SeriesLabelPosition::LowerRight,
                Corner::LowerLeft => SeriesLabelPosition::LowerLeft,
            })
            .background_style(WHITE.mix(0.75))
            .border_style(GRID)
            .label_font((FONT, 13))
            .draw()?;
    }
    Ok(())
}

/// A corner of a chart's plotting area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corner {
    /// Top right (preferred when corners tie).
    UpperRight,
    /// Top left.
    UpperLeft,
    /// Bottom right.
    LowerRight,
    /// Bottom left.
    LowerLeft,
}

/// Where a legend box of `size` (width and height as shares of the plotting area) covers the
/// fewest of the lines (each segment sampled at 16 points, so a line crossing a corner counts
/// even between its points), as matplotlib's `loc="best"`; ties go to the upper right, then
/// upper left, lower right, lower left.
pub fn legend_corner(
    runs: &[Vec<Vec<(f64, f64)>>],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    (box_w, box_h): (f64, f64),
) -> Corner {
    let (xs, ys) = (
        (x1 - x0).max(f64::MIN_POSITIVE),
        (y1 - y0).max(f64::MIN_POSITIVE),
    );
    let unit = |(x, y): (f64, f64)| ((x - x0) / xs, (y - y0) / ys);
    let mut samples = Vec::new();
    for run in runs.iter().flatten() {
        if let [only] = run.as_slice() {
            samples.push(unit(*only));
        }
        for pair in run.windows(2) {
            let (a, b) = (unit(pair[0]), unit(pair[1]));
            samples.extend((0..=16).map(|i| {
                let t = i as f64 / 16.0;
                (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
            }));
        }
    }
    // A little margin around the box (plotters draws it inset from the corner).
    let (bw, bh) = ((box_w + 0.03).min(1.0), (box_h + 0.03).min(1.0));
    let covered = |right: bool, upper: bool| {
        samples
            .iter()
            .filter(|&&(u, v)| {
                let in_x = if right { u >= 1.0 - bw } else { u <= bw };
                let in_y = if upper { v >= 1.0 - bh } else { v <= bh };
                in_x && in_y
            })
            .count()
    };
    [
        (Corner::UpperRight, covered(true, true)),
        (Corner::UpperLeft, covered(false, true)),
        (Corner::LowerRight, covered(true, false)),
        (Corner::LowerLeft, covered(false, false)),
    ]
    .into_iter()
    .min_by_key(|&(_, n)| n)
    .map_or(Corner::UpperRight, |(c, _)| c)
}

/// The panel's dashed reference lines, each labelled at its left end.
fn draw_hlines(
    chart: &mut ChartContext<
        '_,
        BitMapBackend<'_>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    hlines: &[(f64, String)],
    (x0, x1): (f64, f64),
    ys: f64,
) -> anyhow::Result<()> {
    let xs = x1 - x0;
    for (y, label) in hlines {
        if !y.is_finite() {
            continue;
        }
        chart.draw_series(DashedLineSeries::new(
            vec![(x0, *y), (x1, *y)],
            6,
            4,
            REFERENCE.stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            label.clone(),
            (x0 + xs * 0.01, *y + ys * 0.015),
            (FONT, 12).into_font().color(&MUTED),
        )))?;
    }
    Ok(())
}

fn draw_bars(
    area: &DrawingArea<BitMapBackend, Shift>,
    panel: &Panel,
    bars: &[(String, f64)],
) -> anyhow::Result<()> {
    let finite = bars.iter().map(|b| b.1).filter(|v| v.is_finite());
    let refs = panel.hlines.iter().map(|h| h.0).filter(|v| v.is_finite());
    let (lo, hi) = finite
        .chain(refs)
        .fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let (y0, y1) = axis_range(lo, hi, false, 0.1);
    let n = bars.len();
    let mut chart = ChartBuilder::on(area)
        .caption(fit(&panel.title, 60), (FONT, 16))
        .x_label_area_size(30)
        .y_label_area_size(62)
        .build_cartesian_2d(0f64..n as f64, y0..y1)?;
    let ys = y1 - y0;
    let names: Vec<String> = bars.iter().map(|b| fit(&b.0, 24)).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(MUTED)
        .label_style((FONT, 13))
        .y_label_formatter(&|v| format_tick(*v, ys))
        .draw()?;
    let text = |s: String, x: f64, y: f64, colour: &'static RGBColor| {
        Text::new(
            s,
            (x, y),
            TextStyle::from((FONT, 13).into_font())
                .color(colour)
                .pos(Pos::new(HPos::Center, VPos::Bottom)),
        )
    };
    for (i, (name, v)) in names.iter().zip(bars.iter().map(|b| b.1)).enumerate() {
        let x = i as f64;
        if v.is_finite() {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.15, 0.0), (x + 0.85, v)],
                colour(i).filled(),
            )))?;
        }
        chart.draw_series(std::iter::once(text(
            format_value(v),
            x + 0.5,
            v.max(0.0) + ys * 0.02,
            &BLACK,
        )))?;
        chart.draw_series(std::iter::once(text(
            name.clone(),
            x + 0.5,
            y0 + ys * 0.01,
            &MUTED,
        )))?;
    }
    // Reference lines over the bars.
    draw_hlines(&mut chart, &panel.hlines, (0.0, n as f64), ys)?;
    Ok(())
}
