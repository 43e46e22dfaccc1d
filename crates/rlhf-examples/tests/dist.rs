//! Data parallelism under `mpirun` (built with `--features mpi`): 2 ranks with global batch B
//! end with the weights of one process with batch B, every rank holding the same weights (the
//! trainers check that at each epoch end), and only rank 0 writes. `./run test` enables the
//! feature when Open MPI is installed (`scripts/setup.sh --with-mpi`).

#![cfg(feature = "mpi")]

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// The command `mpirun -np N` on one of the stage binaries, one libtorch thread per rank.
fn mpirun_command(np: usize, name: &str, args: &[String]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "-np",
        &np.to_string(),
        "--oversubscribe",
        "--bind-to",
        "none",
    ])
    .args(["-x", "RLHF_DEVICE=cpu", "-x", "RUST_LOG=warn"])
    .arg(bin(name))
    .args(args)
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    .env("RLHF_DEVICE", "cpu")
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null());
    cmd
}

/// Runs `mpirun -np N` on one of the stage binaries to the end.
fn mpirun(np: usize, name: &str, args: &[String]) -> Output {
    mpirun_command(np, name, args)
        .output()
        .expect("mpirun starts (apt install openmpi-bin, or scripts/setup.sh --with-mpi)")
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `mpirun -np 2` on a stage binary in the background.
fn spawn_mpirun(name: &str, args: &[String], stdout: Stdio, stderr: Stdio) -> Child {
    mpirun_command(2, name, args)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("mpirun starts")
}

/// Polls `ready` until it says the run got far enough, then SIGKILLs mpirun's rank 1; mpirun
/// must then fail.
fn kill_rank_one_when(mut child: Child, timeout_s: u64, mut ready: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "mpirun ended first");
        assert!(t0.elapsed().as_secs() < timeout_s, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let ranks = children(child.id());
    assert_eq!(ranks.len(), 2, "mpirun's ranks: {ranks:?}");
    Command::new("kill")
        .args(["-9", &ranks[1].to_string()])
        .status()
        .unwrap();
    assert!(
        !child.wait().unwrap().success(),
        "mpirun fails when a rank dies"
    );
}

/// The largest |a - b| over the weights of two checkpoint directories.
fn max_weight_diff(a: &Path, b: &Path) -> f64 {
    worst_weight_diff(a, b, &[], false).0
}

/// The largest |difference| between the weights of a 1-process and an N-rank run (whose sums
/// run in other orders), and the variable that holds it, leaving out the variables named in
/// `noise_only` and every layer's key bias (the middle third of `attn.c_attn.bias`: it adds
/// `q . b_k` to all of a query's scores alike, which softmax ignores, so its true gradient is
/// 0 and it gets rounding noise only, which AdamW turns into steps of about lr whatever their
/// size; measured on an AVX-512 CPU: 1.6e-4 apart in the RM test below at lr 3e-3, every
/// other weight within 1.3e-7).
fn ranks_weight_diff(a: &Path, b: &Path, noise_only: &[&str]) -> (f64, String) {
    worst_weight_diff(a, b, noise_only, true)
}

fn worst_weight_diff(a: &Path, b: &Path, skip: &[&str], skip_key_bias: bool) -> (f64, String) {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    wa.iter()
        .filter(|(n, _)| !skip.contains(&n.as_str()))
        .map(|(n, x)| {
            let diff = (x.to_kind(tch::Kind::Double) - wb[n].to_kind(tch::Kind::Double)).abs();
            let diff = if skip_key_bias && n.ends_with("attn.c_attn.bias") {
                let e = diff.size()[0] / 3;
                tch::Tensor::cat(&[diff.narrow(0, 0, e), diff.narrow(0, 2 * e, e)], 0)
            } else {
                diff
            };
            (diff.max().double_value(&[]), n.clone())
        })
        .fold((0.0, String::new()), |w, x| if x.0 > w.0 { x } else { w })
}

fn world_size(run: &Path) -> u64 {
    let text = std::fs::read_to_string(run.join("report.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["world_size"]
        .as_u64()
        .expect("report.json has world_size")
}

#[test]
fn sft_on_two_ranks_equals_one_process() {
    let f = Fixture::new();
    let argv = |out: &str| {
        // Steps of 16 sequences (two micro-batches of 8 accumulated); no dropout, whose masks
        // are drawn per rank.
        f.sft_args(
            out,
            &[
                "train.residual_dropout=off",
                "train.epochs=2",
                "train.batch_size=8",
                "train.grad_accum_steps=2",
                "train.optimizer.lr=3e-3",
                "valid_fraction=0.2",
            ],
        )
    };
    run_ok("sft", &argv("one"));
    let two = mpirun(2, "sft", &argv("two"));
    ok(&two, "mpirun -np 2 sft");
    let (d, name) = ranks_weight_diff(&f.p("one/epoch-2"), &f.p("two/epoch-2"), &[]);
    assert!(
        d <= 1e-4,
        "2 ranks differ from 1 process by {d} (in {name})"
    );
    assert!(
        max_weight_diff(&f.p("sft"), &f.p("two/epoch-2")) > 1e-3,
        "training moved the weights"
    );
    assert_eq!(world_size(&f.p("one")), 1);
    assert_eq!(world_size(&f.p("two")), 2);
    // Rank 1 wrote nothing of its own: one metrics line per step, as one process writes.
    assert_eq!(metric_lines(&f.p("two")), metric_lines(&f.p("one")));

    // Resumable: a finished 2-rank run resumes (every rank reads the state) and stays put.
    let before = f.p("best-before");
    std::fs::create_dir_all(&before).unwrap();
    std::fs::copy(
        f.p("two/best/model.safetensors"),
        before.join("model.safetensors"),
    )
    .unwrap();
    let mut again = argv("two");
    again.push("--resume".into());
    ok(&mpirun(2, "sft", &again), "resumed mpirun -np 2 sft");
    assert_eq!(max_weight_diff(&f.p("two/best"), &before), 0.0);

    // Ranks started with different settings stop with a message that says so.
    let o = Command::new("mpirun")
        .args(["-np", "1", "--oversubscribe", "-x", "RLHF_DEVICE=cpu"])
        .arg(bin("sft"))
        .args(argv("bad1"))
        .args(["--set", "train.seed=1"])
        .args([":", "-np", "1", "-x", "RLHF_DEVICE=cpu"])
        .arg(bin("sft"))
        .args(argv("bad1"))
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("differs from rank 0"), "{err}");
}

#[test]
fn reward_on_two_ranks_equals_one_process() {
    let f = Fixture::new();
    let argv = |out: &str| {
        // Steps of 7 prompts (an odd batch: ranks take 4 and 3 whole K-wise groups), two
        // micro-batches each; no dropout, whose masks are drawn per rank.
        f.reward_args(
            out,
            &[
                "train.epochs=2",
                "train.batch_prompts=7",
                "train.micro_batch_prompts=4",
                "train.dropout=false",
                "max_prompt_tokens=48",
                "max_response_tokens=25",
                "train.optimizer.lr=3e-3",
            ],
        )
    };
    run_ok("reward", &argv("one"));
    ok(&mpirun(2, "reward", &argv("two")), "mpirun -np 2 reward");
    // The ranking loss depends on score differences only, so the final LayerNorm's bias (a
    // shift of every score) has a true gradient of exactly 0: what it gets is rounding noise,
    // which AdamW turns into steps of about lr whatever its size. Any change of summation
    // order moves it (measured: 2.6e-3 here, lr 3e-3); so do the key biases (see
    // `ranks_weight_diff`); every other weight must agree.
    let noise_only = ["transformer.ln_f.bias"];
    for ckpt in ["epoch-1", "epoch-2", "final"] {
        let (a, b) = (f.p(&format!("one/{ckpt}")), f.p(&format!("two/{ckpt}")));
        let (d, name) = ranks_weight_diff(&a, &b, &noise_only);
        assert!(
            d <= 1e-4,
            "{ckpt}: 2 ranks differ from 1 process by {d} (in {name})"
        );
    }
    assert_eq!(world_size(&f.p("one")), 1);
    assert_eq!(world_size(&f.p("two")), 2);
    assert_eq!(metric_lines(&f.p("two")), metric_lines(&f.p("one")));
    // The logged loss covers both ranks' prompts: the same as one process's.
    let (a, b) = (
        metric_series(&f.p("one"), "loss/rm"),
        metric_series(&f.p("two"), "loss/rm"),
    );
    assert_eq!(a.len(), b.len());
    for ((s1, l1), (s2, l2)) in a.iter().zip(&b) {
        assert_eq!(s1, s2);
        assert!((l1 - l2).abs() < 1e-4, "step {s1}: loss {l1} vs {l2}");
    }
}

#[test]
fn ppo_on_two_ranks_equals_one_process() {
    // Micro-batches of 2: one per rank in each minibatch of 4.
    ppo_two_ranks_equal_one_process("2");
}

#[test]
fn ppo_splitting_micro_batches_across_ranks_equals_one_process() {
    // One micro-batch per minibatch (and the ptx batch) split across the 2 ranks by rows.
    ppo_two_ranks_equal_one_process("4");
}

/// PPO with `micro` episodes per micro-batch: 2 ranks with the global batch end as one process.
fn ppo_two_ranks_equal_one_process(micro: &str) {
    let f = Fixture::new();
    let argv = |out: &str| {
        // Greedy sampling (top_k = 1): the ranks' rollouts are then those of one process.
        // Minibatches of 4 episodes, two epochs, PPO-ptx, adaptive KL and an early-stop
        // threshold: every statistic that crosses ranks is used.
        f.ppo_args(
            out,
            &[
                "iterations=3",
                "save_every=1",
                "ptx_block_len=32",
                "ptx_batch_size=2",
                "ppo.batch_size=8",
                "ppo.minibatch_size=4",
                &format!("ppo.micro_batch_size={micro}"),
                "ppo.ppo_epochs=2",
                "ppo.max_new_tokens=6",
                "ppo.top_k=1",
                "ppo.ptx_coef=0.5",
                "ppo.adaptive_kl={target = 0.5, horizon = 100}",
                "ppo.target_kl=10.0",
                "ppo.policy_optimizer.lr=1e-3",
                "ppo.value_optimizer.lr=1e-3",
            ],
        )
    };
    run_ok("ppo", &argv("one"));
    ok(&mpirun(2, "ppo", &argv("two")), "mpirun -np 2 ppo");
    for ckpt in ["iter-000003/policy", "iter-000003/value"] {
        let (a, b) = (
            f.p(&format!("one/checkpoints/{ckpt}")),
            f.p(&format!("two/checkpoints/{ckpt}")),
        );
        let (d, name) = ranks_weight_diff(&a, &b, &[]);
        assert!(
            d <= 1e-4,
            "{ckpt}: 2 ranks differ from 1 process by {d} (in {name})"
        );
    }
    assert!(
        max_weight_diff(&f.p("sft"), &f.p("two/checkpoints/iter-000003/policy")) > 1e-4,
        "PPO moved the policy"
    );
    assert_eq!(world_size(&f.p("two")), 2);
    for key in [
        "objective/kl",
        "objective/scores",
        "objective/kl_coef",
        "loss/policy",
        "loss/ptx",
        "policy/approxkl",
        "policy/grad_norm",
    ] {
        let (a, b) = (
            metric_series(&f.p("one"), key),
            metric_series(&f.p("two"), key),
        );
        assert_eq!(a.len(), 3, "{key}");
        for ((_, x), (_, y)) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-4, "{key}: {x} vs {y}");
        }
    }
}

