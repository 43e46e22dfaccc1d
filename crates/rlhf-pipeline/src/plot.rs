//! PNG plots of training metrics, drawn with `plotters` into memory and encoded with `png`;
//! text in DejaVu Sans, embedded, so plots render the same on a machine without any fonts.
//!
//! - [`line_chart`], [`bar_chart`] and [`figure`] (several panels in one image) draw given data.
//! - [`read_metrics`] reads a run directory's `metrics.jsonl`; [`plot_metrics_jsonl`] and
//!   [`plot_run_dir`] turn it into one PNG per group of metrics.
//! - [`pipeline_plots`] draws the pipeline's summary figures (PPO reward and KL per iteration,
//!   the losses of each stage, win rates).
//!
//! Figures are 800 pixels wide, white, one colour per series (matplotlib's tab10 order), a
//! legend when a panel has more than one series (in the corner the lines cover least:
//! [`legend_corner`]), markers on series of at most 40 points (so a single point shows), and
//! dense series drawn 1 pixel wide. Non-finite values (NaN, infinities) are skipped. A panel without any
//! finite point is still drawn, with empty axes and the words "no data". Every PNG is written
//! atomically (a temporary file in the same directory, then a rename).

mod chart;

use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use chart::{legend_corner, Canvas, Corner, Rgb, FIGURE_WIDTH, PALETTE, SINGLE_HEIGHT};

/// A named line: `(x, y)` points, drawn in the order given (sort them by x).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// The points; non-finite coordinates are skipped.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series from a name and points.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
        }
    }
}

/// What a panel shows.
#[derive(Debug, Clone, PartialEq)]
pub enum PanelKind {
    /// Line chart: one coloured line per series, a legend when there are several.
    Lines(Vec<Series>),
    /// Bar chart: one labelled bar per `(category, value)`, the value written on the bar.
    Bars(Vec<(String, f64)>),
}

/// One chart with its own axes inside a [`figure`].
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// Label under the x axis (line charts).
    pub x_label: String,
    /// The data.
    pub kind: PanelKind,
    /// Dashed horizontal reference lines `(y, label)`, e.g. a win rate of 0.5.
    pub hlines: Vec<(f64, String)>,
}

impl Panel {
    /// A line-chart panel.
    pub fn lines(
        title: impl Into<String>,
        x_label: impl Into<String>,
        series: Vec<Series>,
    ) -> Self {
        Panel {
            title: title.into(),
            x_label: x_label.into(),
            kind: PanelKind::Lines(series),
            hlines: vec![],
        }
    }

    /// A bar-chart panel.
    pub fn bars(title: impl Into<String>, bars: Vec<(String, f64)>) -> Self {
        Panel {
            title: title.into(),
            x_label: String::new(),
            kind: PanelKind::Bars(bars),
            hlines: vec![],
        }
    }

    /// Adds a dashed horizontal reference line at `y`.
    pub fn with_hline(mut self, y: f64, label: impl Into<String>) -> Self {
        self.hlines.push((y, label.into()));
        self
    }

    /// Whether the panel holds at least one finite value.
    pub fn has_data(&self) -> bool {
        match &self.kind {
            PanelKind::Lines(series) => series
                .iter()
                .flat_map(|s| &s.points)
                .any(|(x, y)| x.is_finite() && y.is_finite()),
            PanelKind::Bars(bars) => bars.iter().any(|(_, v)| v.is_finite()),
        }
    }
}

/// Renders a figure without writing it: `title` over the panels in a grid of `columns` columns
/// (one panel: 800 x 500 pixels; more: rows 320 pixels high, 270 from four rows on).
pub fn render_figure(title: &str, panels: &[Panel], columns: usize) -> anyhow::Result<Canvas> {
    chart::render(title, panels, columns)
}

/// Encodes an image as an 8-bit RGB PNG.
pub fn encode_png(canvas: &Canvas) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, canvas.width, canvas.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().context("PNG header")?;
        writer
            .write_image_data(&canvas.pixels)
            .context("PNG image data")?;
        writer.finish().context("PNG end")?;
    }
    Ok(out)
}

/// Writes a figure of several panels to `path` (PNG, atomically; parent directories are made).
/// Panels without data are drawn empty, marked "no data"; no panels at all gives a figure with
/// only the title and "no data".
/// Panels are laid out in two columns (one for a single panel); see [`figure_in_columns`].
pub fn figure(path: &Path, title: &str, panels: &[Panel]) -> anyhow::Result<()> {
    figure_in_columns(path, title, panels, 2)
}

