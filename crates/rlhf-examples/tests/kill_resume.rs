//! kill -9 tests of the training stage binaries (`sft`, `reward`, `ppo`): a run that is
//! SIGKILLed at some point and then continued with `--resume` ends with the same weights, bit
//! for bit, as one that ran straight through; its metrics.jsonl has each step once with the
//! same values; and no temporary or half-written file is left in its run directory.
//!
//! Each test kills at two points: right at the start (the run directory holds its config but no
//! checkpoint yet) and in the middle of training (after some checkpoints, mid-epoch).

mod common;

use common::{
    assert_same_tensors, assert_same_weights, files, kill_when, leftovers, metric_lines,
    metric_series, run_ok, spawn, Fixture,
};
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

/// One stage's kill/resume check: `argv(out)` runs it into the run directory `out`; the
/// uninterrupted run is in `reference`.
struct Case<'a> {
    f: &'a Fixture,
    stage: &'a str,
    argv: &'a dyn Fn(&str) -> Vec<String>,
    reference: &'a str,
    /// Checkpoints (relative paths) that must exist and match.
    compare: &'a [&'a str],
    /// A metric whose steps and values must match.
    key: &'a str,
}

impl Case<'_> {
    /// Runs the stage into `out`, SIGKILLs it when `cond(run dir)` holds, calls
    /// `before_resume(run dir)`, resumes it to the end, and checks it against the reference:
    /// the same files, every saved tensor (weights, optimizer moments) bit for bit, the same
    /// metric values per step, and nothing temporary left.
    fn kill_and_resume(
        &self,
        out: &str,
        cond: &dyn Fn(&Path) -> bool,
        before_resume: &dyn Fn(&Path),
    ) {
        let (f, stage) = (self.f, self.stage);
        let run = f.p(out);
        let log = f.p(&format!("{out}.log"));
        let child = spawn(stage, &(self.argv)(out), &log);
        kill_when(child, &log, TIMEOUT, || cond(&run));
        assert!(
            !run.join("report.json").exists(),
            "{stage}: the run was killed after it finished"
        );
        before_resume(&run);
        let mut a = (self.argv)(out);
        a.push("--resume".into());
        let err = run_ok(stage, &a);
        let reference = f.p(self.reference);
        for c in self.compare {
            assert_same_weights(&reference.join(c), &run.join(c));
        }
        let key = self.key;
        let (want, got) = (metric_series(&reference, key), metric_series(&run, key));
        assert!(!want.is_empty(), "no {key} in the reference metrics");
        assert_eq!(
            got, want,
            "{stage}: {key} differs after kill + resume:\n{err}"
        );
        assert_eq!(
            metric_lines(&run),
            metric_lines(&reference),
            "{stage}: metrics.jsonl has another number of lines after kill + resume"
        );
        let left = leftovers(&run);
        assert!(
            left.is_empty(),
            "{stage}: temporary files left in {}: {left:?}\n{err}",
            run.display()
        );
        let (fa, fb) = (files(&reference), files(&run));
        assert_eq!(fa, fb, "{stage}: the run directories hold different files");
        for file in fa.iter().filter(|p| p.ends_with(".safetensors")) {
            assert_same_tensors(&reference.join(file), &run.join(file));
        }
    }
}

fn started(run: &Path) -> bool {
    run.join("config.toml").exists()
}

fn nothing(_: &Path) {}

/// What a writer killed inside an atomic write leaves (temporary names carry its pid): a
/// half-written file and a half-built directory in `run/sub`.
fn plant_temporaries(run: &Path, sub: &str) {
    let d = run.join(sub);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(".metrics.jsonl.tmp-4242424"), "{\"step\": 1").unwrap();
    std::fs::create_dir_all(d.join(".epoch-9.tmp-4242424")).unwrap();
    std::fs::write(d.join(".epoch-9.tmp-4242424/model.safetensors"), "half").unwrap();
}

