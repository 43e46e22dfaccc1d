//! Smoke tests of the `pretrain` and `sft` binaries on a tiny toy world: the weights change,
//! runs resume, and bad input gets one clear message and a non-zero exit.

use rlhf_model::{CausalLm, Policy};
use rlhf_toy::{ToyConfig, ToyWorld};
use std::path::Path;
use std::process::Command;

fn world(dir: &Path) {
    let cfg = ToyConfig {
        num_users: 30,
        heldout_users: 5,
        pretrain_docs: 60,
        heldout_pretrain_docs: 10,
        ..Default::default()
    };
    ToyWorld::generate(&cfg).unwrap().save(dir).unwrap();
}

fn run(bin: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin)
        .args(args)
        .env("RLHF_DEVICE", "cpu")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const TINY: &[&str] = &[
    "--device",
    "cpu",
    "--set",
    "model.n_layer=1",
    "--set",
    "model.n_embd=32",
    "--set",
    "model.n_head=2",
    "--set",
    "model.n_positions=64",
    "--set",
    "block_len=32",
    "--set",
    "train.epochs=2",
    "--set",
    "train.batch_size=16",
];

fn weight(dir: &Path) -> tch::Tensor {
    let lm = CausalLm::load(dir, tch::Device::Cpu).unwrap();
    lm.var_store().variables()["transformer.h.0.mlp.c_fc.weight"].copy()
}