/// [`figure`] with the panels in `columns` columns (1 stacks them: wider charts, e.g. for bars
/// with long category names).
pub fn figure_in_columns(
    path: &Path,
    title: &str,
    panels: &[Panel],
    columns: usize,
) -> anyhow::Result<()> {
    let png = encode_png(&render_figure(title, panels, columns)?)?;
    rlhf_model::checkpoint::write_atomic(path, &png)
        .with_context(|| format!("cannot write plot {}", path.display()))?;
    Ok(())
}

/// Writes an 800 x 500 line chart of `series` against `x_label` to `path` (PNG, atomically).
/// Empty series (or only non-finite points) give an empty chart marked "no data".
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    figure(path, title, &[Panel::lines("", x_label, series.to_vec())])
}

/// Writes an 800 x 500 bar chart, one bar per `(category, value)`, to `path` (PNG, atomically).
/// A non-finite value gets no bar and the label "n/a"; no bars gives a chart marked "no data".
pub fn bar_chart(path: &Path, title: &str, bars: &[(String, f64)]) -> anyhow::Result<()> {
    figure(path, title, &[Panel::bars("", bars.to_vec())])
}

/// The numeric contents of a `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsLog {
    /// The file read.
    pub path: PathBuf,
    /// One entry per good line: its x (see [`read_metrics`]) and its finite numeric fields.
    pub records: Vec<(f64, BTreeMap<String, f64>)>,
    /// What the x values are: `iteration` (PPO), `step` or `record` (the line's ordinal).
    pub x_key: String,
    /// Lines that were skipped: `(line number from 1, why)`.
    pub skipped: Vec<(usize, String)>,
}

/// Fields that are x axes, not metrics, in the order a line's x is taken from them: PPO's
/// lines carry both, and their `step` is the iteration (the metrics writer's counter).
const X_KEYS: [&str; 2] = ["iteration", "step"];

/// Reads a `metrics.jsonl` (one JSON object per line, as `rlhf_model::train::JsonlMetrics`
/// writes it).
///
/// - A line's x is its `iteration` field, else its `step` field, else its ordinal among the
///   good lines (1, 2, ...). The axis is named `iteration` when some line has one (PPO's
///   metrics: its evaluation at the start is written with `step` 0 alone).
/// - Numeric fields are kept; strings, booleans, `null` (how NaN is written), arrays and
///   non-finite numbers are ignored. Nested objects are flattened with `/` (`{"val": {"loss":
///   1}}` is `val/loss`). Lines may lack any key.
/// - Blank lines are ignored. A line that is not a JSON object (e.g. the truncated last line of
///   a killed run) is skipped and listed in [`MetricsLog::skipped`] with its number and the
///   parse error: plots are diagnostics, so one bad line does not cost the others.
/// - A file that cannot be read is an error naming it.
pub fn read_metrics(path: &Path) -> anyhow::Result<MetricsLog> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read metrics file {}", path.display()))?;
    let mut log = MetricsLog {
        path: path.to_path_buf(),
        ..Default::default()
    };
    let mut x_kinds = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let obj = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(obj)) => obj,
            Ok(_) => {
                log.skipped.push((i + 1, "not a JSON object".into()));
                continue;
            }
            Err(e) => {
                log.skipped.push((i + 1, format!("invalid JSON: {e}")));
                continue;
            }
        };
        let mut fields = BTreeMap::new();
        flatten("", &obj, &mut fields);
        let x = X_KEYS.iter().find_map(|k| fields.get(*k).map(|v| (*k, *v)));
        let x = match x {
            Some((k, v)) => {
                x_kinds.insert(k);
                v
            }
            None => {
                x_kinds.insert("record");
                (log.records.len() + 1) as f64
            }
        };
        log.records.push((x, fields));
    }
    log.x_key = ["iteration", "step", "record"]
        .into_iter()
        .find(|k| x_kinds.contains(k))
        .unwrap_or("step")
        .to_string();
    Ok(log)
}

fn flatten(
    prefix: &str,
    obj: &serde_json::Map<String, serde_json::Value>,
    out: &mut BTreeMap<String, f64>,
) {
    for (k, v) in obj {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}/{k}")
        };
        match v {
            serde_json::Value::Number(n) => {
                if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                    out.insert(key, f);
                }
            }
            serde_json::Value::Object(inner) => flatten(&key, inner, out),
            _ => {}
        }
    }
}

