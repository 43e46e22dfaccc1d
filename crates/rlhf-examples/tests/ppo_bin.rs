//! Smoke, resume (exact: stopped and resumed equals straight through) and bad-input tests of
//! the `ppo` binary with tiny settings.

use rlhf_data::records::write_jsonl;
use rlhf_model::checkpoint::read_safetensors;
use rlhf_model::{CausalLm, Gpt2Config, ScalarModel, Tokenizer};
use rlhf_toy::{toy_tokenizer, toy_vocab, ToyConfig, ToyWorld};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tch::{Device, Tensor};

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    sft: PathBuf,
    rm: PathBuf,
    prompts: PathBuf,
    pretrain: PathBuf,
}

/// A tiny SFT checkpoint with the toy tokenizer, an RM made from it, toy prompts and text.
fn fixture() -> Fixture {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut cfg = Gpt2Config::sized(2, 2, 32, toy_vocab().len() as i64, 128).with_dropout(0.0);
    cfg.eos_token_id = Some(0);
    cfg.bos_token_id = Some(0);
    cfg.pad_token_id = Some(0);
    let (sft, rm) = (root.join("sft"), root.join("rm"));
    {
        let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(0);
        let mut lm = CausalLm::new(&cfg, Device::Cpu).unwrap();
        lm.set_tokenizer(Tokenizer::from_inner(toy_tokenizer()))
            .unwrap();
        lm.save(&sft).unwrap();
        let reward = ScalarModel::reward_from_lm(&sft, Device::Cpu).unwrap();
        reward.save(&rm).unwrap();
    }
    let world = ToyWorld::generate(&ToyConfig {
        num_users: 30,
        heldout_users: 2,
        pretrain_docs: 20,
        heldout_pretrain_docs: 2,
        ..ToyConfig::default()
    })
    .unwrap();
    let prompts = root.join("prompts.jsonl");
    write_jsonl(&prompts, &world.prompts[..20]).unwrap();
    let pretrain = root.join("pretrain.jsonl");
    write_jsonl(&pretrain, &world.pretrain).unwrap();
    Fixture {
        _dir: dir,
        root,
        sft,
        rm,
        prompts,
        pretrain,
    }
}

fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ppo.toml")
}

const TINY: &[&str] = &[
    "threads=1",
    "save_every=1",
    "ptx_block_len=32",
    "ptx_batch_size=2",
    "ppo.batch_size=8",
    "ppo.minibatch_size=4",
    "ppo.ppo_epochs=1",
    "ppo.max_new_tokens=6",
    "ppo.ptx_coef=1.0",
    "ppo.policy_optimizer.lr=1e-3",
    "ppo.value_optimizer.lr=1e-3",
];

fn ppo(f: &Fixture, out: &Path, extra: &[&str], sets: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ppo"));
    cmd.arg("--policy")
        .arg(&f.sft)
        .arg("--reward")
        .arg(&f.rm)
        .arg("--prompts")
        .arg(&f.prompts)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu"])
        .args(extra);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.output().expect("the ppo binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn weights(dir: &Path) -> BTreeMap<String, Tensor> {
    read_safetensors(&dir.join("model.safetensors")).unwrap()
}

fn max_diff(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) -> f64 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .map(|(k, x)| (x - &b[k]).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

fn dir_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn metric_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in [
                "objective/kl",
                "objective/scores",
                "objective/entropy",
                "policy/approxkl",
                "policy/clipfrac",
                "loss/policy",
                "loss/value",
                "loss/ptx",
                "val/explained_variance",
                "time/generation",
                "time/scoring",
                "time/training",
            ] {
                assert!(v.get(k).is_some(), "metrics line lacks {k}: {l}");
            }
            v["step"].as_u64().unwrap()
        })
        .collect()
}