/// The processes whose parent is `pid` (from /proc), in pid order.
fn children(pid: u32) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_run_whose_rank_is_killed_resumes_to_the_same_weights() {
    let f = Fixture::new();
    let argv = |out: &str| {
        f.sft_args(
            out,
            &[
                "train.residual_dropout=off",
                "train.epochs=12",
                "train.batch_size=8",
                "train.save_every_steps=2",
                "train.optimizer.lr=1e-3",
                "valid_fraction=0.2",
            ],
        )
    };
    run_ok("sft", &argv("one"));
    let total = metric_lines(&f.p("one"));

    // Two ranks; SIGKILL rank 1 once a few steps are logged (rank 0 is then mid-run).
    let child = spawn_mpirun(
        "sft",
        &argv("two"),
        std::fs::File::create(f.p("two.log")).unwrap().into(),
        std::fs::File::create(f.p("two.err")).unwrap().into(),
    );
    kill_rank_one_when(child, 120, || {
        let lines = metric_lines(&f.p("two"));
        assert!(lines < total, "the run ended before the kill");
        lines >= 5
    });

    let mut again = argv("two");
    again.push("--resume".into());
    ok(&mpirun(2, "sft", &again), "mpirun -np 2 sft --resume");
    let (d, name) = ranks_weight_diff(&f.p("one/epoch-12"), &f.p("two/epoch-12"), &[]);
    assert!(
        d <= 1e-4,
        "the resumed 2-rank run differs from 1 process by {d} (in {name})"
    );
    assert_eq!(metric_lines(&f.p("two")), total);
}

