//! Stage 3: PPO(-ptx) of an SFT policy against a reward model, with a per-token KL penalty to
//! the frozen SFT model and, when `ppo.ptx_coef > 0`, pretraining gradients mixed in.
//!
//! `ppo --policy SFT_DIR --reward RM_DIR --prompts prompts.jsonl [--pretrain text.jsonl]
//! [--value DIR] [--config configs/ppo.toml] [--set ppo.kl_coef=0.05] [--out RUN] [--resume]
//! [--stop-after K] [--device auto|cpu|cuda]`
//!
//! The value function starts from the reward model (`ScalarModel::value_from_reward`) unless
//! `--value` gives one. The run directory gets `config.toml` (resolved), `metrics.jsonl` (one
//! line per iteration, standard PPO metric names: `objective/kl`, `objective/scores`,
//! `objective/entropy`, `policy/approxkl`, `policy/clipfrac`, `loss/policy`, `loss/value`,
//! `loss/ptx`, `val/explained_variance`, `time/generation`, `time/scoring`, `time/training`,
//! ...), `checkpoints/iter-NNNNNN/` with `checkpoints/latest.json` pointing at the newest, and
//! `report.json`; a finished run also `final/`, the last policy (hard links to its checkpoint's
//! files). A checkpoint holds
//!
//! * `policy/`, `value/`: the two trained models (Hugging Face layout);
//! * `trainer/`: the trainer's state (`rlhf_ppo::PpoState`: iterations done, the KL
//!   coefficient, both AdamW optimizers' moments and step counts, the `ppo` settings);
//! * `state.json`: iterations done, the KL coefficient and the pretraining source's position.
//!
//! Each part is written atomically and `latest.json` moves only once all are complete.
//!
//! The config, the checkpoints (their kinds and tokenizers), the prompts and the pretraining
//! data are all read and checked before the run directory is created: bad input leaves no run
//! directory behind, and a corrected rerun needs no `--resume`.
//!
//! `--resume` continues from the newest checkpoint, exactly: the prompts, the sampler seeds
//! and the minibatch order are functions of (seed, iteration), PPO uses no dropout, and the
//! weights, optimizers, KL coefficient and pretraining position are restored, so on the CPU a
//! run stopped and resumed ends with the same weights, bit for bit, as one run straight
//! through (`tests/ppo_bin.rs`). The `ppo` settings must be those of the run (the run
//! directory's `config.toml` is used unless `--config` is given; other `ppo.*` values are
//! refused, naming the keys). `iterations`, `save_every` and `keep_checkpoints` may change
//! freely; changing `max_prompt_tokens`, `ptx_block_len`, `ptx_batch_size`, `dtype` or
//! `threads` is accepted but the run then no longer matches an uninterrupted one.
//!
//! `--stop-after K` ends the invocation after iteration K (saving a checkpoint there), as an
//! interruption would; `--resume` then continues to `iterations`.
//! Checkpoints written before the trainer state existed (no `trainer/`) resume with fresh
//! AdamW moments, with a warning.

