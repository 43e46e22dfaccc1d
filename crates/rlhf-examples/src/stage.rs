//! Plumbing shared by the LM-training stage binaries (`pretrain`, `sft`).

use crate::run::{Progress, RunDir};
use anyhow::{bail, Context};
use clap::Args;
use rlhf_model::CausalLm;
use rlhf_sft::trainer::Selector;
use rlhf_sft::{LmData, SftConfig, SftReport, SftTrainer};
use std::path::PathBuf;

/// Flags every stage binary takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// TOML config file (see configs/ for documented examples); defaults apply to missing keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config key, e.g. `--set train.epochs=2` (repeatable; TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Run directory (default: a new one under runs/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last saved state.
    #[arg(long)]
    pub resume: bool,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl CommonArgs {
    /// Opens the run directory; refuses to reuse one that holds a run unless `--resume`.
    pub fn run_dir(&self, stage: &str) -> anyhow::Result<RunDir> {
        let path = self
            .out
            .clone()
            .unwrap_or_else(|| RunDir::default_for(stage));
        let started = path.join("state").exists() || path.join("config.toml").exists();
        if started && !self.resume {
            bail!(
                "{} already holds a run: pass --resume to continue it, or choose another --out",
                path.display()
            );
        }
        if self.resume && !started {
            bail!("--resume: {} holds no run to continue", path.display());
        }
        RunDir::open(path)
    }

    /// The device.
    pub fn device(&self) -> anyhow::Result<tch::Device> {
        Ok(rlhf_model::parse_device(&self.device)?)
    }
}

/// Trains `model` with the supervised trainer in `run`: metrics.jsonl, `epoch-N/`, `best/`,
/// `state/` (for --resume), progress on stderr, then `report.json`. Returns the report.
pub fn train_lm(
    stage: &str,
    model: &mut CausalLm,
    train: &LmData,
    valid: Option<&LmData>,
    cfg: &SftConfig,
    run: &RunDir,
    selector: Option<Selector<'_>>,
) -> anyhow::Result<SftReport> {
    let mut metrics = run.metrics()?;
    let mut progress = Progress::new(stage, 0);
    let mut total_known = false;
    let mut trainer = SftTrainer::new(cfg.clone(), &mut metrics)?
        .output_dir(&run.path)
        .progress(Box::new(move |done, total, status| {
            if !total_known {
                progress = Progress::new(stage, total);
                total_known = true;
            }
            progress.update(done, status);
        }));
    if let Some(s) = selector {
        trainer = trainer.selector(s);
    }
    let report = trainer.train(model, train, valid)?;
    let text = serde_json::to_string_pretty(&report)?;
    rlhf_model::checkpoint::write_atomic(&run.join("report.json"), text.as_bytes())?;
    for e in &report.epochs {
        eprintln!(
            "[{stage}] epoch {}: train loss {:.4}{}{}",
            e.epoch,
            e.train_loss,
            e.valid_loss
                .map_or(String::new(), |v| format!(", valid loss {v:.4}")),
            e.rm_score
                .map_or(String::new(), |v| format!(", RM score {v:.4}")),
        );
    }
    eprintln!(
        "[{stage}] best epoch {} (by {}): {}",
        report.best_epoch,
        report.selected_by,
        run.join("best").display()
    );
    Ok(report)
}

/// The EOS and pad ids of a model (from its config, else its tokenizer's `<|endoftext|>`).
pub fn special_ids(model: &CausalLm) -> anyhow::Result<(u32, u32)> {
    let eos = model
        .config()
        .eos_token_id
        .or_else(|| {
            model
                .tokenizer()
                .and_then(|t| t.token_id(rlhf_model::tokenizer::ENDOFTEXT))
        })
        .context("the model has no eos_token_id and its tokenizer no <|endoftext|>")?;
    let pad = model.config().pad_token_id.unwrap_or(eos);
    Ok((eos as u32, pad as u32))
}

/// The checkpoint's tokenizer as a data collator with the model's special tokens and limits.
pub fn collator(
    model: &CausalLm,
    max_prompt: usize,
    max_response: usize,
) -> anyhow::Result<rlhf_data::collate::Collator> {
    let tok = model
        .tokenizer()
        .context("the checkpoint has no tokenizer.json: the stage needs one to read text")?;
    let (eos, pad) = special_ids(model)?;
    let cfg =
        rlhf_data::collate::CollateConfig::new(eos, pad).with_limits(max_prompt, max_response);
    Ok(rlhf_data::collate::Collator::new(tok.inner().clone(), cfg)?)
}