fn latest(run: &Path) -> (u64, PathBuf) {
    let text = std::fs::read_to_string(run.join("checkpoints/latest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (
        v["iteration"].as_u64().unwrap(),
        run.join("checkpoints").join(v["dir"].as_str().unwrap()),
    )
}

#[test]
fn smoke_then_resume() {
    let f = fixture();
    let run = f.root.join("run");
    let (sft_before, rm_before) = (dir_bytes(&f.sft), dir_bytes(&f.rm));
    let config = repo_config();
    let mut sets = TINY.to_vec();
    sets.push("iterations=2");
    let pretrain = f.pretrain.to_str().unwrap().to_string();
    let o = ppo(
        &f,
        &run,
        &[
            "--config",
            config.to_str().unwrap(),
            "--pretrain",
            &pretrain,
        ],
        &sets,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("longer than"), "nothing is cut here");
    assert_eq!(metric_steps(&run), vec![1, 2]);
    let (it, ckpt) = latest(&run);
    assert_eq!(it, 2);
    assert!(run.join("config.toml").exists() && run.join("report.json").exists());
    assert!(run.join("plots/objective.png").exists(), "PPO plots");
    // final/: the last policy, its files hard links to the checkpoint's.
    {
        use std::os::unix::fs::MetadataExt;
        let ino = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
        let (a, b) = (run.join("final"), ckpt.join("policy"));
        assert_eq!(
            ino(a.join("model.safetensors")),
            ino(b.join("model.safetensors"))
        );
        assert!(a.join("tokenizer.json").exists() && a.join("config.json").exists());
        let report = std::fs::read_to_string(run.join("report.json")).unwrap();
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        assert_eq!(report["final"].as_str(), a.to_str());
    }
    // Policy and value trained; the SFT and RM checkpoints untouched.
    let d_policy = max_diff(&weights(&f.sft), &weights(&ckpt.join("policy")));
    assert!(d_policy > 1e-5, "policy unchanged: {d_policy}");
    let d_value = max_diff(&weights(&f.rm), &weights(&ckpt.join("value")));
    assert!(d_value > 1e-5, "value unchanged: {d_value}");
    assert!(dir_bytes(&f.sft) == sft_before && dir_bytes(&f.rm) == rm_before);
    // The policy checkpoint is a complete LM checkpoint (tokenizer included); the value one a
    // value-head checkpoint.
    let p = CausalLm::load(ckpt.join("policy"), Device::Cpu).unwrap();
    assert!(p.tokenizer().is_some());
    let v = ScalarModel::load(ckpt.join("value"), Device::Cpu).unwrap();
    assert_eq!(v.head_kind(), rlhf_model::HeadKind::Value);
    // The trainer's state (both optimizers) is saved beside the weights.
    for file in [
        "trainer_state.json",
        "policy_optimizer.safetensors",
        "value_optimizer.safetensors",
    ] {
        assert!(ckpt.join("trainer").join(file).exists(), "{file}");
    }

    // Reusing the directory without --resume is refused.
    let o = ppo(&f, &run, &["--pretrain", &pretrain], &sets);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));

    // Resume to 3 iterations: the config comes from the run directory, the run continues from
    // the iteration-2 checkpoint.
    let iter2 = weights(&ckpt.join("policy"));
    let o = ppo(
        &f,
        &run,
        &["--resume", "--pretrain", &pretrain],
        &["iterations=3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming at iteration 2"),
        "{}",
        stderr(&o)
    );
    assert_eq!(metric_steps(&run), vec![1, 2, 3]);
    let (it, ckpt3) = latest(&run);
    assert_eq!(it, 3);
    let d = max_diff(&iter2, &weights(&ckpt3.join("policy")));
    assert!(
        d > 1e-6 && d < 0.5,
        "one more iteration from the checkpoint: {d}"
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt3.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["iteration"], 3);
    assert_eq!(
        state["ptx_position"],
        3 * 2,
        "one ptx batch per micro-batch"
    );
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("iterations = 3") && resolved.contains("batch_size = 8"));
}

#[test]
fn bad_inputs_fail_cleanly() {
    let f = fixture();
    let check = |name: &str, o: Output, needle: &str| {
        let e = stderr(&o);
        assert!(!o.status.success(), "{name}: should fail");
        assert!(!e.contains("panicked"), "{name}: panicked: {e}");
        assert!(e.contains(needle), "{name}: expected {needle:?} in: {e}");
    };
    let mut sets = TINY.to_vec();
    sets.push("iterations=1");
    let out = |n: &str| f.root.join(n);

    let mut cmd_missing = Command::new(env!("CARGO_BIN_EXE_ppo"));
    cmd_missing
        .args(["--policy", f.sft.to_str().unwrap()])
        .args(["--reward", f.rm.to_str().unwrap()])
        .args(["--prompts", "/nonexistent/prompts.jsonl"])
        .args(["--out", out("a").to_str().unwrap(), "--device", "cpu"]);
    check(
        "missing prompts",
        cmd_missing.output().unwrap(),
        "no such file",
    );
    check(
        "unknown key",
        ppo(&f, &out("b"), &[], &["ppo.bogus=1"]),
        "bogus",
    );
    check(
        "batch not divisible",
        ppo(
            &f,
            &out("c"),
            &[],
            &["ppo.batch_size=10", "ppo.minibatch_size=4"],
        ),
        "minibatch_size",
    );
    check(
        "ptx without data",
        ppo(&f, &out("d"), &[], &sets),
        "--pretrain",
    );
    check(
        "too long for the model",
        ppo(
            &f,
            &out("e"),
            &[],
            &["max_prompt_tokens=120", "ppo.max_new_tokens=32"],
        ),
        "n_positions",
    );
    check(
        "RM given as policy",
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_ppo"));
            c.args(["--policy", f.rm.to_str().unwrap()])
                .args(["--reward", f.rm.to_str().unwrap()])
                .args(["--prompts", f.prompts.to_str().unwrap()])
                .args(["--out", out("f").to_str().unwrap(), "--device", "cpu"]);
            c.output().unwrap()
        },
        "language model was expected",
    );
    let bad = f.root.join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": \"x\", \"user_id\": \"u\"}\n").unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_ppo"));
    c.args(["--policy", f.sft.to_str().unwrap()])
        .args(["--reward", f.rm.to_str().unwrap()])
        .args(["--prompts", bad.to_str().unwrap()])
        .args(["--out", out("g").to_str().unwrap(), "--device", "cpu"]);
    check("bad prompt record", c.output().unwrap(), "prompt");
}

