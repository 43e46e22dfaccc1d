//! InstructGPT in miniature on the toy world: data (split by user) -> pretrain a base model ->
//! SFT -> K-wise rankings of SFT samples by simulated labelers -> reward model -> PPO and
//! PPO-ptx -> evaluation on held-out users' prompts.
//!
//! Every stage writes its own run directory under the pipeline's output directory and a
//! `done.json` when finished; a rerun skips finished stages and resumes the unfinished one.

use crate::run::RunDir;
use crate::stage::train_lm;
use crate::toy_eval::{answers, kl_to_reference, mean_gold, win_rate, EvalPrompts};
use anyhow::Context;
use rlhf_data::collate::{CollateConfig, Collator};
use rlhf_data::hygiene::{cap_per_user, dedup_prompts, split_by_user, DedupConfig, PiiScrubber};
use rlhf_data::records::{write_jsonl, Demonstration, PromptRecord};
use rlhf_data::toy::{
    toy_tokenizer, LabelerConfig, LabelerPool, ToyConfig, ToyTask, ToyWorld, TOY_EOS_ID,
};
use rlhf_model::{CausalLm, Gpt2Config, Policy, Tokenizer};
use rlhf_sft::{evaluate_loss, LmData, SftConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Shape of the base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelShape {
    /// Transformer blocks. Default 2.
    pub n_layer: i64,
    /// Attention heads. Default 4.
    pub n_head: i64,
    /// Width. Default 128.
    pub n_embd: i64,
    /// Context length. Default 128.
    pub n_positions: i64,
}

impl Default for ModelShape {
    fn default() -> Self {
        ModelShape {
            n_layer: 2,
            n_head: 4,
            n_embd: 128,
            n_positions: 128,
        }
    }
}

/// Everything the pipeline does, with defaults that run on a 2-core CPU in minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Seed of the whole run.
    pub seed: u64,
    /// The toy world's sizes.
    pub world: ToyConfig,
    /// Simulated labelers (calibrated to the paper's 73% agreement).
    pub labelers: LabelerConfig,
    /// Prompts per user kept (the paper's cap: 200).
    pub max_prompts_per_user: usize,
    /// Fraction of (training) users held out for validation.
    pub valid_fraction: f64,
    /// Base model shape.
    pub model: ModelShape,
    /// Tokens per packed pretraining block.
    pub block_len: usize,
    /// Pretraining.
    pub pretrain: SftConfig,
    /// Supervised fine-tuning.
    pub sft: SftConfig,
    /// Held-out prompts evaluated.
    pub eval_prompts: usize,
    /// Tokens generated per answer.
    pub max_new_tokens: i64,
    /// Prompts per generation batch.
    pub gen_batch: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            seed: 0,
            world: ToyConfig::default(),
            labelers: LabelerConfig::default(),
            max_prompts_per_user: 200,
            valid_fraction: 0.1,
            model: ModelShape::default(),
            block_len: 64,
            pretrain: SftConfig {
                epochs: 3,
                batch_size: 32,
                warmup_steps: 20,
                residual_dropout: None,
                optimizer: rlhf_model::train::AdamWConfig {
                    lr: 3e-3,
                    weight_decay: 0.01,
                    ..Default::default()
                },
                ..Default::default()
            },
            sft: SftConfig {
                epochs: 4,
                batch_size: 32,
                warmup_steps: 10,
                residual_dropout: Some(0.1),
                max_prompt_tokens: 64,
                max_response_tokens: 32,
                optimizer: rlhf_model::train::AdamWConfig {
                    lr: 1e-3,
                    ..Default::default()
                },
                ..Default::default()
            },
            eval_prompts: 200,
            max_new_tokens: 24,
            gen_batch: 64,
        }
    }
}

/// The InstructGPT-style table (also `report.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    /// Win rate against SFT on held-out users' prompts, judged by simulated labelers.
    pub win_rate_vs_sft: BTreeMap<String, f64>,
    /// Mean gold score of greedy answers.
    pub gold_score: BTreeMap<String, f64>,
    /// KL to the SFT model of sampled answers (nats per answer).
    pub kl_to_sft: BTreeMap<String, f64>,
    /// LM loss on held-out pretraining text (the alignment tax).
    pub pretrain_loss: BTreeMap<String, f64>,
    /// Reward model's held-out pairwise accuracy against the labelers.
    pub rm_accuracy: Option<f64>,
    /// The accuracy a perfect gold-score model reaches against the same labelers.
    pub rm_accuracy_ceiling: Option<f64>,
    /// Wall-clock seconds per stage and in total.
    pub seconds: BTreeMap<String, f64>,
}

/// What the data stage produces.
pub struct PipelineData {
    /// The generated world.
    pub world: ToyWorld,
    /// Training demonstrations after hygiene (training users).
    pub sft_train: Vec<Demonstration>,
    /// Validation demonstrations (other users).
    pub sft_valid: Vec<Demonstration>,
    /// Prompts of training users (for rankings and PPO).
    pub train_prompts: Vec<PromptRecord>,
    /// The collator (toy tokenizer, EOS = pad = 0).
    pub collator: Collator,
    /// Simulated labelers.
    pub labelers: LabelerPool,
}

