//! Diagnostic: PPO against the toy world's gold score instead of the learned reward model,
//! starting from a finished pipeline run's SFT model (value function from its RM). It shows how
//! far RL can move this policy when the reward is perfect, which separates the RM's errors from
//! the policy's capacity.
//!
//! `cargo run --release -p rlhf-examples --example gold_ppo -- RUN_DIR OUT_DIR [key=value ...]`
//! where RUN_DIR holds a pipeline run (its `config.toml`, `sft/best`, `rm/final`) and the keys
//! are pipeline config keys in TOML syntax (e.g. `ppo_iterations=40 ptx_coef=0.0`; `-- --help`
//! shows the usage); `--learned-rm` trains against the run's RM instead (the pipeline's
//! PPO-ptx stage with the overrides). It prints the pipeline's report for SFT and the gold-trained policy on the
//! training users' validation prompts judged by the training labelers (as `valid_table` does),
//! never on the evaluation's held-out prompts.

use anyhow::Context;
use rlhf_examples::pipeline::{
    evaluate_models, labeler_stage, ppo_stage_on, ppo_stage_with, prepare_data, PipelineConfig,
};
use rlhf_model::CausalLm;
use rlhf_toy::eval::GoldReward;
use std::path::PathBuf;

#[derive(clap::Parser, Debug)]
#[command(
    about = "PPO against the toy world's gold score, from a finished pipeline run's SFT model"
)]
struct Args {
    /// A pipeline run (its config.toml, sft/best, rm/final).
    #[arg(value_name = "RUN_DIR")]
    run: PathBuf,
    /// Where the data, the PPO checkpoint and the labelers of this run go.
    #[arg(value_name = "OUT_DIR")]
    out: PathBuf,
    /// Overrides of the run's pipeline config in TOML syntax, e.g. ppo_iterations=40 ptx_coef=0.0.
    #[arg(value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Train against the run's learned RM (`RUN_DIR/rm/final`) instead of the gold score: the
    /// pipeline's PPO-ptx stage with other settings, for comparing them on validation.
    #[arg(long)]
    learned_rm: bool,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let Args {
        run,
        out,
        overrides,
        learned_rm,
    } = <Args as clap::Parser>::parse();
    let mut text = std::fs::read_to_string(run.join("config.toml"))
        .with_context(|| format!("reading {}", run.join("config.toml").display()))?;
    let mut table: toml::Table = toml::from_str(&text)?;
    for kv in &overrides {
        let extra: toml::Table = toml::from_str(kv).with_context(|| format!("override {kv}"))?;
        merge(&mut table, extra);
    }
    text = toml::to_string(&table)?;
    let cfg: PipelineConfig = toml::from_str(&text)?;
    std::fs::create_dir_all(&out)?;
    let data = prepare_data(&cfg, &out)?;
    let sft_dir = run.join("sft").join("best");
    let rm_dir = run.join("rm").join("final");
    let comm = std::rc::Rc::new(rlhf_dist::Single) as std::rc::Rc<dyn rlhf_dist::Collective>;
    let t = std::time::Instant::now();
    let dir = if learned_rm {
        ppo_stage_on(
            &cfg,
            &data,
            &sft_dir,
            &rm_dir,
            &out,
            "ppo_gold",
            cfg.ptx_coef,
            &comm,
        )?
    } else {
        let gold = GoldReward::new(&data.train_prompts, &data.collator)?;
        ppo_stage_with(
            &cfg,
            &data,
            &sft_dir,
            &rm_dir,
            gold,
            &out,
            "ppo_gold",
            cfg.ptx_coef,
            &comm,
        )?
    };
    eprintln!("[gold_ppo] PPO took {:.1}s", t.elapsed().as_secs_f64());
    let device = rlhf_examples::stage_device()?;
    let sft = CausalLm::load(&sft_dir, device)?;
    let policy = CausalLm::load(&dir, device)?;
    let mut report = Default::default();
    let labelers = labeler_stage(&cfg, &data, &sft_dir, &out)?;
    // Measured as settings are chosen (`valid_table`): the training users' validation prompts
    // and the training labelers, never the evaluation's held-out prompts and labelers.
    let mut data = data;
    let mut cfg = cfg;
    data.world.heldout_prompts = data.valid_prompt_records();
    cfg.eval_prompts = data.world.heldout_prompts.len();
    evaluate_models(
        &cfg,
        &data,
        &labelers.train,
        &[("sft", &sft), ("ppo_gold", &policy)],
        &sft,
        &mut report,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Deep-merges `extra` into `base` (tables merge key by key; other values replace).
fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (k, v) in extra {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge(b, e),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}
