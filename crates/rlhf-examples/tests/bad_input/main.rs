//! Bad input to the stage binaries: each case exits non-zero with one clear message on stderr
//! that names the problem (file, line, field, flag or key) and how to fix it, without a panic,
//! and leaves no run output behind. Also: `--help` of every stage binary.
//!
//! Some cases are also covered by the per-binary tests (lm_bins.rs, reward_bin.rs,
//! ppo_bin.rs); here every case of the list is checked, across the binaries that take such
//! input.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

use common::{args, files, run, run_ok, Fixture};
use helpers::*;

#[test]
fn every_stage_binary_prints_usage_with_help() {
    for bin in ["pretrain", "sft", "reward", "ppo", "evaluate", "generate"] {
        let o = run(bin, &args(&["--help"]));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{bin} --help failed");
        assert!(
            text.contains("Usage:") && text.contains("--help"),
            "{bin} --help:\n{text}"
        );
        assert!(o.stderr.is_empty(), "{bin} --help wrote to stderr");
    }
}

// --- Missing files -------------------------------------------------------------------------

#[test]
fn missing_data_file() {
    let f = fixture();
    let nope = f.s("nope.jsonl");
    let need = ["nope.jsonl", "no such file"];
    fails("sft", &sft(&f, &f.s("sft"), &nope, &[]), &need);
    let a = reward(&f, &f.s("sft"), &f.s("rankings.jsonl"), &["--demos", &nope]);
    fails("reward", &a, &need);
    fails(
        "evaluate",
        &evaluate(&f.s("sft"), &f.s("sft"), &nope, &[]),
        &need,
    );
    // ppo: see ppo_bin.rs (bad_inputs_fail_cleanly) and ppo_bad_prompts_leave_no_run.
    let mut a = pretrain(&f, &["--tokenizer", &f.s("world/tokenizer.json")]);
    a[1] = nope.clone();
    fails("pretrain", &a, &need);
}

#[test]
fn missing_checkpoint_dir() {
    let f = fixture();
    let nope = f.s("no-ckpt");
    let demos = f.s("world/demonstrations.jsonl");
    let prompts = f.s("world/prompts.jsonl");
    let need = ["no-ckpt", "no such directory"];
    fails(
        "sft",
        &sft(&f, &nope, &demos, &[]),
        &["--init", need[0], need[1]],
    );
    let a = sft(&f, &f.s("sft"), &demos, &["--reward", &nope]);
    fails("sft", &a, &["--reward", need[0], need[1]]);
    let a = reward(&f, &nope, &f.s("rankings.jsonl"), &[]);
    fails("reward", &a, &["--init", need[0], need[1]]);
    let a = ppo(&f, &f.s("sft"), &nope, &prompts, &[]);
    fails("ppo", &a, &["--reward", need[0], need[1]]);
    let a = evaluate(&f.s("sft"), &nope, &prompts, &[]);
    fails("evaluate", &a, &["--b", need[0], need[1]]);
    fails(
        "generate",
        &generate(&nope, &[]),
        &["--model", need[0], need[1]],
    );
    // A directory that is not a checkpoint.
    let a = sft(&f, &f.s("world"), &demos, &[]);
    fails(
        "sft",
        &a,
        &["--init", "no config.json", "not a checkpoint directory"],
    );
}

#[test]
fn missing_config_file() {
    let f = fixture();
    let nope = f.s("nope.toml");
    let need = ["cannot read config file", "nope.toml"];
    let demos = f.s("world/demonstrations.jsonl");
    let a = sft(&f, &f.s("sft"), &demos, &["--config", &nope]);
    fails("sft", &a, &need);
    let a = reward(
        &f,
        &f.s("sft"),
        &f.s("rankings.jsonl"),
        &["--config", &nope],
    );
    fails("reward", &a, &need);
    let a = ppo(
        &f,
        &f.s("sft"),
        &f.s("rm"),
        &f.s("world/prompts.jsonl"),
        &["--config", &nope],
    );
    fails("ppo", &a, &need);
    let a = pretrain(
        &f,
        &[
            "--tokenizer",
            &f.s("world/tokenizer.json"),
            "--config",
            &nope,
        ],
    );
    fails("pretrain", &a, &need);
}

