//! The pipeline end to end at a tiny size, with two rounds of the paper's iteration: every
//! stage runs, the report has the paper's table (and the second round's RM and policy), the
//! plots are written, and a rerun resumes (skips finished stages) with the same report and the
//! stage times of the run that did the work.

use std::process::Command;

mod common;
use common::PIPELINE_TINY as TINY;

fn command(out: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    cmd.arg("--out").arg(out).env("RLHF_DEVICE", "cpu");
    for s in TINY.iter().chain(extra) {
        cmd.args(["--set", s]);
    }
    cmd
}

fn run_with(out: &std::path::Path, extra: &[&str]) -> (bool, String, String) {
    let o = command(out, extra).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn tiny_pipeline_produces_the_table_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // The policies train from the first iteration (no warm-ups) at a high lr, so that in two
    // iterations they move away from SFT (the `evaluate --run` checks below need that).
    let extra = [
        "rounds=2",
        "ppo.value_warmup_iterations=0",
        "ppo.lr_warmup_iterations=0",
        "ppo.policy_optimizer.lr=0.01",
    ];
    let (ok, stdout, stderr) = run_with(&out, &extra);
    assert!(ok, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in [
        "win_rate_vs_sft",
        "gold_score",
        "gold_score_greedy",
        "kl_to_sft",
        "pretrain_loss",
    ] {
        for model in ["base", "sft", "ppo", "ppo_ptx"] {
            let v = report[key][model]
                .as_f64()
                .unwrap_or_else(|| panic!("{key}.{model} missing: {report}"));
            assert!(v.is_finite(), "{key}.{model} = {v}");
        }
    }
    assert_eq!(
        report["win_rate_vs_sft"]["sft"].as_f64().unwrap(),
        0.5,
        "SFT against itself ties"
    );
    assert!(report["kl_to_sft"]["sft"].as_f64().unwrap().abs() < 1e-9);
    let acc = report["rm_accuracy"].as_f64().unwrap();
    let ceiling = report["rm_accuracy_ceiling"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&acc) && (0.5..=1.0).contains(&ceiling),
        "{acc} {ceiling}"
    );
    for stage in [
        "data", "pretrain", "sft", "rm", "ppo", "ppo_ptx", "evaluate", "total",
    ] {
        assert!(
            report["seconds"][stage].as_f64().is_some(),
            "seconds.{stage}"
        );
    }
    assert!(
        stdout.contains("win rate vs SFT") && stdout.contains("ppo_ptx"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| ppo_ptx |") && md.contains("## Examples"),
        "{md}"
    );
    // answers.jsonl holds what the table judged: its answers give the report's gold scores.
    let judged: Vec<serde_json::Value> = std::fs::read_to_string(out.join("answers.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(judged.len(), 16);
    let tasks: Vec<rlhf_toy::ToyPrompt> = judged
        .iter()
        .map(|r| rlhf_toy::ToyPrompt::parse(r["prompt"].as_str().unwrap()).unwrap())
        .collect();
    for model in ["base", "sft", "ppo", "ppo_ptx", "ppo_ptx_r2"] {
        let ans: Vec<String> = judged
            .iter()
            .map(|r| r[model].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            rlhf_toy::eval::mean_gold(&tasks, &ans),
            report["gold_score"][model].as_f64().unwrap(),
            "{model}"
        );
    }
    // Round 2: rankings of the round-1 PPO-ptx policy, a new RM on all rankings, a new policy.
    for key in [
        "win_rate_vs_sft",
        "gold_score",
        "kl_to_sft",
        "pretrain_loss",
    ] {
        assert!(
            report[key]["ppo_ptx_r2"].as_f64().is_some(),
            "{key}.ppo_ptx_r2 missing: {report}"
        );
    }
    for round in ["round-1", "round-2"] {
        assert!(report["rm_accuracy_by_round"][round].as_f64().is_some());
        assert!(report["rm_accuracy_ceiling_by_round"][round]
            .as_f64()
            .is_some());
    }
    assert!(stdout.contains("ppo_ptx_r2"), "{stdout}");
    assert_eq!(
        report["final_policy"], "ppo_ptx_r2",
        "the last round's PPO-ptx is the final policy"
    );
    assert!(
        stdout.contains("final policy (the last round's PPO-ptx): ppo_ptx_r2"),
        "{stdout}"
    );
    let round1 = std::fs::read_to_string(out.join("rm/rankings.jsonl")).unwrap();
    let round2 = std::fs::read_to_string(out.join("round-2/rm/rankings.jsonl")).unwrap();
    assert!(!round2.is_empty() && round1 != round2);
    for f in [
        "plots/ppo_reward_kl.png",
        "plots/losses.png",
        "plots/win_rates.png",
        "round-2/ppo_ptx/final/model.safetensors",
        "data/sft_train.jsonl",
        "rm/rankings.jsonl",
        "sft/best/model.safetensors",
        "rm/final/rlhf.json",
        "ppo/final/model.safetensors",
        "ppo_ptx/metrics.jsonl",
    ] {
        assert!(out.join(f).exists(), "missing {f}");
    }

    // A rerun finds every stage done and reproduces the same numbers.
    let (ok, _, stderr2) = run_with(&out, &extra);
    assert!(ok, "{stderr2}");
    assert!(
        !stderr2.contains("[pretrain] epoch"),
        "finished stages are skipped"
    );
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in [
        "win_rate_vs_sft",
        "gold_score",
        "kl_to_sft",
        "pretrain_loss",
    ] {
        assert_eq!(report[key], again[key], "{key}");
    }
    // The stage times are the first run's (the rerun skipped those stages: it adds almost
    // nothing), not the rerun's near-zero ones; evaluation and total add the rerun's time.
    let secs = |r: &serde_json::Value, k: &str| r["seconds"][k].as_f64().unwrap();
    for stage in ["pretrain", "sft", "rm", "ppo", "ppo_ptx", "ppo_ptx_r2"] {
        let (a, b) = (secs(&report, stage), secs(&again, stage));
        assert!(a > 0.0 && b >= a && b < a + 2.0, "{stage}: {a} then {b}");
    }
    for k in ["evaluate", "total"] {
        assert!(secs(&again, k) > secs(&report, k), "{k}");
    }
    let total_stages: f64 = [
        "data", "pretrain", "sft", "labelers", "rm", "ppo", "ppo_ptx",
    ]
    .iter()
    .map(|k| secs(&again, k))
    .sum();
    assert!(secs(&again, "total") >= total_stages, "{again}");
    let timings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("timings.json")).unwrap()).unwrap();
    assert_eq!(timings, again["seconds"]);

    // `evaluate --run` judges a checkpoint as the table does: the run's own models get the
    // report's numbers exactly.
    let p = |f: &str| out.join(f).display().to_string();
    for model in ["ppo_ptx", "ppo_ptx_r2"] {
        let kl = report["kl_to_sft"][model].as_f64().unwrap();
        assert!(
            kl > 0.0,
            "{model} did not move from SFT: the check below would be trivial"
        );
    }
    for (model, dir) in [
        ("ppo_ptx", "ppo_ptx/final"),
        ("ppo_ptx_r2", "round-2/ppo_ptx/final"),
    ] {
        let answers = tmp.path().join(format!("{model}.jsonl"));
        let answers_arg = answers.to_str().unwrap();
        let row = evaluate(&["--run", &p(""), "--a", &p(dir), "--answers", answers_arg]);
        // --answers: the answers the table judged, A's and the baseline's (SFT's).
        let rows: Vec<serde_json::Value> = std::fs::read_to_string(&answers)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), judged.len());
        for (r, j) in rows.iter().zip(&judged) {
            assert_eq!((&r["a"], &r["b"]), (&j[model], &j["sft"]), "{r}");
        }
        for (key, col) in [
            ("win_rate_vs_sft", "win_rate_a_vs_b"),
            ("gold_score", "gold_a"),
            ("gold_score_greedy", "gold_greedy_a"),
            ("kl_to_sft", "kl_a_to_b"),
            ("pretrain_loss", "pretrain_loss_a"),
        ] {
            assert_eq!(
                report[key][model], row[col],
                "{model}: {key} vs {col}: {row}"
            );
        }
        assert_eq!(report["conduct"][model]["filler"], row["filler_a"]);
        assert_eq!(row["judge"], "heldout_labelers");
    }
    let sft = evaluate(&["--run", &p(""), "--a", &p("sft/best")]);
    assert_eq!(sft["win_rate_a_vs_b"], 0.5, "{sft}");
    // --b replaces the run's SFT model as the baseline (here the pretrained model).
    let vs_base = evaluate(&[
        "--run",
        &p(""),
        "--a",
        &p("sft/best"),
        "--b",
        &p("pretrain/best"),
    ]);
    let kl = vs_base["kl_a_to_b"].as_f64().unwrap();
    assert!(
        kl > 0.0 && vs_base["win_rate_a_vs_b"] != 0.5,
        "SFT against base: {vs_base}"
    );
    // The default judgement (greedy answers, reference-calibrated labelers) and a reward model.
    let heldout = p("data/heldout_prompts.jsonl");
    let (sft_dir, ptx_dir, rm_dir) = (p("sft/best"), p("ppo_ptx/final"), p("rm/final"));
    let with = |extra: &[&str]| {
        let base = [
            "--prompts",
            &heldout,
            "--max-prompts",
            "24",
            "--device",
            "cpu",
        ];
        evaluate(&[extra, &base[..]].concat())
    };
    let same = with(&["--a", &sft_dir, "--b", &sft_dir]);
    assert_eq!(same["win_rate_a_vs_b"], 0.5, "{same}");
    assert_eq!(same["gold_a"], same["gold_b"]);
    let lab = with(&["--a", &ptx_dir, "--b", &sft_dir]);
    assert_eq!(lab["judge"], "simulated_labelers");
    assert_eq!(lab["prompts"], 24);
    assert!(
        (0.0..=1.0).contains(&lab["win_rate_a_vs_b"].as_f64().unwrap()),
        "{lab}"
    );
    let answers = tmp.path().join("answers.jsonl");
    let by_rm = with(&[
        "--a",
        &ptx_dir,
        "--b",
        &sft_dir,
        "--reward",
        &rm_dir,
        "--answers",
        answers.to_str().unwrap(),
    ]);
    assert_eq!(by_rm["judge"], "reward_model");
    check_reward_answers(&by_rm, &answers, &ptx_dir, &rm_dir);
    // --run takes its prompts from the run.
    let o = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .args([
            "--run",
            &p(""),
            "--a",
            &p("sft/best"),
            "--prompts",
            &heldout,
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));

    // A rerun with another config would skip the finished stages under the new settings: it
    // is refused, naming the keys, and leaves the run as it was. The evaluation's settings
    // may change (the evaluation runs again).
    let config_before = std::fs::read_to_string(out.join("config.toml")).unwrap();
    let changed = [&extra[..], &["ppo_iterations=3", "ppo.kl_coef=0.2"]].concat();
    let (ok, _, err) = run_with(&out, &changed);
    assert!(!ok, "a changed config resumed the run");
    assert!(
        err.contains("another config (ppo.kl_coef: 0.1 -> 0.2, ppo_iterations: 2 -> 3)"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("config.toml")).unwrap(),
        config_before
    );
    let (ok, _, err) = run_with(&out, &[&extra[..], &["eval_prompts=8"]].concat());
    assert!(ok, "{err}");
}

