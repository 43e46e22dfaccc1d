//! Experiment: PPO-ptx against a reward model that keeps its language-model head (the scalar
//! head plus a learned gain times the response's log-likelihood; `common/lik_rm.rs`).
//!
//! `cargo run --release -p rlhf-examples --example lik_rm_ppo -- RUN_DIR --out DIR [--lik-gain G]
//! [--round 1|2] [--iterations N]`
//!
//! Trains that RM exactly as RUN_DIR's first RM stage trained its RM (the run's rankings of
//! SFT samples, `[rm]` settings, seed), normalizes it on the demonstrations (response only, as
//! PPO scores), prints its validation accuracy, and trains PPO-ptx from the run's SFT model
//! against it with the run's `[ppo]` settings into `DIR/ppo_ptx_lik_r1/final` (the value function
//! starts from the run's own RM, as the pipeline's does). Compare it with the run's round-1
//! PPO-ptx on validation prompts with `valid_table RUN_DIR lik=DIR/ppo_ptx_lik_r1/final` (with `--round 2`, against
//! `r2=RUN_DIR/round-2/ppo_ptx/final`).

use rlhf_data::records::{read_jsonl, Ranking, ReadOptions};
use rlhf_examples::pipeline::{ppo_stage_with, prepare_data, PipelineConfig};
use rlhf_model::train::NoMetrics;
use rlhf_model::CausalLm;
use rlhf_reward::{RankingData, RewardTrainer};
use rlhf_toy::ToyPrompt;
use std::path::PathBuf;
use std::rc::Rc;
use tch::Device;

#[path = "common/lik_rm.rs"]
mod lik_rm;
use lik_rm::LikRm;

#[derive(clap::Parser, Debug)]
struct Args {
    #[arg(value_name = "RUN_DIR")]
    run: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0.1)]
    lik_gain: f64,
    /// 2: the run's second round instead (the RM trained on both rounds' rankings and
    /// validated on round 2's, the value function from the run's round-2 RM).
    #[arg(long, default_value_t = 1)]
    round: u32,
    /// PPO iterations (default: the run's).
    #[arg(long)]
    iterations: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = <Args as clap::Parser>::parse();
    let run = args.run;
    let mut cfg = PipelineConfig::from_run(&run)?;
    if let Some(n) = args.iterations {
        cfg.ppo_iterations = n;
    }
    let opts = ReadOptions::default();
    let mut train_r = read_jsonl::<Ranking>(run.join("rm/rankings.jsonl"), &opts)?.0;
    let rm_dir = match args.round {
        1 => run.join("rm"),
        2 => run.join("round-2/rm"),
        r => anyhow::bail!("--round must be 1 or 2, not {r}"),
    };
    if args.round == 2 {
        train_r.extend(read_jsonl::<Ranking>(rm_dir.join("rankings.jsonl"), &opts)?.0);
    }
    let valid_r = read_jsonl::<Ranking>(rm_dir.join("valid_rankings.jsonl"), &opts)?.0;
    let tmp = tempfile::tempdir()?;
    let data = prepare_data(&cfg, tmp.path())?;
    let col = &data.collator;
    let gold = valid_r
        .iter()
        .map(|r| {
            let p = ToyPrompt::parse(&r.prompt)?;
            Ok(r.responses.iter().map(|x| p.gold(x)).collect())
        })
        .collect::<anyhow::Result<Vec<Vec<f64>>>>()?;
    let valid = RankingData {
        groups: col.tokenize_rankings(&valid_r)?,
        gold: Some(gold),
    };
    let train = col.tokenize_rankings(&train_r)?;
    let sft_dir = cfg.sft_dir(&run);
    tch::manual_seed((cfg.seed + 1000 * (args.round as u64 - 1) + 303) as i64);
    let model = LikRm::new(CausalLm::load(&sft_dir, Device::Cpu)?, args.lik_gain);
    let mut trainer = RewardTrainer::new(model, cfg.rm.clone(), col.config().clone(), train.len())?;
    trainer.fit(&train, None, &mut NoMetrics, None, &mut |_, _, _| {})?;
    let rep = trainer.evaluate(&valid)?;
    let mut rm = trainer.into_model();
    let eos = col.config().eos_id as i64;
    let (mean, std) = rm.normalize_on(&col.tokenize_demonstrations(&data.sft_train)?, eos)?;
    println!(
        "RM: validation accuracy {:.3} (gold order {:.3}); learned gain {:.4}; demonstrations' raw mean {mean:.3}, std {std:.3}",
        rep.stats.total.accuracy(),
        rep.gold_accuracy.unwrap_or(f64::NAN),
        rm.gain.double_value(&[0])
    );
    rm.lm.var_store_mut().freeze();
    let comm: Rc<dyn rlhf_dist::Collective> = Rc::new(rlhf_dist::Single);
    let dir = ppo_stage_with(
        &cfg,
        &data,
        &sft_dir,
        &rm_dir.join("final"),
        rm,
        &args.out,
        &format!("ppo_ptx_lik_r{}", args.round),
        cfg.ptx_coef,
        &comm,
    )?;
    println!("policy: {}", dir.display());
    Ok(())
}
