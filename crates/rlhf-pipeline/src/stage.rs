//! Plumbing shared by the stage binaries (`pretrain`, `sft`, `reward`, ...).

use crate::run::{Progress, RunDir};
use anyhow::{bail, Context};
use clap::Args;
use rlhf_dist::Collective;
use rlhf_model::train::{MetricsSink, NoMetrics};
use rlhf_model::{CausalLm, CheckpointMeta, HeadKind, LoadOptions, ScalarModel};
use rlhf_sft::trainer::Selector;
use rlhf_sft::{LmData, SftConfig, SftReport, SftTrainer};
use std::path::{Path, PathBuf};

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
    /// Encode prompts as they are, even when the checkpoint has a chat template (by default
    /// the stages that read prompts render each one through it as a user message).
    #[arg(long)]
    pub no_chat_template: bool,
    /// A variable for the chat template, as `transformers`' `apply_chat_template(...,
    /// KEY=VALUE)` / TRL's `chat_template_kwargs` (repeatable; the value is JSON when it parses,
    /// else a string): `--chat-template-kwarg enable_thinking=false` turns Qwen3's and SmolLM3's
    /// reasoning off.
    #[arg(long = "chat-template-kwarg", value_name = "KEY=VALUE")]
    pub chat_template_kwargs: Vec<String>,
}

impl CommonArgs {
    /// Opens the run directory; refuses to reuse one that holds a run unless `--resume`, and
    /// to start a run in a folder that holds other files.
    /// On `--resume`, first tidies what a killed run left (see [`RunDir::recover`]).
    pub fn run_dir(&self, stage: &str) -> anyhow::Result<RunDir> {
        let path = self.run_path(stage)?;
        self.open_run(path, stage)
    }

    /// The run directory's path, checked as [`CommonArgs::run_dir`] does, without creating
    /// anything: stages check it first, read and check all their inputs, and only then
    /// [`CommonArgs::open_run`], so bad input leaves no run directory behind.
    pub fn run_path(&self, stage: &str) -> anyhow::Result<PathBuf> {
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
        if !started {
            crate::run::ensure_no_other_files(&path, "--out")?;
        }
        Ok(path)
    }

    /// Creates (or, with `--resume`, reopens and tidies) the run directory at `path` from
    /// [`CommonArgs::run_path`].
    pub fn open_run(&self, path: PathBuf, stage: &str) -> anyhow::Result<RunDir> {
        let run = RunDir::open(path)?;
        if self.resume {
            run.recover(stage)?;
        }
        Ok(run)
    }

    /// The device.
    pub fn device(&self) -> anyhow::Result<tch::Device> {
        Ok(rlhf_model::parse_device(&self.device)?)
    }

    /// This process's collective ([`rlhf_dist::init_for_devices`]): `Single` alone, MPI under
    /// `mpirun`, and NCCL for GPU tensors when `--device` is a GPU and the binary is built with
    /// the `nccl` feature.
    pub fn collective(&self) -> anyhow::Result<Box<dyn Collective>> {
        Ok(rlhf_dist::init_for_devices(self.device()?.is_cuda())?)
    }

    /// [`CommonArgs::open_run`] in a data-parallel job: rank 0 opens (and on `--resume`
    /// recovers) the run directory, the others wait for it and only read it. Without `--out`,
    /// every rank takes rank 0's default name (each named one by its own clock).
    pub fn open_run_of(
        &self,
        path: PathBuf,
        stage: &str,
        comm: &dyn Collective,
    ) -> anyhow::Result<RunDir> {
        let path = if self.out.is_none() && comm.world_size() > 1 {
            let mut name = path.to_string_lossy().into_owned().into_bytes();
            comm.broadcast_bytes(&mut name, 0)?;
            PathBuf::from(String::from_utf8(name).context("rank 0's run directory name")?)
        } else {
            path
        };
        let run = if comm.is_root() {
            Some(self.open_run(path.clone(), stage))
        } else {
            None
        };
        comm.barrier()?;
        match run {
            Some(run) => run,
            None => Ok(RunDir { path }),
        }
    }