#[test]
fn missing_tokenizer_file() {
    let f = fixture();
    let a = pretrain(&f, &["--tokenizer", &f.s("nope.json")]);
    fails(
        "pretrain",
        &a,
        &["--tokenizer", "nope.json", "No such file"],
    );
}

// --- Bad JSONL: the message names the file, the line and the field ---------------------------

#[test]
fn malformed_json_line() {
    let f = fixture();
    let bad = with_line(
        &f,
        "world/demonstrations.jsonl",
        2,
        "{\"id\": \"x\", \"user_id\": \"u\", \"prompt\": \"p\",",
        "malformed.jsonl",
    );
    let a = sft(&f, &f.s("sft"), &bad, &[]);
    fails(
        "sft",
        &a,
        &[
            "malformed.jsonl:3",
            "malformed JSON",
            "one JSON object per line",
        ],
    );
}

#[test]
fn missing_field() {
    let f = fixture();
    let bad = with_line(
        &f,
        "rankings.jsonl",
        2,
        "{\"id\": \"x\", \"user_id\": \"u\", \"prompt\": \"p\", \"responses\": [\"a\", \"b\"]}",
        "nofield.jsonl",
    );
    let a = reward(&f, &f.s("sft"), &bad, &[]);
    fails(
        "reward",
        &a,
        &[
            "nofield.jsonl:3",
            "field `ranking`",
            "missing",
            "best first",
        ],
    );
    let bad = with_line(
        &f,
        "world/prompts.jsonl",
        4,
        "{\"id\": \"x\", \"prompt\": \"p\"}",
        "nouser.jsonl",
    );
    let a = evaluate(&f.s("sft"), &f.s("sft"), &bad, &[]);
    fails(
        "evaluate",
        &a,
        &["nouser.jsonl:5", "field `user_id`", "missing"],
    );
}

#[test]
fn wrong_type_field() {
    let f = fixture();
    let bad = with_line(
        &f,
        "world/prompts.jsonl",
        1,
        "{\"id\": \"x\", \"user_id\": \"u\", \"prompt\": [\"p\"]}",
        "prompt-array.jsonl",
    );
    let a = evaluate(&f.s("sft"), &f.s("sft"), &bad, &[]);
    fails(
        "evaluate",
        &a,
        &[
            "prompt-array.jsonl:2",
            "field `prompt`",
            "expected a non-empty string",
            "found an array",
        ],
    );
    let bad = with_line(
        &f,
        "world/demonstrations.jsonl",
        2,
        "{\"id\": \"x\", \"user_id\": \"u\", \"prompt\": \"p\", \"response\": 5}",
        "response-number.jsonl",
    );
    let a = sft(&f, &f.s("sft"), &bad, &[]);
    fails(
        "sft",
        &a,
        &[
            "response-number.jsonl:3",
            "field `response`",
            "found number 5",
        ],
    );
    let bad = with_line(
        &f,
        "rankings.jsonl",
        0,
        "{\"id\": \"x\", \"user_id\": \"u\", \"prompt\": \"p\", \"responses\": [\"a\", \"b\"], \
         \"ranking\": [0, \"1\"]}",
        "ranking-string.jsonl",
    );
    let a = reward(&f, &f.s("sft"), &bad, &[]);
    fails(
        "reward",
        &a,
        &[
            "ranking-string.jsonl:1",
            "field `ranking[1]`",
            "integer index",
        ],
    );
}

// --- Config keys that do not exist or have the wrong type ----------------------------------

#[test]
fn unknown_key_in_toml_config() {
    let f = fixture();
    let cfg = f.write("unknown.toml", "[train]\nepochs = 1\nbogus_key = 3\n");
    let a = reward(&f, &f.s("sft"), &f.s("rankings.jsonl"), &["--config", &cfg]);
    fails(
        "reward",
        &a,
        &[
            "unknown.toml",
            "line 3",
            "unknown field `bogus_key`",
            "expected one of",
        ],
    );
}

