//! The pipeline end to end at a tiny size, with two rounds of the paper's iteration: every
//! stage runs, the report has the paper's table (and the second round's RM and policy), the
//! plots are written, and a rerun resumes (skips finished stages) with the same report.

use std::process::Command;

const TINY: &[&str] = &[
    "world.num_users=40",
    "world.heldout_users=10",
    "world.pretrain_docs=150",
    "world.heldout_pretrain_docs=20",
    "model.n_layer=1",
    "model.n_embd=32",
    "model.n_head=2",
    "model.n_positions=96",
    "pretrain.epochs=1",
    "sft.epochs=1",
    "rm_prompts=24",
    "rm_valid_prompts=12",
    "rm.epochs=1",
    "ppo.batch_size=8",
    "ppo.minibatch_size=4",
    "ppo.max_new_tokens=8",
    "ppo_iterations=2",
    "eval_prompts=16",
    "max_new_tokens=8",
    "labelers.calibration_prompts=60",
    "rounds=2",
];

fn run(out: &std::path::Path) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    cmd.arg("--out").arg(out).env("RLHF_DEVICE", "cpu");
    for s in TINY {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().unwrap();
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
    let (ok, stdout, stderr) = run(&out);
    assert!(ok, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in [
        "win_rate_vs_sft",
        "gold_score",
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
    assert!(std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .contains("| ppo_ptx |"));
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
    let (ok, _, stderr2) = run(&out);
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
}
