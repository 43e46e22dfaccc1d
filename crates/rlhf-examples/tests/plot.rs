//! PNG plots: the files decode with the right size, show the series' colours, and odd input
//! (empty series, NaN, one point, bad metrics lines, missing directories) does not panic.

use rlhf_examples::pipeline::PipelineReport;
use rlhf_examples::plot::{
    bar_chart, figure, legend_corner, line_chart, pipeline_plots, plot_metrics_jsonl, plot_run_dir,
    read_metrics, render_figure, Corner, Panel, Series, PALETTE,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Decodes a PNG into (width, height, RGB pixels).
fn decode(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let px = buf[..info.buffer_size()]
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, px)
}

fn count(px: &[[u8; 3]], color: [u8; 3]) -> usize {
    px.iter().filter(|p| **p == color).count()
}

fn non_white(px: &[[u8; 3]]) -> usize {
    px.iter().filter(|p| **p != [255, 255, 255]).count()
}

fn ramp(n: usize, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    (1..=n).map(|i| (i as f64, f(i as f64))).collect()
}

#[test]
fn line_chart_decodes_with_the_series_colours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/lines.png");
    let series = [
        Series::new("loss/train", ramp(100, |x| 5.0 / x.sqrt())),
        Series::new("loss/valid", ramp(100, |x| 4.0 / x.sqrt() + 0.3)),
    ];
    line_chart(&path, "losses per step", "step", &series).unwrap();
    let (w, h, px) = decode(&path);
    assert_eq!((w, h), (800, 500));
    assert!(non_white(&px) > 5_000, "the chart is nearly blank");
    assert!(count(&px, PALETTE[0]) > 300, "first series not drawn");
    assert!(count(&px, PALETTE[1]) > 300, "second series not drawn");
    assert_eq!(count(&px, PALETTE[2]), 0, "a third colour appeared");
    // Atomic write: no temporary file is left next to the PNG.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("lines.png")]);
}

#[test]
fn bar_chart_draws_one_colour_per_bar() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bars.png");
    let bars = vec![
        ("base".to_string(), 0.34),
        ("sft".to_string(), 0.5),
        ("ppo".to_string(), -0.2),
        ("ppo_ptx".to_string(), f64::NAN),
    ];
    bar_chart(&path, "win rate", &bars).unwrap();
    let (w, h, px) = decode(&path);
    assert_eq!((w, h), (800, 500));
    for c in &PALETTE[..3] {
        assert!(count(&px, *c) > 1_000, "bar colour {c:?} missing");
    }
    assert_eq!(count(&px, PALETTE[3]), 0, "a NaN value got a bar");
}

#[test]
fn multi_panel_figure_grows_in_height() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fig.png");
    let panels: Vec<Panel> = (0..3)
        .map(|i| {
            Panel::lines(
                format!("panel {i}"),
                "iteration",
                vec![Series::new("a", ramp(20, |x| x * i as f64))],
            )
        })
        .collect();
    figure(&path, "three panels", &panels).unwrap();
    let (w, h, px) = decode(&path);
    assert_eq!(w, 800);
    assert!(
        h > 500,
        "two rows of panels should be taller than one chart: {h}"
    );
    assert!(count(&px, PALETTE[0]) > 300);
}