#[test]
fn wrong_type_in_toml_config() {
    let f = fixture();
    let cfg = f.write("wrongtype.toml", "[train]\nepochs = \"two\"\n");
    let demos = f.s("world/demonstrations.jsonl");
    let a = sft(&f, &f.s("sft"), &demos, &["--config", &cfg]);
    fails(
        "sft",
        &a,
        &["wrongtype.toml", "line 2", "invalid type", "expected usize"],
    );
}

#[test]
fn unknown_key_in_set() {
    let f = fixture();
    let demos = f.s("world/demonstrations.jsonl");
    let a = sft(&f, &f.s("sft"), &demos, &["--set", "train.epoch=2"]);
    fails(
        "sft",
        &a,
        &[
            "--set",
            "unknown field `epoch`",
            "expected one of",
            "`epochs`",
        ],
    );
    let a = sft(&f, &f.s("sft"), &demos, &["--set", "train"]);
    fails("sft", &a, &["\"train\" is not key=value"]);
}

#[test]
fn wrong_type_in_set() {
    let f = fixture();
    let a = ppo(
        &f,
        &f.s("sft"),
        &f.s("rm"),
        &f.s("world/prompts.jsonl"),
        &["--set", "ppo.batch_size=\"eight\""],
    );
    fails(
        "ppo",
        &a,
        &["--set", "invalid type", "expected usize", "ppo.batch_size"],
    );
    let a = reward(
        &f,
        &f.s("sft"),
        &f.s("rankings.jsonl"),
        &["--set", "train.optimizer.lr=[1]"],
    );
    fails("reward", &a, &["--set", "invalid type", "lr"]);
    // The flat AdamW keys of earlier versions say where they went.
    let a = reward(
        &f,
        &f.s("sft"),
        &f.s("rankings.jsonl"),
        &["--set", "train.lr=1e-3"],
    );
    fails(
        "reward",
        &a,
        &["moved to [train.optimizer]", "unknown field `lr`"],
    );
}

// --- Checkpoints of the wrong kind ---------------------------------------------------------

#[test]
fn language_model_where_a_reward_model_is_expected() {
    let f = fixture();
    let want = "language-model checkpoint";
    let a = ppo(
        &f,
        &f.s("sft"),
        &f.s("sft"),
        &f.s("world/prompts.jsonl"),
        &[],
    );
    fails("ppo", &a, &["--reward", want]);
    let demos = f.s("world/demonstrations.jsonl");
    let a = sft(&f, &f.s("sft"), &demos, &["--reward", &f.s("sft")]);
    fails("sft", &a, &["--reward", want, "takes a reward model"]);
    let a = evaluate(
        &f.s("sft"),
        &f.s("sft"),
        &f.s("world/prompts.jsonl"),
        &["--reward", &f.s("sft")],
    );
    fails("evaluate", &a, &["--reward", want, "takes a reward model"]);
}

#[test]
fn reward_model_where_a_language_model_is_expected() {
    let f = fixture();
    let rm = f.s("rm");
    let want = "reward-model checkpoint";
    let demos = f.s("world/demonstrations.jsonl");
    let prompts = f.s("world/prompts.jsonl");
    fails(
        "sft",
        &sft(&f, &rm, &demos, &[]),
        &["--init", want, "takes a language model"],
    );
    let a = evaluate(&rm, &f.s("sft"), &prompts, &[]);
    fails("evaluate", &a, &["--a", want, "takes a language model"]);
    fails(
        "generate",
        &generate(&rm, &[]),
        &["--model", want, "takes a language model"],
    );
    let a = pretrain(&f, &["--init", &rm]);
    fails("pretrain", &a, &["--init", want, "takes a language model"]);
    let a = ppo(&f, &rm, &rm, &prompts, &[]);
    fails("ppo", &a, &["--policy", "language model was expected"]);
}