/// The metric lines of a run without the timings.
fn metric_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut()
                .unwrap()
                .retain(|k, _| !k.starts_with("time/"));
            v
        })
        .collect()
}

fn trainer_state(ckpt: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(ckpt.join("trainer/trainer_state.json")).unwrap())
        .unwrap()
}

#[test]
fn stopped_and_resumed_equals_straight_through() {
    let f = fixture();
    let pretrain = f.pretrain.to_str().unwrap().to_string();
    // Everything that carries state across iterations: AdamW moments, adaptive beta, the ptx
    // position, an lr warmup spanning the stop, clipping, several epochs and micro-batches.
    let mut sets = TINY.to_vec();
    sets.extend([
        "iterations=4",
        "save_every=3",
        "ppo.ppo_epochs=2",
        "ppo.micro_batch_size=2",
        "ppo.adaptive_kl.target=0.5",
        "ppo.adaptive_kl.horizon=50.0",
        "ppo.max_grad_norm=1.0",
        "ppo.lr_warmup_iterations=3",
        "ppo.policy_optimizer.weight_decay=0.01",
    ]);
    let straight = f.root.join("straight");
    let o = ppo(&f, &straight, &["--pretrain", &pretrain], &sets);
    assert!(o.status.success(), "{}", stderr(&o));

    let resumed = f.root.join("resumed");
    let o = ppo(
        &f,
        &resumed,
        &["--pretrain", &pretrain, "--stop-after", "2"],
        &sets,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("stopped after iteration 2"),
        "{}",
        stderr(&o)
    );
    assert_eq!(latest(&resumed).0, 2, "a checkpoint at the stop");
    assert_eq!(metric_steps(&resumed), vec![1, 2]);
    // Stopping at or before where the run already is would do nothing: an error, no change.
    let o = ppo(
        &f,
        &resumed,
        &["--resume", "--pretrain", &pretrain, "--stop-after", "2"],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("already at iteration 2; give K > 2"),
        "{}",
        stderr(&o)
    );
    assert_eq!(metric_steps(&resumed), vec![1, 2]);
    let o = ppo(&f, &resumed, &["--resume", "--pretrain", &pretrain], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming at iteration 2"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));

    let ((ia, a), (ib, b)) = (latest(&straight), latest(&resumed));
    assert_eq!((ia, ib), (4, 4));
    for model in ["policy", "value"] {
        let d = max_diff(&weights(&a.join(model)), &weights(&b.join(model)));
        assert_eq!(d, 0.0, "{model} differs by {d}");
    }
    let (sa, sb) = (trainer_state(&a), trainer_state(&b));
    assert_eq!(sa["kl_coef_bits"], sb["kl_coef_bits"], "beta: {sa} vs {sb}");
    assert_ne!(
        sa["kl_coef"].as_f64().unwrap(),
        0.02,
        "the adaptive beta moved"
    );
    assert_eq!(sa["policy_optimizer_steps"], sb["policy_optimizer_steps"]);
    assert_eq!(metric_lines(&straight), metric_lines(&resumed));

    // The control: a checkpoint without trainer/ (as older versions wrote) resumes with fresh
    // AdamW moments, says so, and ends elsewhere: the equality above is the saved state's doing.
    let old = f.root.join("old");
    let o = ppo(
        &f,
        &old,
        &["--pretrain", &pretrain, "--stop-after", "2"],
        &sets,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_dir_all(latest(&old).1.join("trainer")).unwrap();
    let o = ppo(&f, &old, &["--resume", "--pretrain", &pretrain], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("AdamW moments start afresh"),
        "{}",
        stderr(&o)
    );
    let d = max_diff(
        &weights(&a.join("policy")),
        &weights(&latest(&old).1.join("policy")),
    );
    assert!(d > 0.0, "fresh moments should change the result");

    // Other ppo settings on resume are refused, naming the key.
    let o = ppo(
        &f,
        &resumed,
        &["--resume", "--pretrain", &pretrain],
        &["iterations=5", "ppo.clip_range=0.3"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("clip_range"), "{}", stderr(&o));
}

#[test]
fn prompts_cut_to_max_prompt_tokens_are_reported() {
    let f = fixture();
    let mut sets = TINY.to_vec();
    sets.extend(["iterations=1", "max_prompt_tokens=3", "ppo.ptx_coef=0"]);
    let o = ppo(&f, &f.root.join("run"), &[], &sets);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let n = std::fs::read_to_string(&f.prompts).unwrap().lines().count();
    let long = format!(
        "of {n} prompts of {} are longer than max_prompt_tokens = 3",
        f.prompts.display()
    );
    assert!(err.contains(&long), "{err}");
}
