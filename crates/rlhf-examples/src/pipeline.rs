//! InstructGPT in miniature on the toy world: data (split by user) -> pretrain a base model ->
//! SFT -> K-wise rankings of SFT samples by simulated labelers -> reward model -> PPO and
//! PPO-ptx -> evaluation on held-out users' prompts.
//!
//! Every stage writes its own run directory under the pipeline's output directory and a
//! `done.json` when finished; a rerun skips finished stages and resumes the unfinished one.

use crate::run::RunDir;
use crate::stage::train_lm;
use crate::toy_eval::{
    answers, conduct_stats, kl_to_reference, mean_gold, win_rate, ConductStats, EvalPrompts,
};
use anyhow::Context;
use rlhf_data::collate::{CollateConfig, Collator};
use rlhf_data::hygiene::{cap_per_user, dedup_prompts, split_by_user, DedupConfig, PiiScrubber};
use rlhf_data::records::{write_jsonl, Demonstration, PromptRecord, Ranking};
use rlhf_data::toy::{
    toy_tokenizer, LabelerConfig, LabelerPool, ToyConfig, ToyPrompt, ToyWorld, TOY_EOS_ID,
};
use rlhf_model::{CausalLm, Gpt2Config, Policy, Tokenizer};
use rlhf_sft::{evaluate_loss, LmData, ResidualDropout, SftConfig};
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
    /// Simulated labelers: the training group is calibrated to the paper's 73% agreement and
    /// the held-out group (which judges the evaluation) to 77%, both on comparisons of the SFT
    /// model's own samples on `labelers.calibration_prompts` training prompts.
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
    /// Training prompts whose SFT samples the labelers rank for the RM.
    pub rm_prompts: usize,
    /// Validation prompts ranked to measure the RM's held-out accuracy.
    pub rm_valid_prompts: usize,
    /// Fewest and most responses ranked per prompt (the paper: 4..9).
    pub rm_k: (usize, usize),
    /// Sampling temperature of the SFT samples that are ranked.
    pub rm_sample_temperature: f64,
    /// Reward-model training.
    pub rm: rlhf_reward::RewardTrainConfig,
    /// PPO settings (shared by PPO and PPO-ptx, except `ptx_coef`).
    pub ppo: rlhf_ppo::PpoConfig,
    /// PPO iterations per run.
    pub ppo_iterations: u64,
    /// Every N PPO iterations (and after the last), the policy's sampled answers to
    /// `ppo_eval_prompts` fixed validation prompts (training users' validation split) are
    /// scored with the gold score and logged as `eval/gold` (0 = never). Default 5.
    pub ppo_eval_every: u64,
    /// Validation prompts of that check. Default 128.
    pub ppo_eval_prompts: usize,
    /// gamma_ptx of the PPO-ptx run (plain PPO uses 0).
    pub ptx_coef: f64,
    /// A PPO stage saves a resumable checkpoint every N iterations (0 = never; a killed stage
    /// then starts over, with the same result). Default 10.
    pub ppo_save_every: u64,
    /// Rounds of the paper's iteration. Round 1 trains the RM on rankings of SFT samples, then
    /// PPO and PPO-ptx; each later round has the labelers rank samples of the previous round's
    /// PPO-ptx policy, retrains the RM (from the SFT model) on all rankings so far, and trains a
    /// new PPO-ptx policy from SFT against it (reported as `ppo_ptx_r2`, ...). Default 1.
    pub rounds: u64,
    /// Held-out prompts evaluated.
    pub eval_prompts: usize,
    /// How the table's answers are decoded: `false` (default) samples at temperature 1, the
    /// distribution PPO optimizes and the KL is measured on (one sample per prompt, fixed
    /// seed); `true` decodes greedily. `gold_score_greedy` is reported either way.
    pub eval_greedy: bool,
    /// Tokens generated per answer.
    pub max_new_tokens: i64,
    /// Prompts per generation batch.
    pub gen_batch: usize,
    /// LoRA adapters instead of full fine-tuning in SFT, the RM and PPO (`[lora]`: r,
    /// lora_alpha, lora_dropout, target_modules; absent by default). SFT trains adapters on the
    /// pretrained model and exports the merged SFT model (`sft/merged/`), which every later
    /// stage starts from; the RM trains adapters and its head on it; PPO trains adapters on the
    /// policy (its reference is the same weights with adapters off) and on the value function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<rlhf_model::LoraConfig>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            seed: 0,
            // Ten times the toy world's default: ~7,600 SFT demonstrations and 40,000
            // pretraining documents, enough for the 2x128 model to learn most task kinds (SFT
            // greedy gold 0.65, against 0.39 with the default world).
            world: ToyConfig {
                num_users: 4000,
                heldout_users: 400,
                pretrain_docs: 40_000,
                ..ToyConfig::default()
            },
            labelers: LabelerConfig::default(),
            max_prompts_per_user: 200,
            valid_fraction: 0.1,
            model: ModelShape::default(),
            block_len: 64,
            pretrain: SftConfig {
                epochs: 3,
                batch_size: 32,
                warmup_steps: 20,
                residual_dropout: ResidualDropout::Off,
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
                residual_dropout: ResidualDropout::Rate(0.1),
                max_prompt_tokens: 64,
                max_response_tokens: 32,
                optimizer: rlhf_model::train::AdamWConfig {
                    lr: 1e-3,
                    ..Default::default()
                },
                ..Default::default()
            },
            rm_prompts: 3000,
            rm_valid_prompts: 150,
            rm_k: (4, 9),
            rm_sample_temperature: 1.0,
            rm: rlhf_reward::RewardTrainConfig {
                epochs: 2,
                lr: 1e-3,
                batch_prompts: 16,
                ..Default::default()
            },
            ppo: rlhf_ppo::PpoConfig {
                batch_size: 64,
                minibatch_size: 32,
                ppo_epochs: 2,
                max_new_tokens: 24,
                kl_coef: 0.1,
                // The RM is normalized to mean 0 and standard deviation 1 on the demonstrations,
                // so scores and returns have a fixed scale: no reward whitening, and the critic
                // (initialized from the RM on that scale) predicts returns in the same units.
                whiten_rewards: false,
                // An answer cut off at max_new_tokens costs one RM standard deviation.
                no_eos_penalty: Some(1.0),
                // Critic-only first iterations, with a higher critic lr: the value function
                // starts from the RM, whose per-token outputs are not values yet.
                value_warmup_iterations: 5,
                policy_optimizer: rlhf_model::train::AdamWConfig {
                    lr: 1e-4,
                    ..Default::default()
                },
                value_optimizer: rlhf_model::train::AdamWConfig {
                    lr: 1e-3,
                    ..Default::default()
                },
                ..Default::default()
            },
            ppo_iterations: 30,
            ppo_eval_every: 5,
            ppo_eval_prompts: 128,
            ptx_coef: 0.2,
            ppo_save_every: 10,
            rounds: 1,
            eval_prompts: 1000,
            eval_greedy: false,
            max_new_tokens: 24,
            gen_batch: 64,
            lora: None,
        }
    }
}