#[test]
fn pretrain_then_sft_train_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("world");
    world(&w);
    let pre = tmp.path().join("pre");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut args = vec![
        "--data".to_string(),
        s(&w.join("pretrain.jsonl")),
        "--tokenizer".into(),
        s(&w.join("tokenizer.json")),
        "--out".into(),
        s(&pre),
    ];
    args.extend(TINY.iter().map(|x| x.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, err) = run(env!("CARGO_BIN_EXE_pretrain"), &a);
    assert!(ok, "{err}");
    assert!(
        !err.contains("unknown token"),
        "the toy corpus is in the vocabulary: {err}"
    );
    for f in [
        "config.toml",
        "metrics.jsonl",
        "report.json",
        "best/model.safetensors",
        "epoch-2/config.json",
        "state/optimizer.safetensors",
        "plots/loss.png",
    ] {
        assert!(pre.join(f).exists(), "missing {f}");
    }
    let e1 = weight(&pre.join("epoch-1"));
    let e2 = weight(&pre.join("epoch-2"));
    assert!(
        f64::try_from((&e2 - &e1).abs().max()).unwrap() > 0.0,
        "pretraining changed the weights"
    );

    // Rerunning into the same directory needs --resume; with it, a finished run stays finished.
    let (ok, err) = run(env!("CARGO_BIN_EXE_pretrain"), &a);
    assert!(!ok && err.contains("--resume"), "{err}");
    let best_before = weight(&pre.join("best"));
    let mut resumed = a.clone();
    resumed.push("--resume");
    let (ok, err) = run(env!("CARGO_BIN_EXE_pretrain"), &resumed);
    assert!(ok, "{err}");
    assert!(
        weight(&pre.join("best")).equal(&best_before),
        "a finished run resumes to the same result"
    );

    // `sft` from the pretrained model on the world's demonstrations, into `out`.
    let (init, demos) = (s(&pre.join("best")), s(&w.join("demonstrations.jsonl")));
    let sft_run = |out: &Path, sets: &[&str]| {
        let out = s(out);
        let mut a = vec![
            "--init", &init, "--data", &demos, "--out", &out, "--device", "cpu",
        ];
        for x in sets {
            a.extend(["--set", x]);
        }
        run(env!("CARGO_BIN_EXE_sft"), &a)
    };
    let sft = tmp.path().join("sft");
    let (ok, err) = sft_run(
        &sft,
        &[
            "train.epochs=2",
            "train.batch_size=16",
            "valid_fraction=0.2",
        ],
    );
    assert!(ok, "{err}");
    assert!(err.contains("validation demonstrations"), "{err}");
    assert!(
        !err.contains("also appear in the training data"),
        "the split by user shares no prompt: {err}"
    );
    assert!(
        !err.contains("responses are cut"),
        "nothing is cut with the defaults: {err}"
    );
    // Demonstrations cut by the limits are reported, with the keys that raise them.
    let cut = tmp.path().join("sft-cut");
    let (ok, err) = sft_run(&cut, &["train.epochs=1", "train.max_response_tokens=2"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("responses are cut at train.max_response_tokens = 2"),
        "{err}"
    );
    // Validation data that repeats the training prompts is named, not used silently.
    let leak = s(&tmp.path().join("sft-leak"));
    let (ok, err) = run(
        env!("CARGO_BIN_EXE_sft"),
        &[
            "--init",
            &init,
            "--data",
            &demos,
            "--valid",
            &demos,
            "--out",
            &leak,
            "--device",
            "cpu",
            "--set",
            "train.epochs=1",
            "--set",
            "train.batch_size=16",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("validation prompts (") && err.contains("also appear in the training data"),
        "{err}"
    );
    assert!(!err.contains("unknown token"), "{err}");
    // Words outside the word-level vocabulary are counted, not turned into <unk> silently.
    let text = std::fs::read_to_string(&demos).unwrap();
    let odd = text.replacen("\"response\":\"", "\"response\":\"zebra quokka ", 3);
    assert_ne!(odd, text);
    let odd_demos = tmp.path().join("odd.jsonl");
    std::fs::write(&odd_demos, odd).unwrap();
    let out = s(&tmp.path().join("sft-odd"));
    let a = [
        "--init",
        &init,
        "--data",
        &s(&odd_demos),
        "--out",
        &out,
        "--device",
        "cpu",
    ];
    let (ok, err) = run(
        env!("CARGO_BIN_EXE_sft"),
        &[&a[..], &["--set", "train.epochs=1"]].concat(),
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("odd.jsonl, prompts and responses: 6 of ")
            && err.contains("in 3 of ")
            && err.contains("are the tokenizer's unknown token <unk>"),
        "{err}"
    );
    let after = weight(&sft.join("epoch-2"));
    assert!(
        f64::try_from((&after - weight(&pre.join("best"))).abs().max()).unwrap() > 0.0,
        "SFT changed the weights"
    );

    // `generate --prompts`: one demonstration-format line per prompt, in order; greedy answers
    // in left-padded batches (of 4, then 3) equal the answers to each prompt alone.
    let text = std::fs::read_to_string(w.join("prompts.jsonl")).unwrap();
    let seven: Vec<&str> = text.lines().take(7).collect();
    let prompts = tmp.path().join("seven.jsonl");
    std::fs::write(&prompts, seven.join("\n") + "\n").unwrap();
    let model = s(&sft.join("best"));
    let gen = |extra: &[&str]| {
        let mut a = vec!["--model", &model, "--device", "cpu", "--greedy"];
        a.extend(["--max-new-tokens", "8"]);
        a.extend(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_generate"))
            .args(&a)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        String::from_utf8(out.stdout).unwrap()
    };
    let out = gen(&["--prompts", &s(&prompts), "--batch-size", "4"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    for (line, input) in lines.iter().zip(&seven) {
        let got: serde_json::Value = serde_json::from_str(line).unwrap();
        let want: serde_json::Value = serde_json::from_str(input).unwrap();
        for key in ["id", "user_id", "prompt"] {
            assert_eq!(got[key], want[key], "{line}");
        }
        let prompt = want["prompt"].as_str().unwrap();
        let alone = gen(&["--prompt", prompt]);
        assert_eq!(
            got["response"].as_str().unwrap(),
            alone.trim_end(),
            "{prompt}"
        );
    }
}

#[test]
fn bad_inputs_get_one_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("world");
    world(&w);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": \"a\", \"user_id\": \"u\", \"prompt\": \"p\", \"response\": \"r\"}\n{\"id\": \"b\", \"user_id\": \"u\", \"prompt\": 3}\n").unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "[train]\nepochs = 1\nbatchsize = 4\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--init".into(),
                s(&tmp.path().join("nope")),
                "--data".into(),
                s(&bad),
            ],
            "no such directory",
        ),
        (
            vec!["--init".into(), s(&w), "--data".into(), s(&bad)],
            "no config.json",
        ),
        (
            vec![
                "--init".into(),
                "X".into(),
                "--data".into(),
                s(&bad),
                "--config".into(),
                s(&cfg),
            ],
            "unknown field `batchsize`",
        ),
        (
            vec![
                "--init".into(),
                "X".into(),
                "--data".into(),
                s(&bad),
                "--set".into(),
                "train.epochs=\"two\"".into(),
            ],
            "invalid type",
        ),
        (
            vec![
                "--init".into(),
                "X".into(),
                "--data".into(),
                s(&bad),
                "--set".into(),
                "train.batch_size=0".into(),
            ],
            "batch_size",
        ),
    ];
    for (args, needle) in cases {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["--device", "cpu"]);
        let (ok, err) = run(env!("CARGO_BIN_EXE_sft"), &a);
        assert!(!ok, "{args:?} should fail");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in:\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // A bad JSONL line is named by file, line and field.
    let pre = tmp.path().join("pre");
    let mut args = vec![
        "--data".to_string(),
        s(&w.join("pretrain.jsonl")),
        "--tokenizer".into(),
        s(&w.join("tokenizer.json")),
        "--out".into(),
        s(&pre),
    ];
    args.extend(TINY.iter().map(|x| x.to_string()));
    args.extend(["--set".to_string(), "train.epochs=1".to_string()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(run(env!("CARGO_BIN_EXE_pretrain"), &a).0);
    let (ok, err) = run(
        env!("CARGO_BIN_EXE_sft"),
        &[
            "--init",
            &s(&pre.join("best")),
            "--data",
            &s(&bad),
            "--device",
            "cpu",
            "--out",
            &s(&tmp.path().join("o")),
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("bad.jsonl:2") && err.contains("prompt"),
        "{err}"
    );
}
