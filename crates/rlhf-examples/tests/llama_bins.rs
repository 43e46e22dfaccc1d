//! The stage binaries take a Llama-family checkpoint unchanged: a tiny random Llama (grouped-
//! query attention) with the toy tokenizer goes through `sft`, `reward`, `ppo` (PPO-ptx) and
//! `generate`; each stage trains (weights change) and writes Llama checkpoints.

mod common;
use common::*;
use rlhf_model::{CausalLm, LlamaConfig, Tokenizer};
use rlhf_toy::{toy_tokenizer, TOY_EOS_ID};
use std::path::Path;
use tch::Device;

fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn changed(a: &Path, b: &Path, name: &str) -> f64 {
    let (wa, wb) = (weights(a), weights(b));
    (&wa[name] - &wb[name]).abs().max().double_value(&[])
}

/// A tiny random Llama (grouped-query attention) with the toy tokenizer, saved as `llama/`.
fn save_tiny_llama(f: &Fixture) {
    let tok = toy_tokenizer();
    let eos = TOY_EOS_ID as i64;
    let mut cfg = LlamaConfig::sized(1, 2, 1, 32, 64, tok.get_vocab_size(true) as i64, 128);
    cfg.bos_token_id = Some(eos);
    cfg.eos_token_id = Some(eos);
    cfg.pad_token_id = Some(eos);
    tch::manual_seed(0);
    let mut lm = CausalLm::new(&cfg, Device::Cpu).unwrap();
    lm.set_tokenizer(Tokenizer::from_inner(tok)).unwrap();
    lm.save(f.p("llama")).unwrap();
}

/// One epoch of `sft` from `llama/` into `llama_sft/` with these extra `--set`s; returns stderr.
fn run_sft(f: &Fixture, extra: &[&str]) -> String {
    run_ok("sft", &sft_args(f, extra))
}

/// The arguments of [`run_sft`].
fn sft_args(f: &Fixture, extra: &[&str]) -> Vec<String> {
    let mut a = args(&[
        "--init",
        &f.s("llama"),
        "--data",
        &f.s("world/demonstrations.jsonl"),
        "--out",
        &f.s("llama_sft"),
        "--device",
        "cpu",
    ]);
    a.extend(sets(&[
        "train.epochs=1",
        "train.batch_size=16",
        "train.max_prompt_tokens=48",
        "train.max_response_tokens=32",
    ]));
    a.extend(sets(extra));
    a
}

/// `reward` arguments: one epoch on `rankings.jsonl` from `init` into `llama_rm/`, plus `extra`
/// arguments and `--set`s.
fn reward_args(f: &Fixture, init: &str, extra: &[&str], extra_sets: &[&str]) -> Vec<String> {
    let mut a = args(&[
        "--init",
        init,
        "--data",
        &f.s("rankings.jsonl"),
        "--out",
        &f.s("llama_rm"),
        "--device",
        "cpu",
    ]);
    a.extend(args(extra));
    a.extend(sets(&[
        "train.epochs=1",
        "train.batch_prompts=16",
        "max_prompt_tokens=48",
        "max_response_tokens=25",
        "train.optimizer.lr=3e-3",
    ]));
    a.extend(sets(extra_sets));
    a
}

