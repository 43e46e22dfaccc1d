//! LM pretraining on plain text (how the toy world's base model is made), from scratch or
//! continuing a checkpoint.
//!
//! `pretrain --data corpus.jsonl|corpus.txt [--valid FILE] (--init LM_DIR | --tokenizer
//! tokenizer.json) [--out RUN] [--config configs/pretrain.toml] [--set train.epochs=2] [--resume]`
//!
//! Documents are packed into blocks of `block_len` tokens, EOS between documents. The run
//! directory is laid out as for `sft` (`best/` is the checkpoint with the lowest validation loss).

use anyhow::Context;
use clap::Parser;
use rlhf_data::collate::{CollateConfig, Collator};
use rlhf_examples::data::read_texts;
use rlhf_examples::stage::{load_lm, special_ids, train_lm, warn_unknown, CommonArgs};
use rlhf_model::{CausalLm, Gpt2Config, Tokenizer};
use rlhf_sft::{LmData, ResidualDropout, SftConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Shape of a model made from scratch (the vocabulary comes from the tokenizer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ModelShape {
    n_layer: i64,
    n_head: i64,
    n_embd: i64,
    n_positions: i64,
    /// Dropout of the new model's config (the trainer's residual_dropout overrides the
    /// residual part during training).
    dropout: f64,
}

impl Default for ModelShape {
    fn default() -> Self {
        ModelShape {
            n_layer: 4,
            n_head: 4,
            n_embd: 256,
            n_positions: 256,
            dropout: 0.0,
        }
    }
}

/// The `pretrain` config (TOML). See configs/pretrain.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PretrainRunConfig {
    /// Trainer settings (residual dropout off by default when pretraining).
    train: SftConfig,
    /// Tokens per packed block.
    block_len: usize,
    /// Without --valid: the fraction of documents held out.
    valid_fraction: f64,
    /// Skip bad JSONL lines instead of stopping.
    lenient: bool,
    /// Shape of a new model (ignored with --init).
    model: ModelShape,
    /// Seed of a new model's initialization.
    init_seed: i64,
}

impl Default for PretrainRunConfig {
    fn default() -> Self {
        PretrainRunConfig {
            train: SftConfig {
                epochs: 4,
                residual_dropout: ResidualDropout::Off,
                optimizer: rlhf_model::train::AdamWConfig {
                    lr: 1e-3,
                    weight_decay: 0.01,
                    ..Default::default()
                },
                ..Default::default()
            },
            block_len: 128,
            valid_fraction: 0.05,
            lenient: false,
            model: ModelShape::default(),
            init_seed: 0,
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    about = "Pretrain a language model on text: a new GPT-2 from scratch, or any checkpoint (GPT-2 or the Llama family) further"
)]
struct Args {
    /// Corpus: JSONL {"id", "user_id", "text"} (.jsonl) or plain text (blank-line separated).
    #[arg(long)]
    data: PathBuf,
    /// Validation corpus (default: hold out valid_fraction of --data).
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Continue pretraining this checkpoint.
    #[arg(long, conflicts_with = "tokenizer")]
    init: Option<PathBuf>,
    /// tokenizer.json for a new model (its vocabulary sets vocab_size; EOS = <|endoftext|>).
    #[arg(long, required_unless_present = "init")]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    rlhf_examples::init_runtime();
    let args = Args::parse();
    let cfg: PretrainRunConfig =
        rlhf_examples::run::load_config(args.common.config.as_deref(), &args.common.overrides)?;
    cfg.train.validate()?;
    if cfg.block_len < 2 {
        anyhow::bail!("block_len must be at least 2");
    }
    // Everything is read and checked before the run directory is made: bad input leaves none.
    let run_path = args.common.run_path("pretrain")?;
    // One process per rank under mpirun (data parallel), else one process.
    let comm = args.common.collective()?;
    let device = args.common.device_of(&*comm)?;
    let mut model = match (&args.init, &args.tokenizer) {
        (Some(dir), _) => load_lm(dir, device, "--init")?,
        (None, Some(tok_path)) => {
            let tok = Tokenizer::from_file(tok_path)
                .with_context(|| format!("--tokenizer {}", tok_path.display()))?;
            let eos = tok
                .token_id(rlhf_model::tokenizer::ENDOFTEXT)
                .with_context(|| format!("{} has no <|endoftext|> token", tok_path.display()))?;
            let m = &cfg.model;
            let gcfg = Gpt2Config {
                bos_token_id: Some(eos),
                eos_token_id: Some(eos),
                ..Gpt2Config::sized(
                    m.n_layer,
                    m.n_head,
                    m.n_embd,
                    tok.vocab_size() as i64,
                    m.n_positions,
                )
                .with_dropout(m.dropout)
            };
            tch::manual_seed(cfg.init_seed);
            let mut lm = CausalLm::new(&gcfg, device)?;
            lm.set_tokenizer(tok)?;
            lm
        }
        (None, None) => unreachable!("clap requires --tokenizer without --init"),
    };
    if cfg.block_len as i64 > model.config().n_positions() {
        anyhow::bail!(
            "block_len {} exceeds the model's n_positions {}",
            cfg.block_len,
            model.config().n_positions()
        );
    }
    let (eos, pad) = special_ids(&model)?;
    let tok = model
        .tokenizer()
        .context("the checkpoint has no tokenizer.json")?;
    let col = Collator::new(tok.inner().clone(), CollateConfig::new(eos, pad))?;
    let texts = read_texts(&args.data, cfg.lenient)?;
    let (train_texts, valid_texts) = match &args.valid {
        Some(v) => (texts, read_texts(v, cfg.lenient)?),
        None => {
            let n_valid = ((texts.len() as f64) * cfg.valid_fraction).round() as usize;
            let mut t = texts;
            let v = t.split_off(t.len() - n_valid.min(t.len().saturating_sub(1)));
            (t, v)
        }
    };
    let pack = |texts: &[String], file: &Path| -> anyhow::Result<LmData> {
        let blocks = col.pack_texts(texts, cfg.block_len)?;
        // The real tokens of each block (padding is on the right).
        let rows = (0..blocks.num_blocks).map(|b| {
            let mask = &blocks.attention_mask[b * blocks.block_len..(b + 1) * blocks.block_len];
            &blocks.row(b)[..mask.iter().sum::<i64>() as usize]
        });
        let what = format!("the text of {}", file.display());
        warn_unknown("pretrain", &what, col.unknown_tokens(rows));
        Ok(LmData::Blocks(blocks))
    };
    let train = pack(&train_texts, &args.data)?;
    let valid_file = args.valid.as_deref().unwrap_or(&args.data);
    let valid = (!valid_texts.is_empty())
        .then(|| pack(&valid_texts, valid_file))
        .transpose()?;
    let run = args.common.open_run_of(run_path, "pretrain", &*comm)?;
    if comm.is_root() {
        run.write_config(&cfg)?;
    }
    tracing::info!(
        "[pretrain] {} documents -> {} blocks of {} tokens; run directory {}",
        train_texts.len(),
        train.len(),
        cfg.block_len,
        run.path.display()
    );
    train_lm(
        "pretrain",
        &mut model,
        (&train, valid.as_ref()),
        &cfg.train,
        &run,
        None,
        &*comm,
    )?;
    Ok(())
}
