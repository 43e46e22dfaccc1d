//! Smoke tests of the `reward` binary on a tiny toy world: the weights change, metrics and
//! checkpoints are written, the final RM is normalized, a resumed run ends exactly where an
//! uninterrupted one does, and bad input gets one clear message and a non-zero exit.

use rlhf_data::records::write_jsonl;
use rlhf_model::{CausalLm, Gpt2Config, HeadKind, Policy, ScalarModel, Tokenizer, ValueFunction};
use rlhf_toy::{
    simulate_rankings, toy_tokenizer, LabelerConfig, LabelerPool, ToyConfig, ToyWorld, TOY_EOS_ID,
};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn p(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    fn s(&self, name: &str) -> String {
        self.p(name).to_str().unwrap().to_string()
    }
}

/// A toy world's rankings and demonstrations, and a tiny random LM as the "SFT" checkpoint.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let world = ToyWorld::generate(&ToyConfig {
        num_users: 40,
        heldout_users: 5,
        pretrain_docs: 10,
        heldout_pretrain_docs: 2,
        ..Default::default()
    })
    .unwrap();
    let pool = LabelerPool::calibrated(
        &LabelerConfig {
            calibration_prompts: 100,
            ..Default::default()
        },
        0,
    )
    .unwrap();
    let rankings = simulate_rankings(&world.prompts, &pool, 4, 9, 1).unwrap();
    write_jsonl(root.join("rankings.jsonl"), &rankings).unwrap();
    write_jsonl(root.join("demos.jsonl"), &world.demonstrations).unwrap();
    let tok = toy_tokenizer();
    let mut cfg = Gpt2Config::sized(1, 2, 32, tok.get_vocab_size(true) as i64, 80);
    cfg.eos_token_id = Some(TOY_EOS_ID as i64);
    cfg.bos_token_id = Some(TOY_EOS_ID as i64);
    tch::manual_seed(0);
    let mut lm = CausalLm::new(&cfg, tch::Device::Cpu).unwrap();
    lm.set_tokenizer(Tokenizer::from_inner(tok)).unwrap();
    lm.save(root.join("sft")).unwrap();
    Fixture { _tmp: tmp, root }
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reward"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "the binary panicked: {err}");
    (out.status.success(), err)
}

const TINY: &[&str] = &[
    "--device",
    "cpu",
    "--set",
    "train.epochs=2",
    "--set",
    "train.batch_prompts=16",
    "--set",
    "max_prompt_tokens=48",
    "--set",
    "max_response_tokens=25",
    "--set",
    "train.optimizer.lr=3e-3",
];

