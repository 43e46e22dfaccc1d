//! Stage 2: trains a reward model on labeler rankings with the InstructGPT K-wise loss.
//!
//! `reward --init SFT_DIR --data rankings.jsonl [--data more.jsonl] [--valid rankings.jsonl]
//! [--demos demonstrations.jsonl] [--out RUN] [--config configs/reward.toml]
//! [--set train.epochs=2] [--resume] [--device cpu]`
//!
//! `--init` is an SFT (or pretrained) LM checkpoint — the RM is built from it by dropping the
//! unembedding and adding a scalar head — or a reward checkpoint to train further. Rankings are
//! JSONL `{"id", "user_id", "prompt", "responses": [K strings], "ranking": [best..worst]}`
//! (the pairwise `{"chosen", "rejected"}` form counts as K = 2). With `--demos`, the final
//! model gets the paper's normalization: a bias so that labeler demonstrations score 0 on
//! average.
//!
//! The run directory gets `config.toml` (resolved), `metrics.jsonl`, a resumable checkpoint per
//! epoch `epoch-N/` (and `latest/` every `train.save_every_steps`), `final/` (the normalized
//! RM, what later stages load) and `report.json`. `--resume` continues from the newest
//! checkpoint exactly (the config defaults to the run's `config.toml`).

use anyhow::{bail, Context};
use clap::Parser;
use rlhf_data::collate::{CollateConfig, Collator};
use rlhf_data::hygiene::split_by_user;
use rlhf_data::records::{Demonstration, Ranking};
use rlhf_dist::Collective;
use rlhf_examples::data::{read_records, read_records_from};
use rlhf_examples::run::{load_config, Progress};
use rlhf_examples::stage::{
    chat_template_with_kwargs, check_fit, response_ids, warn_seen_prompts, warn_truncation,
    warn_unknown, CommonArgs,
};
use rlhf_model::train::{MetricsSink, NoMetrics};
use rlhf_model::{CheckpointMeta, HeadKind, LoadOptions, ScalarModel};
use rlhf_reward::trainer::{latest_checkpoint, RankingData, RewardTrainConfig, RewardTrainer};
use rlhf_toy::rm::gold_scores;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The `reward` config (TOML). See configs/reward.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RewardRunConfig {
    /// Trainer settings.
    train: RewardTrainConfig,
    /// Without --valid: the fraction of users held out for validation (split by user ID).
    valid_fraction: f64,
    /// Seed of that split.
    split_seed: u64,
    /// Skip bad JSONL lines (reporting them) instead of stopping at the first.
    lenient: bool,
    /// Longest prompt in tokens (longer prompts lose tokens from the left).
    max_prompt_tokens: usize,
    /// Longest response in tokens, counting the EOS (longer ones lose tokens from the right).
    max_response_tokens: usize,
    /// When every validation prompt is a toy-world prompt, also report the accuracy against
    /// the gold order.
    toy_gold: bool,
    /// Train LoRA adapters on the body and the scalar head whole (`[lora]`: r, lora_alpha,
    /// lora_dropout, target_modules) instead of every weight. The checkpoints then hold the
    /// base weights plus PEFT's adapter files (task type `SEQ_CLS`, the head as
    /// `modules_to_save`), and `ppo` starts its value function with the same adapters.
    #[serde(skip_serializing_if = "Option::is_none")]
    lora: Option<rlhf_model::LoraConfig>,
}