/// The pipeline's `--set` values of [`PIPELINE_TINY`] plus `extra`, and `--out`.
fn pipeline_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["--out", out.to_str().unwrap()]);
    a.extend(sets(PIPELINE_TINY));
    a.extend(sets(extra));
    a
}

#[test]
fn the_pipeline_runs_on_two_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    // SFT without dropout (its masks are drawn per rank), and PPO updating the policy from its
    // first iteration with greedy rollouts (each rank samples its share of the prompts with its
    // own draws), so that every trained model can be compared with one process's.
    let extra = [
        "sft.residual_dropout=0.0",
        "ppo.value_warmup_iterations=0",
        "ppo.top_k=1",
    ];
    run_ok("pipeline", &pipeline_args(&one, &extra));
    let o = mpirun(2, "pipeline", &pipeline_args(&two, &extra));
    ok(&o, "mpirun -np 2 pipeline");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("model ") && l.contains("win rate vs SFT"))
            .count(),
        1,
        "rank 0 alone prints the table:\n{stdout}"
    );
    let report = |run: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap()
    };
    let r2 = report(&two);
    assert_eq!(r2["world_size"].as_u64(), Some(2), "{r2}");
    assert_eq!(report(&one)["world_size"].as_u64(), Some(1));
    for model in ["base", "sft", "ppo", "ppo_ptx"] {
        let v = r2["win_rate_vs_sft"][model].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{model}: {v}");
    }
    // Every training stage is data-parallel with the same global batch, and rank 0 samples
    // what one process samples: one process's weights. (The final LayerNorm bias of the RM has
    // a true gradient of 0, whose rounding noise AdamW turns into lr-sized steps: see
    // reward_on_two_ranks_equals_one_process. PPO's first AdamW steps move every weight by
    // about lr = 1e-4 whatever its gradient's size, so weights whose gradient is zero up to
    // rounding move either way: the PPO policies end 2.3e-4 apart, hence their looser bound,
    // and their logged statistics are compared too.)
    for (stage, tol) in [
        ("pretrain/best", 1e-4),
        ("sft/best", 1e-4),
        ("rm/final", 1e-4),
        ("ppo/final", 1e-3),
        ("ppo_ptx/final", 1e-3),
    ] {
        let (d, name) = ranks_weight_diff(
            &one.join(stage),
            &two.join(stage),
            &["transformer.ln_f.bias"],
        );
        assert!(
            d <= tol,
            "{stage}: 2 ranks differ from 1 process by {d} (in {name})"
        );
    }
    let moved = max_weight_diff(&two.join("sft/best"), &two.join("ppo_ptx/final"));
    assert!(moved > 5e-5, "PPO-ptx moved the policy only {moved}");
    for stage in ["ppo", "ppo_ptx"] {
        for key in [
            "objective/scores",
            "objective/kl",
            "loss/policy",
            "loss/value",
        ] {
            let (a, b) = (
                metric_series(&one.join(stage), key),
                metric_series(&two.join(stage), key),
            );
            assert_eq!(a.len(), 2, "{stage} {key}");
            assert_eq!(a.len(), b.len(), "{stage} {key}");
            for ((_, x), (_, y)) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-3, "{stage} {key}: {x} vs {y}");
            }
        }
    }
    // Every training stage's trainer split its batches across the 2 ranks (a stage whose trainer
    // ran alone on each rank would give the same weights, only slower).
    assert_eq!(world_size(&two.join("pretrain")), 2);
    assert_eq!(world_size(&two.join("sft")), 2);
    for stage in ["rm", "ppo", "ppo_ptx"] {
        let done: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(two.join(stage).join("done.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            done["world_size"].as_u64(),
            Some(2),
            "{stage}/done.json: {done}"
        );
    }
    // Rank 0 alone wrote the logs (a stage that ran as independent copies would log twice):
    // as many metric lines as one process's.
    for stage in ["pretrain", "sft", "rm", "ppo", "ppo_ptx"] {
        assert_eq!(
            metric_lines(&two.join(stage)),
            metric_lines(&one.join(stage)),
            "{stage}/metrics.jsonl"
        );
    }
    for f in [
        "rm/final/rlhf.json",
        "ppo_ptx/final/model.safetensors",
        "plots/win_rates.png",
    ] {
        assert!(two.join(f).exists(), "missing {f}");
    }
    // Rerun on 2 ranks: every stage is found done, and the same table comes out.
    ok(
        &mpirun(2, "pipeline", &pipeline_args(&two, &extra)),
        "rerun of mpirun -np 2 pipeline",
    );
    let again = report(&two);
    assert_eq!(again["win_rate_vs_sft"], r2["win_rate_vs_sft"]);
    assert_eq!(again["rm_accuracy"], r2["rm_accuracy"]);
}