#[test]
fn sft_resumes_exactly_after_kill_9() {
    let f = Fixture::new();
    // 93 training demonstrations in micro-batches of 8: 12 steps per epoch; a resumable state
    // every 4 steps and at each epoch's end.
    let argv = |out: &str| {
        f.sft_args(
            out,
            &[
                "train.epochs=2",
                "train.batch_size=8",
                "train.save_every_steps=4",
                "train.max_prompt_tokens=48",
                "train.max_response_tokens=32",
                "train.warmup_steps=2",
                "train.optimizer.lr=1e-3",
                "valid_fraction=0.1",
            ],
        )
    };
    run_ok("sft", &argv("ref"));
    let compare = ["epoch-1", "epoch-2", "best", "state"];
    let key = "loss/train";
    let case = Case {
        f: &f,
        stage: "sft",
        argv: &argv,
        reference: "ref",
        compare: &compare,
        key,
    };
    // At the start: the config is written, no state yet.
    case.kill_and_resume("start", &started, &nothing);
    // In epoch 2 (12 step lines + 1 epoch line + 5 more): after epoch-1/ and a mid-epoch state.
    case.kill_and_resume(
        "mid",
        &|r| metric_lines(r) >= 18,
        // Also as if killed between the two renames that replace state/: only the copy moved
        // aside is left, which the resumed run must find and put back.
        &|r| {
            plant_temporaries(r, "");
            let state = r.join("state");
            if state.exists() {
                std::fs::rename(&state, r.join(".state.old-4242424")).unwrap();
            }
        },
    );
}

#[test]
fn reward_resumes_exactly_after_kill_9() {
    let f = Fixture::new();
    // 93 training rankings in batches of 8 prompts: 12 steps per epoch; `latest/` every 3.
    let argv = |out: &str| {
        f.reward_args(
            out,
            &[
                "train.epochs=2",
                "train.batch_prompts=8",
                "train.save_every_steps=3",
                "max_prompt_tokens=48",
                "max_response_tokens=25",
                "train.optimizer.lr=3e-3",
            ],
        )
    };
    run_ok("reward", &argv("ref"));
    let compare = ["epoch-1", "epoch-2", "final"];
    let key = "loss/rm";
    let case = Case {
        f: &f,
        stage: "reward",
        argv: &argv,
        reference: "ref",
        compare: &compare,
        key,
    };
    case.kill_and_resume("start", &started, &nothing);
    // In epoch 2 (12 step lines + 1 validation line + 4 more).
    case.kill_and_resume("mid", &|r| metric_lines(r) >= 17, &|r| {
        plant_temporaries(r, "epoch-1")
    });
    let bias = |run: &str| {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f.p(run).join("report.json")).unwrap())
                .unwrap();
        v["reward_bias"].as_f64().unwrap()
    };
    assert_eq!(bias("ref"), bias("mid"));
}

#[test]
fn ppo_resumes_exactly_after_kill_9() {
    let f = Fixture::new();
    let argv = |out: &str| {
        f.ppo_args(
            out,
            &[
                "iterations=3",
                "save_every=1",
                "keep_checkpoints=2",
                "ptx_block_len=32",
                "ptx_batch_size=2",
                "ppo.batch_size=8",
                "ppo.minibatch_size=4",
                "ppo.ppo_epochs=1",
                "ppo.max_new_tokens=6",
                "ppo.ptx_coef=0.5",
                "ppo.policy_optimizer.lr=1e-3",
                "ppo.value_optimizer.lr=1e-3",
            ],
        )
    };
    run_ok("ppo", &argv("ref"));
    let compare = [
        "checkpoints/iter-000003/policy",
        "checkpoints/iter-000003/value",
        "checkpoints/iter-000002/policy",
        "checkpoints/iter-000002/value",
    ];
    let key = "objective/kl";
    let case = Case {
        f: &f,
        stage: "ppo",
        argv: &argv,
        reference: "ref",
        compare: &compare,
        key,
    };
    case.kill_and_resume("start", &started, &nothing);
    // After iteration 1's metrics line (its checkpoint may be half written).
    case.kill_and_resume("mid", &|r| metric_lines(r) >= 1, &|r| {
        plant_temporaries(r, "checkpoints")
    });
}