#[test]
fn value_function_where_a_reward_model_is_expected() {
    let f = fixture();
    let vf = f.s("value");
    let want = "value-function checkpoint";
    let demos = f.s("world/demonstrations.jsonl");
    let prompts = f.s("world/prompts.jsonl");
    let a = sft(&f, &f.s("sft"), &demos, &["--reward", &vf]);
    fails("sft", &a, &["--reward", want, "takes a reward model"]);
    let a = evaluate(&f.s("sft"), &f.s("sft"), &prompts, &["--reward", &vf]);
    fails("evaluate", &a, &["--reward", want, "takes a reward model"]);
    let a = reward(&f, &vf, &f.s("rankings.jsonl"), &[]);
    fails("reward", &a, &["--init", want]);
    let a = ppo(&f, &f.s("sft"), &vf, &prompts, &[]);
    fails(
        "ppo",
        &a,
        &["--reward", "Value checkpoint", "pass a reward model"],
    );
    let a = generate(&vf, &[]);
    fails("generate", &a, &["--model", want, "takes a language model"]);
}

// --- Tokenizers that do not match the model ------------------------------------------------

#[test]
fn tokenizer_larger_than_the_model_vocab() {
    let f = fixture();
    let mism = f.s("mism");
    let want = [
        "tokenizer.json has 257 tokens but the model's vocab_size is 145",
        "does not belong to this model",
    ];
    let demos = f.s("world/demonstrations.jsonl");
    let prompts = f.s("world/prompts.jsonl");
    fails("sft", &sft(&f, &mism, &demos, &[]), &want);
    fails("generate", &generate(&mism, &[]), &want);
    fails(
        "evaluate",
        &evaluate(&mism, &f.s("sft"), &prompts, &[]),
        &want,
    );
    let a = reward(&f, &mism, &f.s("rankings.jsonl"), &[]);
    fails("reward", &a, &want);
    fails("ppo", &ppo(&f, &mism, &f.s("rm"), &prompts, &[]), &want);
}

#[test]
fn reward_model_with_another_tokenizer() {
    let f = fixture();
    let demos = f.s("world/demonstrations.jsonl");
    let prompts = f.s("world/prompts.jsonl");
    let want = ["--reward", "tokenizer", "differs from the policy's"];
    // Was a libtorch "index out of range" panic in evaluate, and an error after a whole
    // epoch of training in sft.
    let a = sft(&f, &f.s("sft"), &demos, &["--reward", &f.s("byte_rm")]);
    fails("sft", &a, &want);
    let a = evaluate(
        &f.s("byte_sft"),
        &f.s("byte_sft"),
        &prompts,
        &["--reward", &f.s("rm")],
    );
    fails("evaluate", &a, &want);
    // A policy with more tokens than the RM has rows.
    let a = ppo(&f, &f.s("byte_sft"), &f.s("rm"), &prompts, &[]);
    fails(
        "ppo",
        &a,
        &["--reward has vocab_size 145 but the policy 257"],
    );
    // Two models to compare that do not share a tokenizer.
    let a = evaluate(&f.s("sft"), &f.s("byte_sft"), &prompts, &[]);
    fails("evaluate", &a, &["--a and --b use different tokenizers"]);
}

#[test]
fn ppo_reward_model_with_another_tokenizer() {
    let f = fixture();
    let a = ppo(
        &f,
        &f.s("sft"),
        &f.s("byte_rm"),
        &f.s("world/prompts.jsonl"),
        &[],
    );
    fails("ppo", &a, &["--reward", "tokenizer"]);
}

// --- Out-of-range settings -----------------------------------------------------------------

#[test]
fn rankings_with_fewer_than_two_responses() {
    let f = fixture();
    let bad = with_line(
        &f,
        "rankings.jsonl",
        3,
        "{\"id\": \"a\", \"user_id\": \"u\", \"prompt\": \"p\", \"responses\": [\"r\"], \
         \"ranking\": [0]}",
        "k1.jsonl",
    );
    let a = reward(&f, &f.s("sft"), &bad, &[]);
    fails(
        "reward",
        &a,
        &[
            "k1.jsonl:4",
            "field `responses`",
            "at least 2 responses (K >= 2)",
            "found 1",
        ],
    );
}

