//! Fixtures and checks shared by the kill/resume and bad-input tests of the stage binaries:
//! a tiny toy world on disk, tiny LM / RM / value checkpoints with the toy tokenizer, running
//! and killing binaries, and comparing checkpoints bit for bit.

#![allow(dead_code)]

use rlhf_data::records::write_jsonl;
use rlhf_model::checkpoint::read_safetensors;
use rlhf_model::{CausalLm, Gpt2Config, ScalarModel, Tokenizer};
use rlhf_toy::{
    simulate_rankings, toy_tokenizer, LabelerConfig, LabelerPool, ToyConfig, ToyWorld, TOY_EOS_ID,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tch::{Device, Tensor};

/// A temporary directory with
/// `world/` (the toy world: prompts, demonstrations, pretraining text, tokenizer.json),
/// `rankings.jsonl` (simulated K = 4..9 rankings of the world's prompts),
/// `sft/` (a tiny random LM with the toy tokenizer), `rm/` (an RM made from it) and
/// `value/` (a value function made from the RM).
pub struct Fixture {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        // tch's generator is process-global: one fixture at a time gets the same weights.
        static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let world = ToyWorld::generate(&ToyConfig {
            num_users: 40,
            heldout_users: 5,
            pretrain_docs: 20,
            heldout_pretrain_docs: 2,
            ..Default::default()
        })
        .unwrap();
        world.save(root.join("world")).unwrap();
        let pool = LabelerPool::calibrated(
            &LabelerConfig {
                calibration_prompts: 100,
                ..Default::default()
            },
            0,
        )
        .unwrap();
        let rankings = simulate_rankings(&world.prompts, &pool, 4, 6, 1).unwrap();
        write_jsonl(root.join("rankings.jsonl"), &rankings).unwrap();
        let tok = toy_tokenizer();
        let mut cfg =
            Gpt2Config::sized(1, 2, 32, tok.get_vocab_size(true) as i64, 80).with_dropout(0.0);
        cfg.eos_token_id = Some(TOY_EOS_ID as i64);
        cfg.bos_token_id = Some(TOY_EOS_ID as i64);
        cfg.pad_token_id = Some(TOY_EOS_ID as i64);
        {
            let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
            tch::manual_seed(0);
            let mut lm = CausalLm::new(&cfg, Device::Cpu).unwrap();
            lm.set_tokenizer(Tokenizer::from_inner(tok)).unwrap();
            lm.save(root.join("sft")).unwrap();
            let rm = ScalarModel::reward_from_lm(root.join("sft"), Device::Cpu).unwrap();
            rm.save(root.join("rm")).unwrap();
            let vf = ScalarModel::value_from_reward(root.join("rm"), Device::Cpu).unwrap();
            vf.save(root.join("value")).unwrap();
        }
        Fixture { _tmp: tmp, root }
    }

    /// A path in the fixture.
    pub fn p(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// A path in the fixture, as a string argument.
    pub fn s(&self, name: &str) -> String {
        self.p(name).to_str().unwrap().to_string()
    }

    /// Writes `text` to `name` in the fixture and returns its path as a string.
    /// `sft` on this fixture (the tiny LM, the world's demonstrations, CPU) writing to `out`,
    /// plus `--set` for each of `set`.
    pub fn sft_args(&self, out: &str, set: &[&str]) -> Vec<String> {
        self.stage_args(
            &[("--init", "sft"), ("--data", "world/demonstrations.jsonl")],
            out,
            set,
        )
    }

    /// `reward` on this fixture (the tiny LM, its rankings, the demonstrations for the
    /// normalization, CPU) writing to `out`, plus `--set` for each of `set`.
    pub fn reward_args(&self, out: &str, set: &[&str]) -> Vec<String> {
        self.stage_args(
            &[
                ("--init", "sft"),
                ("--data", "rankings.jsonl"),
                ("--demos", "world/demonstrations.jsonl"),
            ],
            out,
            set,
        )
    }

    /// `ppo` on this fixture (policy, RM, the world's prompts and pretraining text, CPU)
    /// writing to `out`, plus `--set` for each of `set`.
    pub fn ppo_args(&self, out: &str, set: &[&str]) -> Vec<String> {
        self.stage_args(
            &[
                ("--policy", "sft"),
                ("--reward", "rm"),
                ("--prompts", "world/prompts.jsonl"),
                ("--pretrain", "world/pretrain.jsonl"),
            ],
            out,
            set,
        )
    }

    /// `flag path` pairs (paths inside the fixture), `--out out --device cpu`, then `set`.
    fn stage_args(&self, inputs: &[(&str, &str)], out: &str, set: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = inputs
            .iter()
            .flat_map(|(flag, path)| [flag.to_string(), self.s(path)])
            .collect();
        a.extend(args(&["--out", &self.s(out), "--device", "cpu"]));
        a.extend(sets(set));
        a
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.p(name), text).unwrap();
        self.s(name)
    }
}