/// The InstructGPT-style table (also `report.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    /// Win rate against SFT on held-out users' prompts, judged by simulated labelers.
    pub win_rate_vs_sft: BTreeMap<String, f64>,
    /// Mean gold score of the answers (sampled, or greedy with `eval_greedy`).
    pub gold_score: BTreeMap<String, f64>,
    /// Mean gold score of greedy answers.
    #[serde(default)]
    pub gold_score_greedy: BTreeMap<String, f64>,
    /// KL to the SFT model of sampled answers (nats per answer).
    pub kl_to_sft: BTreeMap<String, f64>,
    /// LM loss on held-out pretraining text (the alignment tax).
    pub pretrain_loss: BTreeMap<String, f64>,
    /// Per model: mean correctness and the shares of answers with a filler, a sign-off, and
    /// (among `answer only :` prompts) a broken constraint: where the gold score comes from.
    #[serde(default)]
    pub conduct: BTreeMap<String, ConductStats>,
    /// Measured agreement of two training labelers on the pipeline's comparisons (rankings of
    /// SFT samples on training prompts; the paper: 72.6%).
    #[serde(default)]
    pub labeler_agreement: Option<f64>,
    /// Measured agreement of two held-out labelers on the same comparisons (the paper: 77.3%).
    #[serde(default)]
    pub heldout_labeler_agreement: Option<f64>,
    /// Reward model's held-out pairwise accuracy against the labelers.
    pub rm_accuracy: Option<f64>,
    /// The accuracy a perfect gold-score model reaches against the same labelers.
    pub rm_accuracy_ceiling: Option<f64>,
    /// With `rounds > 1`: the RM's held-out accuracy in each round (`round-1`, `round-2`, ...),
    /// on rankings of that round's samples.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rm_accuracy_by_round: BTreeMap<String, f64>,
    /// With `rounds > 1`: the noise ceiling of each round's held-out rankings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rm_accuracy_ceiling_by_round: BTreeMap<String, f64>,
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
}