#[test]
fn rankings_repeated_across_data_files() {
    let f = fixture();
    // The same rankings under two names: each id would count twice.
    let copy = f.write(
        "copy.jsonl",
        &std::fs::read_to_string(f.p("rankings.jsonl")).unwrap(),
    );
    let a = reward(&f, &f.s("sft"), &f.s("rankings.jsonl"), &["--data", &copy]);
    fails(
        "reward",
        &a,
        &[
            "copy.jsonl: id ",
            "is also in",
            "rankings.jsonl",
            "lenient = true",
        ],
    );
}

#[test]
fn ranking_that_is_not_a_permutation() {
    let f = fixture();
    let bad = with_line(
        &f,
        "rankings.jsonl",
        0,
        "{\"id\": \"a\", \"user_id\": \"u\", \"prompt\": \"p\", \"responses\": [\"x\", \"y\", \
         \"z\"], \"ranking\": [0, 2, 0]}",
        "perm.jsonl",
    );
    let a = reward(&f, &f.s("sft"), &bad, &[]);
    fails(
        "reward",
        &a,
        &["perm.jsonl:1", "field `ranking`", "permutation"],
    );
}

#[test]
fn ppo_batch_not_divisible_by_minibatch() {
    let f = fixture();
    let a = ppo(
        &f,
        &f.s("sft"),
        &f.s("rm"),
        &f.s("world/prompts.jsonl"),
        &[
            "--set",
            "ppo.batch_size=10",
            "--set",
            "ppo.minibatch_size=4",
        ],
    );
    fails(
        "ppo",
        &a,
        &[
            "batch_size 10 is not a multiple of minibatch_size 4",
            "set minibatch_size",
        ],
    );
}

#[test]
fn zero_epochs() {
    let f = fixture();
    let demos = f.s("world/demonstrations.jsonl");
    let a = sft(&f, &f.s("sft"), &demos, &["--set", "train.epochs=0"]);
    fails("sft", &a, &["epochs must be at least 1"]);
    let a = reward(
        &f,
        &f.s("sft"),
        &f.s("rankings.jsonl"),
        &["--set", "train.epochs=0"],
    );
    fails("reward", &a, &["epochs is 0", "expected at least 1"]);
    let a = pretrain(
        &f,
        &[
            "--tokenizer",
            &f.s("world/tokenizer.json"),
            "--set",
            "train.epochs=0",
        ],
    );
    fails("pretrain", &a, &["epochs must be at least 1"]);
    let a = ppo(
        &f,
        &f.s("sft"),
        &f.s("rm"),
        &f.s("world/prompts.jsonl"),
        &["--set", "ppo.ppo_epochs=0"],
    );
    fails("ppo", &a, &["ppo_epochs must be at least 1"]);
}

#[test]
fn ppo_zero_iterations() {
    let f = fixture();
    let a = ppo(
        &f,
        &f.s("sft"),
        &f.s("rm"),
        &f.s("world/prompts.jsonl"),
        &["--set", "iterations=0"],
    );
    fails("ppo", &a, &["iterations"]);
}

#[test]
fn negative_learning_rate() {
    let f = fixture();
    let want = "lr must be positive, got -0.001";
    let demos = f.s("world/demonstrations.jsonl");
    let a = sft(
        &f,
        &f.s("sft"),
        &demos,
        &["--set", "train.optimizer.lr=-1e-3"],
    );
    let err = fails("sft", &a, &["optimizer", want]);
    // An optimizer setting is not the model's config.
    assert!(!err.contains("model config"), "{err}");
    let a = reward(
        &f,
        &f.s("sft"),
        &f.s("rankings.jsonl"),
        &["--set", "train.optimizer.lr=-1e-3"],
    );
    fails("reward", &a, &["invalid reward-model config", want]);
    let a = ppo(
        &f,
        &f.s("sft"),
        &f.s("rm"),
        &f.s("world/prompts.jsonl"),
        &["--set", "ppo.value_optimizer.lr=-1e-3"],
    );
    fails("ppo", &a, &["value_optimizer", want]);
}