fn stage_done(dir: &Path) -> bool {
    dir.join("done.json").exists()
}

fn mark_done(dir: &Path, info: serde_json::Value) -> anyhow::Result<()> {
    rlhf_model::checkpoint::write_atomic(&dir.join("done.json"), info.to_string().as_bytes())?;
    Ok(())
}

/// Generates the world, applies the paper's hygiene and splits by user; writes the data as
/// JSONL under `out/data/`.
pub fn prepare_data(cfg: &PipelineConfig, out: &Path) -> anyhow::Result<PipelineData> {
    let world = ToyWorld::generate(&ToyConfig {
        seed: cfg.seed,
        ..cfg.world.clone()
    })?;
    let scrubber = PiiScrubber::new();
    let mut demos = world.demonstrations.clone();
    let pii = scrubber.scrub_records(&mut demos);
    let (demos, cap) = cap_per_user(demos, cfg.max_prompts_per_user);
    let (demos, dedup) = dedup_prompts(
        demos,
        &DedupConfig {
            prefix_chars: None,
            ..Default::default()
        },
    );
    let split = split_by_user(
        demos,
        (1.0 - cfg.valid_fraction, cfg.valid_fraction, 0.0),
        cfg.seed,
    )?;
    let (prompts, _) = cap_per_user(world.prompts.clone(), cfg.max_prompts_per_user);
    let train_users: std::collections::HashSet<&str> =
        split.train.iter().map(|d| d.user_id.as_str()).collect();
    let train_prompts: Vec<PromptRecord> = prompts
        .into_iter()
        .filter(|p| train_users.contains(p.user_id.as_str()))
        .collect();
    let dir = out.join("data");
    std::fs::create_dir_all(&dir)?;
    write_jsonl(dir.join("sft_train.jsonl"), &split.train)?;
    write_jsonl(dir.join("sft_valid.jsonl"), &split.valid)?;
    write_jsonl(dir.join("train_prompts.jsonl"), &train_prompts)?;
    write_jsonl(dir.join("heldout_prompts.jsonl"), &world.heldout_prompts)?;
    write_jsonl(dir.join("pretrain.jsonl"), &world.pretrain)?;
    eprintln!(
        "[data] {} demonstrations -> {} train / {} valid (by user; PII scrubbed in {} records, {} over the per-user cap, {} duplicates); {} held-out prompts",
        world.demonstrations.len(),
        split.train.len(),
        split.valid.len(),
        pii.records_changed,
        cap.dropped,
        dedup.exact_duplicates + dedup.prefix_duplicates,
        world.heldout_prompts.len()
    );
    let col = Collator::new(
        toy_tokenizer(),
        CollateConfig::new(TOY_EOS_ID, TOY_EOS_ID)
            .with_limits(cfg.sft.max_prompt_tokens, cfg.sft.max_response_tokens),
    )?;
    let labelers = LabelerPool::calibrated(&cfg.labelers, cfg.seed)?;
    Ok(PipelineData {
        world,
        sft_train: split.train,
        sft_valid: split.valid,
        train_prompts,
        collator: col,
        labelers,
    })
}

/// Pretrains the base model on the world's corpus (or loads it when already done).
pub fn pretrain_stage(
    cfg: &PipelineConfig,
    data: &PipelineData,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let dir = out.join("pretrain");
    let best = dir.join("best");
    if stage_done(&dir) {
        return Ok(best);
    }
    let tok = Tokenizer::from_inner(toy_tokenizer());
    let m = &cfg.model;
    let eos = TOY_EOS_ID as i64;
    let gcfg = Gpt2Config {
        bos_token_id: Some(eos),
        eos_token_id: Some(eos),
        pad_token_id: Some(eos),
        ..Gpt2Config::sized(
            m.n_layer,
            m.n_head,
            m.n_embd,
            tok.vocab_size() as i64,
            m.n_positions,
        )
        .with_dropout(0.0)
    };
    tch::manual_seed(cfg.seed as i64);
    let mut lm = CausalLm::new(&gcfg, crate::stage_device())?;
    lm.set_tokenizer(tok)?;
    let texts: Vec<&str> = data
        .world
        .pretrain
        .iter()
        .map(|d| d.text.as_str())
        .collect();
    let valid: Vec<&str> = data
        .world
        .heldout_pretrain
        .iter()
        .map(|d| d.text.as_str())
        .collect();
    let train = LmData::Blocks(data.collator.pack_texts(&texts, cfg.block_len)?);
    let valid = LmData::Blocks(data.collator.pack_texts(&valid, cfg.block_len)?);
    let run = RunDir::open(&dir)?;
    run.write_config(&cfg.pretrain)?;
    eprintln!(
        "[pretrain] {} blocks of {} tokens, {} parameters",
        train.len(),
        cfg.block_len,
        lm.var_store()
            .variables()
            .values()
            .map(|t| t.numel())
            .sum::<usize>()
    );
    train_lm(
        "pretrain",
        &mut lm,
        &train,
        Some(&valid),
        &cfg.pretrain,
        &run,
        None,
    )?;
    mark_done(&dir, serde_json::json!({"best": best}))?;
    Ok(best)
}