impl Default for RewardRunConfig {
    fn default() -> Self {
        RewardRunConfig {
            train: RewardTrainConfig::default(),
            valid_fraction: 0.1,
            split_seed: 0,
            lenient: false,
            max_prompt_tokens: 128,
            max_response_tokens: 128,
            toy_gold: true,
            lora: None,
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "Train a reward model on K-wise rankings (InstructGPT stage 2)")]
struct Args {
    /// SFT/pretrained LM checkpoint to build the RM from (or a reward checkpoint to continue).
    #[arg(long)]
    init: PathBuf,
    /// Rankings, JSONL (repeatable).
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// Validation rankings (default: hold out users of --data).
    #[arg(long)]
    valid: Vec<PathBuf>,
    /// Labeler demonstrations, JSONL {"id", "user_id", "prompt", "response"}: normalize the
    /// final RM so that they score 0 on average.
    #[arg(long)]
    demos: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Builds the reward model from `--init`: an LM checkpoint gets a fresh scalar head, a reward
/// checkpoint is trained further, anything else is refused.
fn init_model(dir: &Path, opts: LoadOptions) -> anyhow::Result<ScalarModel> {
    let resolved = rlhf_model::checkpoint::resolve_dir(dir)?;
    let head = CheckpointMeta::read(&resolved)?.map(|m| m.head);
    let model = match head {
        Some(HeadKind::Value) => bail!(
            "{} is a value-function checkpoint: --init takes an SFT/pretrained LM checkpoint \
             (or a reward checkpoint)",
            dir.display()
        ),
        Some(HeadKind::Reward) => ScalarModel::load(&resolved, opts)?,
        Some(HeadKind::Lm) => ScalarModel::reward_from_lm(&resolved, opts)?,
        None => match ScalarModel::reward_from_lm(&resolved, opts) {
            Ok(m) => m,
            Err(_) => ScalarModel::load(&resolved, opts)?,
        },
    };
    Ok(model)
}

fn collator(
    model: &ScalarModel,
    cfg: &RewardRunConfig,
    chat: bool,
    kwargs: &[String],
) -> anyhow::Result<Collator> {
    let tok = model
        .tokenizer()
        .context("the checkpoint has no tokenizer.json: the reward stage needs one to read text")?;
    let template = chat_template_with_kwargs(tok, chat, kwargs)?;
    let (eos, pad) = response_ids(model.config(), Some(tok), template.as_ref())?;
    let collate =
        CollateConfig::new(eos, pad).with_limits(cfg.max_prompt_tokens, cfg.max_response_tokens);
    Ok(Collator::new(tok.inner().clone(), collate)?.with_chat_template(template))
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = Args::parse();
    // Everything is read and checked before the run directory is made: bad input leaves none.
    let run_path = args.common.run_path("reward")?;
    // On --resume the run's own config is the base (flags may still override it).
    let config_file = match (&args.common.config, args.common.resume) {
        (Some(c), _) => Some(c.clone()),
        (None, true) if run_path.join("config.toml").exists() => Some(run_path.join("config.toml")),
        _ => None,
    };
    let cfg: RewardRunConfig = load_config(config_file.as_deref(), &args.common.overrides)
        .map_err(|e| {
            let msg = format!("{e:#}");
            let flat = ["lr", "beta1", "beta2", "eps", "weight_decay"]
                .iter()
                .any(|k| msg.contains(&format!("unknown field `{k}`")));
            if flat {
                e.context(
                    "the AdamW keys of [train] moved to [train.optimizer] (e.g. \
                     train.optimizer.lr), as in sft's config",
                )
            } else {
                e
            }
        })?;
    cfg.train.validate()?;
    if !(0.0..1.0).contains(&cfg.valid_fraction) {
        bail!(
            "valid_fraction is {}: expected a fraction in [0, 1)",
            cfg.valid_fraction
        );
    }
    // One process per rank under mpirun (data parallel), else one process.
    let comm: Rc<dyn Collective> = args.common.collective()?.into();
    let device = args.common.device_of(&*comm)?;
    let opts = LoadOptions::from(device);
    // Inputs first: a bad file should fail before any work.
    let rankings = read_records_from::<Ranking>(&args.data, cfg.lenient)?;
    let (train, valid) = if args.valid.is_empty() {
        if cfg.valid_fraction > 0.0 {
            let s = split_by_user(
                rankings,
                (1.0 - cfg.valid_fraction, cfg.valid_fraction, 0.0),
                cfg.split_seed,
            )?;
            (s.train, s.valid)
        } else {
            (rankings, Vec::new())
        }
    } else {
        (
            rankings,
            read_records_from::<Ranking>(&args.valid, cfg.lenient)?,
        )
    };
    if train.is_empty() {
        bail!("no training rankings left after the validation split");
    }
    if let (Some(v), Some(d)) = (args.valid.first(), args.data.first()) {
        let what = "the validation accuracy will be optimistic";
        warn_seen_prompts("reward", &valid, v, &train, d, what, comm.is_root());
    }
    let demos: Vec<Demonstration> = match &args.demos {
        Some(p) => read_records(p, cfg.lenient)?,
        None => Vec::new(),
    };
    // The scalar head of a model built from an LM is drawn from libtorch's generator: seed it,
    // so that the same command gives the same RM (and a run killed before its first checkpoint
    // resumes to the same result).
    tch::manual_seed(cfg.train.seed as i64);
    let mut model =
        init_model(&args.init, opts).with_context(|| format!("--init {}", args.init.display()))?;
    if let Some(lora) = &cfg.lora {
        if model.lora().is_some() {
            bail!(
                "[lora]: --init {} has LoRA adapters already (a LoRA reward run): drop [lora] to \
                 go on training them",
                args.init.display()
            );
        }
        // The adapters' A is random: drawn after the head, from the run's seed too.
        let n = model.attach_lora(lora)?;
        let count = |vars: Vec<tch::Tensor>| vars.iter().map(|t| t.numel()).sum::<usize>();
        tracing::info!(
            "[reward] LoRA r = {} on {n} projections, the score head whole: {} trainable \
             parameters of {}",
            lora.r,
            count(model.var_store_mut().trainable_variables()),
            count(model.var_store_mut().variables().into_values().collect())
        );
    }
    let col = collator(
        &model,
        &cfg,
        !args.common.no_chat_template,
        &args.common.chat_template_kwargs,
    )?;
    let keys = ("max_prompt_tokens", "max_response_tokens");
    let n_positions = model.config().n_positions();
    // Tokenizes `rankings` (read from `file`), checks that they fit the model's context after
    // truncation and warns about the tokens truncation drops or the tokenizer did not know.
    let tokenize = |rankings: &[Ranking], files: &[PathBuf], what: &str| {
        let t = col.tokenize_rankings(rankings)?;
        let c = col.config();
        let examples = t.iter().zip(rankings).flat_map(|(t, r)| {
            (t.responses.iter()).map(move |x| (r.id.as_str(), &t.prompt[..], &x[..]))
        });
        let source = files.iter().map(|f| f.display().to_string());
        let source = source.collect::<Vec<_>>().join(", ");
        check_fit(examples, "ranking", &source, c, n_positions, keys)?;
        warn_truncation("reward", what, c.truncation_of_rankings(&t), c, keys);
        let texts = t
            .iter()
            .flat_map(|t| std::iter::once(&t.prompt[..]).chain(t.responses.iter().map(|x| &x[..])));
        let what = format!("{what} ({source}), prompts and responses");
        warn_unknown("reward", &what, col.unknown_tokens(texts));
        anyhow::Ok(t)
    };
    let train_tok = tokenize(&train, &args.data, "training rankings")?;
    let valid_data = if valid.is_empty() {
        None
    } else {
        let gold = if cfg.toy_gold {
            gold_scores(&valid).ok()
        } else {
            None
        };
        let files = if args.valid.is_empty() {
            &args.data
        } else {
            &args.valid
        };
        let groups = tokenize(&valid, files, "validation rankings")?;
        Some(RankingData { groups, gold })
    };

    let run = args.common.open_run_of(run_path, "reward", &*comm)?;
    let root = comm.is_root();
    let mut trainer = if args.common.resume {
        match latest_checkpoint(&run.path)? {
            Some(ckpt) => {
                tracing::info!("[reward] resuming from {}", ckpt.display());
                RewardTrainer::resume(
                    &ckpt,
                    opts,
                    cfg.train.clone(),
                    col.config().clone(),
                    train.len(),
                )
                .with_context(|| format!("resuming from {}", ckpt.display()))?
            }
            None => {
                tracing::info!(
                    "[reward] {} has no checkpoint yet: starting over",
                    run.path.display()
                );
                RewardTrainer::new(model, cfg.train.clone(), col.config().clone(), train.len())?
            }
        }
    } else {
        RewardTrainer::new(model, cfg.train.clone(), col.config().clone(), train.len())?
    };
    if cfg.lora.is_some() != trainer.model().lora().is_some() {
        bail!(
            "the checkpoint {} LoRA adapters but the config {} a [lora] table: resume with the \
             run's own config",
            if trainer.model().lora().is_some() {
                "has"
            } else {
                "has no"
            },
            if cfg.lora.is_some() { "has" } else { "has no" }
        );
    }
    if args.common.resume && root {
        // The steps after the checkpoint are redone: drop their metric lines.
        run.truncate_metrics(trainer.state().step)?;
    }
    if root {
        run.write_config(&cfg)?;
    }
    trainer.set_collective(comm.clone())?;
    let k_hist = train
        .iter()
        .fold(std::collections::BTreeMap::new(), |mut m, r| {
            *m.entry(r.k()).or_insert(0usize) += 1;
            m
        });
    tracing::info!(
        "[reward] {} training rankings (K: {}), {} validation; run directory {}",
        train.len(),
        k_hist
            .iter()
            .map(|(k, n)| format!("{k}x{n}"))
            .collect::<Vec<_>>()
            .join(" "),
        valid.len(),
        run.path.display()
    );
    let mut metrics: Box<dyn MetricsSink> = if root {
        Box::new(run.metrics()?)
    } else {
        Box::new(NoMetrics)
    };
    let total = trainer.schedule().total_steps;
    let mut progress = Progress::new("reward", total);
    let reports = trainer.fit(
        &train_tok,
        valid_data.as_ref(),
        &mut *metrics,
        Some(&run.path),
        &mut |done, _, status| progress.update(done, status),
    )?;
    if !root {
        // Rank 0 normalizes, evaluates and writes the results.
        return Ok(());
    }

    let normalization = if demos.is_empty() {
        tracing::info!(
            "[reward] no --demos: the reward is not normalized (bias stays {})",
            trainer.model().meta().reward_bias
        );
        None
    } else {
        let n = trainer.normalize(&col.tokenize_demonstrations(&demos)?)?;
        tracing::info!(
            "[reward] normalized on {} demonstrations: gain {:.4}, bias {:.4} (raw mean {:.4}, std {:.4})",
            n.demonstrations, n.gain, n.bias, n.raw_mean, n.raw_std
        );
        Some(n)
    };
    trainer.model_mut().meta_mut().step = trainer.state().step;
    trainer.model().save(run.join("final"))?;
    let last = match (&valid_data, reports.last()) {
        (_, Some(r)) => Some(r.clone()),
        (Some(v), None) => Some(trainer.evaluate(v)?),
        (None, None) => None,
    };
    let mut report = json!({
        "train_rankings": train.len(),
        "valid_rankings": valid.len(),
        "steps": trainer.state().step,
        "epochs": trainer.state().epoch,
        "final": run.join("final"),
        "reward_bias": trainer.model().meta().reward_bias,
        "world_size": comm.world_size(),
    });
    if let Some(n) = normalization {
        report["normalization"] = json!({"demonstrations": n.demonstrations, "raw_mean": n.raw_mean, "raw_std": n.raw_std, "gain": n.gain});
    }
    if let Some(r) = &last {
        report["valid"] = serde_json::Value::Object(r.to_metrics("val"));
        tracing::info!(
            "[reward] validation accuracy {:.4}{}, loss {:.4}",
            r.stats.accuracy(),
            r.gold_accuracy
                .map(|g| format!(" (gold order {g:.4})"))
                .unwrap_or_default(),
            r.stats.loss()
        );
    }
    rlhf_model::checkpoint::write_atomic(
        &run.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    tracing::info!("[reward] reward model: {}", run.join("final").display());
    if let Err(e) = rlhf_examples::plot::plot_run_dir(&run.path) {
        tracing::warn!("[reward] warning: plots not written: {e:#}");
    }
    Ok(())
}