/// The two groups of simulated labelers, calibrated on the SFT model's samples.
#[derive(Debug, Clone)]
pub struct Labelers {
    /// Training labelers: they rank the RM's comparisons.
    pub train: LabelerPool,
    /// Held-out labelers: they judge every win rate, nothing else.
    pub heldout: LabelerPool,
    /// Measured agreement of two training labelers on the calibration comparisons.
    pub agreement: f64,
    /// Measured agreement of two held-out labelers on the calibration comparisons.
    pub heldout_agreement: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct LabelersDone {
    train: (f64, usize, f64),
    heldout: (f64, usize, f64),
    agreement: f64,
    heldout_agreement: f64,
    comparisons: usize,
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
    cfg.labelers.validate()?;
    Ok(PipelineData {
        world,
        sft_train: split.train,
        sft_valid: split.valid,
        train_prompts,
        collator: col,
    })
}

/// Calibrates the labelers on the comparisons the pipeline collects: K (`rm_k`) samples of the
/// SFT model on `labelers.calibration_prompts` training prompts (other draws than the RM's).
/// The training group is calibrated to `target_agreement`, the disjoint held-out group to
/// `heldout_target_agreement`; both agreements are then measured by simulation (two different
/// labelers of a group rank each sample). Saved in `out/labelers/done.json` and reloaded.
pub fn labeler_stage(
    cfg: &PipelineConfig,
    data: &PipelineData,
    sft_dir: &Path,
    out: &Path,
) -> anyhow::Result<Labelers> {
    use rand::SeedableRng;
    let dir = out.join("labelers");
    let lc = &cfg.labelers;
    let pools = |d: &LabelersDone| -> anyhow::Result<Labelers> {
        let mut heldout = LabelerPool::with_temperature(d.heldout.0, d.heldout.1, d.heldout.2)?;
        for l in &mut heldout.labelers {
            l.id += d.train.1;
        }
        Ok(Labelers {
            train: LabelerPool::with_temperature(d.train.0, d.train.1, d.train.2)?,
            heldout,
            agreement: d.agreement,
            heldout_agreement: d.heldout_agreement,
        })
    };
    if stage_done(&dir) {
        let d: LabelersDone =
            serde_json::from_str(&std::fs::read_to_string(dir.join("done.json"))?)
                .with_context(|| format!("reading {}", dir.join("done.json").display()))?;
        return pools(&d);
    }
    std::fs::create_dir_all(&dir)?;
    let sft = CausalLm::load(sft_dir, crate::stage_device()?)?;
    let n = lc.calibration_prompts.min(data.train_prompts.len());
    // The last training prompts (the RM ranks the first ones).
    let prompts = &data.train_prompts[data.train_prompts.len() - n..];
    let samples = sample_distinct(
        &sft,
        prompts,
        &data.collator,
        (lc.min_k, lc.max_k),
        cfg.max_new_tokens,
        cfg.rm_sample_temperature,
        cfg.seed + 303,
    )?;
    let samples: Vec<(ToyPrompt, Vec<String>)> = samples
        .into_iter()
        .map(|(p, s)| Ok((ToyPrompt::parse(&p.prompt)?, s)))
        .collect::<anyhow::Result<_>>()?;
    let pairs: Vec<(f64, f64)> = samples
        .iter()
        .flat_map(|(p, s)| rlhf_data::toy::gold_pairs(p, s))
        .collect();
    let train = LabelerPool::calibrated_on(&pairs, lc)
        .context("calibrating the training labelers on SFT samples")?;
    let heldout = LabelerPool::heldout_on(&pairs, lc)
        .context("calibrating the held-out labelers on SFT samples")?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed + 404);
    let agreement = train.measure_agreement(&samples, &mut rng).rate();
    let heldout_agreement = heldout.measure_agreement(&samples, &mut rng).rate();
    let done = LabelersDone {
        train: (train.base_temperature, train.len(), lc.noise_spread),
        heldout: (heldout.base_temperature, heldout.len(), lc.noise_spread),
        agreement,
        heldout_agreement,
        comparisons: pairs.len(),
    };
    eprintln!(
        "[labelers] calibrated on {} comparisons of SFT samples: training labelers agree {:.3} (T {:.3}), held-out labelers {:.3} (T {:.3})",
        pairs.len(),
        agreement,
        train.base_temperature,
        heldout_agreement,
        heldout.base_temperature
    );
    rlhf_model::checkpoint::write_atomic(
        &dir.join("done.json"),
        serde_json::to_string_pretty(&done)?.as_bytes(),
    )?;
    pools(&done)
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
    let mut lm = CausalLm::new(&gcfg, crate::stage_device()?)?;
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
    run.recover("pretrain")?;
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
    let merged = dir.join("merged");
    if stage_done(&dir) {
        return Ok(if cfg.lora.is_some() { merged } else { best });
    }
    let mut lm = CausalLm::load(base, crate::stage_device()?)?;
    if let (Some(lora), None) = (&cfg.lora, lm.lora()) {
        // A resumed SFT stage reloads its adapters with the checkpoint; a fresh one draws A
        // from the run's seed.
        tch::manual_seed(cfg.seed as i64 + 7);
        lm.attach_lora(lora)?;
    }
    let col = &data.collator;
    let to_data = |d: &[Demonstration]| -> anyhow::Result<LmData> {
        Ok(LmData::Demonstrations {
            pairs: col.tokenize_demonstrations(d)?,
            collate: col.config().clone(),
        })
    };
    let (train, valid) = (to_data(&data.sft_train)?, to_data(&data.sft_valid)?);
    let run = RunDir::open(&dir)?;
    run.recover("sft")?;
    run.write_config(&cfg.sft)?;
    train_lm("sft", &mut lm, &train, Some(&valid), &cfg.sft, &run, None)?;
    if cfg.lora.is_some() {
        // Later stages start from plain weights: the best adapters folded in.
        CausalLm::load(&best, crate::stage_device()?)?.save_merged(&merged)?;
        mark_done(&dir, serde_json::json!({"best": merged}))?;
        return Ok(merged);
    }
    mark_done(&dir, serde_json::json!({"best": best}))?;
    Ok(best)
}

/// Trains a policy from the SFT model with PPO (`ptx_coef` 0) or PPO-ptx against the reward
/// model; the value function starts from the RM. Returns the final policy checkpoint.
pub fn ppo_stage(
    cfg: &PipelineConfig,
    data: &PipelineData,
    sft_dir: &Path,
    rm_dir: &Path,
    out: &Path,
    name: &str,
    ptx_coef: f64,
) -> anyhow::Result<PathBuf> {
    if stage_done(&out.join(name)) {
        return Ok(out.join(name).join("final"));
    }
    let mut reward = rlhf_model::ScalarModel::load(rm_dir, crate::stage_device()?)?;
    reward.var_store_mut().freeze();
    ppo_stage_with(cfg, data, sft_dir, rm_dir, reward, out, name, ptx_coef)
}