/// The path of a stage binary built for these tests.
pub fn bin(name: &str) -> &'static str {
    match name {
        "pretrain" => env!("CARGO_BIN_EXE_pretrain"),
        "sft" => env!("CARGO_BIN_EXE_sft"),
        "reward" => env!("CARGO_BIN_EXE_reward"),
        "ppo" => env!("CARGO_BIN_EXE_ppo"),
        "evaluate" => env!("CARGO_BIN_EXE_evaluate"),
        "generate" => env!("CARGO_BIN_EXE_generate"),
        "init-model" => env!("CARGO_BIN_EXE_init-model"),
        "import-gguf" => env!("CARGO_BIN_EXE_import-gguf"),
        "pipeline" => env!("CARGO_BIN_EXE_pipeline"),
        other => panic!("no binary {other}"),
    }
}

fn command(name: &str, args: &[String]) -> Command {
    let mut c = Command::new(bin(name));
    // Messages as users see them by default: no backtraces.
    c.args(args)
        .env("RLHF_DEVICE", "cpu")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null());
    c
}

/// Runs a binary to its end.
pub fn run(name: &str, args: &[String]) -> Output {
    command(name, args).output().expect("the binary starts")
}

/// Runs a binary to its end and asserts that it succeeded; returns its stderr.
pub fn run_ok(name: &str, args: &[String]) -> String {
    let o = run(name, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{name} {args:?} failed:\n{err}");
    err
}

/// Starts a binary with stdout and stderr going to `log`.
pub fn spawn(name: &str, args: &[String], log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    command(name, args)
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("the binary starts")
}

/// Polls `cond` every few milliseconds and SIGKILLs `child` as soon as it holds. Panics if the
/// child ends first (the kill point was not reached: the test would prove nothing) or after
/// `timeout`.
pub fn kill_when(mut child: Child, log: &Path, timeout: Duration, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    loop {
        if cond() {
            // `Child::kill` sends SIGKILL on Unix: no destructor, no cleanup runs.
            child.kill().unwrap();
            let status = child.wait().unwrap();
            assert!(
                !status.success(),
                "the child finished before the kill: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the child ended ({status}) before the kill point:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the kill point was not reached in {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Lines of a run's metrics.jsonl (0 when missing).
pub fn metric_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// `(step, value of key)` of each metrics line with `key`.
pub fn metric_series(run: &Path, key: &str) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| Some((v["step"].as_u64()?, v.get(key)?.as_f64()?)))
        .collect()
}

/// The tensors of a checkpoint directory's model.safetensors.
pub fn weights(dir: &Path) -> BTreeMap<String, Tensor> {
    read_safetensors(&dir.join("model.safetensors"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// Asserts that two safetensors files hold the same tensors, bit for bit (max |a - b| == 0).
pub fn assert_same_tensors(a: &Path, b: &Path) {
    let read = |p: &Path| read_safetensors(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let (wa, wb) = (read(a), read(b));
    assert_eq!(
        wa.keys().collect::<Vec<_>>(),
        wb.keys().collect::<Vec<_>>(),
        "{} and {} hold different tensors",
        a.display(),
        b.display()
    );
    for (name, x) in &wa {
        let y = &wb[name];
        assert_eq!(x.size(), y.size(), "{name}");
        assert_eq!(x.kind(), y.kind(), "{name}");
        let d = (x.to_kind(tch::Kind::Double) - y.to_kind(tch::Kind::Double))
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(
            d,
            0.0,
            "{name} differs between {} and {} (max abs diff {d})",
            a.display(),
            b.display()
        );
    }
}

/// Asserts that two checkpoint directories hold the same weights, bit for bit.
pub fn assert_same_weights(a: &Path, b: &Path) {
    assert_same_tensors(&a.join("model.safetensors"), &b.join("model.safetensors"));
}

/// Hidden entries (temporary files and directories of atomic writes, e.g. `.x.tmp-PID`,
/// `.x.old-PID`, `.x.building-PID`) anywhere under `dir`.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with('.') {
                out.push(p.clone());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Every file under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Strings as owned arguments.
pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// `--set k=v` for each item.
pub fn sets(kv: &[&str]) -> Vec<String> {
    kv.iter()
        .flat_map(|s| ["--set".to_string(), s.to_string()])
        .collect()
}

/// `--set` values of a pipeline run that takes seconds (every stage, tiny sizes).
pub const PIPELINE_TINY: &[&str] = &[
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
    // One round (the default is two): the tests that need two set `rounds=2`.
    "rounds=1",
];