impl MetricsLog {
    /// Every metric key with at least one finite value (x fields excluded), sorted.
    pub fn keys(&self) -> BTreeSet<String> {
        self.records
            .iter()
            .flat_map(|(_, f)| f.keys())
            .filter(|k| !X_KEYS.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    /// `(x, value)` of `key`, sorted by x. When an x repeats (a resumed run appends the steps
    /// it redoes), the later line wins.
    pub fn series(&self, key: &str) -> Vec<(f64, f64)> {
        let mut pts: Vec<(f64, f64)> = self
            .records
            .iter()
            .filter_map(|(x, f)| f.get(key).map(|v| (*x, *v)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0)); // stable: file order among equal x
        let mut out: Vec<(f64, f64)> = Vec::with_capacity(pts.len());
        for p in pts {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        out
    }

    /// Prints the skipped lines' count and the first one to stderr (nothing when none).
    pub fn warn_skipped(&self) {
        if let Some((line, why)) = self.skipped.first() {
            tracing::info!(
                "[plot] {}: skipped {} bad line(s); first: line {line}: {why}",
                self.path.display(),
                self.skipped.len()
            );
        }
    }
}

/// A group of metrics drawn into one PNG: its file stem, its title and its panels (each panel
/// a list of keys drawn together).
struct Group {
    stem: String,
    title: String,
    panels: Vec<Vec<String>>,
}

/// The default groups: every metric key, grouped by the part before the first `/` (`loss/`,
/// `objective/`, `val/`, ...; keys without `/` form the group `other`), one panel per key.
fn default_groups(log: &MetricsLog) -> Vec<Group> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in log.keys() {
        let prefix = key
            .split_once('/')
            .map_or("other".to_string(), |(p, _)| p.to_string());
        groups.entry(prefix).or_default().push(key);
    }
    groups
        .into_iter()
        .map(|(prefix, keys)| Group {
            stem: file_stem(&prefix),
            title: if prefix == "other" {
                "other metrics".into()
            } else {
                format!("{prefix}/*")
            },
            panels: keys.into_iter().map(|k| vec![k]).collect(),
        })
        .collect()
}

/// Parses one requested group (see [`plot_metrics_jsonl`]).
fn requested_group(spec: &str, log: &MetricsLog) -> Group {
    let keys = log.keys();
    let matching = |item: &str| -> Vec<String> {
        if item.ends_with('/') {
            keys.iter()
                .filter(|k| k.starts_with(item))
                .cloned()
                .collect()
        } else {
            vec![item.to_string()]
        }
    };
    let mut panels = vec![];
    for panel in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let items: Vec<&str> = panel
            .split('+')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .collect();
        if let [single] = items.as_slice() {
            if single.ends_with('/') {
                panels.extend(matching(single).into_iter().map(|k| vec![k]));
                continue;
            }
        }
        panels.push(items.iter().flat_map(|i| matching(i)).collect());
    }
    Group {
        stem: file_stem(spec),
        title: spec.to_string(),
        panels,
    }
}

/// A file stem from a metric name or group spec: `/` becomes `_`, `+` becomes `-`, `,`
/// becomes `__`, anything else outside `[A-Za-z0-9._-]` becomes `_`.
fn file_stem(spec: &str) -> String {
    let mut s = String::new();
    for ch in spec.chars() {
        match ch {
            '/' => s.push('_'),
            '+' => s.push('-'),
            ',' => s.push_str("__"),
            c if c.is_ascii_alphanumeric() || "._-".contains(c) => s.push(c),
            _ => s.push('_'),
        }
    }
    let s = s.trim_matches('_').to_string();
    if s.is_empty() {
        "metrics".into()
    } else {
        s
    }
}

/// Plots a `metrics.jsonl` into `out_dir`, one PNG per group of metrics, and returns the files
/// written.
///
/// `keys` lists the groups, one PNG each. A group is a comma-separated list of panels; a panel
/// is a metric key (`loss/train`), several keys drawn together (`loss/train+loss/valid`), or a
/// prefix ending in `/` (`loss/`: one panel per key under it; inside a `+` list: all of them in
/// one panel). The file is named after the group (`loss/` -> `loss.png`,
/// `loss/train+loss/valid` -> `loss_train-loss_valid.png`). With `keys` empty, every metric
/// key is plotted, grouped by the part before its first `/` (`loss.png`, `objective.png`,
/// `val.png`, ...; keys without `/` go to `other.png`), one panel per key.
///
/// A group none of whose keys has a finite value is not written. The x axis is the `step` field
/// (see [`read_metrics`] for the rest of the format, and for bad lines, which are skipped and
/// reported on stderr). A missing or unreadable file is an error.
pub fn plot_metrics_jsonl(
    metrics: &Path,
    out_dir: &Path,
    keys: &[&str],
) -> anyhow::Result<Vec<PathBuf>> {
    let log = read_metrics(metrics)?;
    log.warn_skipped();
    let groups = if keys.is_empty() {
        default_groups(&log)
    } else {
        keys.iter().map(|k| requested_group(k, &log)).collect()
    };
    let run_name = metrics
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut written = vec![];
    for g in groups {
        let panels: Vec<Panel> = g
            .panels
            .iter()
            .map(|keys| {
                let series = keys.iter().map(|k| Series::new(k, log.series(k))).collect();
                Panel::lines(keys.join(" + "), log.x_key.as_str(), series)
            })
            .collect();
        if !panels.iter().any(Panel::has_data) {
            continue;
        }
        let title = if run_name.is_empty() {
            g.title
        } else {
            format!("{run_name}: {}", g.title)
        };
        let path = out_dir.join(format!("{}.png", g.stem));
        figure(&path, &title, &panels)?;
        written.push(path);
    }
    Ok(written)
}

/// Plots a run directory's `metrics.jsonl` (all metrics, grouped by prefix) into
/// `run_dir/plots/`. A directory without `metrics.jsonl` gives no plots and no error.
pub fn plot_run_dir(run_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let metrics = run_dir.join("metrics.jsonl");
    if !metrics.is_file() {
        return Ok(vec![]);
    }
    plot_metrics_jsonl(&metrics, &run_dir.join("plots"), &[])
}

/// Sort key that orders `round-2` before `round-10`.
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut out = vec![];
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut num = c.to_digit(10).unwrap() as u64;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                num = num.saturating_mul(10).saturating_add(d as u64);
                chars.next();
            }
            out.push((std::mem::take(&mut text), num));
        } else {
            text.push(c);
        }
    }
    out.push((text, u64::MAX));
    out
}