/// [`ppo_stage`] against any reward model (a learned RM, or a rule such as
/// [`crate::toy_eval::GoldReward`]); the value function starts from the RM checkpoint
/// `value_init`.
#[allow(clippy::too_many_arguments)]
pub fn ppo_stage_with<M: rlhf_model::RewardModel>(
    cfg: &PipelineConfig,
    data: &PipelineData,
    sft_dir: &Path,
    value_init: &Path,
    reward: M,
    out: &Path,
    name: &str,
    ptx_coef: f64,
) -> anyhow::Result<PathBuf> {
    use rlhf_ppo::{PackedPtx, PpoModels, PpoTrainer, SpecialTokens};
    let dir = out.join(name);
    let final_dir = dir.join("final");
    if stage_done(&dir) {
        return Ok(final_dir);
    }
    let device = crate::stage_device()?;
    // A run killed mid-stage continues from its last checkpoint.
    let checkpoints = rlhf_ppo::PpoCheckpoints::new(&dir);
    let resume = checkpoints.latest()?;
    let (mut policy, mut value) = match &resume {
        Some(ck) => (
            CausalLm::load(ck.policy(), device)?,
            rlhf_model::ScalarModel::load(ck.value(), device)?,
        ),
        None => (
            CausalLm::load(sft_dir, device)?,
            rlhf_model::ScalarModel::value_from_reward(value_init, device)?,
        ),
    };
    if let (Some(lora), None) = (&cfg.lora, &resume) {
        tch::manual_seed(cfg.seed as i64 + 11);
        policy.attach_lora(lora)?;
        if value.lora().is_none() {
            value.attach_lora(lora)?;
        }
    }
    // With adapters, the reference is the policy itself with them off: no second copy.
    let policy = std::rc::Rc::new(policy);
    let reference: Box<dyn rlhf_model::Policy> = if policy.lora().is_some() {
        Box::new(rlhf_model::AdaptersOff(policy.clone()))
    } else {
        let mut r = CausalLm::load(sft_dir, device)?;
        r.var_store_mut().freeze();
        Box::new(r)
    };
    let ppo_cfg = rlhf_ppo::PpoConfig {
        ptx_coef,
        seed: cfg.seed,
        ..cfg.ppo.clone()
    };
    let eos = data.collator.config().eos_id as i64;
    let mut trainer = PpoTrainer::new(
        ppo_cfg.clone(),
        PpoModels {
            policy,
            reference,
            reward,
            value,
        },
        SpecialTokens {
            eos: Some(eos),
            pad: eos,
        },
    )?;
    let prompts: Vec<Vec<i64>> = data
        .train_prompts
        .iter()
        .map(|p| {
            Ok(data
                .collator
                .encode(&p.prompt)?
                .into_iter()
                .map(i64::from)
                .collect())
        })
        .collect::<anyhow::Result<_>>()?;
    let texts: Vec<&str> = data
        .world
        .pretrain
        .iter()
        .map(|d| d.text.as_str())
        .collect();
    let mut ptx = PackedPtx::new(
        data.collator.pack_texts(&texts, cfg.block_len)?,
        ppo_cfg.micro_batch(),
        cfg.seed,
    )?;
    let run = RunDir::open(&dir)?;
    run.recover(name)?;
    run.write_config(&ppo_cfg)?;
    let start = match &resume {
        Some(ck) => {
            if let Some(warning) = ck.restore(&mut trainer)? {
                eprintln!("[{name}] warning: {warning}");
            }
            ptx.set_position(ck.state.ptx_position);
            eprintln!("[{name}] resuming after iteration {}", ck.state.iteration);
            ck.state.iteration
        }
        None => 0,
    };
    // Lines of iterations after the checkpoint are about to be logged again.
    run.truncate_metrics(start)?;
    let mut metrics = run.metrics()?;
    let mut progress = crate::run::Progress::new(name, cfg.ppo_iterations);
    // Fixed validation prompts (training users' validation split) for `eval/gold`.
    let check: Vec<(ToyPrompt, Vec<u32>)> = data
        .sft_valid
        .iter()
        .take(cfg.ppo_eval_prompts)
        .map(|d| {
            Ok((
                ToyPrompt::parse(&d.prompt)?,
                data.collator.encode(&d.prompt)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let validation_gold =
        |policy: &CausalLm| -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
            let (tasks, ids): (Vec<ToyPrompt>, Vec<Vec<u32>>) = check.iter().cloned().unzip();
            let ans = answers(
                policy,
                &ids,
                &data.collator,
                cfg.max_new_tokens,
                Some(cfg.seed + 53),
                cfg.gen_batch,
            )?;
            let c = conduct_stats(&tasks, &ans);
            let mut m = serde_json::Map::new();
            m.insert(
                "eval/gold".into(),
                serde_json::json!(mean_gold(&tasks, &ans)),
            );
            m.insert("eval/correctness".into(), serde_json::json!(c.correctness));
            m.insert("eval/filler".into(), serde_json::json!(c.filler));
            m.insert("eval/sign_off".into(), serde_json::json!(c.sign_off));
            Ok(m)
        };
    if start == 0 && cfg.ppo_eval_every > 0 && !check.is_empty() {
        use rlhf_model::train::MetricsSink;
        metrics.log(0, &validation_gold(trainer.policy())?)?;
    }
    for it in start..cfg.ppo_iterations {
        let idx = rlhf_ppo::data::prompt_indices(prompts.len(), ppo_cfg.batch_size, it, cfg.seed);
        let rows: Vec<&[i64]> = idx.iter().map(|&i| prompts[i].as_slice()).collect();
        let (ids, mask) = rlhf_ppo::data::left_pad(&rows, eos)?;
        let ptx_src: Option<&mut dyn rlhf_ppo::PtxSource> =
            if ptx_coef > 0.0 { Some(&mut ptx) } else { None };
        let stats = trainer.step(
            &ids.to_device(device),
            &mask.to_device(device),
            ptx_src,
            &mut metrics,
        )?;
        let m = stats.to_metrics();
        let get = |k: &str| m.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        progress.update(
            it + 1,
            &format!(
                "score {:.3} kl {:.3}",
                get("objective/scores"),
                get("objective/kl")
            ),
        );
        let done = it + 1;
        if cfg.ppo_eval_every > 0
            && !check.is_empty()
            && (done % cfg.ppo_eval_every == 0 || done == cfg.ppo_iterations)
        {
            use rlhf_model::train::MetricsSink;
            let m = validation_gold(trainer.policy())?;
            eprintln!(
                "[{name}] iteration {done}: validation gold {:.3}",
                m["eval/gold"].as_f64().unwrap_or(f64::NAN)
            );
            metrics.log(done, &m)?;
        }
        if cfg.ppo_save_every > 0 && done % cfg.ppo_save_every == 0 && done < cfg.ppo_iterations {
            checkpoints.save(&trainer, ptx.position(), 1)?;
        }
    }
    let models = trainer.into_models();
    drop(models.reference);
    let mut policy = std::rc::Rc::try_unwrap(models.policy)
        .map_err(|_| anyhow::anyhow!("the PPO policy is still shared after training"))?;
    policy
        .meta_mut()
        .extra
        .insert("stage".into(), serde_json::json!(name));
    policy.save(&final_dir)?;
    mark_done(&dir, serde_json::json!({"final": final_dir}))?;
    Ok(final_dir)
}

/// Collects rankings of SFT samples, trains the reward model from the SFT checkpoint,
/// normalizes it on the demonstrations, and measures its held-out accuracy and the labelers'
/// noise ceiling. Returns the RM checkpoint, its accuracy and the ceiling.
pub fn rm_stage(
    cfg: &PipelineConfig,
    data: &PipelineData,
    labelers: &LabelerPool,
    sft_dir: &Path,
    out: &Path,
) -> anyhow::Result<(PathBuf, f64, f64)> {
    rm_stage_in(
        cfg,
        data,
        labelers,
        sft_dir,
        sft_dir,
        &[],
        &out.join("rm"),
        1,
    )
}

/// The RM stage in `dir`: the labelers rank samples of `sample_from` (the SFT model in the
/// first round, the current policy in later ones); the RM is trained from the SFT checkpoint
/// `sft_dir` on these rankings plus the training rankings of `earlier` RM stage directories (the
/// paper keeps collecting comparisons), and validated on held-out rankings of the new samples.
#[allow(clippy::too_many_arguments)]
pub fn rm_stage_in(
    cfg: &PipelineConfig,
    data: &PipelineData,
    labelers: &LabelerPool,
    sft_dir: &Path,
    sample_from: &Path,
    earlier: &[PathBuf],
    dir: &Path,
    round: u64,
) -> anyhow::Result<(PathBuf, f64, f64)> {
    let dir = dir.to_path_buf();
    let final_dir = dir.join("final");
    if stage_done(&dir) {
        let done: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("done.json"))?)?;
        return Ok((
            final_dir,
            done["accuracy"].as_f64().unwrap_or(f64::NAN),
            done["ceiling"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    // Tidy what a killed run left before reading its rankings and checkpoint.
    let run = RunDir::open(&dir)?;
    run.recover("rm")?;
    let device = crate::stage_device()?;
    let col = &data.collator;
    let rankings_path = dir.join("rankings.jsonl");
    let valid_path = dir.join("valid_rankings.jsonl");
    let (train_r, valid_r) = if rankings_path.exists() && valid_path.exists() {
        let opts = rlhf_data::records::ReadOptions::default();
        (
            rlhf_data::records::read_jsonl::<Ranking>(&rankings_path, &opts)?.0,
            rlhf_data::records::read_jsonl::<Ranking>(&valid_path, &opts)?.0,
        )
    } else {
        let sft = CausalLm::load(sample_from, device)?;
        let valid_prompts: Vec<PromptRecord> = data
            .sft_valid
            .iter()
            .map(|d| PromptRecord {
                id: d.id.clone(),
                user_id: d.user_id.clone(),
                prompt: d.prompt.clone(),
                task: None,
                source: None,
            })
            .take(cfg.rm_valid_prompts)
            .collect();
        // Later rounds rank other prompts first (the pool wraps around).
        let n = cfg.rm_prompts.min(data.train_prompts.len());
        let start = ((round - 1) as usize * n) % data.train_prompts.len().max(1);
        let prompts: Vec<PromptRecord> = data
            .train_prompts
            .iter()
            .cycle()
            .skip(start)
            .take(n)
            .cloned()
            .collect();
        let round_seed = cfg.seed + 1000 * (round - 1);
        let (train_r, sk1) = collect_rankings(
            &sft,
            &prompts,
            col,
            labelers,
            cfg.rm_k,
            cfg.max_new_tokens,
            cfg.rm_sample_temperature,
            round_seed + 101,
        )?;
        let (valid_r, sk2) = collect_rankings(
            &sft,
            &valid_prompts,
            col,
            labelers,
            cfg.rm_k,
            cfg.max_new_tokens,
            cfg.rm_sample_temperature,
            round_seed + 202,
        )?;
        eprintln!("[rm] {} training and {} validation rankings of SFT samples ({} prompts skipped: fewer than 2 distinct samples)", train_r.len(), valid_r.len(), sk1 + sk2);
        write_jsonl(&rankings_path, &train_r)?;
        write_jsonl(&valid_path, &valid_r)?;
        (train_r, valid_r)
    };
    let mut all_train = Vec::new();
    for d in earlier {
        let opts = rlhf_data::records::ReadOptions::default();
        all_train
            .extend(rlhf_data::records::read_jsonl::<Ranking>(d.join("rankings.jsonl"), &opts)?.0);
    }
    if !earlier.is_empty() {
        eprintln!(
            "[rm] training on {} new and {} earlier rankings",
            train_r.len(),
            all_train.len()
        );
    }
    all_train.extend(train_r.iter().cloned());
    let train = col.tokenize_rankings(&all_train)?;
    let gold: Vec<Vec<f64>> = valid_r
        .iter()
        .map(|r| {
            let prompt = ToyPrompt::parse(&r.prompt)?;
            Ok(r.responses.iter().map(|x| prompt.gold(x)).collect())
        })
        .collect::<anyhow::Result<_>>()?;
    let gold_pairs: Vec<(f64, f64)> = valid_r
        .iter()
        .map(|r| {
            Ok(rlhf_data::toy::gold_pairs(
                &ToyPrompt::parse(&r.prompt)?,
                &r.responses,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?
        .concat();
    let ceiling = labelers.noise_ceiling(&gold_pairs);
    let valid = rlhf_reward::RankingData {
        groups: col.tokenize_rankings(&valid_r)?,
        gold: Some(gold),
    };
    let collate = col.config().clone();
    let latest = dir.join("latest");
    let mut trainer = if rlhf_model::checkpoint::resolve_dir(&latest).is_ok() {
        rlhf_reward::RewardTrainer::resume(&latest, device, cfg.rm.clone(), collate, train.len())?
    } else {
        let mut model = rlhf_model::ScalarModel::reward_from_lm(sft_dir, device)?;
        if let Some(lora) = &cfg.lora {
            model.attach_lora(lora)?;
        }
        rlhf_reward::RewardTrainer::new(model, cfg.rm.clone(), collate, train.len())?
    };
    let mut metrics = run.metrics()?;
    let mut progress = crate::run::Progress::new("rm", 0);
    let mut known = false;
    let reports = trainer.fit(
        &train,
        Some(&valid),
        &mut metrics,
        Some(&dir),
        &mut |done, total, status| {
            if !known {
                progress = crate::run::Progress::new("rm", total);
                known = true;
            }
            progress.update(done, status);
        },
    )?;
    let demos = col.tokenize_demonstrations(&data.sft_train)?;
    let norm = trainer.normalize(&demos)?;
    trainer.model().save(&final_dir)?;
    let last = reports
        .last()
        .context("the reward trainer returned no validation report")?;
    let acc = last.stats.total.accuracy();
    eprintln!(
        "[rm] held-out accuracy {:.3} against the labelers (gold order: {}), noise ceiling {:.3}; normalization bias {:.3}",
        acc,
        last.gold_accuracy.map_or("n/a".into(), |g| format!("{g:.3}")),
        ceiling,
        norm.bias
    );
    mark_done(
        &dir,
        serde_json::json!({"accuracy": acc, "ceiling": ceiling, "gold_accuracy": last.gold_accuracy}),
    )?;
    Ok((final_dir, acc, ceiling))
}

/// The paper's comparison data: for each prompt, K (uniform in `min_k..=max_k`) distinct
/// samples of `policy` (temperature `temperature`), ranked best-first by a labeler drawn at
/// random. Prompts where fewer than 2 distinct answers come out are skipped (and counted).
#[allow(clippy::too_many_arguments)]
pub fn collect_rankings(
    policy: &CausalLm,
    prompts: &[PromptRecord],
    col: &Collator,
    pool: &LabelerPool,
    ks: (usize, usize),
    max_new_tokens: i64,
    temperature: f64,
    seed: u64,
) -> anyhow::Result<(Vec<Ranking>, usize)> {
    use rand::SeedableRng;
    let samples = sample_distinct(policy, prompts, col, ks, max_new_tokens, temperature, seed)?;
    let skipped = prompts.len() - samples.len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x5eed));
    let mut out = Vec::with_capacity(samples.len());
    for (p, distinct) in samples {
        let prompt = ToyPrompt::parse(&p.prompt)?;
        let ranking = pool.choose(&mut rng).rank(&prompt, &distinct, &mut rng);
        out.push(Ranking {
            id: format!("ranking-{}", p.id),
            user_id: p.user_id.clone(),
            prompt: p.prompt.clone(),
            responses: distinct,
            ranking,
        });
    }
    Ok((out, skipped))
}

/// K (uniform in `min_k..=max_k`) distinct samples of `policy` per prompt (2K drawn, the first
/// K distinct kept); prompts with fewer than 2 distinct samples are left out.
pub fn sample_distinct<'a>(
    policy: &CausalLm,
    prompts: &'a [PromptRecord],
    col: &Collator,
    (min_k, max_k): (usize, usize),
    max_new_tokens: i64,
    temperature: f64,
    seed: u64,
) -> anyhow::Result<Vec<(&'a PromptRecord, Vec<String>)>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    let per_batch = 4usize;
    for (bi, chunk) in prompts.chunks(per_batch).enumerate() {
        let ks: Vec<usize> = chunk.iter().map(|_| rng.gen_range(min_k..=max_k)).collect();
        let mut rows = vec![];
        for (p, &k) in chunk.iter().zip(&ks) {
            let ids = col.encode(&p.prompt)?;
            rows.extend(std::iter::repeat_n(ids, 2 * k));
        }
        let gen = rlhf_model::GenerateConfig {
            max_new_tokens,
            temperature,
            seed: Some(seed.wrapping_mul(1_000_003).wrapping_add(bi as u64)),
            eos_token_id: Some(col.config().eos_id as i64),
            pad_token_id: col.config().pad_id as i64,
            ..Default::default()
        };
        let (_, _, toks, mask) = rlhf_sft::answer(policy, &rows, col.config(), &gen)?;
        let (toks, mask) = (
            toks.to_device(tch::Device::Cpu),
            mask.to_device(tch::Device::Cpu),
        );
        let mut row = 0i64;
        for (p, &k) in chunk.iter().zip(&ks) {
            let mut distinct: Vec<String> = Vec::new();
            for _ in 0..2 * k {
                let n = mask.get(row).sum(tch::Kind::Float).double_value(&[]) as usize;
                let ids: Vec<u32> = Vec::<i64>::try_from(toks.get(row))?
                    .into_iter()
                    .take(n)
                    .filter(|&t| t != col.config().eos_id as i64)
                    .map(|t| t as u32)
                    .collect();
                let text = col.decode(&ids)?;
                if distinct.len() < k && !distinct.contains(&text) {
                    distinct.push(text);
                }
                row += 1;
            }
            if distinct.len() >= 2 {
                out.push((p, distinct));
            }
        }
    }
    Ok(out)
}

/// Evaluates named policies on held-out prompts against the SFT model.
pub fn evaluate_models(
    cfg: &PipelineConfig,
    data: &PipelineData,
    judges: &LabelerPool,
    models: &[(&str, &CausalLm)],
    sft: &CausalLm,
    report: &mut PipelineReport,
) -> anyhow::Result<()> {
    let col = &data.collator;
    // The base model is prompted with labeler demonstrations (the only answers the pipeline
    // has), habits included.
    let shots = crate::toy_eval::Shot::from_demonstrations(&data.sft_train, 64);
    anyhow::ensure!(
        !shots.is_empty(),
        "no demonstration to prompt the base model with"
    );
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
    // Every model's answers use the same sampler seed (the table's models see the same draws
    // of randomness); SFT's are its answers to the same prompts.
    let decode_seed = (!cfg.eval_greedy).then_some(cfg.seed + 41);
    let sft_answers = answers(sft, &ev.prompts, col, n, decode_seed, cfg.gen_batch)?;
    for (name, model) in models {
        let prompts = if *name == "base" {
            &ev.few_shot
        } else {
            &ev.prompts
        };
        let ans = answers(*model, prompts, col, n, decode_seed, cfg.gen_batch)?;
        report
            .gold_score
            .insert(name.to_string(), mean_gold(&ev.tasks, &ans));
        report
            .conduct
            .insert(name.to_string(), conduct_stats(&ev.tasks, &ans));
        let greedy = if cfg.eval_greedy {
            ans.clone()
        } else {
            answers(*model, prompts, col, n, None, cfg.gen_batch)?
        };
        report
            .gold_score_greedy
            .insert(name.to_string(), mean_gold(&ev.tasks, &greedy));
        report.win_rate_vs_sft.insert(
            name.to_string(),
            win_rate(&ev.tasks, &ans, &sft_answers, judges, cfg.seed + 17),
        );
        let kl = kl_to_reference(*model, sft, prompts, col, n, cfg.seed + 29, cfg.gen_batch)?;
        report.kl_to_sft.insert(name.to_string(), kl);
        report
            .pretrain_loss
            .insert(name.to_string(), evaluate_loss(*model, &heldout, 64)?);
        let c = report.conduct[*name];
        eprintln!(
            "[eval] {name}: gold {:.3} (greedy {:.3}), win rate vs SFT {:.3}, KL to SFT {:.2}, pretrain loss {:.3}; correctness {:.3}, filler {:.3}, sign-off {:.3}, broken constraint {:.3}",
            report.gold_score[*name], report.gold_score_greedy[*name], report.win_rate_vs_sft[*name], report.kl_to_sft[*name], report.pretrain_loss[*name],
            c.correctness, c.filler, c.sign_off, c.broken_constraint
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
    let labelers = labeler_stage(cfg, &data, &sft_dir, out)?;
    report.labeler_agreement = Some(labelers.agreement);
    report.heldout_labeler_agreement = Some(labelers.heldout_agreement);
    timed("labelers", t, &mut report);
    let t = Instant::now();
    let (rm_dir, acc, ceiling) = rm_stage(cfg, &data, &labelers.train, &sft_dir, out)?;
    report.rm_accuracy = Some(acc);
    report.rm_accuracy_ceiling = Some(ceiling);
    timed("rm", t, &mut report);
    let t = Instant::now();
    let ppo_dir = ppo_stage(cfg, &data, &sft_dir, &rm_dir, out, "ppo", 0.0)?;
    timed("ppo", t, &mut report);
    let t = Instant::now();
    let ptx_dir = ppo_stage(cfg, &data, &sft_dir, &rm_dir, out, "ppo_ptx", cfg.ptx_coef)?;
    timed("ppo_ptx", t, &mut report);
    let mut policies = vec![
        ("ppo".to_string(), ppo_dir),
        ("ppo_ptx".to_string(), ptx_dir.clone()),
    ];
    if cfg.rounds > 1 {
        report.rm_accuracy_by_round.insert("round-1".into(), acc);
        report
            .rm_accuracy_ceiling_by_round
            .insert("round-1".into(), ceiling);
    }
    let mut earlier = vec![out.join("rm")];
    let mut current = ptx_dir;
    for round in 2..=cfg.rounds {
        let rdir = out.join(format!("round-{round}"));
        eprintln!(
            "[pipeline] round {round}/{}: rankings of the current policy, new RM, new PPO-ptx",
            cfg.rounds
        );
        let t = Instant::now();
        let (rm_r, acc_r, ceil_r) = rm_stage_in(
            cfg,
            &data,
            &labelers.train,
            &sft_dir,
            &current,
            &earlier,
            &rdir.join("rm"),
            round,
        )?;
        timed(&format!("rm_r{round}"), t, &mut report);
        report
            .rm_accuracy_by_round
            .insert(format!("round-{round}"), acc_r);
        report
            .rm_accuracy_ceiling_by_round
            .insert(format!("round-{round}"), ceil_r);
        let t = Instant::now();
        let ptx_r = ppo_stage(cfg, &data, &sft_dir, &rm_r, &rdir, "ppo_ptx", cfg.ptx_coef)?;
        timed(&format!("ppo_ptx_r{round}"), t, &mut report);
        earlier.push(rdir.join("rm"));
        policies.push((format!("ppo_ptx_r{round}"), ptx_r.clone()));
        current = ptx_r;
    }
    let t = Instant::now();
    let device = crate::stage_device()?;
    let base = CausalLm::load(&base_dir, device)?;
    let sft = CausalLm::load(&sft_dir, device)?;
    let loaded: Vec<(String, CausalLm)> = policies
        .iter()
        .map(|(n, d)| Ok((n.clone(), CausalLm::load(d, device)?)))
        .collect::<anyhow::Result<_>>()?;
    let mut models: Vec<(&str, &CausalLm)> = vec![("base", &base), ("sft", &sft)];
    models.extend(loaded.iter().map(|(n, m)| (n.as_str(), m)));
    evaluate_models(cfg, &data, &labelers.heldout, &models, &sft, &mut report)?;
    timed("evaluate", t, &mut report);
    report
        .seconds
        .insert("total".into(), t0.elapsed().as_secs_f64());
    let text = serde_json::to_string_pretty(&report)?;
    rlhf_model::checkpoint::write_atomic(&out.join("report.json"), text.as_bytes())?;
    rlhf_model::checkpoint::write_atomic(&out.join("report.md"), report.to_markdown().as_bytes())?;
    match crate::plot::pipeline_plots(out, &report) {
        Ok(files) => eprintln!(
            "[pipeline] {} plots written (summary in {})",
            files.len(),
            out.join("plots").display()
        ),
        Err(e) => eprintln!("[pipeline] warning: plots not written: {e:#}"),
    }
    Ok(report)
}

impl PipelineReport {
    /// The evaluated models in table order: base, sft, ppo, ppo_ptx, then later rounds.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["base", "sft", "ppo", "ppo_ptx"]
            .iter()
            .map(|s| s.to_string())
            .filter(|n| self.gold_score.contains_key(n))
            .collect();
        let mut rest: Vec<(u64, String)> = self
            .gold_score
            .keys()
            .filter(|k| !names.contains(k))
            .map(|k| {
                let r = k
                    .rsplit("_r")
                    .next()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(u64::MAX);
                (r, k.clone())
            })
            .collect();
        rest.sort();
        names.extend(rest.into_iter().map(|(_, k)| k));
        names
    }

    /// The InstructGPT-style table as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut md = String::from(
            "# rlhf pipeline report\n\nHeld-out users' prompts; win rate against SFT judged by the simulated labelers \
             (ties count half) and gold = mean programmatic score, both of answers sampled at temperature 1 (greedy \
             with `eval_greedy = true`); gold (greedy) of greedy answers; KL to SFT in nats per answer; \
             pretrain loss on held-out pretraining text (the alignment tax).\n\n\
             Correctness = gold of the answer without its habit words and penalties; filler, sign-off = share of \
             answers with one; broken = share of `answer only :` prompts whose answer has either.\n\n\
             | model | win rate vs SFT | gold score | gold (greedy) | KL to SFT | pretrain loss | correctness | filler | sign-off | broken |\n|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for name in self.model_names() {
            let name = name.as_str();
            if let Some(g) = self.gold_score.get(name) {
                let greedy = self
                    .gold_score_greedy
                    .get(name)
                    .map_or("-".to_string(), |x| format!("{x:.3}"));
                let c = self.conduct.get(name).copied().unwrap_or_default();
                md.push_str(&format!(
                    "| {name} | {:.3} | {g:.3} | {greedy} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                    self.win_rate_vs_sft[name], self.kl_to_sft[name], self.pretrain_loss[name],
                    c.correctness, c.filler, c.sign_off, c.broken_constraint
                ));
            }
        }
        if let (Some(a), Some(h)) = (self.labeler_agreement, self.heldout_labeler_agreement) {
            md.push_str(&format!("\nLabeler agreement on the pipeline's comparisons: training labelers {a:.3}, held-out labelers {h:.3} (the held-out group judges the win rates).\n"));
        }
        if let (Some(a), Some(c)) = (self.rm_accuracy, self.rm_accuracy_ceiling) {
            md.push_str(&format!("\nReward model held-out accuracy: {a:.3} (noise ceiling of the labelers: {c:.3}).\n"));
        }
        for (round, a) in &self.rm_accuracy_by_round {
            let c = self
                .rm_accuracy_ceiling_by_round
                .get(round)
                .copied()
                .unwrap_or(f64::NAN);
            md.push_str(&format!("- {round}: RM accuracy {a:.3} (ceiling {c:.3})\n"));
        }
        md.push_str("\n| stage | seconds |\n|---|---|\n");
        for (k, v) in &self.seconds {
            md.push_str(&format!("| {k} | {v:.1} |\n"));
        }
        md
    }
}