/// Runs `evaluate` (on the CPU) and parses the JSON line it prints.
/// `evaluate --reward --answers FILE`: one row per prompt, the printed means are the rows'
/// means, and each row's reward (scored in batches) is what the RM gives the row alone.
fn check_reward_answers(
    printed: &serde_json::Value,
    answers: &std::path::Path,
    a_dir: &str,
    rm_dir: &str,
) {
    use rlhf_examples::stage::{collator, load_lm, load_reward};
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(answers)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 24);
    let device = tch::Device::Cpu;
    let a = load_lm(std::path::Path::new(a_dir), device, "a").unwrap();
    let rm = load_reward(std::path::Path::new(rm_dir), device, "rm").unwrap();
    // evaluate's limits: 32 answer tokens (its default), the prompt's last tokens in the rest.
    let n_ctx = a.config().n_positions().min(rm.config().n_positions());
    let col = collator(&a, (n_ctx - 33).min(128) as usize, 32, true, &[]).unwrap();
    for side in ["a", "b"] {
        let mut sum = 0.0;
        for row in &rows {
            let got = row[format!("reward_{side}")].as_f64().unwrap();
            sum += got;
            let pair = rlhf_data::collate::TokenizedPair {
                prompt: col.encode_prompt(row["prompt"].as_str().unwrap()).unwrap(),
                response: col.encode(row[side].as_str().unwrap()).unwrap(),
            };
            let raw =
                rlhf_reward::trainer::score_demonstrations(&rm, &[pair], col.config(), 1).unwrap();
            let alone = raw[0] * rm.meta().reward_gain + rm.meta().reward_bias;
            assert!((got - alone).abs() < 1e-4, "{row}: {alone} alone");
        }
        let mean = printed[format!("mean_reward_{side}")].as_f64().unwrap();
        assert!((mean - sum / 24.0).abs() < 1e-9, "{printed}");
    }
}