#[test]
fn empty_nan_and_single_point_inputs_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    line_chart(&p("none.png"), "no series", "step", &[]).unwrap();
    line_chart(
        &p("empty.png"),
        "empty",
        "step",
        &[Series::new("x", vec![])],
    )
    .unwrap();
    let bad = vec![
        (1.0, f64::NAN),
        (f64::INFINITY, 2.0),
        (3.0, f64::NEG_INFINITY),
    ];
    line_chart(&p("nan.png"), "nan", "step", &[Series::new("x", bad)]).unwrap();
    bar_chart(&p("nobars.png"), "no bars", &[]).unwrap();
    figure(&p("nopanels.png"), "no panels", &[]).unwrap();
    for name in ["none", "empty", "nan", "nobars", "nopanels"] {
        let (w, _, px) = decode(&p(&format!("{name}.png")));
        assert_eq!(w, 800);
        assert!(
            non_white(&px) > 0,
            "{name}: title and 'no data' should be drawn"
        );
        assert_eq!(
            count(&px, PALETTE[0]),
            0,
            "{name}: no data should draw no series"
        );
    }
    // One finite point (among NaNs) shows as a marker; constant and huge values are fine.
    let one = vec![(5.0, 0.25), (6.0, f64::NAN)];
    line_chart(&p("one.png"), "one point", "step", &[Series::new("x", one)]).unwrap();
    let (_, _, px) = decode(&p("one.png"));
    assert!(
        count(&px, PALETTE[0]) >= 16,
        "a single point needs a visible marker"
    );
    let flat = vec![(1.0, 0.0), (2.0, 0.0), (3.0, 0.0)];
    let huge = vec![(0.0, 1e300), (1e12, -1e300), (2e12, 1e-300)];
    line_chart(
        &p("odd.png"),
        "odd",
        "x",
        &[Series::new("flat", flat), Series::new("huge", huge)],
    )
    .unwrap();
    let (_, _, px) = decode(&p("odd.png"));
    assert!(count(&px, PALETTE[1]) > 0);
}

#[test]
fn titles_are_drawn_in_the_embedded_font() {
    // Text needs no system font: the title's dark pixels appear, and a longer title draws
    // more of them.
    let dark = |title: &str| {
        let canvas = render_figure(title, &[], 1).unwrap();
        canvas
            .pixels
            .chunks_exact(3)
            .filter(|p| p.iter().all(|&c| c < 100))
            .count()
    };
    let (short, long) = (dark("ab"), dark("abcdefghijklmnop"));
    assert!(short > 20, "no title pixels: {short}");
    assert!(long > 4 * short, "{short} vs {long}");
}

const METRICS: &str = r#"{"epoch":0.5,"loss/train":4.0,"lr":0.001,"step":1}
{"loss/train":3.5,"step":2,"note":"a string","flag":true,"gone":null}

not json at all
[1, 2, 3]
{"loss/train":3.0,"loss/valid":3.2,"step":3,"val":{"acc":0.6}}
{"loss/train":2.9,"step":3}
{"loss/train":2.5,"step":4
"#;

#[test]
fn metrics_lines_with_missing_keys_or_bad_json_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    std::fs::write(&path, METRICS).unwrap();
    let log = read_metrics(&path).unwrap();
    assert_eq!(log.x_key, "step");
    let skipped: Vec<usize> = log.skipped.iter().map(|(l, _)| *l).collect();
    assert_eq!(skipped, vec![4, 5, 8], "{:?}", log.skipped);
    assert!(log.skipped[0].1.contains("invalid JSON"));
    assert!(log.skipped[1].1.contains("not a JSON object"));
    let keys: Vec<String> = log.keys().into_iter().collect();
    assert_eq!(
        keys,
        ["epoch", "loss/train", "loss/valid", "lr", "val/acc"].map(String::from)
    );
    // A repeated step (a resumed run) keeps the later value.
    assert_eq!(
        log.series("loss/train"),
        vec![(1.0, 4.0), (2.0, 3.5), (3.0, 2.9)]
    );
    assert_eq!(log.series("loss/valid"), vec![(3.0, 3.2)]);
    assert!(log.series("absent").is_empty());

    let out = dir.path().join("plots");
    let mut files = plot_metrics_jsonl(&path, &out, &[]).unwrap();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["loss.png", "other.png", "val.png"]);
    for f in &files {
        let (w, _, px) = decode(f);
        assert_eq!(w, 800);
        assert!(count(&px, PALETTE[0]) > 0, "{}", f.display());
    }
    let files = plot_metrics_jsonl(
        &path,
        &out,
        &["loss/train+loss/valid", "loss/,lr", "absent", "absent/"],
    )
    .unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["loss_train-loss_valid.png", "loss___lr.png"]);
    let (_, _, px) = decode(&files[0]);
    assert!(
        count(&px, PALETTE[1]) > 0,
        "the overlaid second series is missing"
    );
}