/// Stage run directories of a pipeline output: `out/<name>/` and `out/<name>/<name>/` (e.g.
/// `round-2/ppo_ptx`) holding a `metrics.jsonl`, as paths relative to `out`, in pipeline order
/// (pretrain, sft, rm, ppo, ppo_ptx, then the rest in natural order).
pub fn stage_dirs(out: &Path) -> Vec<String> {
    let mut found = vec![];
    let subdirs = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n != "plots")
            .collect();
        v.sort();
        v
    };
    for a in subdirs(out) {
        if out.join(&a).join("metrics.jsonl").is_file() {
            found.push(a.clone());
        }
        for b in subdirs(&out.join(&a)) {
            if out.join(&a).join(&b).join("metrics.jsonl").is_file() {
                found.push(format!("{a}/{b}"));
            }
        }
    }
    const ORDER: [&str; 5] = ["pretrain", "sft", "rm", "ppo", "ppo_ptx"];
    found.sort_by_key(|d| {
        let rank = ORDER.iter().position(|o| o == d).unwrap_or(ORDER.len());
        (rank, natural_key(d))
    });
    found
}

/// The last path component of a stage directory (`round-2/ppo_ptx` -> `ppo_ptx`).
fn stage_kind(dir: &str) -> &str {
    dir.rsplit('/').next().unwrap_or(dir)
}

/// A report map as bars: base, sft, ppo, ppo_ptx first, then any other models by name.
fn model_bars(map: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
    const ORDER: [&str; 4] = ["base", "sft", "ppo", "ppo_ptx"];
    let mut names: Vec<&String> = map.keys().collect();
    names.sort_by_key(|n| {
        let rank = ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len());
        (rank, natural_key(n))
    });
    names.into_iter().map(|n| (n.clone(), map[n])).collect()
}