fn evaluate(args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .args(args)
        .env("RLHF_DEVICE", "cpu")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "evaluate {args:?}: {stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("evaluate printed no JSON ({e}): {stdout}"))
}

/// The numbers of a report (everything but the timings).
fn numbers(out: &std::path::Path) -> serde_json::Value {
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    r.as_object_mut().unwrap().remove("seconds");
    r
}

#[test]
fn killed_during_ppo_resumes_from_its_checkpoint_to_the_same_report() {
    let extra = ["ppo_iterations=4", "ppo_save_every=2"];
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (ok, _, stderr) = run_with(&a, &extra);
    assert!(ok, "{stderr}");

    // Kill -9 once the PPO stage has written its first checkpoint (after iteration 2 of 4).
    let mut child = command(&b, &extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !b.join("ppo/checkpoints/latest.json").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the checkpoint"
        );
        assert!(
            t0.elapsed().as_secs() < 300,
            "no PPO checkpoint after 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!b.join("ppo/done.json").exists());

    let (ok, _, stderr) = run_with(&b, &extra);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("[ppo] resuming after iteration 2"),
        "{stderr}"
    );
    assert_eq!(numbers(&a), numbers(&b));
    for f in [
        "ppo/final/model.safetensors",
        "ppo_ptx/final/model.safetensors",
    ] {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
    // Four iteration lines and the validation checks before the first and after the last
    // iteration, none repeated.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(b.join("ppo/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps = |key: &str| -> Vec<u64> {
        lines
            .iter()
            .filter(|v| v.get(key).is_some())
            .map(|v| v["step"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(steps("objective/kl"), vec![1, 2, 3, 4]);
    assert_eq!(steps("eval/gold"), vec![0, 4]);
    assert_eq!(lines.len(), 6);
}

#[test]
fn a_run_resumed_before_sft_or_the_rm_stage_trains_the_same_models() {
    // What a stage draws at random when it starts (SFT's dropout masks, the RM's fresh scalar
    // head) comes from generators seeded by the stage, not from whatever the earlier stages of
    // the same process left in libtorch's generator. So a run stopped between stages (here:
    // its config and first stages copied into a new run directory) and resumed in a new process ends
    // with the same models and the same report.
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let extra = ["ppo_iterations=1"];
    let (ok, _, stderr) = run_with(&a, &extra);
    assert!(ok, "{stderr}");
    for (name, done) in [
        ("before-sft", &["data", "pretrain"][..]),
        ("before-rm", &["data", "pretrain", "sft", "labelers"][..]),
    ] {
        let b = tmp.path().join(name);
        for stage in done {
            copy_dir(&a.join(stage), &b.join(stage));
        }
        std::fs::copy(a.join("config.toml"), b.join("config.toml")).unwrap();
        let (ok, _, stderr) = run_with(&b, &extra);
        assert!(ok, "{stderr}");
        assert!(
            !stderr.contains("[pretrain] epoch"),
            "the copied stages were found done"
        );
        for f in [
            "sft/best/model.safetensors",
            "rm/final/model.safetensors",
            "ppo_ptx/final/model.safetensors",
        ] {
            assert!(
                std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
                "{name}: {f} differs when the run resumes in a new process"
            );
        }
        assert_eq!(numbers(&a), numbers(&b), "{name}");
    }
}

#[test]
fn the_final_policy_is_compared_with_a_larger_sft_model() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let (ok, _, stderr) = run_with(&run, &["rounds=2", "ppo_iterations=1"]);
    assert!(ok, "{stderr}");
    let small = rlhf_examples::pipeline::read_run_config(&run)
        .unwrap()
        .model;
    let shape = rlhf_examples::pipeline::ModelShape {
        n_embd: 2 * small.n_embd,
        ..small
    };
    let c = rlhf_examples::pipeline::compare_with_larger_sft(&run, &shape).unwrap();
    assert_eq!(c.final_policy, "ppo_ptx_r2");
    assert!(
        c.parameters["sft_large"] > 2 * c.parameters["sft"],
        "{:?}",
        c.parameters
    );
    assert!(run.join("large/sft/done.json").exists());
    let (sft, large, fin) = (&c.rows["sft"], &c.rows["sft_large"], &c.rows["ppo_ptx_r2"]);
    assert_eq!(sft.win_rate_vs_sft, 0.5);
    assert_eq!(large.win_rate_vs_sft_large, 0.5);
    let report = numbers(&run);
    assert_eq!(
        fin.win_rate_vs_sft,
        report["win_rate_vs_sft"]["ppo_ptx_r2"].as_f64().unwrap()
    );
    assert_eq!(
        fin.gold_score,
        report["gold_score"]["ppo_ptx_r2"].as_f64().unwrap(),
        "the same answers as the run's evaluation"
    );
    for r in [sft, large, fin] {
        for v in [r.win_rate_vs_sft, r.win_rate_vs_sft_large] {
            assert!((0.0..=1.0).contains(&v), "{c:?}");
        }
        assert!(r.pretrain_loss.is_finite());
    }
    let written: rlhf_examples::pipeline::LargerSftComparison =
        serde_json::from_str(&std::fs::read_to_string(run.join("large/report.json")).unwrap())
            .unwrap();
    assert_eq!(written, c);
    // Again: the larger model's stages are found done, and the numbers are the same.
    assert_eq!(
        rlhf_examples::pipeline::compare_with_larger_sft(&run, &shape).unwrap(),
        c
    );
    let bad = rlhf_examples::pipeline::ModelShape { n_head: 3, ..shape };
    let err = rlhf_examples::pipeline::compare_with_larger_sft(&run, &bad).unwrap_err();
    assert!(format!("{err:#}").contains("multiple of n_head"), "{err:#}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn eval_greedy_scores_greedy_answers_in_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (ok, _, stderr) = run_with(&out, &["eval_greedy=true"]);
    assert!(ok, "{stderr}");
    let report = numbers(&out);
    for model in ["base", "sft", "ppo", "ppo_ptx"] {
        assert!(report["gold_score"][model].as_f64().is_some(), "{report}");
        assert_eq!(
            report["gold_score"][model], report["gold_score_greedy"][model],
            "{model}: with eval_greedy the table's answers are the greedy ones"
        );
    }
    assert_eq!(report["win_rate_vs_sft"]["sft"].as_f64(), Some(0.5));
}

/// The pipeline's PPO and PPO-ptx raise the gold score over SFT where the reward model can learn
/// the task: a small toy world of classification prompts only ("is fig an animal, a color or a
/// fruit ?"), a 1x64 model, 60 PPO iterations, 926 held-out prompts, answers sampled at
/// temperature 1 (the table's default). Measured with seeds 0-3 (about 13 s each in release, 44 s
/// in this debug-profile test):
/// PPO's gold minus SFT's +0.062, +0.026, +0.094, +0.036; PPO-ptx's +0.059, +0.025, +0.059,
/// +0.029; RM accuracy 0.64-0.69. The run is deterministic; this test runs seed 0.
///
/// Those numbers are from the correctness-only world (`--preset correctness`); the test now
/// runs on the default world, where demonstrators' habits give the RM more to learn, and passes
/// there too (seed 0, 2026-12-05).
#[test]
fn ppo_raises_the_gold_score_over_sft_where_the_rm_can_learn() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = tmp.path().join("classification.toml");
    std::fs::write(
        &cfg,
        "seed = 0\nrm_prompts = 400\nrm_valid_prompts = 60\neval_prompts = 1000\n\
         max_new_tokens = 8\nppo_iterations = 60\n\
         [world]\nnum_users = 300\nheldout_users = 200\npretrain_docs = 3000\n\
         heldout_pretrain_docs = 100\n\
         [world.category_weights]\ngeneration = 0.0\nopen_qa = 0.0\nbrainstorming = 0.0\n\
         rewrite = 0.0\nsummarization = 0.0\nclassification = 1.0\nextraction = 0.0\n\
         closed_qa = 0.0\n\
         [model]\nn_layer = 1\nn_embd = 64\nn_head = 2\nn_positions = 96\n\
         [labelers]\ncalibration_prompts = 100\n\
         [ppo]\nmax_new_tokens = 8\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .arg("--out")
        .arg(&out)
        .arg("--config")
        .arg(&cfg)
        .env("RLHF_DEVICE", "cpu")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = numbers(&out);
    let gold = |m: &str| r["gold_score"][m].as_f64().unwrap();
    for m in ["ppo", "ppo_ptx"] {
        assert!(
            gold(m) > gold("sft") + 0.01,
            "{m}: gold {} is not above SFT's {}: {r}",
            gold(m),
            gold("sft")
        );
        assert!(r["win_rate_vs_sft"][m].as_f64().unwrap() > 0.5, "{m}: {r}");
        let kl = r["kl_to_sft"][m].as_f64().unwrap();
        assert!(kl > 0.0 && kl < 2.0, "{m}: KL to SFT {kl} is not bounded");
    }
    // The alignment tax: ptx keeps the pretraining loss below plain PPO's.
    let tax = |m: &str| r["pretrain_loss"][m].as_f64().unwrap();
    assert!(tax("ppo_ptx") < tax("ppo"), "{r}");
}

/// `[lora]` in the pipeline: SFT trains adapters and exports the merged SFT model that the
/// later stages start from; the RM and the PPO policies and value functions train adapters
/// (their checkpoints carry PEFT files); the table is complete.
#[test]
fn lora_pipeline_trains_adapters_in_every_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (ok, _, stderr) = run_with(&out, &["lora.r=4", "ppo_iterations=1"]);
    assert!(ok, "{stderr}");
    for dir in ["sft/best", "rm/final", "ppo/final", "ppo_ptx/final"] {
        assert!(
            out.join(dir).join("adapter_config.json").exists(),
            "{dir} has no adapters"
        );
    }
    assert!(out.join("sft/merged/model.safetensors").exists());
    assert!(!out.join("sft/merged/adapter_config.json").exists());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for model in ["sft", "ppo", "ppo_ptx"] {
        assert!(report["win_rate_vs_sft"][model]
            .as_f64()
            .unwrap()
            .is_finite());
    }
    // The merged SFT model is the SFT model: against itself its KL is 0.
    assert!(report["kl_to_sft"]["sft"].as_f64().unwrap().abs() < 1e-9);
    // `evaluate --run` compares with the merged SFT model too, as the table does.
    let p = |f: &str| out.join(f).display().to_string();
    let row = evaluate(&["--run", &p(""), "--a", &p("ppo_ptx/final")]);
    assert_eq!(
        report["win_rate_vs_sft"]["ppo_ptx"], row["win_rate_a_vs_b"],
        "{row}"
    );
    assert_eq!(report["kl_to_sft"]["ppo_ptx"], row["kl_a_to_b"], "{row}");
}

/// An `RLHF_DEVICE` that names no device stops the run with the variable's name, instead of
/// silently running elsewhere.
#[test]
fn a_bad_rlhf_device_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = command(&tmp.path().join("run"), &[])
        .env("RLHF_DEVICE", "tpu")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("RLHF_DEVICE=\"tpu\""), "{err}");
}

