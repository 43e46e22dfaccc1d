//! Stage 1: supervised fine-tuning of a pretrained LM on labeler demonstrations.
//!
//! `sft --init LM_DIR --data demos.jsonl [--valid demos.jsonl] [--reward RM_DIR] [--out RUN]
//! [--config configs/sft.toml] [--set train.epochs=4] [--resume]`
//!
//! The run directory gets `config.toml` (resolved), `metrics.jsonl`, `epoch-N/`, `best/` (the
//! selected epoch: highest RM score of greedy answers to validation prompts when --reward is
//! given, as in the paper, else lowest validation loss), `state/` (to resume) and `report.json`;
//! with `[lora]`, also `merged/`: the best epoch with its adapters folded into the weights, the
//! plain checkpoint `reward --init` and `ppo --policy` start from.

use clap::Parser;
use rlhf_data::hygiene::split_by_user;
use rlhf_data::records::Demonstration;
use rlhf_examples::data::read_records;
use rlhf_examples::stage::{
    check_fit, check_same_vocab, collator, load_lm, load_reward, train_lm, warn_seen_prompts,
    warn_truncation, warn_unknown, CommonArgs,
};
use rlhf_model::{CausalLm, Policy};
use rlhf_sft::{mean_greedy_reward, LmData, SftConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// Train LoRA adapters instead of every weight (`[lora]`: r, lora_alpha, lora_dropout,
    /// target_modules); absent = full fine-tuning. Checkpoints then hold the base weights and
    /// PEFT's adapter files.
    #[serde(skip_serializing_if = "Option::is_none")]
    lora: Option<rlhf_model::LoraConfig>,
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
            lora: None,
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "Supervised fine-tuning on demonstrations (InstructGPT stage 1)")]
struct Args {
    /// Pretrained LM checkpoint to start from (Hugging Face layout, GPT-2 or the Llama family, with tokenizer.json).
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
    if !(0.0..1.0).contains(&cfg.valid_fraction) {
        anyhow::bail!(
            "valid_fraction is {}: expected a fraction in [0, 1)",
            cfg.valid_fraction
        );
    }
    // Everything is read and checked before the run directory is made: bad input leaves none.
    let run_path = args.common.run_path("sft")?;
    // One process per rank under mpirun (data parallel), else one process.
    let comm = args.common.collective()?;
    let device = args.common.device_of(&*comm)?;
    let mut model = load_lm(&args.init, device, "--init")?;
    if let Some(lora) = &cfg.lora {
        if model.lora().is_some() {
            anyhow::bail!(
                "[lora]: --init {} has LoRA adapters already; start from it merged (the run's \
                 merged/ directory, which `sft` with [lora] writes) or drop [lora]",
                args.init.display()
            );
        }
        // The adapters' A is random: draw it from the run's seed.
        tch::manual_seed(cfg.train.seed as i64);
        let n = model.attach_lora(lora)?;
        let count = |vars: Vec<tch::Tensor>| vars.iter().map(|t| t.numel()).sum::<usize>();
        tracing::info!(
            "[sft] LoRA r = {} on {n} projections: {} trainable parameters of {}",
            lora.r,
            count(model.var_store().trainable_variables()),
            count(model.var_store().variables().into_values().collect())
        );
    }
    let reward = args
        .reward
        .as_ref()
        .map(|p| load_reward(p, device, "--reward"))
        .transpose()?;
    if let Some(rm) = &reward {
        check_same_vocab(&model, rm, "--reward")?;
    }
    let demos: Vec<Demonstration> = read_records(&args.data, cfg.lenient)?;
    let (train, valid, valid_file) = match &args.valid {
        Some(v) => (demos, read_records::<Demonstration>(v, cfg.lenient)?, v),
        None => {
            let s = split_by_user(
                demos,
                (1.0 - cfg.valid_fraction, cfg.valid_fraction, 0.0),
                cfg.split_seed,
            )?;
            (s.train, s.valid, &args.data)
        }
    };
    if train.is_empty() {
        anyhow::bail!("no training demonstrations left after the validation split");
    }
    if let Some(v) = &args.valid {
        let what = "the validation loss, and the epoch chosen by it, will be optimistic";
        warn_seen_prompts("sft", &valid, v, &train, &args.data, what, comm.is_root());
    }
    let col = collator(
        &model,
        cfg.train.max_prompt_tokens,
        cfg.train.max_response_tokens,
        !args.common.no_chat_template,
        &args.common.chat_template_kwargs,
    )?;
    let n_positions = model.config().n_positions();
    let to_data = |d: &[Demonstration], file: &Path| -> anyhow::Result<LmData> {
        let pairs = col.tokenize_demonstrations(d)?;
        let examples = pairs.iter().zip(d);
        let examples = examples.map(|(p, d)| (d.id.as_str(), &p.prompt[..], &p.response[..]));
        let keys = ("train.max_prompt_tokens", "train.max_response_tokens");
        let source = file.display().to_string();
        check_fit(
            examples,
            "demonstration",
            &source,
            col.config(),
            n_positions,
            keys,
        )?;
        warn_truncation(
            "sft",
            &format!("demonstrations from {}", file.display()),
            col.config().truncation_of_pairs(&pairs),
            col.config(),
            ("train.max_prompt_tokens", "train.max_response_tokens"),
        );
        let texts = pairs.iter().flat_map(|p| [&p.prompt[..], &p.response[..]]);
        let what = format!(
            "demonstrations from {}, prompts and responses",
            file.display()
        );
        warn_unknown("sft", &what, col.unknown_tokens(texts));
        Ok(LmData::Demonstrations {
            pairs,
            collate: col.config().clone(),
        })
    };
    let train_data = to_data(&train, &args.data)?;
    let valid_data = if valid.is_empty() {
        None
    } else {
        Some(to_data(&valid, valid_file)?)
    };
    let selection = match &reward {
        Some(rm) => {
            let prompts: Vec<Vec<u32>> = valid
                .iter()
                .take(cfg.selection_prompts)
                .map(|d| col.encode_prompt(&d.prompt))
                .collect::<Result<_, _>>()?;
            if prompts.is_empty() {
                anyhow::bail!(
                    "--reward needs validation prompts: give --valid or a positive valid_fraction"
                );
            }
            if cfg.selection_max_new_tokens < 1 {
                anyhow::bail!(
                    "selection_max_new_tokens is {}: expected at least 1",
                    cfg.selection_max_new_tokens
                );
            }
            // Greedy answers stop at the policy's context; the RM must read them whole.
            let longest = prompts
                .iter()
                .map(|p| p.len().min(cfg.train.max_prompt_tokens))
                .max()
                .unwrap_or(0) as i64;
            let answer_len = (longest + cfg.selection_max_new_tokens).min(n_positions);
            let rm_positions = rm.config().n_positions();
            if answer_len > rm_positions {
                anyhow::bail!(
                    "--reward: prompts plus answers take up to {answer_len} tokens but the reward \
                     model's n_positions is {rm_positions}: lower train.max_prompt_tokens or \
                     selection_max_new_tokens"
                );
            }
            Some((rm, prompts))
        }
        None => None,
    };
    let run = args.common.open_run_of(run_path, "sft", &*comm)?;
    if comm.is_root() {
        run.write_config(&cfg)?;
    }
    tracing::info!(
        "[sft] {} training and {} validation demonstrations; run directory {}",
        train.len(),
        valid.len(),
        run.path.display()
    );
    let selector = selection.map(|(rm, prompts)| {
        let collate = col.config().clone();
        let n = cfg.selection_max_new_tokens;
        Box::new(move |m: &CausalLm| mean_greedy_reward(m, rm, &prompts, &collate, n, 32))
            as rlhf_sft::trainer::Selector
    });
    train_lm(
        "sft",
        &mut model,
        (&train_data, valid_data.as_ref()),
        &cfg.train,
        &run,
        selector,
        &*comm,
    )?;
    if cfg.lora.is_some() && comm.is_root() {
        // `reward --init` and `ppo --policy` start from plain weights: the best epoch with its
        // adapters folded in, as the pipeline's `sft/merged/`.
        let merged = run.join("merged");
        CausalLm::load(run.join("best"), device)?.save_merged(&merged)?;
        tracing::info!(
            "[sft] the best epoch with its adapters merged (for `reward --init` and `ppo \
             --policy`): {}",
            merged.display()
        );
    }
    Ok(())
}