/// Fine-tunes the base model on demonstrations (selection by validation loss; the RM does not
/// exist yet in the first round).
pub fn sft_stage(
    cfg: &PipelineConfig,
    data: &PipelineData,
    base: &Path,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let dir = out.join("sft");
    let best = dir.join("best");
    if stage_done(&dir) {
        return Ok(best);
    }
    let mut lm = CausalLm::load(base, crate::stage_device())?;
    let col = &data.collator;
    let to_data = |d: &[Demonstration]| -> anyhow::Result<LmData> {
        Ok(LmData::Demonstrations {
            pairs: col.tokenize_demonstrations(d)?,
            collate: col.config().clone(),
        })
    };
    let (train, valid) = (to_data(&data.sft_train)?, to_data(&data.sft_valid)?);
    let run = RunDir::open(&dir)?;
    run.write_config(&cfg.sft)?;
    train_lm("sft", &mut lm, &train, Some(&valid), &cfg.sft, &run, None)?;
    mark_done(&dir, serde_json::json!({"best": best}))?;
    Ok(best)
}

/// Evaluates named policies on held-out prompts against the SFT model.
pub fn evaluate_models(
    cfg: &PipelineConfig,
    data: &PipelineData,
    models: &[(&str, &CausalLm)],
    sft: &CausalLm,
    report: &mut PipelineReport,
) -> anyhow::Result<()> {
    let col = &data.collator;
    let shots: Vec<ToyTask> = data
        .train_prompts
        .iter()
        .take(64)
        .filter_map(|p| ToyTask::from_prompt(&p.prompt).ok())
        .collect();
    let ev = EvalPrompts::new(&data.world.heldout_prompts, &shots, cfg.eval_prompts, col)
        .context("building the evaluation prompts")?;
    let heldout: Vec<&str> = data
        .world
        .heldout_pretrain
        .iter()
        .map(|d| d.text.as_str())
        .collect();
    let heldout = LmData::Blocks(col.pack_texts(&heldout, cfg.block_len)?);
    let n = cfg.max_new_tokens;
    let sft_answers = answers(sft, &ev.prompts, col, n, None, cfg.gen_batch)?;
    for (name, model) in models {
        let prompts = if *name == "base" {
            &ev.few_shot
        } else {
            &ev.prompts
        };
        let ans = answers(*model, prompts, col, n, None, cfg.gen_batch)?;
        report
            .gold_score
            .insert(name.to_string(), mean_gold(&ev.tasks, &ans));
        report.win_rate_vs_sft.insert(
            name.to_string(),
            win_rate(&ev.tasks, &ans, &sft_answers, &data.labelers, cfg.seed + 17),
        );
        let kl = kl_to_reference(*model, sft, prompts, col, n, cfg.seed + 29, cfg.gen_batch)?;
        report.kl_to_sft.insert(name.to_string(), kl);
        report
            .pretrain_loss
            .insert(name.to_string(), evaluate_loss(*model, &heldout, 64)?);
        eprintln!(
            "[eval] {name}: gold {:.3}, win rate vs SFT {:.3}, KL to SFT {:.2}, pretrain loss {:.3}",
            report.gold_score[*name], report.win_rate_vs_sft[*name], report.kl_to_sft[*name], report.pretrain_loss[*name]
        );
    }
    Ok(())
}

/// Runs the pipeline into `out` (resuming finished stages).
pub fn run(cfg: &PipelineConfig, out: &Path) -> anyhow::Result<PipelineReport> {
    let t0 = Instant::now();
    std::fs::create_dir_all(out)?;
    RunDir::open(out)?.write_config(cfg)?;
    let mut report = PipelineReport::default();
    let timed = |name: &str, t: Instant, report: &mut PipelineReport| {
        report
            .seconds
            .insert(name.to_string(), t.elapsed().as_secs_f64());
    };
    let t = Instant::now();
    let data = prepare_data(cfg, out)?;
    timed("data", t, &mut report);
    let t = Instant::now();
    let base_dir = pretrain_stage(cfg, &data, out)?;
    timed("pretrain", t, &mut report);
    let t = Instant::now();
    let sft_dir = sft_stage(cfg, &data, &base_dir, out)?;
    timed("sft", t, &mut report);
    let t = Instant::now();
    let device = crate::stage_device();
    let base = CausalLm::load(&base_dir, device)?;
    let sft = CausalLm::load(&sft_dir, device)?;
    evaluate_models(
        cfg,
        &data,
        &[("base", &base), ("sft", &sft)],
        &sft,
        &mut report,
    )?;
    timed("evaluate", t, &mut report);
    report
        .seconds
        .insert("total".into(), t0.elapsed().as_secs_f64());
    let text = serde_json::to_string_pretty(&report)?;
    rlhf_model::checkpoint::write_atomic(&out.join("report.json"), text.as_bytes())?;
    Ok(report)
}