fn train_args(f: &Fixture, out: &str) -> Vec<String> {
    let mut a = vec![
        "--init".to_string(),
        f.s("sft"),
        "--data".into(),
        f.s("rankings.jsonl"),
        "--demos".into(),
        f.s("demos.jsonl"),
        "--out".into(),
        f.s(out),
    ];
    a.extend(TINY.iter().map(|s| s.to_string()));
    a
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn weight(dir: &Path, name: &str) -> tch::Tensor {
    let vars = match CausalLm::load(dir, tch::Device::Cpu) {
        Ok(lm) => lm.var_store().variables(),
        Err(_) => {
            ValueFunction::var_store(&ScalarModel::load(dir, tch::Device::Cpu).unwrap()).variables()
        }
    };
    vars[name].copy()
}

#[test]
fn trains_normalizes_and_resumes_exactly() {
    let f = fixture();
    let (ok, err) = run(&refs(&train_args(&f, "run")));
    assert!(ok, "{err}");
    for file in [
        "config.toml",
        "metrics.jsonl",
        "report.json",
        "epoch-1/model.safetensors",
        "epoch-1/optimizer.safetensors",
        "epoch-1/trainer_state.json",
        "epoch-2/config.json",
        "final/model.safetensors",
        "plots/loss.png",
        "final/tokenizer.json",
    ] {
        assert!(f.p("run").join(file).exists(), "missing {file}: {err}");
    }
    assert!(err.contains("[reward]"), "no progress on stderr: {err}");
    // The body was trained.
    let w = "transformer.h.0.mlp.c_fc.weight";
    let before = weight(&f.p("sft"), w);
    let after = weight(&f.p("run/final"), w);
    assert!(f64::try_from((&after - &before).abs().max()).unwrap() > 1e-4);
    // The final model is a normalized reward model.
    let rm = ScalarModel::load(f.p("run/final"), tch::Device::Cpu).unwrap();
    assert_eq!(rm.head_kind(), HeadKind::Reward);
    assert!(rm.meta().reward_bias != 0.0);
    assert!(rm.meta().extra.contains_key("reward_normalization"));
    // Metrics: one training line per step, validation per epoch (toy prompts: gold accuracy).
    let metrics = std::fs::read_to_string(f.p("run/metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps = lines.iter().filter(|l| l.get("loss/rm").is_some()).count();
    let vals: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l.get("val/accuracy").is_some())
        .collect();
    assert!(steps >= 4, "{metrics}");
    assert_eq!(vals.len(), 2, "{metrics}");
    assert!(vals[1].get("val/accuracy_gold").is_some(), "{metrics}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.p("run/report.json")).unwrap()).unwrap();
    assert_eq!(report["epochs"], 2);

    // Interrupted after epoch 1: the resumed run ends with the same weights, bit for bit.
    let copy = f.p("run2");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in ["config.toml", "metrics.jsonl"] {
        std::fs::copy(f.p("run").join(entry), copy.join(entry)).unwrap();
    }
    let src = f.p("run/epoch-1");
    std::fs::create_dir_all(copy.join("epoch-1")).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join("epoch-1").join(e.file_name())).unwrap();
    }
    // Without --resume the run directory is refused.
    let (ok, err) = run(&refs(&train_args(&f, "run2")));
    assert!(!ok && err.contains("--resume"), "{err}");
    let mut args = train_args(&f, "run2");
    args.push("--resume".into());
    let (ok, err) = run(&refs(&args));
    assert!(ok, "{err}");
    assert!(err.contains("resuming from"), "{err}");
    for name in [w, "score.weight", "transformer.wte.weight"] {
        let a = weight(&f.p("run/final"), name);
        let b = weight(&f.p("run2/final"), name);
        assert_eq!(
            f64::try_from((&a - &b).abs().max()).unwrap(),
            0.0,
            "{name} differs after resuming"
        );
    }
    let rm2 = ScalarModel::load(f.p("run2/final"), tch::Device::Cpu).unwrap();
    assert_eq!(rm2.meta().reward_bias, rm.meta().reward_bias);
}

#[test]
fn bad_inputs_fail_with_one_clear_message() {
    let f = fixture();
    let with = |data: &str, init: &str, out: &str| -> (bool, String) {
        let mut a = vec![
            "--init".to_string(),
            init.to_string(),
            "--data".into(),
            data.to_string(),
            "--out".into(),
            f.s(out),
        ];
        a.extend(TINY.iter().map(|s| s.to_string()));
        run(&refs(&a))
    };
    // Missing file.
    let (ok, err) = with(&f.s("nope.jsonl"), &f.s("sft"), "r1");
    assert!(
        !ok && err.contains("nope.jsonl") && err.contains("no such file"),
        "{err}"
    );
    // A bad JSONL line names the file and the line.
    let good = std::fs::read_to_string(f.p("rankings.jsonl")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(2, "{\"id\": \"x\", \"user_id\": \"u\", \"prompt\": \"p\"");
    std::fs::write(f.p("bad.jsonl"), lines.join("\n")).unwrap();
    let (ok, err) = with(&f.s("bad.jsonl"), &f.s("sft"), "r2");
    assert!(!ok && err.contains("bad.jsonl:3"), "{err}");
    // K < 2.
    std::fs::write(
        f.p("k1.jsonl"),
        "{\"id\": \"a\", \"user_id\": \"u\", \"prompt\": \"p\", \"responses\": [\"r\"], \"ranking\": [0]}\n",
    )
    .unwrap();
    let (ok, err) = with(&f.s("k1.jsonl"), &f.s("sft"), "r3");
    assert!(!ok && err.contains("k1.jsonl:1"), "{err}");
    // A value checkpoint is the wrong kind.
    let vf = ScalarModel::new(
        &Gpt2Config::sized(1, 2, 32, 200, 80),
        HeadKind::Value,
        tch::Device::Cpu,
    )
    .unwrap();
    vf.save(f.p("value")).unwrap();
    let (ok, err) = with(&f.s("rankings.jsonl"), &f.s("value"), "r4");
    assert!(!ok && err.contains("value-function checkpoint"), "{err}");
    // Not a checkpoint at all.
    let (ok, err) = with(&f.s("rankings.jsonl"), &f.s("nothing"), "r5");
    assert!(!ok && err.contains("--init"), "{err}");
    // An invalid config value names the key.
    let mut a = train_args(&f, "r6");
    a.extend(["--set".to_string(), "train.batch_prompts=0".to_string()]);
    let (ok, err) = run(&refs(&a));
    assert!(!ok && err.contains("batch_prompts"), "{err}");
}
