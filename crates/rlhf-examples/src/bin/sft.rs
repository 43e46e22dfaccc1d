//! Stage 1: supervised fine-tuning of a pretrained LM on labeler demonstrations.
//!
//! `sft --init LM_DIR --data demos.jsonl [--valid demos.jsonl] [--reward RM_DIR] [--out RUN]
//! [--config configs/sft.toml] [--set train.epochs=4] [--resume]`
//!
//! The run directory gets `config.toml` (resolved), `metrics.jsonl`, `epoch-N/`, `best/` (the
//! selected epoch: highest RM score of greedy answers to validation prompts when --reward is
//! given, as in the paper, else lowest validation loss), `state/` (to resume) and `report.json`.

use anyhow::Context;
use clap::Parser;
use rlhf_data::hygiene::split_by_user;
use rlhf_data::records::Demonstration;
use rlhf_examples::data::read_records;
use rlhf_examples::stage::{collator, train_lm, CommonArgs};
use rlhf_model::{CausalLm, ScalarModel};
use rlhf_sft::{mean_greedy_reward, LmData, SftConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `sft` config (TOML). See configs/sft.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SftRunConfig {
    /// Trainer settings.
    train: SftConfig,
    /// Without --valid: the fraction of users held out for validation (split by user ID).
    valid_fraction: f64,
    /// Seed of that split.
    split_seed: u64,
    /// Skip bad JSONL lines (reporting them) instead of stopping at the first.
    lenient: bool,
    /// With --reward: validation prompts scored after each epoch (at most).
    selection_prompts: usize,
    /// With --reward: tokens generated per answer when scoring.
    selection_max_new_tokens: i64,
}

impl Default for SftRunConfig {
    fn default() -> Self {
        SftRunConfig {
            train: SftConfig::default(),
            valid_fraction: 0.1,
            split_seed: 0,
            lenient: false,
            selection_prompts: 64,
            selection_max_new_tokens: 32,
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "Supervised fine-tuning on demonstrations (InstructGPT stage 1)")]
struct Args {
    /// Pretrained LM checkpoint to start from (HF GPT-2 layout with tokenizer.json).
    #[arg(long)]
    init: PathBuf,
    /// Demonstrations, JSONL: {"id", "user_id", "prompt", "response"} per line.
    #[arg(long)]
    data: PathBuf,
    /// Validation demonstrations (default: hold out users of --data).
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Reward-model checkpoint: select the epoch by its score on validation prompts.
    #[arg(long)]
    reward: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = Args::parse();
    let cfg: SftRunConfig =
        rlhf_examples::run::load_config(args.common.config.as_deref(), &args.common.overrides)?;
    cfg.train.validate()?;
    let device = args.common.device()?;
    let mut model = CausalLm::load(&args.init, device)
        .with_context(|| format!("--init {}", args.init.display()))?;
    let reward = args
        .reward
        .as_ref()
        .map(|p| ScalarModel::load(p, device).with_context(|| format!("--reward {}", p.display())))
        .transpose()?;
    let demos: Vec<Demonstration> = read_records(&args.data, cfg.lenient)?;
    let (train, valid) = match &args.valid {
        Some(v) => (demos, read_records::<Demonstration>(v, cfg.lenient)?),
        None => {
            let s = split_by_user(
                demos,
                (1.0 - cfg.valid_fraction, cfg.valid_fraction, 0.0),
                cfg.split_seed,
            )?;
            (s.train, s.valid)
        }
    };
    if train.is_empty() {
        anyhow::bail!("no training demonstrations left after the validation split");
    }
    let run = args.common.run_dir("sft")?;
    run.write_config(&cfg)?;
    let col = collator(
        &model,
        cfg.train.max_prompt_tokens,
        cfg.train.max_response_tokens,
    )?;
    let to_data = |d: &[Demonstration]| -> anyhow::Result<LmData> {
        Ok(LmData::Demonstrations {
            pairs: col.tokenize_demonstrations(d)?,
            collate: col.config().clone(),
        })
    };
    let train_data = to_data(&train)?;
    let valid_data = if valid.is_empty() {
        None
    } else {
        Some(to_data(&valid)?)
    };
    eprintln!(
        "[sft] {} training and {} validation demonstrations; run directory {}",
        train.len(),
        valid.len(),
        run.path.display()
    );
    let selector = match &reward {
        Some(rm) => {
            let prompts: Vec<Vec<u32>> = valid
                .iter()
                .take(cfg.selection_prompts)
                .map(|d| col.encode(&d.prompt))
                .collect::<Result<_, _>>()?;
            if prompts.is_empty() {
                anyhow::bail!(
                    "--reward needs validation prompts: give --valid or a positive valid_fraction"
                );
            }
            let collate = col.config().clone();
            let n = cfg.selection_max_new_tokens;
            Some(
                Box::new(move |m: &CausalLm| mean_greedy_reward(m, rm, &prompts, &collate, n, 32))
                    as rlhf_sft::trainer::Selector,
            )
        }
        None => None,
    };
    train_lm(
        "sft",
        &mut model,
        &train_data,
        valid_data.as_ref(),
        &cfg.train,
        &run,
        selector,
    )?;
    Ok(())
}