/// Draws the pipeline's figures into `out/plots/` and each stage's metrics into
/// `out/<stage>/plots/` (see [`plot_run_dir`]); returns every file written.
///
/// - `ppo_reward_kl.png`: the RM score (`objective/scores`), KL to the SFT model
///   (`objective/kl`) and gold score on fixed validation prompts (`eval/gold`) per iteration, one line per PPO run directory (`ppo`, `ppo_ptx`, and
///   `round-N/ppo*` when present).
/// - `losses.png`: one panel per training stage (`pretrain`, `sft`, `rm`, and `round-N/...`):
///   training loss per step (`loss/train`, or the RM's `loss/rm`) and validation loss per epoch
///   (`loss/valid`, or the RM's `val/loss`).
/// - `win_rates.png`: bars of `report.win_rate_vs_sft` (dashed line at 0.5 = as good as SFT)
///   and `report.gold_score` per model.
/// - `alignment_tax.png`: bars of `report.pretrain_loss` and `report.kl_to_sft` per model.
///
/// Missing stage directories are skipped; a figure with nothing to show is not written (e.g.
/// the report figures before the evaluation has run).
pub fn pipeline_plots(
    out: &Path,
    report: &crate::pipeline::PipelineReport,
) -> anyhow::Result<Vec<PathBuf>> {
    let plots = out.join("plots");
    let mut written = vec![];
    let dirs = stage_dirs(out);
    let mut logs = BTreeMap::new();
    for d in &dirs {
        let log = read_metrics(&out.join(d).join("metrics.jsonl"))?;
        log.warn_skipped();
        logs.insert(d.clone(), log);
    }
    // PPO: reward and KL per iteration.
    let ppo: Vec<&String> = dirs
        .iter()
        .filter(|d| stage_kind(d).starts_with("ppo"))
        .collect();
    let ppo_panel = |title: &str, key: &str| {
        let series = ppo
            .iter()
            .map(|d| Series::new(d.as_str(), logs[*d].series(key)))
            .collect();
        Panel::lines(title, "iteration", series)
    };
    let panels = vec![
        ppo_panel("RM score (objective/scores)", "objective/scores"),
        ppo_panel("KL to SFT (objective/kl)", "objective/kl"),
        ppo_panel("gold score, validation prompts (eval/gold)", "eval/gold"),
    ];
    if panels.iter().any(Panel::has_data) {
        let path = plots.join("ppo_reward_kl.png");
        figure(
            &path,
            "PPO: RM score, gold score and KL per iteration",
            &panels,
        )?;
        written.push(path);
    }
    // Losses of the training stages.
    let mut panels = vec![];
    for d in &dirs {
        let log = &logs[d];
        let (what, train, valid) = match stage_kind(d) {
            "rm" => ("ranking loss", "loss/rm", "val/loss"),
            _ => ("LM loss", "loss/train", "loss/valid"),
        };
        let series = vec![
            Series::new("train (per step)", log.series(train)),
            Series::new("valid (per epoch)", log.series(valid)),
        ];
        if series.iter().any(|s| !s.points.is_empty()) && !stage_kind(d).starts_with("ppo") {
            panels.push(Panel::lines(format!("{d}: {what}"), "step", series));
        }
    }
    if !panels.is_empty() {
        let path = plots.join("losses.png");
        figure(&path, "Training losses per stage", &panels)?;
        written.push(path);
    }
    // The evaluation.
    let panels = vec![
        Panel::bars(
            "win rate vs SFT (held-out users' prompts)",
            model_bars(&report.win_rate_vs_sft),
        )
        .with_hline(0.5, "SFT"),
        Panel::bars(
            "gold score (the answers judged above)",
            model_bars(&report.gold_score),
        ),
    ];
    if panels.iter().any(Panel::has_data) {
        let path = plots.join("win_rates.png");
        figure_in_columns(&path, "Held-out evaluation", &panels, 1)?;
        written.push(path);
    }
    let panels = vec![
        Panel::bars(
            "pretraining loss (held-out text)",
            model_bars(&report.pretrain_loss),
        ),
        Panel::bars("KL to SFT (nats per answer)", model_bars(&report.kl_to_sft)),
    ];
    if panels.iter().any(Panel::has_data) {
        let path = plots.join("alignment_tax.png");
        figure_in_columns(&path, "Alignment tax", &panels, 1)?;
        written.push(path);
    }
    // Each stage's own metrics.
    for d in &dirs {
        written.extend(plot_run_dir(&out.join(d))?);
    }
    Ok(written)
}