#[test]
fn metrics_without_step_use_iteration_or_line_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.jsonl");
    std::fs::write(
        &path,
        "{\"iteration\":7,\"r\":1}\n{\"iteration\":9,\"r\":2}\n",
    )
    .unwrap();
    let log = read_metrics(&path).unwrap();
    assert_eq!(log.x_key, "iteration");
    assert_eq!(log.series("r"), vec![(7.0, 1.0), (9.0, 2.0)]);
    // PPO's lines carry both keys (its `step` is the iteration) and its first line, the
    // evaluation before training, `step` 0 alone: the axis is the iteration.
    std::fs::write(
        &path,
        "{\"step\":0,\"g\":5}\n{\"iteration\":1,\"step\":1,\"r\":1}\n",
    )
    .unwrap();
    let log = read_metrics(&path).unwrap();
    assert_eq!(log.x_key, "iteration");
    assert_eq!(log.series("g"), vec![(0.0, 5.0)]);
    assert_eq!(log.series("r"), vec![(1.0, 1.0)]);
    std::fs::write(&path, "{\"r\":1}\n{\"r\":2}\n").unwrap();
    let log = read_metrics(&path).unwrap();
    assert_eq!(log.x_key, "record");
    assert_eq!(log.series("r"), vec![(1.0, 1.0), (2.0, 2.0)]);
}

#[test]
fn missing_or_empty_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope/metrics.jsonl");
    let err = plot_metrics_jsonl(&missing, dir.path(), &[]).unwrap_err();
    assert!(format!("{err:#}").contains("nope/metrics.jsonl"), "{err:#}");
    assert!(plot_run_dir(&dir.path().join("nope")).unwrap().is_empty());
    let empty = dir.path().join("metrics.jsonl");
    std::fs::write(&empty, "").unwrap();
    assert!(plot_metrics_jsonl(&empty, dir.path(), &[])
        .unwrap()
        .is_empty());
    assert!(plot_run_dir(dir.path()).unwrap().is_empty());
}