#[test]
fn a_pipeline_whose_rank_is_killed_during_ppo_resumes_to_the_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, killed) = (tmp.path().join("whole"), tmp.path().join("killed"));
    // PPO saves every iteration, so the kill lands after a checkpoint.
    let extra = ["ppo_iterations=6", "ppo_save_every=1", "ppo_eval_every=0"];
    ok(
        &mpirun(2, "pipeline", &pipeline_args(&whole, &extra)),
        "mpirun -np 2 pipeline",
    );

    let child = spawn_mpirun(
        "pipeline",
        &pipeline_args(&killed, &extra),
        Stdio::null(),
        Stdio::null(),
    );
    // SIGKILL rank 1 once the first PPO stage has logged two iterations.
    kill_rank_one_when(child, 300, || {
        // Lines of finished iterations (the file may not exist yet, or end mid-line).
        let done = std::fs::read_to_string(killed.join("ppo/metrics.jsonl"))
            .map(|t| {
                t.lines()
                    .filter(|l| l.ends_with('}') && l.contains("objective/kl"))
                    .count()
            })
            .unwrap_or(0);
        assert!(done < 6, "the PPO stage ended before the kill");
        done >= 2
    });
    assert!(!killed.join("report.json").exists());

    // The same command again: finished stages are skipped, PPO continues from its checkpoint.
    ok(
        &mpirun(2, "pipeline", &pipeline_args(&killed, &extra)),
        "mpirun -np 2 pipeline after the kill",
    );
    let report = |run: &Path| -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap())
                .unwrap();
        v.as_object_mut().unwrap().remove("seconds");
        v
    };
    assert_eq!(report(&killed), report(&whole));
    for stage in ["ppo/final", "ppo_ptx/final"] {
        let d = max_weight_diff(&whole.join(stage), &killed.join(stage));
        assert!(d == 0.0, "{stage}: the resumed run differs by {d}");
    }
    assert_eq!(
        metric_lines(&killed.join("ppo")),
        metric_lines(&whole.join("ppo")),
        "the redone iterations' metric lines replace the killed run's"
    );
}