#[test]
fn bad_pipeline_configs_fail_before_any_work() {
    use rlhf_examples::pipeline::PipelineConfig;
    PipelineConfig::default().validate().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (set, says) in [
        ("rounds=0", "rounds is 0"),
        ("ppo_iterations=0", "ppo_iterations is 0"),
        ("eval_prompts=0", "eval_prompts is 0"),
        ("gen_batch=0", "gen_batch is 0"),
        ("max_new_tokens=0", "max_new_tokens is 0"),
        ("rm_k=[1,1]", "rm_k is [1, 1]"),
        ("rm_k=[5,4]", "rm_k is [5, 4]"),
        ("ptx_coef=-1", "ptx_coef is -1"),
        ("valid_fraction=0", "valid_fraction is 0"),
        ("model.n_head=3", "n_embd a multiple of n_head"),
        ("max_new_tokens=200", "more than model.n_positions"),
        ("sft.epochs=0", "epochs must be at least 1"),
        ("ppo.minibatch_size=0", "minibatch_size"),
    ] {
        let out = tmp.path().join("run");
        let t = std::time::Instant::now();
        // The default (full-size) config with one bad key: it must fail before pretraining.
        let o = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(["--out", out.to_str().unwrap(), "--set", set])
            .env("RLHF_DEVICE", "cpu")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{set}: {err}");
        assert!(
            err.contains("invalid pipeline config") && err.contains(says),
            "{set}: {err}"
        );
        assert!(!out.exists(), "{set}: the run directory was created");
        assert!(
            t.elapsed().as_secs_f64() < 20.0,
            "{set}: took {:?}",
            t.elapsed()
        );
    }
}