fn write_lines(path: &Path, lines: impl IntoIterator<Item = serde_json::Value>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = lines.into_iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn pipeline_plots_from_stage_directories() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let report = PipelineReport::default();
    // Nothing there yet: no figures, no error.
    assert!(pipeline_plots(out, &report).unwrap().is_empty());

    for stage in ["pretrain", "sft"] {
        write_lines(
            &out.join(stage).join("metrics.jsonl"),
            (1..=30)
                .map(|s| serde_json::json!({"step": s, "loss/train": 5.0 / s as f64, "lr": 1e-3}))
                .chain([serde_json::json!({"step": 30, "epoch": 1, "loss/valid": 0.4})]),
        );
    }
    write_lines(
        &out.join("rm/metrics.jsonl"),
        (1..=20)
            .map(|s| serde_json::json!({"step": s, "loss/rm": 0.7 - 0.001 * s as f64}))
            .chain([serde_json::json!({"step": 20, "val/loss": 0.69, "val/accuracy": 0.55})]),
    );
    for stage in ["ppo", "ppo_ptx", "round-2/ppo_ptx"] {
        write_lines(
            &out.join(stage).join("metrics.jsonl"),
            (1..=20).map(|i| {
                serde_json::json!({"iteration": i, "step": i,
                    "objective/scores": 0.01 * i as f64, "objective/kl": 0.03 * i as f64})
            }),
        );
    }
    // A PPO directory without metrics (e.g. still starting) is ignored.
    std::fs::create_dir_all(out.join("round-3/ppo")).unwrap();

    let mut report = PipelineReport::default();
    for (m, w, g) in [
        ("base", 0.34, 0.14),
        ("sft", 0.5, 0.39),
        ("ppo", 0.40, 0.29),
        ("ppo_ptx", 0.445, 0.32),
    ] {
        report.win_rate_vs_sft.insert(m.into(), w);
        report.gold_score.insert(m.into(), g);
        report.kl_to_sft.insert(m.into(), 1.0 - w);
        report.pretrain_loss.insert(m.into(), 2.0 + w);
    }
    let files = pipeline_plots(out, &report).unwrap();
    let rel: BTreeSet<String> = files
        .iter()
        .map(|f| f.strip_prefix(out).unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "plots/ppo_reward_kl.png",
        "plots/losses.png",
        "plots/win_rates.png",
        "plots/alignment_tax.png",
        "pretrain/plots/loss.png",
        "sft/plots/other.png",
        "rm/plots/val.png",
        "ppo/plots/objective.png",
        "round-2/ppo_ptx/plots/objective.png",
    ] {
        assert!(rel.contains(want), "{want} missing from {rel:?}");
    }
    let (w, h, px) = decode(&out.join("plots/ppo_reward_kl.png"));
    assert_eq!(w, 800);
    assert!(h >= 300);
    for c in &PALETTE[..3] {
        assert!(count(&px, *c) > 100, "PPO run colour {c:?} missing");
    }
    let (_, _, px) = decode(&out.join("plots/losses.png"));
    assert!(count(&px, PALETTE[0]) > 300 && count(&px, PALETTE[1]) > 0);
    let (_, _, px) = decode(&out.join("plots/win_rates.png"));
    for c in &PALETTE[..4] {
        assert!(count(&px, *c) > 500, "model bar colour {c:?} missing");
    }
    let report_only_wins = PipelineReport {
        win_rate_vs_sft: BTreeMap::from([("sft".to_string(), 0.5)]),
        ..Default::default()
    };
    let empty = tempfile::tempdir().unwrap();
    let files = pipeline_plots(empty.path(), &report_only_wins).unwrap();
    assert_eq!(files, vec![empty.path().join("plots/win_rates.png")]);
}

#[test]
fn the_legend_goes_to_the_corner_the_lines_leave_free() {
    // Shares of the plotting area a three-line legend takes.
    let size = (0.3, 0.2);
    let lines = |fs: &[fn(f64) -> f64]| -> Vec<Vec<Vec<(f64, f64)>>> {
        fs.iter().map(|f| vec![ramp(30, f)]).collect()
    };
    let corner = |runs: &Vec<Vec<Vec<(f64, f64)>>>| {
        let pts = runs.iter().flatten().flatten();
        let (y0, y1) = pts.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
        legend_corner(runs, (1.0, 30.0), (y0, y1), size)
    };
    // Rising curves (a reward, a KL) leave the upper left and the lower right empty.
    let rising = lines(&[|x| x / 30.0, |x| x / 32.0, |x| (x / 30.0).sqrt()]);
    assert_eq!(corner(&rising), Corner::UpperLeft);
    // With a flat line along the top as well, only the lower right is free.
    let capped = lines(&[|x| x / 30.0, |_| 1.0]);
    assert_eq!(corner(&capped), Corner::LowerRight);
    // Falling curves (losses): the upper right is empty, and preferred.
    let falling = lines(&[|x| 5.0 / x.sqrt(), |x| 4.0 / x.sqrt() + 0.3]);
    assert_eq!(corner(&falling), Corner::UpperRight);
    // A line that ends high on the right but starts low on the left: the upper left.
    let late = lines(&[|x| if x > 20.0 { 10.0 } else { 0.0 }, |x| x / 40.0]);
    assert_eq!(corner(&late), Corner::UpperLeft);
    // A segment crossing a corner between two far-apart points counts too.
    let sparse = vec![
        vec![vec![(1.0, 0.0), (30.0, 1.0)]],
        vec![vec![(1.0, 1.0), (30.0, 0.0)]],
    ];
    let c = legend_corner(&sparse, (1.0, 30.0), (0.0, 1.0), size);
    assert!(
        matches!(c, Corner::UpperRight),
        "{c:?}: every corner is crossed, ties go to the upper right"
    );
    // No data at all: the default corner.
    assert_eq!(
        legend_corner(&[], (0.0, 1.0), (0.0, 1.0), size),
        Corner::UpperRight
    );
}