use anyhow::{bail, Context};
use clap::Parser;
use rlhf_data::collate::pack_documents;
use rlhf_data::records::PromptRecord;
use rlhf_dist::Collective;
use rlhf_examples::data::{read_records, read_texts};
use rlhf_examples::run::{load_config, truncate_metrics, Progress};
use rlhf_examples::stage::{
    chat_template_with_kwargs, check_same_vocab, checkpoint_head, load_reward, response_ids,
    unknown_tokens, warn_unknown, CommonArgs,
};
use rlhf_model::train::{MetricsSink, NoMetrics};
use rlhf_model::{parse_kind, AdaptersOff, CausalLm, HeadKind, LoadOptions, Policy, ScalarModel};
use rlhf_ppo::data::{left_pad, prompt_indices};
use rlhf_ppo::{
    PackedPtx, PpoCheckpoints, PpoConfig, PpoModels, PpoTrainer, PtxSource, SpecialTokens,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The `ppo` config (TOML). See configs/ppo.toml for every key with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PpoRunConfig {
    /// Total PPO iterations (a resumed run continues up to this). Default 500: the paper's 256k
    /// episodes at 512 per iteration.
    iterations: u64,
    /// Save the policy and value function every this many iterations (and after the last).
    save_every: u64,
    /// Checkpoints kept (oldest deleted first).
    keep_checkpoints: usize,
    /// f32 or bf16.
    dtype: String,
    /// libtorch intra-op threads; 0 = all cores.
    threads: usize,
    /// Prompts keep their last this many tokens; 0 = what the model's context leaves after
    /// `ppo.max_new_tokens`.
    max_prompt_tokens: usize,
    /// Pretraining text is packed into blocks of this many tokens (PPO-ptx); 0 = the model's
    /// n_positions.
    ptx_block_len: usize,
    /// Pretraining blocks per micro-batch (PPO-ptx); 0 = the micro-batch size.
    ptx_batch_size: usize,
    /// Skip bad JSONL lines (reporting them) instead of stopping at the first.
    lenient: bool,
    /// Trainer settings (see `rlhf_ppo::PpoConfig`).
    ppo: PpoConfig,
    /// Train LoRA adapters on the policy and the value function instead of every weight
    /// (`[lora]`: r, lora_alpha, lora_dropout, target_modules). The reference is then the
    /// policy itself with its adapters off: one copy of the weights, and AdamW state for the
    /// adapters (and the value head) only. A value function that has adapters already (made
    /// from a LoRA reward model) trains those.
    #[serde(skip_serializing_if = "Option::is_none")]
    lora: Option<rlhf_model::LoraConfig>,
}

impl Default for PpoRunConfig {
    fn default() -> Self {
        PpoRunConfig {
            iterations: 500,
            save_every: 10,
            keep_checkpoints: 2,
            dtype: "f32".into(),
            threads: 0,
            max_prompt_tokens: 0,
            ptx_block_len: 0,
            ptx_batch_size: 0,
            lenient: false,
            ppo: PpoConfig::default(),
            lora: None,
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    about = "PPO-ptx against a reward model with a per-token KL penalty (InstructGPT stage 3)"
)]
struct Args {
    /// SFT checkpoint: the initial policy and the frozen reference (needs tokenizer.json).
    #[arg(long)]
    policy: PathBuf,
    /// Reward-model checkpoint (frozen).
    #[arg(long)]
    reward: PathBuf,
    /// Prompts, JSONL: {"id", "user_id", "prompt"} per line.
    #[arg(long)]
    prompts: PathBuf,
    /// Pretraining text for PPO-ptx: JSONL {"id", "user_id", "text"} or plain text (blank lines
    /// separate documents).
    #[arg(long)]
    pretrain: Option<PathBuf>,
    /// Value-function checkpoint to start from (default: initialized from --reward).
    #[arg(long)]
    value: Option<PathBuf>,
    /// End this invocation after iteration K in total (saving a checkpoint there), as if the
    /// run were interrupted; `--resume` continues it to `iterations`.
    #[arg(long, value_name = "K")]
    stop_after: Option<u64>,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = Args::parse();
    // Everything is read and checked before the run directory is made: bad input leaves none,
    // and a corrected rerun needs no --resume.
    let run_path = args.common.run_path("ppo")?;
    let config_file = match (&args.common.config, args.common.resume) {
        (Some(f), _) => Some(f.clone()),
        (None, true) if run_path.join("config.toml").exists() => Some(run_path.join("config.toml")),
        _ => None,
    };
    let cfg: PpoRunConfig = load_config(config_file.as_deref(), &args.common.overrides)?;
    validate(&cfg)?;
    if args.stop_after == Some(0) {
        bail!("--stop-after 0 would run no iteration: give K >= 1 (the iteration to stop after)");
    }
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    // One process per rank under mpirun (data parallel), else one process.
    let comm: Rc<dyn Collective> = args.common.collective()?.into();
    let root = comm.is_root();
    let device = args.common.device_of(&*comm)?;
    let kind = parse_kind(&cfg.dtype)?;
    let opts = LoadOptions { device, kind };

    // Models: the reference and the RM are frozen (no grads, no optimizer).
    let mut reference = CausalLm::load(&args.policy, opts)
        .with_context(|| format!("--policy {}", args.policy.display()))?;
    reference.var_store_mut().freeze();
    let mut reward = load_reward_model(&args.reward, opts)?;
    reward.var_store_mut().freeze();
    let vocab = reference.config().vocab_size();
    if reward.config().vocab_size() < vocab {
        bail!(
            "--reward has vocab_size {} but the policy {}: the RM cannot read the policy's \
             tokens; use a reward model trained from this policy's SFT checkpoint",
            reward.config().vocab_size(),
            vocab
        );
    }
    check_same_vocab(&reference, &reward, "--reward")?;
    let n_positions = reference
        .config()
        .n_positions()
        .min(reward.config().n_positions());
    let max_prompt = if cfg.max_prompt_tokens == 0 {
        (n_positions - cfg.ppo.max_new_tokens).max(0) as usize
    } else {
        cfg.max_prompt_tokens
    };
    let needed = max_prompt as i64 + cfg.ppo.max_new_tokens;
    if max_prompt == 0 || needed > n_positions {
        bail!(
            "max_prompt_tokens ({max_prompt}) + ppo.max_new_tokens ({}) = {needed} leaves no room \
             in the models' n_positions ({n_positions}): lower one of them",
            cfg.ppo.max_new_tokens
        );
    }
    let block_len = if cfg.ptx_block_len == 0 {
        n_positions as usize
    } else {
        cfg.ptx_block_len
    };
    if cfg.ppo.ptx_coef > 0.0 && block_len as i64 > n_positions {
        bail!(
            "ptx_block_len ({}) exceeds the policy's n_positions ({n_positions}): lower it",
            cfg.ptx_block_len
        );
    }
    let tok = reference
        .tokenizer()
        .context("--policy has no tokenizer.json: ppo needs it to read the prompts")?
        .clone();
    let chat = chat_template_with_kwargs(
        &tok,
        !args.common.no_chat_template,
        &args.common.chat_template_kwargs,
    )?;
    // The EOS the SFT stage ended responses with (the chat template's, when one is in use).
    let (eos, pad) = response_ids(reference.config(), Some(&tok), chat.as_ref())?;

    // A run resumed from a checkpoint takes its policy and value function from there; else
    // they start from --policy and --value (or --reward).
    let checkpoints = PpoCheckpoints::new(&run_path);
    let latest = checkpoints.latest()?;
    let fresh = match &latest {
        Some(_) => None,
        None => {
            // With [lora] the policy is the loaded --policy itself (taken below), adapted.
            let policy = match cfg.lora {
                Some(_) => None,
                None => Some(
                    CausalLm::load(&args.policy, opts)
                        .with_context(|| format!("--policy {}", args.policy.display()))?,
                ),
            };
            let value = match &args.value {
                Some(v) => {
                    let value = load_value(v, opts)?;
                    check_value(&reference, &value, needed)?;
                    value
                }
                None => ScalarModel::value_from_reward(&args.reward, opts).with_context(|| {
                    format!("value function from --reward {}", args.reward.display())
                })?,
            };
            Some((policy, value))
        }
    };

    // Data.
    let records: Vec<PromptRecord> = read_records(&args.prompts, cfg.lenient)?;
    let mut prompts: Vec<Vec<i64>> = Vec::with_capacity(records.len());
    let mut cut = 0usize;
    // Without a chat template, the tokenizer's BOS first (Llama, Gemma), as the SFT stage's
    // collator encodes prompts.
    let prefix: Vec<i64> = rlhf_data::collate::prompt_prefix(tok.inner())
        .into_iter()
        .map(i64::from)
        .collect();
    for r in &records {
        let ids = match &chat {
            Some(t) => t
                .render_prompt(&r.prompt)
                .map_err(anyhow::Error::from)
                .and_then(|text| Ok(tok.encode(&text)?)),
            None => tok
                .encode(&r.prompt)
                .map(|ids| [prefix.clone(), ids].concat())
                .map_err(anyhow::Error::from),
        }
        .with_context(|| format!("{}: prompt {}", args.prompts.display(), r.id))?;
        if ids.is_empty() {
            bail!(
                "{}: prompt {} has no tokens after tokenization",
                args.prompts.display(),
                r.id
            );
        }
        let keep = ids.len().saturating_sub(max_prompt);
        cut += usize::from(keep > 0);
        prompts.push(ids[keep..].to_vec());
    }
    let what = format!("the prompts of {}", args.prompts.display());
    warn_unknown(
        "ppo",
        &what,
        unknown_tokens(&tok, prompts.iter().map(|s| &s[..])),
    );
    if cut > 0 {
        tracing::warn!(
            "[ppo] {cut} of {} prompts of {} are longer than max_prompt_tokens = {max_prompt} \
             tokens (their first tokens are dropped): raise it (with the model's n_positions in \
             mind) to keep them",
            prompts.len(),
            args.prompts.display()
        );
    }
    let mut ptx = match (&args.pretrain, cfg.ppo.ptx_coef > 0.0) {
        (Some(path), true) => {
            let texts = read_texts(path, cfg.lenient)?;
            let docs: Vec<Vec<u32>> = texts
                .iter()
                .map(|t| {
                    tok.encode(t)
                        .map(|v| v.into_iter().map(|x| x as u32).collect())
                })
                .collect::<Result<_, _>>()
                .with_context(|| format!("--pretrain {}", path.display()))?;
            let what = format!("the text of --pretrain {}", path.display());
            warn_unknown(
                "ppo",
                &what,
                unknown_tokens(&tok, docs.iter().map(|d| &d[..])),
            );
            let blocks = pack_documents(&docs, block_len, eos, pad)?;
            let bs = if cfg.ptx_batch_size == 0 {
                cfg.ppo.micro_batch()
            } else {
                cfg.ptx_batch_size
            };
            tracing::info!(
                "[ppo] PPO-ptx: {} pretraining documents in {} blocks of {}",
                texts.len(),
                blocks.num_blocks,
                block_len
            );
            Some(
                PackedPtx::new(blocks, bs, cfg.ppo.seed)
                    .with_context(|| format!("--pretrain {}", path.display()))?,
            )
        }
        (None, true) => bail!(
            "ppo.ptx_coef is {} but no --pretrain data was given: pass --pretrain FILE, or set \
             ppo.ptx_coef = 0 for plain PPO",
            cfg.ppo.ptx_coef
        ),
        (Some(_), false) => {
            tracing::warn!(
                "[ppo] warning: --pretrain is ignored because ppo.ptx_coef = 0 (plain PPO)"
            );
            None
        }
        (None, false) => None,
    };

    // All input is good: make (or, with --resume, reopen and tidy) the run directory.
    let run = args.common.open_run_of(run_path, "ppo", &*comm)?;
    let resume_dir = latest.as_ref().map(|c| c.dir.clone());
    let mut reference = Some(reference);
    let (mut policy, value, state) =
        match (fresh, &resume_dir) {
            (Some((policy, value)), _) => {
                let policy = match (policy, &cfg.lora) {
                    (Some(p), _) => p,
                    (None, Some(lora)) => {
                        let mut p = reference.take().expect("the loaded --policy");
                        if p.lora().is_some() {
                            bail!(
                            "[lora]: --policy {} has LoRA adapters already (a LoRA SFT run); the \
                             reference must be that SFT model, so start from it merged (the \
                             run's merged/ directory, which `sft` with [lora] writes; in code \
                             CausalLm::save_merged) or drop [lora] to go on training its \
                             adapters against a full copy",
                            args.policy.display()
                        );
                        }
                        // The adapters' A is random: draw it from the run's seed.
                        tch::manual_seed(cfg.ppo.seed as i64);
                        let n = p.attach_lora(lora)?;
                        tracing::info!(
                        "[ppo] LoRA r = {} on {n} projections; the reference is the policy with \
                         its adapters off",
                        lora.r
                    );
                        p
                    }
                    (None, None) => unreachable!("the policy is loaded without [lora]"),
                };
                let mut value = value;
                if let (Some(lora), None) = (&cfg.lora, value.lora()) {
                    let n = value.attach_lora(lora)?;
                    tracing::info!(
                        "[ppo] LoRA on the value function too: {n} projections and its head"
                    );
                }
                (policy, value, None)
            }
            (None, Some(dir)) => {
                let policy = CausalLm::load(dir.join("policy"), opts)
                    .with_context(|| format!("resuming from {}", dir.display()))?;
                if cfg.lora.is_some() != policy.lora().is_some() {
                    bail!(
                    "resuming from {}: the checkpoint's policy {} LoRA adapters but the config \
                     {} a [lora] table",
                    dir.display(),
                    if policy.lora().is_some() { "has" } else { "has no" },
                    if cfg.lora.is_some() { "has" } else { "has no" }
                );
                }
                if cfg.lora.is_some() {
                    reference = None;
                }
                let value = ScalarModel::load(dir.join("value"), opts)
                    .with_context(|| format!("resuming from {}", dir.display()))?;
                let state = latest.clone().expect("a checkpoint to resume from");
                tracing::info!(
                    "[ppo] resuming at iteration {} from {}",
                    state.state.iteration,
                    dir.display()
                );
                (policy, value, Some(state))
            }
            (None, None) => unreachable!("models are loaded fresh when there is no checkpoint"),
        };
    if let (Some(src), Some(s)) = (ptx.as_mut(), &state) {
        src.set_position(s.state.ptx_position);
    }
    policy.meta_mut().extra.insert("stage".into(), "ppo".into());
    let start = state.as_ref().map_or(0, |c| c.state.iteration);
    if let Some(k) = args.stop_after.filter(|&k| k <= start) {
        bail!(
            "--stop-after {k}: the run in {} is already at iteration {start}; give K > {start} \
             (or leave --stop-after out to continue to {})",
            run.path.display(),
            cfg.iterations
        );
    }
    if root {
        truncate_metrics(&run.join("metrics.jsonl"), start)?;
        run.write_config(&cfg)?;
    }

    let policy = Rc::new(policy);
    let reference: Box<dyn Policy> = match reference {
        Some(r) => Box::new(r),
        None => Box::new(AdaptersOff(policy.clone())),
    };
    let models = PpoModels {
        policy,
        reference,
        reward,
        value,
    };
    let tokens = SpecialTokens {
        eos: Some(eos as i64),
        pad: pad as i64,
    };
    let mut trainer = PpoTrainer::new(cfg.ppo.clone(), models, tokens)?;
    if let Some(c) = &state {
        if let Some(warning) = c
            .restore(&mut trainer)
            .with_context(|| format!("resuming from {}", c.dir.display()))?
        {
            tracing::warn!("[ppo] warning: {warning}");
        }
    }
    trainer.set_collective(comm.clone())?;
    tracing::info!(
        "[ppo] {} prompts, {} iterations of {} episodes, run directory {}",
        prompts.len(),
        cfg.iterations,
        cfg.ppo.batch_size,
        run.path.display()
    );
    let mut metrics: Box<dyn MetricsSink> = if root {
        Box::new(run.metrics()?)
    } else {
        Box::new(NoMetrics)
    };
    let mut progress = Progress::new("ppo", cfg.iterations);
    let mut last = None;
    let end = args
        .stop_after
        .map_or(cfg.iterations, |k| k.min(cfg.iterations));
    for it in start..end {
        let idx = prompt_indices(prompts.len(), cfg.ppo.batch_size, it, cfg.ppo.seed);
        let rows: Vec<&[i64]> = idx.iter().map(|&i| prompts[i].as_slice()).collect();
        let (ids, mask) = left_pad(&rows, pad as i64)?;
        let src = ptx.as_mut().map(|p| p as &mut dyn PtxSource);
        let s = trainer.step(&ids, &mask, src, &mut *metrics)?;
        let done = s.iteration;
        if !root {
            continue;
        }
        progress.update(
            s.iteration,
            &format!(
                "score {:.3} kl {:.3} beta {:.4} loss/policy {:.4} loss/value {:.4}",
                s.scores, s.kl, s.kl_coef, s.policy_loss, s.value_loss
            ),
        );
        last = Some(s);
        if done % cfg.save_every == 0 || done == end {
            checkpoints.save(
                &trainer,
                ptx.as_ref().map_or(0, |p| p.position()),
                cfg.keep_checkpoints,
            )?;
        }
    }
    if !root {
        return Ok(());
    }
    if end < cfg.iterations {
        tracing::info!(
            "[ppo] stopped after iteration {end} (--stop-after); --resume continues to {}",
            cfg.iterations
        );
    }
    if let Some(c) = checkpoints.latest()? {
        let finished = end == cfg.iterations;
        let last_dir = run.join("final");
        if finished {
            // final/: the last policy under a fixed name, as `reward` writes its RM (hard links
            // to the checkpoint's files, so it costs no disk and outlives checkpoint pruning).
            rlhf_io::link_dir_atomic(&c.policy(), &last_dir)?;
        } else if last_dir.exists() {
            // A finished run continued to more iterations: its old final/ is not final now.
            std::fs::remove_dir_all(&last_dir)
                .with_context(|| format!("removing {}", last_dir.display()))?;
        }
        let report = serde_json::json!({
            "final": finished.then_some(&last_dir),
            "iterations": trainer.iteration(),
            "kl_coef": trainer.kl_coef(),
            "world_size": comm.world_size(),
            "checkpoint": c.dir,
            "policy": c.policy(),
            "value": c.value(),
            "last_metrics": last.map(|s| serde_json::Value::Object(s.to_metrics())),
        });
        rlhf_model::checkpoint::write_atomic(
            &run.join("report.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        if finished {
            tracing::info!("[ppo] done: policy in {}", last_dir.display());
        } else {
            tracing::info!("[ppo] policy so far in {}", c.policy().display());
        }
    }
    if let Err(e) = rlhf_examples::plot::plot_run_dir(&run.path) {
        tracing::warn!("[ppo] warning: plots not written: {e:#}");
    }
    Ok(())
}

fn validate(cfg: &PpoRunConfig) -> anyhow::Result<()> {
    if cfg.iterations == 0 {
        bail!(
            "iterations must be at least 1, got 0: set the number of PPO iterations to run \
             (e.g. --set iterations=10)"
        );
    }
    cfg.ppo.validate()?;
    if cfg.save_every == 0 {
        bail!("save_every must be at least 1");
    }
    if cfg.keep_checkpoints == 0 {
        bail!("keep_checkpoints must be at least 1 (resuming needs one)");
    }
    Ok(())
}

/// Loads the reward model that `--reward` names (see [`load_reward`]).
fn load_reward_model(path: &Path, opts: LoadOptions) -> anyhow::Result<ScalarModel> {
    if checkpoint_head(path, "--reward").ok().flatten() == Some(HeadKind::Value) {
        bail!(
            "--reward {}: this is a Value checkpoint (a value function, e.g. a `ppo` run's \
             value/); pass a reward model: the final/ directory of a `reward` run, which trains \
             one from an SFT checkpoint",
            path.display()
        );
    }
    load_reward(path, opts, "--reward")
}

/// Loads the value function that `--value` names: a value checkpoint, or a reward model to
/// start one from (as without `--value`).
fn load_value(path: &Path, opts: LoadOptions) -> anyhow::Result<ScalarModel> {
    if checkpoint_head(path, "--value").ok().flatten() == Some(HeadKind::Lm) {
        bail!(
            "--value {}: this is a language-model checkpoint, but --value takes a value function \
             (a `ppo` run's checkpoints/iter-N/value/) or a reward model to start one from",
            path.display()
        );
    }
    let value =
        ScalarModel::load(path, opts).with_context(|| format!("--value {}", path.display()))?;
    if value.head_kind() == HeadKind::Reward {
        return ScalarModel::value_from_reward(path, opts)
            .with_context(|| format!("--value {}", path.display()));
    }
    Ok(value)
}

/// Checks that the `--value` function reads the policy's token ids and sequences of `needed`
/// tokens.
fn check_value(policy: &CausalLm, value: &ScalarModel, needed: i64) -> anyhow::Result<()> {
    if let (Some(a), Some(b)) = (policy.tokenizer(), value.tokenizer()) {
        if a.inner().get_vocab(true) != b.inner().get_vocab(true) {
            bail!(
                "--value: the value function's tokenizer ({} tokens) differs from the policy's \
                 ({} tokens): use a value function (or reward model) trained from this policy's \
                 SFT checkpoint, or leave out --value to start one from --reward",
                b.vocab_size(),
                a.vocab_size()
            );
        }
    }
    let (v_lm, v_vf) = (policy.config().vocab_size(), value.config().vocab_size());
    if v_vf < v_lm {
        bail!(
            "--value: the value function has vocab_size {v_vf} but the policy {v_lm}: it cannot \
             read the policy's tokens; leave out --value to start one from --reward"
        );
    }
    let n = value.config().n_positions();
    if n < needed {
        bail!(
            "--value: the value function's n_positions ({n}) is less than max_prompt_tokens + \
             ppo.max_new_tokens ({needed}): lower them"
        );
    }
    Ok(())
}
