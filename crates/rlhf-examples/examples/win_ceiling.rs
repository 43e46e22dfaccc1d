//! How much of the win over SFT is left to RL in the toy world: the win rate against the SFT
//! model's answers that answers nobody can improve on conduct would get, and that perfect
//! answers would get, from the labelers' own preference model.
//!
//! `cargo run --release -p rlhf-examples --example win_ceiling -- RUN_DIR [--valid]`
//!
//! RUN_DIR holds a finished pipeline run. The SFT model's answers are sampled exactly as the
//! evaluation samples them (same prompts, same sampler seed), and so are the final policy's.
//! Each row is the **expected** win rate against those SFT answers: the mean over prompts of
//! the mean over the labelers of the probability that a labeler prefers the row's answer
//! (identical answers count half, as in the table), so it carries no noise from the labelers'
//! draws, only from the sampled answers. Rows:
//!
//! - `final policy`: the run's final policy as sampled (the table's figure, in expectation);
//! - `final policy, habits removed`: the same answers with every filler and sign-off word
//!   deleted (what the policy would win with perfect conduct and its own correctness);
//! - `SFT, habits removed`: SFT's answers with the habit words deleted (the most that conduct
//!   alone can win, with the very answers SFT gave: SFT's correctness, no habit);
//! - `SFT resampled, habits removed`: the same for SFT's answers from other draws of the
//!   sampler: what a policy that keeps SFT's correctness and drops every habit wins when its
//!   answers are sampled independently of SFT's, as a trained policy's are (a wrong answer
//!   against a right one now costs as often as it gains);
//! - `perfect answers`: a fully correct answer without habits for every prompt (the most any
//!   policy can win against this SFT model with these labelers).
//!
//! By default on the evaluation's held-out prompts judged by the held-out labelers (nothing is
//! chosen with it: it bounds what the table can show); `--valid` uses the training users'
//! validation prompts and the training labelers instead.

use anyhow::Context;
use rand::SeedableRng;
use rlhf_examples::pipeline::{labeler_stage, prepare_data, PipelineConfig};
use rlhf_model::CausalLm;
use rlhf_toy::eval::{answers, conduct_stats, expected_win_rate, mean_gold, EvalPrompts, Shot};
use rlhf_toy::without_habits;
use std::path::PathBuf;

#[derive(clap::Parser, Debug)]
#[command(about = "Expected win rates against SFT of answers with perfect conduct or correctness")]
struct Args {
    /// A finished pipeline run.
    #[arg(value_name = "RUN_DIR")]
    run: PathBuf,
    /// Validation prompts and training labelers instead of the evaluation's.
    #[arg(long)]
    valid: bool,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = <Args as clap::Parser>::parse();
    let run = args.run;
    let cfg = PipelineConfig::from_run(&run)?;
    anyhow::ensure!(cfg.lora.is_none(), "runs with LoRA are not supported here");
    anyhow::ensure!(
        run.join("labelers/done.json").exists(),
        "{} has no calibrated labelers (labelers/done.json): run the pipeline first",
        run.display()
    );
    let tmp = tempfile::tempdir()?;
    let mut data = prepare_data(&cfg, tmp.path())?;
    let sft_dir = run.join("sft/best");
    let labelers = labeler_stage(&cfg, &data, &sft_dir, &run)?;
    let (judges, what) = if args.valid {
        data.world.heldout_prompts = data.valid_prompt_records();
        (&labelers.train, "validation prompts, training labelers")
    } else {
        (&labelers.heldout, "held-out prompts, held-out labelers")
    };
    let final_name = if cfg.rounds > 1 {
        format!("round-{}/ppo_ptx/final", cfg.rounds)
    } else {
        "ppo_ptx/final".to_string()
    };
    let device = rlhf_examples::stage_device()?;
    let sft = CausalLm::load(&sft_dir, device)?;
    let policy = CausalLm::load(run.join(&final_name), device)
        .with_context(|| format!("loading the final policy {final_name}"))?;

    let col = &data.collator;
    let shots = Shot::from_demonstrations(&data.sft_train, 64);
    let n_prompts = cfg.eval_prompts.min(data.world.heldout_prompts.len());
    let ev = EvalPrompts::new(&data.world.heldout_prompts, &shots, n_prompts, col)?;
    // The evaluation's sampler seed (`evaluate_models`): the same answers as the table's.
    let seed = (!cfg.eval_greedy).then_some(cfg.seed + 41);
    let n = cfg.max_new_tokens;
    let sft_answers = answers(&sft, &ev.prompts, col, n, seed, cfg.gen_batch)?;
    let final_answers = answers(&policy, &ev.prompts, col, n, seed, cfg.gen_batch)?;
    // SFT's answers from other draws of the sampler (greedy answers, with `eval_greedy`, are
    // the same answers).
    let resample_seed = seed.map(|s| s + 1000);
    let sft_resampled = answers(&sft, &ev.prompts, col, n, resample_seed, cfg.gen_batch)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed + 53);
    let perfect: Vec<String> = ev
        .tasks
        .iter()
        .map(|t| t.task.reference_response(&mut rng))
        .collect();
    let rows: Vec<(&str, Vec<String>)> = vec![
        ("final policy", final_answers.clone()),
        (
            "final policy, habits removed",
            final_answers.iter().map(|a| without_habits(a)).collect(),
        ),
        (
            "SFT, habits removed",
            sft_answers.iter().map(|a| without_habits(a)).collect(),
        ),
        (
            "SFT resampled, habits removed",
            sft_resampled.iter().map(|a| without_habits(a)).collect(),
        ),
        ("perfect answers", perfect),
    ];
    println!(
        "{} ({what}), {final_name} as the final policy",
        ev.tasks.len()
    );
    println!(
        "{:<30} {:>16} {:>7} {:>12}",
        "answers", "expected win", "gold", "correctness"
    );
    for (name, ans) in &rows {
        let stats = conduct_stats(&ev.tasks, ans);
        println!(
            "{:<30} {:>16.3} {:>7.3} {:>12.3}",
            name,
            expected_win_rate(&ev.tasks, ans, &sft_answers, judges),
            mean_gold(&ev.tasks, ans),
            stats.correctness
        );
    }
    Ok(())
}