    /// The device of this rank: `cuda` means the GPU of the rank's local rank (one rank per
    /// GPU); the CPU is shared.
    pub fn device_of(&self, comm: &dyn Collective) -> anyhow::Result<tch::Device> {
        Ok(match self.device()? {
            tch::Device::Cuda(_) if comm.world_size() > 1 => tch::Device::Cuda(comm.local_rank()),
            d => d,
        })
    }
}

/// What a checkpoint directory holds, from its `rlhf.json` (`None` for a plain HF checkpoint).
pub fn checkpoint_head(path: &Path, flag: &str) -> anyhow::Result<Option<HeadKind>> {
    let dir = rlhf_model::checkpoint::resolve_dir(path)
        .with_context(|| format!("{flag} {}", path.display()))?;
    Ok(CheckpointMeta::read(&dir)
        .with_context(|| format!("{flag} {}", path.display()))?
        .map(|m| m.head))
}

/// Loads the language model (pretrained, SFT or PPO policy) that `flag` names; a reward or
/// value checkpoint gets a message saying what the flag takes.
pub fn load_lm(path: &Path, opts: impl Into<LoadOptions>, flag: &str) -> anyhow::Result<CausalLm> {
    match checkpoint_head(path, flag)? {
        Some(HeadKind::Reward) => bail!(
            "{flag} {}: this is a reward-model checkpoint, but {flag} takes a language model \
             (a pretrained or SFT checkpoint, e.g. the best/ directory of an `sft` run)",
            path.display()
        ),
        Some(HeadKind::Value) => bail!(
            "{flag} {}: this is a value-function checkpoint, but {flag} takes a language model \
             (a pretrained or SFT checkpoint, e.g. the best/ directory of an `sft` run, or a \
             `ppo` run's policy/)",
            path.display()
        ),
        _ => {}
    }
    CausalLm::load(path, opts).with_context(|| format!("{flag} {}", path.display()))
}

/// Loads the reward model that `flag` names; a language-model or value checkpoint gets a
/// message saying what the flag takes.
pub fn load_reward(
    path: &Path,
    opts: impl Into<LoadOptions>,
    flag: &str,
) -> anyhow::Result<ScalarModel> {
    const WANT: &str = "a reward model (the final/ directory of a `reward` run, which trains \
                        one from an SFT checkpoint)";
    match checkpoint_head(path, flag)? {
        Some(HeadKind::Lm) => bail!(
            "{flag} {}: this is a language-model checkpoint, but {flag} takes {WANT}",
            path.display()
        ),
        Some(HeadKind::Value) => bail!(
            "{flag} {}: this is a value-function checkpoint, but {flag} takes {WANT}",
            path.display()
        ),
        _ => {}
    }
    let rm = ScalarModel::load(path, opts).with_context(|| format!("{flag} {}", path.display()))?;
    if rm.head_kind() != HeadKind::Reward {
        bail!(
            "{flag} {}: this is a {:?} checkpoint, but {flag} takes {WANT}",
            path.display(),
            rm.head_kind()
        );
    }
    Ok(rm)
}

/// Checks that the reward model `flag` can read the language model's token ids: the same
/// tokenizer when both checkpoints have one, else at least as many embedding rows.
pub fn check_same_vocab(lm: &CausalLm, rm: &ScalarModel, flag: &str) -> anyhow::Result<()> {
    if let (Some(a), Some(b)) = (lm.tokenizer(), rm.tokenizer()) {
        if a.inner().get_vocab(true) != b.inner().get_vocab(true) {
            bail!(
                "{flag}: the reward model's tokenizer ({} tokens) differs from the policy's ({} \
                 tokens): use a reward model trained from this policy's SFT checkpoint",
                b.vocab_size(),
                a.vocab_size()
            );
        }
    }
    let (v_lm, v_rm) = (lm.config().vocab_size(), rm.config().vocab_size());
    if v_rm < v_lm {
        bail!(
            "{flag}: the reward model has vocab_size {v_rm} but the policy {v_lm}: it cannot read \
             the policy's tokens; use a reward model trained from this policy's SFT checkpoint"
        );
    }
    Ok(())
}

