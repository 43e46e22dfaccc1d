//! Model selection without the evaluation set: the pipeline's table measured on **validation**
//! prompts (the training users' validation split, never the evaluation's held-out users) and
//! judged by the **training** labelers (never the held-out group), for a finished run's policies
//! and any others (e.g. a PPO-ptx policy trained with another setting).
//!
//! `cargo run --release -p rlhf-examples --example valid_table -- RUN_DIR [--greedy] [NAME=POLICY_DIR]...`
//!
//! RUN_DIR holds a finished pipeline run (`config.toml`, `sft/best`, `labelers/done.json`, and
//! `ppo/final`, `ppo_ptx/final` when present). Prints one row per policy: win rate against SFT,
//! gold, KL to SFT, loss on the held-out pretraining text, and the conduct columns.

use anyhow::Context;
use rlhf_examples::pipeline::{
    evaluate_models, labeler_stage, prepare_data, PipelineConfig, PipelineReport,
};
use rlhf_model::CausalLm;
use std::path::PathBuf;

#[derive(clap::Parser, Debug)]
#[command(
    about = "The pipeline's table on validation prompts, judged by the training labelers (for choosing settings)"
)]
struct Args {
    /// A finished pipeline run.
    #[arg(value_name = "RUN_DIR")]
    run: PathBuf,
    /// More policies to evaluate, as NAME=CHECKPOINT_DIR.
    #[arg(value_name = "NAME=DIR")]
    extra: Vec<String>,
    /// Validation prompts to measure on (default: all of them).
    #[arg(long)]
    prompts: Option<usize>,
    /// Decode greedily (the config's `eval_greedy = true`) instead of sampling at temperature 1.
    #[arg(long)]
    greedy: bool,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = <Args as clap::Parser>::parse();
    let run = args.run;
    let mut cfg = PipelineConfig::from_run(&run)?;
    cfg.eval_greedy |= args.greedy;
    let tmp = tempfile::tempdir()?;
    let mut data = prepare_data(&cfg, tmp.path())?;
    let sft_dir = cfg.sft_dir(&run);
    anyhow::ensure!(
        run.join("labelers/done.json").exists(),
        "{} has no calibrated labelers (labelers/done.json): run the pipeline first",
        run.display()
    );
    let labelers = labeler_stage(&cfg, &data, &sft_dir, &run)?;
    // The evaluation reads `world.heldout_prompts`: point it at the validation split.
    data.world.heldout_prompts = data.valid_prompt_records();
    cfg.eval_prompts = args
        .prompts
        .unwrap_or(data.world.heldout_prompts.len())
        .min(data.world.heldout_prompts.len());
    let device = rlhf_examples::stage_device()?;
    let sft = CausalLm::load(&sft_dir, device)?;
    let mut named: Vec<(String, PathBuf)> = ["ppo", "ppo_ptx"]
        .iter()
        .map(|n| (n.to_string(), run.join(n).join("final")))
        .filter(|(_, d)| d.exists())
        .collect();
    for e in &args.extra {
        let (name, dir) = e
            .split_once('=')
            .with_context(|| format!("{e:?}: give extra policies as NAME=DIR"))?;
        named.push((name.to_string(), PathBuf::from(dir)));
    }
    let loaded: Vec<(String, CausalLm)> = named
        .iter()
        .map(|(n, d)| {
            Ok((
                n.clone(),
                CausalLm::load(d, device).with_context(|| format!("{n}={}", d.display()))?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut models: Vec<(&str, &CausalLm)> = vec![("sft", &sft)];
    models.extend(loaded.iter().map(|(n, m)| (n.as_str(), m)));
    let mut report = PipelineReport::default();
    evaluate_models(&cfg, &data, &labelers.train, &models, &sft, &mut report)?;
    println!(
        "validation prompts: {}, judged by the training labelers",
        cfg.eval_prompts
    );
    println!(
        "{:<14} {:>8} {:>7} {:>7} {:>9} {:>8} {:>7} {:>8} {:>7}",
        "model", "win", "gold", "KL", "pretrain", "correct", "filler", "sign-off", "broken"
    );
    for (name, _) in &models {
        let c = report.conduct[*name];
        println!(
            "{:<14} {:>8.3} {:>7.3} {:>7.2} {:>9.3} {:>8.3} {:>7.3} {:>8.3} {:>7.3}",
            name,
            report.win_rate_vs_sft[*name],
            report.gold_score[*name],
            report.kl_to_sft[*name],
            report.pretrain_loss[*name],
            c.correctness,
            c.filler,
            c.sign_off,
            c.broken_constraint
        );
    }
    Ok(())
}