#[test]
fn demonstrations_longer_than_the_context() {
    let f = fixture();
    // The toy model has n_positions 80; the defaults keep up to 128 + 128 tokens.
    let long = vec!["apple"; 150].join(" ");
    let mut text = String::new();
    for i in 0..10 {
        text += &serde_json::json!({"id": format!("d{i}"), "user_id": format!("u{i}"),
            "prompt": long, "response": long})
        .to_string();
        text.push('\n');
    }
    let data = f.write("long.jsonl", &text);
    let mut a = args(&["--init", &f.s("sft"), "--data", &data, "--out", &out(&f)]);
    a.extend(args(&["--device", "cpu", "--set", "train.epochs=1"]));
    fails(
        "sft",
        &a,
        &[
            "long.jsonl",
            "takes 256 tokens",
            "n_positions 80",
            "--set train.max_prompt_tokens=40 --set train.max_response_tokens=40",
        ],
    );
}

#[test]
fn rankings_longer_than_the_context() {
    let f = fixture();
    // The toy model has n_positions 80. Limits that sum to more are fine while the rankings
    // fit (the RM used to refuse the limits themselves, so its defaults failed on such a
    // model); a ranking that does not fit is named.
    let wide = [
        "--set",
        "max_prompt_tokens=128",
        "--set",
        "max_response_tokens=128",
    ];
    let a = reward(&f, &f.s("sft"), &f.s("rankings.jsonl"), &wide);
    let o = run("reward", &a);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "short rankings, long limits: {err}");
    let long = vec!["apple"; 150].join(" ");
    let line = serde_json::json!({"id": "long-one", "user_id": "u", "prompt": long,
        "responses": ["red", long], "ranking": [0, 1]})
    .to_string();
    let bad = with_line(&f, "rankings.jsonl", 3, &line, "long.jsonl");
    let a = reward(&f, &f.s("sft"), &bad, &wide);
    fails(
        "reward",
        &a,
        &[
            "long.jsonl: ranking \"long-one\" takes 130 tokens (128 of prompt, 2 of response)",
            "n_positions 80",
            "--set max_prompt_tokens=40 --set max_response_tokens=40",
        ],
    );
}

#[test]
fn generation_settings_out_of_range() {
    let f = fixture();
    let sft_dir = f.s("sft");
    let prompts = f.s("world/prompts.jsonl");
    let cases: &[(&[&str], &[&str])] = &[
        (&["--temperature=-1"], &["--temperature is -1", "positive"]),
        (&["--top-p=2"], &["--top-p is 2", "(0, 1]"]),
        (&["--top-k=0"], &["--top-k is 0", "at least 1"]),
        (
            &["--max-new-tokens=0"],
            &["--max-new-tokens is 0", "at least 1"],
        ),
        // The prompt and the answer must fit the model's context (80), which the model would
        // only find out after generating up to it.
        (
            &["--max-new-tokens=90"],
            &[
                "--max-new-tokens is 90",
                "context (n_positions) is 80",
                "or less",
            ],
        ),
    ];
    for (extra, want) in cases {
        fails("generate", &generate(&sft_dir, extra), want);
    }
    // A prompt longer than the context, given with `flag` (--prompt or --prompts).
    let too_long = |flag: &str, value: &str, want: &[&str]| {
        let mut a = args(&["--model", &sft_dir, flag, value, "--device", "cpu"]);
        a.extend(args(&["--max-new-tokens", "4"]));
        fails("generate", &a, want);
    };
    let long = vec!["apple"; 100].join(" ");
    let want = [
        "the prompt is 100 tokens long",
        "n_positions) is 80",
        "shorten it",
    ];
    too_long("--prompt", &long, &want);
    // With --prompts, the prompt that does not fit is named.
    let line = serde_json::json!({"id": "long-one", "user_id": "u", "prompt": long}).to_string();
    let file = with_line(&f, "world/prompts.jsonl", 2, &line, "long_prompts.jsonl");
    let want = [
        "prompt \"long-one\" of",
        "long_prompts.jsonl is 100 tokens long",
        "shorten it",
    ];
    too_long("--prompts", &file, &want);
    let a = args(&["--model", &sft_dir, "--prompts", &file, "--batch-size", "0"]);
    fails("generate", &a, &["--batch-size is 0"]);
    let a = evaluate(&sft_dir, &sft_dir, &prompts, &["--max-new-tokens", "90"]);
    fails(
        "evaluate",
        &a,
        &[
            "--max-new-tokens 90 leaves no room for the prompt",
            "lower it",
        ],
    );
    let a = evaluate(&sft_dir, &sft_dir, &prompts, &["--max-prompts", "0"]);
    fails("evaluate", &a, &["--max-prompts is 0"]);
    let a = ppo(
        &f,
        &sft_dir,
        &f.s("rm"),
        &prompts,
        &[
            "--set",
            "max_prompt_tokens=70",
            "--set",
            "ppo.max_new_tokens=32",
        ],
    );
    fails("ppo", &a, &["n_positions", "lower one of them"]);
}