#[test]
fn noisy_lines_stay_inside_the_axes() {
    // A dense, jagged series (per-step losses): thick polylines with sharp turns used to draw
    // miter spikes far outside the axes. Every pixel of the series' colour must lie within the
    // axes (found as the longest runs of the axis colour).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let points: Vec<(f64, f64)> = (1..=1000).map(|i| (i as f64, 0.5 + noise())).collect();
    let sparse: Vec<(f64, f64)> = (1..=30).map(|i| (i as f64 * 33.0, 0.5 + noise())).collect();
    let panel = Panel::lines(
        "noise",
        "step",
        vec![Series::new("dense", points), Series::new("sparse", sparse)],
    );
    let canvas = render_figure("", &[panel], 1).unwrap();
    let (w, h) = (canvas.width as usize, canvas.height as usize);
    let px = |x: usize, y: usize| {
        let i = 3 * (y * w + x);
        [canvas.pixels[i], canvas.pixels[i + 1], canvas.pixels[i + 2]]
    };
    let axis = [120, 120, 120];
    let longest_run = |cells: &mut dyn Iterator<Item = [u8; 3]>| {
        let (mut best, mut cur) = (0, 0);
        for c in cells {
            cur = if c == axis { cur + 1 } else { 0 };
            best = best.max(cur);
        }
        best
    };
    let x_axis_row = (0..h)
        .max_by_key(|&y| (longest_run(&mut (0..w).map(|x| px(x, y))), y))
        .unwrap();
    let y_axis_col = (0..w)
        .max_by_key(|&x| (longest_run(&mut (0..h).map(|y| px(x, y))), w - x))
        .unwrap();
    assert!(
        x_axis_row > h / 2 && y_axis_col < w / 4,
        "axes at row {x_axis_row}, column {y_axis_col}"
    );
    let top_row = (0..h).find(|&y| px(y_axis_col, y) == axis).unwrap();
    let mut outside = 0;
    for y in 0..h {
        for x in 0..w {
            let c = px(x, y);
            let out = y > x_axis_row + 2 || y + 2 < top_row || x + 2 < y_axis_col;
            if (c == PALETTE[0] || c == PALETTE[1]) && out {
                outside += 1;
            }
        }
    }
    assert_eq!(outside, 0, "series pixels outside the axes");
    assert!(
        count(
            &canvas
                .pixels
                .chunks(3)
                .map(|c| [c[0], c[1], c[2]])
                .collect::<Vec<_>>(),
            PALETTE[0]
        ) > 1000
    );
}

#[test]
fn bar_panels_draw_their_reference_lines() {
    let bars = vec![("a".to_string(), 0.3), ("b".to_string(), 0.7)];
    let reference = [160, 160, 160];
    let grey = |panel: Panel| {
        let c = render_figure("", &[panel], 1).unwrap();
        let px: Vec<[u8; 3]> = c.pixels.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
        count(&px, reference)
    };
    assert_eq!(grey(Panel::bars("plain", bars.clone())), 0);
    let with = grey(Panel::bars("with SFT", bars.clone()).with_hline(0.5, "SFT"));
    assert!(with > 200, "the dashed line at 0.5 has {with} pixels");
    // A reference line above every bar widens the axis to show it.
    assert!(grey(Panel::bars("above", bars).with_hline(2.0, "top")) > 200);
}