/// Trains `model` on `(training, validation)` data with the supervised trainer in `run` (data
/// parallel over `comm`'s ranks, rank 0 writing): metrics.jsonl, `epoch-N/`, `best/`,
/// `state/` (for --resume), progress on stderr, then `report.json`. Returns the report.
pub fn train_lm(
    stage: &str,
    model: &mut CausalLm,
    (train, valid): (&LmData, Option<&LmData>),
    cfg: &SftConfig,
    run: &RunDir,
    selector: Option<Selector<'_>>,
    comm: &dyn Collective,
) -> anyhow::Result<SftReport> {
    let root = comm.is_root();
    // A resumed run redoes the steps after its last saved state: drop their metric lines.
    let state = rlhf_model::checkpoint::resolve_dir(&run.join("state")).ok();
    let saved_step = match &state {
        None => Some(0),
        Some(dir) => std::fs::read_to_string(dir.join("trainer_state.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("step")?.as_u64()),
    };
    if let (Some(step), true) = (saved_step, root) {
        run.truncate_metrics(step)?;
    }
    let mut metrics: Box<dyn MetricsSink> = if root {
        Box::new(run.metrics()?)
    } else {
        Box::new(NoMetrics)
    };
    let mut progress = Progress::new(stage, 0);
    let mut total_known = false;
    let mut trainer = SftTrainer::new(cfg.clone(), &mut *metrics)?
        .output_dir(&run.path)
        .collective(comm)
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
    if !root {
        return Ok(report);
    }
    let mut json = serde_json::to_value(&report)?;
    json["world_size"] = comm.world_size().into();
    let text = serde_json::to_string_pretty(&json)?;
    rlhf_model::checkpoint::write_atomic(&run.join("report.json"), text.as_bytes())?;
    for e in &report.epochs {
        tracing::info!(
            "[{stage}] epoch {}: train loss {:.4}{}{}",
            e.epoch,
            e.train_loss,
            e.valid_loss
                .map_or(String::new(), |v| format!(", valid loss {v:.4}")),
            e.rm_score
                .map_or(String::new(), |v| format!(", RM score {v:.4}")),
        );
    }
    tracing::info!(
        "[{stage}] best epoch {} (by {}): {}",
        report.best_epoch,
        report.selected_by,
        run.join("best").display()
    );
    if let Err(e) = crate::plot::plot_run_dir(&run.path) {
        tracing::warn!("[{stage}] warning: plots not written: {e:#}");
    }
    Ok(report)
}

/// Logs a warning when the collation limits cut some of a dataset's tokens
/// ([`rlhf_data::collate::Truncation::message`]), naming the stage, the data and the keys that
/// raise the limits: no token is dropped silently.
pub fn warn_truncation(
    stage: &str,
    what: &str,
    t: rlhf_data::collate::Truncation,
    cfg: &rlhf_data::collate::CollateConfig,
    (prompt_key, response_key): (&str, &str),
) {
    if let Some(m) = t.message(what, cfg, prompt_key, response_key) {
        tracing::warn!("[{stage}] {m}");
    }
}

/// Logs a warning when the tokenizer mapped some of a dataset's tokens to its unknown token
/// ([`rlhf_data::collate::UnknownTokens::message`]; `None`, a tokenizer without one, says
/// nothing): text the model will not see is reported, not dropped silently.
pub fn warn_unknown(stage: &str, what: &str, unknown: Option<rlhf_data::collate::UnknownTokens>) {
    if let Some(m) = unknown.and_then(|u| u.message(what)) {
        tracing::warn!("[{stage}] {m}");
    }
}

/// How many tokens of `sequences` (ids from `tok`) are its unknown token; `None` when it has
/// none (see [`rlhf_data::collate::UnknownTokens`]).
pub fn unknown_tokens<'a, T: Copy + Into<i64> + 'a>(
    tok: &rlhf_model::Tokenizer,
    sequences: impl IntoIterator<Item = &'a [T]>,
) -> Option<rlhf_data::collate::UnknownTokens> {
    let (token, id) = rlhf_data::collate::unknown_token(tok.inner())?;
    Some(rlhf_data::collate::UnknownTokens::count(
        &token, id, sequences,
    ))
}

/// Checks that every example, truncated by `collate`'s limits, fits the model's context of
/// `n_positions` tokens: `examples` yields `(id, prompt ids, response ids)` (a ranking yields
/// one item per response). The error names `source` (the file), the first example that does not fit and
/// the config keys to lower (`keys`: the prompt's and the response's limit), with values that
/// fit. Checking the data rather than the limits lets a short dataset run on a short-context
/// model with the default limits.
pub fn check_fit<'a>(
    examples: impl IntoIterator<Item = (&'a str, &'a [u32], &'a [u32])>,
    what: &str,
    source: &str,
    collate: &rlhf_data::collate::CollateConfig,
    n_positions: i64,
    (prompt_key, response_key): (&str, &str),
) -> anyhow::Result<()> {
    for (id, prompt, response) in examples {
        let prompt = collate.truncate_prompt(prompt).len();
        let (response, eos) = collate.truncate_response(response);
        let len = prompt + response.len() + usize::from(eos);
        if len as i64 > n_positions {
            bail!(
                "{}: {what} {id:?} takes {len} tokens ({prompt} of prompt, {} of response) after \
                 truncation to {prompt_key} = {} and {response_key} = {}, more than the model's \
                 n_positions {n_positions}: lower them so that they sum to at most {n_positions} \
                 (e.g. --set {prompt_key}={} --set {response_key}={})",
                source,
                len - prompt,
                collate.max_prompt_tokens,
                collate.max_response_tokens,
                n_positions / 2,
                n_positions - n_positions / 2
            );
        }
    }
    Ok(())
}

/// Logs a warning (on rank 0, `root`) when validation records given with `--valid` share
/// prompts with the training data ([`rlhf_data::hygiene::prompts_seen_in`]); `consequence` says
/// which numbers that makes optimistic.
pub fn warn_seen_prompts<V: rlhf_data::hygiene::HasPrompt, T: rlhf_data::hygiene::HasPrompt>(
    stage: &str,
    valid: &[V],
    valid_file: &Path,
    train: &[T],
    train_file: &Path,
    consequence: &str,
    root: bool,
) {
    let n = rlhf_data::hygiene::prompts_seen_in(valid, train);
    if root && n > 0 {
        tracing::warn!(
            "[{stage}] {n} of {} validation prompts ({}) also appear in the training data ({}): \
             {consequence}; remove them, or leave out --valid to split by user",
            valid.len(),
            valid_file.display(),
            train_file.display()
        );
    }
}

/// The EOS and pad ids of a model (from its config, else its tokenizer's `<|endoftext|>`).
pub fn special_ids(model: &CausalLm) -> anyhow::Result<(u32, u32)> {
    response_ids(model.config(), model.tokenizer(), None)
}

/// The token a chat template ends an assistant turn with: the first token of
/// [`rlhf_data::chat::ChatTemplate::turn_end`], when it is a special token of `tok`
/// (`<|im_end|>`, Llama 3's `<|eot_id|>`, Gemma's `<end_of_turn>`).
pub fn turn_end_id(
    tok: &rlhf_model::tokenizer::Tokenizer,
    template: &rlhf_data::chat::ChatTemplate,
) -> Option<i64> {
    let first = *tok.encode(&template.turn_end()?).ok()?.first()?;
    tok.is_special(first).then_some(first)
}

/// The id every response ends with, and the pad id, for a model with this config and
/// tokenizer. With a chat template in use (`template`), the token the template ends an
/// assistant turn with ([`turn_end_id`]), else the tokenizer's `eos_token`
/// ([`rlhf_model::Tokenizer::eos_token_id`]): these differ from `config.json`'s first EOS in
/// Llama 3 Instruct (`<|eot_id|>` against `<|end_of_text|>`), and Gemma 3's turn end
/// (`<end_of_turn>`) from its `eos_token` (`<eos>`), so a response ends as the template ends a
/// turn. Otherwise, and when neither is a token, the config's `eos_token_id`, else the
/// tokenizer's `<|endoftext|>`. The pad id is the config's `pad_token_id`, else that EOS.
pub fn response_ids(
    config: &rlhf_model::ModelConfig,
    tok: Option<&rlhf_model::tokenizer::Tokenizer>,
    template: Option<&rlhf_data::chat::ChatTemplate>,
) -> anyhow::Result<(u32, u32)> {
    let chat_eos = match (tok, template) {
        (Some(tok), Some(t)) => turn_end_id(tok, t).or_else(|| tok.eos_token_id()),
        _ => None,
    };
    let eos = chat_eos
        .or(config.eos_token_id())
        .or_else(|| tok.and_then(|t| t.token_id(rlhf_model::tokenizer::ENDOFTEXT)))
        .context("the model has no eos_token_id and its tokenizer no <|endoftext|>")?;
    let pad = config.pad_token_id().unwrap_or(eos);
    Ok((eos as u32, pad as u32))
}

/// The checkpoint's tokenizer as a data collator with the model's special tokens and limits;
/// with `chat`, prompts are rendered through the checkpoint's chat template when it has one,
/// with the variables `kwargs` (see [`chat_template_with_kwargs`]).
pub fn collator(
    model: &CausalLm,
    max_prompt: usize,
    max_response: usize,
    chat: bool,
    kwargs: &[String],
) -> anyhow::Result<rlhf_data::collate::Collator> {
    let tok = model
        .tokenizer()
        .context("the checkpoint has no tokenizer.json: the stage needs one to read text")?;
    let template = chat_template_with_kwargs(tok, chat, kwargs)?;
    let (eos, pad) = response_ids(model.config(), Some(tok), template.as_ref())?;
    let cfg =
        rlhf_data::collate::CollateConfig::new(eos, pad).with_limits(max_prompt, max_response);
    Ok(rlhf_data::collate::Collator::new(tok.inner().clone(), cfg)?.with_chat_template(template))
}

/// The chat template of a checkpoint's tokenizer (from its `tokenizer_config.json` or
/// `chat_template.jinja`), with the variables `kwargs` (`KEY=VALUE`, the stages'
/// `--chat-template-kwarg`: [`rlhf_data::chat::parse_kwargs`]), or `None` when it has none or
/// `enabled` is false (the stages' `--no-chat-template`; `kwargs` then have nothing to apply
/// to, which is said on stderr). Says on stderr which one applies, since it changes every
/// prompt.
pub fn chat_template_with_kwargs(
    tok: &rlhf_model::tokenizer::Tokenizer,
    enabled: bool,
    kwargs: &[String],
) -> anyhow::Result<Option<rlhf_data::chat::ChatTemplate>> {
    let kwargs = rlhf_data::chat::parse_kwargs(kwargs).context("--chat-template-kwarg")?;
    let template = chat_template_of(tok, enabled)?;
    match template {
        Some(t) if !kwargs.is_empty() => {
            tracing::info!(
                "[chat] template variables: {}",
                serde_json::Value::Object(kwargs.clone())
            );
            Ok(Some(t.with_kwargs(kwargs)?))
        }
        None if !kwargs.is_empty() => {
            tracing::warn!(
                "[chat] --chat-template-kwarg given, but no chat template renders the prompts: \
                 it changes nothing"
            );
            Ok(None)
        }
        t => Ok(t),
    }
}

/// The chat template of a checkpoint's tokenizer: [`chat_template_with_kwargs`] without
/// variables.
pub fn chat_template(
    tok: &rlhf_model::tokenizer::Tokenizer,
    enabled: bool,
) -> anyhow::Result<Option<rlhf_data::chat::ChatTemplate>> {
    chat_template_with_kwargs(tok, enabled, &[])
}

/// [`chat_template`], without the message about variables.
fn chat_template_of(
    tok: &rlhf_model::tokenizer::Tokenizer,
    enabled: bool,
) -> anyhow::Result<Option<rlhf_data::chat::ChatTemplate>> {
    let Some(config) = tok.tokenizer_config() else {
        return Ok(None);
    };
    let template =
        rlhf_data::chat::ChatTemplate::from_tokenizer_config(config).with_context(|| {
            format!(
                "the tokenizer_config.json beside {}",
                tok.source().display()
            )
        })?;
    match (template, enabled) {
        (Some(t), true) => {
            tracing::info!(
                "[chat] prompts are rendered through the checkpoint's chat template \
                 (--no-chat-template encodes them as they are)"
            );
            Ok(Some(t))
        }
        (Some(_), false) => {
            tracing::info!("[chat] --no-chat-template: prompts are encoded as they are");
            Ok(None)
        }
        (None, _) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlhf_model::tokenizer::Tokenizer;
    use rlhf_model::{LlamaConfig, ModelConfig};

    /// With a chat template in use, responses end with the token the template ends a turn with
    /// (Gemma's `<end_of_turn>`), else the tokenizer's `eos_token` (Llama 3 Instruct's
    /// `<|eot_id|>`), not the config's first EOS; without one, with the config's.
    #[test]
    fn responses_end_with_the_chat_templates_eos_when_one_is_in_use() {
        use rlhf_data::chat::ChatTemplate;
        let mut cfg = LlamaConfig::sized(1, 2, 1, 8, 16, 258, 32);
        cfg.eos_token_id = Some(256);
        cfg.pad_token_id = None;
        let cfg = ModelConfig::Llama(cfg);
        let mut inner = Tokenizer::byte_level().inner().clone();
        inner.add_special_tokens(&[tokenizers::AddedToken::from("<end_of_turn>", true)]);
        let mut tok = Tokenizer::from_inner(inner);
        let (a, turn) = (
            tok.token_id("a").unwrap(),
            tok.token_id("<end_of_turn>").unwrap(),
        );
        assert!(a != 256 && turn == 257 && tok.is_special(turn) && !tok.is_special(a));
        // Writes nothing after a reply: no turn end of its own.
        let plain = ChatTemplate::new("{% for m in messages %}{{ m.content }}{% endfor %}", "", "")
            .unwrap();
        let gemma = ChatTemplate::new(
            "{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n\
             {% endfor %}",
            "",
            "",
        )
        .unwrap();
        // A turn end that is no special token (here plain text) is not taken.
        let text_end = ChatTemplate::new(
            "{% for m in messages %}{{ m.content }}a{% endfor %}",
            "",
            "",
        )
        .unwrap();
        let ids = |t: Option<&ChatTemplate>, tok: &Tokenizer| response_ids(&cfg, Some(tok), t);
        // No tokenizer_config.json: the config's EOS without a turn end, and pad = EOS.
        assert_eq!(ids(Some(&plain), &tok).unwrap(), (256, 256));
        assert_eq!(ids(None, &tok).unwrap(), (256, 256));
        assert_eq!(ids(Some(&gemma), &tok).unwrap(), (257, 257));
        assert_eq!(ids(Some(&text_end), &tok).unwrap(), (256, 256));
        for eos_token in [serde_json::json!("a"), serde_json::json!({"content": "a"})] {
            tok.set_tokenizer_config(Some(serde_json::json!({"eos_token": eos_token})));
            assert_eq!(tok.eos_token_id(), Some(a));
            let a32 = a as u32;
            assert_eq!(
                ids(Some(&plain), &tok).unwrap(),
                (a32, a32),
                "chat: the tokenizer's eos_token"
            );
            assert_eq!(
                ids(Some(&gemma), &tok).unwrap(),
                (257, 257),
                "the turn end first"
            );
            assert_eq!(ids(None, &tok).unwrap(), (256, 256));
        }
        // An eos_token outside the vocabulary is no id: the config's.
        tok.set_tokenizer_config(Some(serde_json::json!({"eos_token": "<|not here|>"})));
        assert_eq!(tok.eos_token_id(), None);
        assert_eq!(ids(Some(&plain), &tok).unwrap(), (256, 256));
    }
}