#[test]
fn sft_reward_ppo_and_generate_take_a_llama() {
    let f = Fixture::new();
    save_tiny_llama(&f);
    let q = "model.layers.0.self_attn.q_proj.weight";

    run_sft(&f, &["train.optimizer.lr=1e-3", "valid_fraction=0.1"]);
    let sft = f.p("llama_sft/best");
    assert_eq!(config(&sft)["model_type"], "llama");
    assert_eq!(config(&sft)["architectures"][0], "LlamaForCausalLM");
    assert!(changed(&f.p("llama"), &sft, q) > 0.0, "sft trained");

    let a = reward_args(
        &f,
        sft.to_str().unwrap(),
        &["--demos", &f.s("world/demonstrations.jsonl")],
        &[],
    );
    run_ok("reward", &a);
    let rm = f.p("llama_rm/final");
    assert_eq!(
        config(&rm)["architectures"][0],
        "LlamaForSequenceClassification"
    );
    assert!(changed(&sft, &rm, q) > 0.0, "the RM trained its body");

    let mut a = args(&[
        "--policy",
        sft.to_str().unwrap(),
        "--reward",
        rm.to_str().unwrap(),
        "--prompts",
        &f.s("world/prompts.jsonl"),
        "--pretrain",
        &f.s("world/pretrain.jsonl"),
        "--out",
        &f.s("ppo"),
        "--device",
        "cpu",
    ]);
    a.extend(sets(&[
        "iterations=2",
        "save_every=1",
        "ptx_block_len=32",
        "ptx_batch_size=2",
        "ppo.batch_size=8",
        "ppo.minibatch_size=4",
        "ppo.ppo_epochs=1",
        "ppo.max_new_tokens=6",
        "ppo.ptx_coef=0.5",
        "ppo.policy_optimizer.lr=1e-3",
        "ppo.value_optimizer.lr=1e-3",
    ]));
    run_ok("ppo", &a);
    let policy = f.p("ppo/checkpoints/iter-000002/policy");
    assert_eq!(config(&policy)["model_type"], "llama");
    assert!(changed(&sft, &policy, q) > 0.0, "PPO trained the policy");

    let out = run(
        "generate",
        &args(&[
            "--model",
            policy.to_str().unwrap(),
            "--prompt",
            "sort these numbers",
            "--greedy",
            "--max-new-tokens",
            "5",
            "--device",
            "cpu",
        ]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sft` with a `[lora]` table trains adapters only: `best/` holds the unchanged base weights
/// plus PEFT's adapter files, and `generate --model BASE --adapter best/` equals
/// `generate --model best/`.
#[test]
fn sft_with_lora_trains_adapters_and_generate_applies_them() {
    let f = Fixture::new();
    save_tiny_llama(&f);
    let err = run_sft(
        &f,
        &[
            "train.optimizer.lr=1e-2",
            "lora.r=4",
            "lora.target_modules=[\"q_proj\", \"v_proj\", \"down_proj\"]",
        ],
    );
    assert!(err.contains("LoRA r = 4 on 3 projections"), "{err}");
    let best = f.p("llama_sft/best");
    assert!(best.join("adapter_config.json").exists());
    assert!(best.join("adapter_model.safetensors").exists());
    // The base weights did not move.
    let (w0, w1) = (weights(&f.p("llama")), weights(&best));
    assert_eq!(w0.len(), w1.len());
    for (k, v) in &w0 {
        assert!(v.equal(&w1[k]), "{k} changed");
    }
    // The adapters trained: every B moved off zero.
    let peft =
        rlhf_model::checkpoint::read_safetensors(&best.join("adapter_model.safetensors")).unwrap();
    assert_eq!(peft.len(), 6);
    for (k, t) in &peft {
        if k.contains("lora_B") {
            assert!(t.abs().max().double_value(&[]) > 0.0, "{k} is still zero");
        }
    }
    let gen = |extra: &[&str]| {
        let mut a = vec![
            "--prompt",
            "sort these numbers",
            "--greedy",
            "--max-new-tokens",
            "6",
        ];
        a.extend(extra);
        let out = run("generate", &args(&a));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let adapted = gen(&["--model", best.to_str().unwrap()]);
    let applied = gen(&[
        "--model",
        &f.s("llama"),
        "--adapter",
        best.to_str().unwrap(),
    ]);
    assert_eq!(adapted, applied);
    // merged/: the best epoch as plain weights, the start of `reward` and `ppo`.
    let merged = f.p("llama_sft/merged");
    assert!(!merged.join("adapter_config.json").exists());
    assert!(CausalLm::load(&merged, Device::Cpu)
        .unwrap()
        .lora()
        .is_none());
    assert_eq!(gen(&["--model", merged.to_str().unwrap()]), adapted);
}

/// `ppo` with a `[lora]` table: the policy trains adapters against itself with adapters off
/// (the base weights never move), checkpoints hold PEFT files, and a run stopped after
/// iteration 1 and resumed ends with the same adapters as an uninterrupted one.
#[test]
fn ppo_with_lora_trains_adapters_against_the_base_and_resumes_exactly() {
    let f = Fixture::new();
    save_tiny_llama(&f);
    let rm = rlhf_model::ScalarModel::reward_from_lm(f.p("llama"), Device::Cpu).unwrap();
    rm.save(f.p("llama-rm")).unwrap();
    let ppo = |out: &str, extra: &[&str]| {
        let mut a = args(&[
            "--policy",
            &f.s("llama"),
            "--reward",
            &f.s("llama-rm"),
            "--prompts",
            &f.s("world/prompts.jsonl"),
            "--out",
            &f.s(out),
            "--device",
            "cpu",
        ]);
        a.extend(args(extra));
        a.extend(sets(&[
            "iterations=2",
            "save_every=1",
            "ppo.batch_size=8",
            "ppo.minibatch_size=4",
            "ppo.ppo_epochs=1",
            "ppo.max_new_tokens=6",
            "ppo.policy_optimizer.lr=1e-2",
            "lora.r=4",
            "lora.target_modules=[\"q_proj\", \"v_proj\"]",
        ]));
        run_ok("ppo", &a)
    };
    let err = ppo("whole", &[]);
    assert!(err.contains("adapters off"), "{err}");
    let policy = f.p("whole/checkpoints/iter-000002/policy");
    assert!(policy.join("adapter_config.json").exists());
    let (w0, w1) = (weights(&f.p("llama")), weights(&policy));
    for (k, v) in &w0 {
        assert!(v.equal(&w1[k]), "{k}: PPO with LoRA moved a base weight");
    }
    let adapters = |dir: &std::path::Path| {
        rlhf_model::checkpoint::read_safetensors(&dir.join("adapter_model.safetensors")).unwrap()
    };
    let whole = adapters(&policy);
    assert!(whole
        .iter()
        .any(|(k, t)| k.contains("lora_B") && t.abs().max().double_value(&[]) > 0.0));
    // The value function (from the plain RM) trains adapters and its head, not its body.
    assert!(err.contains("LoRA on the value function too"), "{err}");
    let value = f.p("whole/checkpoints/iter-000002/value");
    let whole_value = adapters(&value);
    assert!(whole_value.contains_key("base_model.model.score.weight"));
    let (r0, r1) = (weights(&f.p("llama-rm")), weights(&value));
    for (k, v) in &r0 {
        if k != "score.weight" {
            assert!(v.equal(&r1[k]), "{k}: the value's base weight moved");
        }
    }
    ppo("split", &["--stop-after", "1"]);
    ppo("split", &["--resume"]);
    let split = adapters(&f.p("split/checkpoints/iter-000002/policy"));
    for (k, t) in &whole {
        assert!(t.equal(&split[k]), "{k}: resumed run differs");
    }
    let split = adapters(&f.p("split/checkpoints/iter-000002/value"));
    for (k, t) in &whole_value {
        assert!(t.equal(&split[k]), "value {k}: resumed run differs");
    }
}

/// `reward` with a `[lora]` table trains the body's adapters and the score head only;
/// `final/` holds the base body unchanged plus PEFT's files (task `SEQ_CLS`, the head as
/// `modules_to_save`), and loads back as a reward model with its adapters.
#[test]
fn reward_with_lora_trains_adapters_and_the_head() {
    let f = Fixture::new();
    save_tiny_llama(&f);
    let a = reward_args(
        &f,
        &f.s("llama"),
        &[],
        &[
            "lora.r=4",
            "lora.target_modules=[\"q_proj\", \"v_proj\", \"up_proj\"]",
        ],
    );
    let err = run_ok("reward", &a);
    assert!(err.contains("LoRA r = 4 on 3 projections"), "{err}");
    let rm = f.p("llama_rm/final");
    let peft: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rm.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(peft["task_type"], "SEQ_CLS");
    let (w0, w1) = (weights(&f.p("llama")), weights(&rm));
    for (k, v) in &w0 {
        if k != "lm_head.weight" {
            assert!(v.equal(&w1[k]), "{k}: a base weight moved");
        }
    }
    let loaded = rlhf_model::ScalarModel::load(&rm, Device::Cpu).unwrap();
    assert_eq!(loaded.lora().unwrap().r, 4);
    // Asking for adapters on a reward model that has them is refused, with the reason.
    let mut again = a.clone();
    let i = again.iter().position(|x| x == "--init").unwrap();
    again[i + 1] = rm.to_str().unwrap().into();
    let j = again.iter().position(|x| x == "--out").unwrap();
    again[j + 1] = f.s("rm2");
    let out = run("reward", &again);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LoRA adapters already"));
}

/// `generate --model BASE --adapter DIR --greedy` with adapters made by `peft` prints what
/// `transformers` + `peft` print (rlhf-model's tests/fixtures/make_lora_fixture.py).
#[test]
fn generate_applies_a_peft_adapter_as_peft_does() {
    let fx = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rlhf-model/tests/fixtures");
    for kind in ["llama", "gpt2"] {
        let adapter = fx.join(format!("peft-lora-{kind}"));
        let exp: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(adapter.join("expected.json")).unwrap())
                .unwrap();
        let base = fx.join(format!("hf-tiny-{kind}"));
        let n = exp["greedy_max_new_tokens"].to_string();
        let out = run(
            "generate",
            &args(&[
                "--model",
                base.to_str().unwrap(),
                "--adapter",
                adapter.to_str().unwrap(),
                "--prompt",
                exp["prompt"].as_str().unwrap(),
                "--greedy",
                "--max-new-tokens",
                &n,
                "--device",
                "cpu",
            ]),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.strip_suffix('\n').unwrap(),
            exp["greedy_text"].as_str().unwrap(),
            "{kind}"
        );
    }
}

/// `--chat-template-kwarg KEY=VALUE` reaches the chat template of `generate` and `sft` (as
/// `transformers`' `apply_chat_template(..., KEY=VALUE)`): a template that refuses to render
/// unless `enable_thinking` is false fails without it and renders with it; a malformed one is
/// an error naming it.
#[test]
fn chat_template_kwargs_reach_the_template() {
    let f = Fixture::new();
    save_tiny_llama(&f);
    let template = "{% if enable_thinking is not defined or enable_thinking %}\
                    {{ raise_exception('thinking is on') }}{% endif %}\
                    {{ messages[0]['content'] }}";
    std::fs::write(
        f.p("llama/tokenizer_config.json"),
        serde_json::json!({"chat_template": template}).to_string(),
    )
    .unwrap();
    // `generate`, then a training stage: each fails without the argument and with a malformed
    // one, and runs with it (last: a finished `sft` run holds its --out).
    let generate_args = args(&[
        "--model",
        &f.s("llama"),
        "--prompt",
        "red fox",
        "--max-new-tokens",
        "2",
        "--greedy",
        "--device",
        "cpu",
    ]);
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();
    for (bin, base) in [("generate", generate_args), ("sft", sft_args(&f, &[]))] {
        let with = |extra: &[&str]| {
            let mut a = base.clone();
            a.extend(args(extra));
            run(bin, &a)
        };
        let off = with(&[]);
        assert!(
            !off.status.success() && err(&off).contains("thinking is on"),
            "{bin}: {}",
            err(&off)
        );
        let bad = with(&["--chat-template-kwarg", "enable_thinking"]);
        assert!(
            !bad.status.success() && err(&bad).contains("KEY=VALUE"),
            "{bin}: {}",
            err(&bad)
        );
        let on = with(&["--chat-template-kwarg", "enable_thinking=false"]);
        assert!(on.status.success(), "{bin}: {}", err(&on));
        assert!(
            err(&on).contains(r#"template variables: {"enable_thinking":false}"#),
            "{bin}: {}",
            err(&on)
        );
    }
}
