//! The fixture and the command builders of the bad-input tests.

use super::common::{args, files, run, sets, Fixture};
use rlhf_model::{CausalLm, Gpt2Config, ScalarModel, Tokenizer};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::Device;

/// The common fixture plus checkpoints over another vocabulary: `byte_sft/` (an LM with the
/// 257-token byte-level tokenizer), `byte_rm/` (an RM made from it), and `mism/` (the toy SFT
/// checkpoint, 145 embedding rows, with the byte-level tokenizer.json: a tokenizer that does
/// not belong to the model).
pub(crate) fn fixture() -> Fixture {
    let f = Fixture::new();
    let tok = Tokenizer::byte_level();
    let eos = tok.token_id(rlhf_model::tokenizer::ENDOFTEXT).unwrap();
    let mut cfg = Gpt2Config::sized(1, 2, 32, tok.vocab_size() as i64, 80);
    cfg.eos_token_id = Some(eos);
    cfg.bos_token_id = Some(eos);
    let mut lm = CausalLm::new(&cfg, Device::Cpu).unwrap();
    lm.set_tokenizer(tok).unwrap();
    lm.save(f.p("byte_sft")).unwrap();
    ScalarModel::reward_from_lm(f.p("byte_sft"), Device::Cpu)
        .unwrap()
        .save(f.p("byte_rm"))
        .unwrap();
    std::fs::create_dir_all(f.p("mism")).unwrap();
    for e in std::fs::read_dir(f.p("sft")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), f.p("mism").join(e.file_name())).unwrap();
    }
    std::fs::copy(f.p("byte_sft/tokenizer.json"), f.p("mism/tokenizer.json")).unwrap();
    f
}

/// A fresh run-directory path under the fixture.
pub(crate) fn out(f: &Fixture) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    f.s(&format!("out-{}", N.fetch_add(1, Ordering::Relaxed)))
}

/// The `--out` value of an argument list.
pub(crate) fn out_of(a: &[String]) -> Option<&Path> {
    a.iter()
        .position(|x| x == "--out")
        .map(|i| Path::new(&a[i + 1]))
}

/// Runs `bin` with `a` and checks a clean failure: non-zero exit, no panic, exactly one
/// `Error:` message, containing every needle (case-sensitive), and no run directory created at
/// `--out`.
pub(crate) fn fails(bin: &str, a: &[String], needles: &[&str]) -> String {
    let o = run(bin, a);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let ctx = format!("{bin} {}", a.join(" "));
    assert!(!o.status.success(), "{ctx}: should fail, stderr:\n{err}");
    assert!(!err.contains("panicked at"), "{ctx}: panicked:\n{err}");
    let n = err.lines().filter(|l| l.starts_with("Error:")).count();
    assert_eq!(n, 1, "{ctx}: expected one error message:\n{err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "{ctx}: expected {needle:?} in:\n{err}"
        );
    }
    if let Some(out) = out_of(a) {
        let left = files(out);
        assert!(left.is_empty(), "{ctx}: left {left:?} in {}", out.display());
        assert!(!out.exists(), "{ctx}: created {}", out.display());
    }
    err
}

/// Small settings under which the stages would succeed on the fixture.
pub(crate) const SFT_SETS: &[&str] = &[
    "train.epochs=1",
    "train.max_prompt_tokens=48",
    "train.max_response_tokens=32",
];
pub(crate) const RM_SETS: &[&str] = &[
    "train.epochs=1",
    "max_prompt_tokens=48",
    "max_response_tokens=25",
];
pub(crate) const PPO_SETS: &[&str] = &[
    "iterations=1",
    "ppo.batch_size=8",
    "ppo.minibatch_size=4",
    "ppo.max_new_tokens=6",
];

pub(crate) fn sft(f: &Fixture, init: &str, data: &str, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["--init", init, "--data", data, "--out", &out(f)]);
    a.extend(args(&["--device", "cpu"]));
    a.extend(sets(SFT_SETS));
    a.extend(args(extra));
    a
}

pub(crate) fn reward(f: &Fixture, init: &str, data: &str, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["--init", init, "--data", data, "--out", &out(f)]);
    a.extend(args(&["--device", "cpu"]));
    a.extend(sets(RM_SETS));
    a.extend(args(extra));
    a
}

pub(crate) fn ppo(
    f: &Fixture,
    policy: &str,
    rm: &str,
    prompts: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut a = args(&["--policy", policy, "--reward", rm, "--prompts", prompts]);
    a.extend(args(&["--out", &out(f), "--device", "cpu"]));
    a.extend(sets(PPO_SETS));
    a.extend(args(extra));
    a
}

pub(crate) fn pretrain(f: &Fixture, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["--data", &f.s("world/pretrain.jsonl"), "--out", &out(f)]);
    a.extend(args(&["--device", "cpu"]));
    a.extend(sets(&[
        "model.n_layer=1",
        "model.n_embd=32",
        "model.n_head=2",
        "model.n_positions=64",
        "block_len=32",
        "train.epochs=1",
    ]));
    a.extend(args(extra));
    a
}

pub(crate) fn evaluate(a_: &str, b: &str, prompts: &str, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["--a", a_, "--b", b, "--prompts", prompts, "--device", "cpu"]);
    if !extra.iter().any(|x| x.starts_with("--max-prompts")) {
        a.extend(args(&["--max-prompts", "4"]));
    }
    if !extra.iter().any(|x| x.starts_with("--max-new-tokens")) {
        a.extend(args(&["--max-new-tokens", "4"]));
    }
    a.extend(args(extra));
    a
}

pub(crate) fn generate(model: &str, extra: &[&str]) -> Vec<String> {
    let mut a = args(&[
        "--model",
        model,
        "--prompt",
        "first of : a b =>",
        "--device",
        "cpu",
    ]);
    if !extra.iter().any(|x| x.starts_with("--max-new-tokens")) {
        a.extend(args(&["--max-new-tokens", "4"]));
    }
    a.extend(args(extra));
    a
}

/// `first` lines of `src` followed by `line`, written to `name`.
pub(crate) fn with_line(f: &Fixture, src: &str, first: usize, line: &str, name: &str) -> String {
    let text = std::fs::read_to_string(f.p(src)).unwrap();
    let mut lines: Vec<&str> = text.lines().take(first).collect();
    lines.push(line);
    f.write(name, &(lines.join("\n") + "\n"))
}