// --- No partial output ---------------------------------------------------------------------

#[test]
fn ppo_bad_prompts_leave_no_run() {
    let f = fixture();
    let bad = with_line(
        &f,
        "world/prompts.jsonl",
        1,
        "{\"id\": \"x\", \"user_id\": \"u\", \"prompt\": [\"p\"]}",
        "prompt-array.jsonl",
    );
    let a = ppo(&f, &f.s("sft"), &f.s("rm"), &bad, &[]);
    fails("ppo", &a, &["prompt-array.jsonl:2", "field `prompt`"]);
}

#[test]
fn misspelled_world_key_of_the_pipeline() {
    let f = Fixture::new();
    let out = out(&f);
    let a = args(&["--out", &out, "--set", "world.num_user=40"]);
    fails(
        "pipeline",
        &a,
        &["--set", "unknown field `num_user`", "`num_users`"],
    );
    let cfg = f.write("world.toml", "[world.style_weights]\nplane = 1.0\n");
    let a = args(&["--out", &out, "--config", &cfg]);
    fails(
        "pipeline",
        &a,
        &["world.toml", "unknown field `plane`", "`plain`"],
    );
}

#[test]
fn ppo_stop_after_zero() {
    let f = fixture();
    let a = ppo(
        &f,
        &f.s("sft"),
        &f.s("rm"),
        &f.s("world/prompts.jsonl"),
        &["--stop-after", "0"],
    );
    fails("ppo", &a, &["--stop-after 0", "give K >= 1"]);
}

#[test]
fn a_checkpoint_is_not_written_over_a_users_folder() {
    let f = Fixture::new();
    let dir = f.p("mine");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "keep").unwrap();
    let a = args(&["--out", &f.s("mine"), "--size", "byte-tiny"]);
    let o = run("init-model", &a);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    // One message, said once (no "Caused by" repeating it).
    assert_eq!(err.matches("refusing to replace it").count(), 1, "{err}");
    assert!(
        err.contains("\"notes.txt\"") && !err.contains("panicked"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"keep");
    assert_eq!(files(&dir).len(), 1, "{:?}", files(&dir));
    // An earlier checkpoint there is replaced.
    let a = args(&["--out", &f.s("ckpt"), "--size", "byte-tiny"]);
    run_ok("init-model", &a);
    run_ok("init-model", &a);
}

#[test]
fn a_run_does_not_go_into_a_folder_with_other_files() {
    let f = fixture();
    let dir = f.p("mine");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "keep").unwrap();
    let mut a = sft(&f, &f.s("sft"), &f.s("world/demonstrations.jsonl"), &[]);
    let i = a.iter().position(|x| x == "--out").unwrap();
    a[i + 1] = f.s("mine");
    let pipeline = args(&["--out", &f.s("mine"), "--set", "world.num_users=40"]);
    for (bin, a) in [("sft", &a), ("pipeline", &pipeline)] {
        let o = run(bin, a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{bin}: {err}");
        assert!(
            err.contains("holds other files (\"notes.txt\", ...) and no run"),
            "{bin}: {err}"
        );
        assert_eq!(files(&dir), ["notes.txt"], "{bin}");
    }
    // An empty folder is a new run's.
    std::fs::remove_file(dir.join("notes.txt")).unwrap();
    run_ok("sft", &a);
}
