//! The two concrete models: [`CausalLm`] (a [`Policy`]) and [`ScalarModel`] (a
//! [`RewardModel`] and a [`ValueFunction`]), and their checkpoint IO.

use crate::body::{normal_var, Body};
use crate::checkpoint::{
    load_into_varstore, named_variables, read_checkpoint, write_checkpoint_tensors,
    write_checkpoint_with, CheckpointFiles, CheckpointMeta, HeadKind, GENERATION_CONFIG_FILE,
};
use crate::error::{ModelError, Result};
use crate::generate::{generate_uncached, generate_with, GenerateConfig, Generation};
use crate::gpt2::KvCache;
use crate::lora::{LoraConfig, LoraState, SavedModule, ADAPTER_CONFIG_FILE};
use crate::model_config::{ArchConfig, ModelConfig};
use crate::ops::{last_token_index, log_probs_of, selected_positions};
use crate::tokenizer::Tokenizer;
use crate::traits::{check_last_n, check_target_mask, Policy, RewardModel, ValueFunction};
use std::ops::Range;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// Where and in which precision to load a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadOptions {
    /// Device of the variables (default CPU).
    pub device: Device,
    /// Precision of the variables (default f32, whatever the file holds).
    pub kind: Kind,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: Device::Cpu,
            kind: Kind::Float,
        }
    }
}

impl From<Device> for LoadOptions {
    fn from(device: Device) -> Self {
        LoadOptions {
            device,
            ..Default::default()
        }
    }
}

/// An empty variable store on `device` whose variables will be created in `kind`.
fn store_in(device: Device, kind: Kind) -> nn::VarStore {
    let mut vs = nn::VarStore::new(device);
    if kind != Kind::Float {
        // On an empty store this only sets the kind new variables are created in.
        vs.set_kind(kind);
    }
    vs
}

/// `None` when no row is left-padded: then plain causal attention is exact for every real
/// token (right padding never affects earlier tokens), and the fast fused kernel applies.
fn padding_mask(mask: &Tensor) -> Result<Option<&Tensor>> {
    let first_real = mask.select(1, 0).to_kind(Kind::Bool).all();
    Ok(if bool::try_from(first_real)? {
        None
    } else {
        Some(mask)
    })
}

fn check_pair(ids: &Tensor, mask: &Tensor) -> Result<()> {
    if ids.dim() != 2 || ids.size() != mask.size() {
        return Err(ModelError::Input(format!(
            "input_ids and attention_mask must both be [B, T]; got {:?} and {:?}",
            ids.size(),
            mask.size()
        )));
    }
    Ok(())
}

/// A causal language model: GPT-2 (Hugging Face `GPT2LMHeadModel`) or the Llama family
/// (`LlamaForCausalLM`, `Qwen2ForCausalLM`), chosen by the config's `model_type`; tied
/// unembedding unless the config unties it. Implements [`Policy`] with a KV-cache sampler.
#[derive(Debug)]
pub struct CausalLm {
    vs: nn::VarStore,
    body: Body,
    lm_head: Option<Tensor>,
    config: ModelConfig,
    tokenizer: Option<Tokenizer>,
    generation_config: Option<serde_json::Value>,
    meta: CheckpointMeta,
    lora: LoraState,
}

impl CausalLm {
    /// A randomly initialized model (Hugging Face's initialization), f32, on `device`, of the
    /// architecture of `config` (a [`crate::Gpt2Config`], [`crate::LlamaConfig`] or
    /// [`ModelConfig`]: any [`ArchConfig`]).
    pub fn new<C: ArchConfig + ?Sized>(config: &C, device: Device) -> Result<Self> {
        Self::new_in(config, device, Kind::Float)
    }

    /// [`CausalLm::new`] with the variables created in `kind`: a load in bf16 never holds an
    /// f32 copy of the model.
    fn new_in<C: ArchConfig + ?Sized>(config: &C, device: Device, kind: Kind) -> Result<Self> {
        let config = config.to_model_config();
        let vs = store_in(device, kind);
        let root = vs.root();
        let body = Body::new(&root, &config)?;
        let lm_head = (!config.tie_word_embeddings()).then(|| {
            normal_var(
                &(&root / "lm_head"),
                "weight",
                &[config.vocab_size(), config.hidden_size()],
                config.initializer_range(),
            )
        });
        Ok(CausalLm {
            vs,
            body,
            lm_head,
            config,
            tokenizer: None,
            generation_config: None,
            meta: CheckpointMeta::new(HeadKind::Lm),
            lora: LoraState::default(),
        })
    }

    /// Loads a checkpoint directory (ours or one saved by `transformers`' `save_pretrained`,
    /// in one `model.safetensors` or sharded). Errors if it holds a reward or value head.
    pub fn load(dir: impl AsRef<Path>, opts: impl Into<LoadOptions>) -> Result<Self> {
        let opts = opts.into();
        let files = read_checkpoint(dir.as_ref())?;
        if files.head != HeadKind::Lm {
            return Err(ModelError::ckpt(
                &files.dir,
                format!(
                    "this is a {:?} checkpoint (scalar head), but a language model was expected: \
                     pass an SFT/pretrained checkpoint, or load it with ScalarModel",
                    files.head
                ),
            ));
        }
        let mut config = files.config.clone();
        if !files.weights.contains("lm_head.weight") {
            // No separate unembedding in the file: the head is tied, whatever the config says
            // (Hugging Face ties it in that case too).
            config.set_tie_word_embeddings(true);
        }
        let mut model = CausalLm::new_in(&config, opts.device, opts.kind)?;
        let ignore: &[&str] = if config.tie_word_embeddings() {
            &["lm_head.weight"]
        } else {
            &[]
        };
        load_into_varstore(
            &model.vs,
            files.weights.iter(),
            &files.dir,
            ignore,
            &[],
            config.body_prefix(),
        )?;
        model.tokenizer = files.tokenizer;
        model.generation_config = files.generation_config;
        model.meta = files.meta;
        if files.dir.join(ADAPTER_CONFIG_FILE).exists() {
            model.load_adapter(&files.dir)?;
        }
        model.set_kind(opts.kind);
        Ok(model)
    }

    /// Attaches LoRA adapters (see [`crate::lora`]): freezes every weight of the model (they
    /// leave the variable store's trainable set) and adds `A`, `B` to the projections named by
    /// `cfg`, so that the model still computes what it did and only the adapters train.
    /// Returns how many projections were adapted. Errors if adapters are attached already or a
    /// target is not a projection of this architecture.
    pub fn attach_lora(&mut self, cfg: &LoraConfig) -> Result<usize> {
        self.lora
            .attach(&self.vs, &mut self.body, &self.config, cfg, &[])
    }

    /// The LoRA settings, when adapters are attached.
    pub fn lora(&self) -> Option<&LoraConfig> {
        self.lora.config()
    }

    /// Switches the adapters on or off for later forward passes (no-op without adapters). Off,
    /// the model computes exactly its base model: PPO's reference policy without a second copy
    /// of the weights.
    pub fn set_adapters_enabled(&self, on: bool) {
        self.lora.set_enabled(on)
    }

    /// Whether the adapters (if any) take part in forward passes.
    pub fn adapters_enabled(&self) -> bool {
        self.lora.enabled()
    }

    /// Runs `f` with the adapters switched off, then restores the previous state.
    pub fn with_adapters_disabled<T>(&self, f: impl FnOnce() -> T) -> T {
        self.lora.with_disabled(f)
    }

    /// Attaches the PEFT LoRA adapter in `dir` (`adapter_config.json` and
    /// `adapter_model.safetensors`, as `peft`'s `save_pretrained` writes them).
    pub fn load_adapter(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        self.lora
            .load(&self.vs, &mut self.body, &self.config, dir.as_ref(), &[])
    }

    /// The adapter as PEFT's files: `adapter_config.json` and `adapter_model.safetensors`.
    fn adapter_files(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        self.lora.files(&self.vs, &self.config, "CAUSAL_LM", &[])
    }

    /// Saves only the adapter, in PEFT's layout (what `peft`'s `save_pretrained` writes);
    /// errors without adapters.
    pub fn save_adapter(&self, dir: impl AsRef<Path>) -> Result<()> {
        if self.lora().is_none() {
            return Err(ModelError::Input(
                "save_adapter: the model has no LoRA adapters".into(),
            ));
        }
        crate::checkpoint::write_dir_atomic(dir.as_ref(), &self.adapter_files()?)
    }

    /// Saves an ordinary checkpoint with the adapters folded into the weights
    /// (`W + (alpha / r) B A`): it loads anywhere, with no adapter files.
    pub fn save_merged(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let extra = self.generation_config_file().into_iter().collect();
        self.lora.save_merged(
            dir.as_ref(),
            &self.vs,
            &mut self.body,
            &self.config,
            self.tokenizer.as_ref(),
            &self.meta,
            extra,
        )
    }

    /// The checkpoint's `generation_config.json` (Hugging Face's generation defaults: EOS ids,
    /// sampling settings), as it was read; saved with the model, so that `transformers`
    /// generates from a fine-tuned checkpoint with its base model's defaults.
    pub fn generation_config(&self) -> Option<&serde_json::Value> {
        self.generation_config.as_ref()
    }

    /// Sets (or, with `None`, drops) the `generation_config.json` saved with the model.
    pub fn set_generation_config(&mut self, config: Option<serde_json::Value>) {
        self.generation_config = config;
    }

    /// Every end-of-sequence id the model's configs name: `config.json`'s
    /// ([`ModelConfig::eos_token_ids`]) and then `generation_config.json`'s (an id or a list;
    /// Qwen2.5 Instruct: `[151645, 151643]`), each once. What `transformers`' `generate` stops
    /// at.
    pub fn eos_token_ids(&self) -> Vec<i64> {
        let mut ids = self.config.eos_token_ids();
        let listed = self
            .generation_config
            .as_ref()
            .and_then(|g| g.get("eos_token_id"));
        let more: Vec<i64> = match listed {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_i64()).collect(),
            Some(v) => v.as_i64().into_iter().collect(),
            None => vec![],
        };
        for id in more {
            if !ids.contains(&id) && (0..self.config.vocab_size()).contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    fn generation_config_file(&self) -> Option<(&'static str, Vec<u8>)> {
        let g = self.generation_config.as_ref()?;
        let text = serde_json::to_string_pretty(g).expect("JSON serializes");
        Some((GENERATION_CONFIG_FILE, text.into_bytes()))
    }

    /// Saves config.json, model.safetensors (HF names; a tied `lm_head` is not stored, as
    /// `transformers` does), tokenizer.json (when the model has one) and rlhf.json, atomically;
    /// with LoRA adapters, model.safetensors holds the base weights and PEFT's adapter files
    /// are written beside them (see [`crate::lora`]). An existing `dir` is replaced only when
    /// it holds nothing but files the new checkpoint has too (an earlier save); a folder with
    /// anything else is an error and stays as it was.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.save_with(dir, vec![])
    }

    /// The Hugging Face config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The transformer body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The tokenizer saved with the checkpoint, if any.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    /// Attaches a tokenizer (saved with the model). Errors if it has more tokens than the model.
    pub fn set_tokenizer(&mut self, tokenizer: Tokenizer) -> Result<()> {
        if tokenizer.vocab_size() as i64 > self.config.vocab_size() {
            return Err(ModelError::Input(format!(
                "tokenizer has {} tokens, more than the model's vocab_size {}",
                tokenizer.vocab_size(),
                self.config.vocab_size()
            )));
        }
        self.tokenizer = Some(tokenizer);
        Ok(())
    }

    /// Checkpoint metadata (step, extra fields).
    pub fn meta(&self) -> &CheckpointMeta {
        &self.meta
    }

    /// Mutable checkpoint metadata.
    pub fn meta_mut(&mut self) -> &mut CheckpointMeta {
        &mut self.meta
    }

    /// Mutable access to the variables (to freeze them, or to load an optimizer's view).
    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Casts every variable to `kind` (e.g. `Kind::BFloat16`).
    pub fn set_kind(&mut self, kind: Kind) {
        if kind == Kind::BFloat16 {
            crate::cpu::ensure_usable_cpu_isa();
        }
        if self.kind() != kind {
            self.vs.set_kind(kind);
        }
    }

    /// The precision of the weights.
    pub fn kind(&self) -> Kind {
        self.body.token_embedding().kind()
    }

    /// The body's final hidden states of a whole batch (no cache). Shapes: `input_ids [B, T]`,
    /// `attention_mask [B, T]` (padding on either side) -> `[B, T, E]`.
    fn hidden(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor> {
        self.hidden_rows(input_ids, attention_mask, train, None)
    }

    /// [`Self::hidden`] at the positions `rows` only (`[B, R, E]`; see
    /// [`Body::forward_rows`]).
    fn hidden_rows(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
        rows: Option<Range<i64>>,
    ) -> Result<Tensor> {
        check_pair(input_ids, attention_mask)?;
        self.body
            .forward_rows(input_ids, padding_mask(attention_mask)?, None, train, rows)
    }

    /// The unembedding. Shapes: `hidden [.., E] -> logits [.., V]` (in the compute dtype);
    /// then `cap * tanh(logits / cap)` when the config sets a `final_logit_softcapping`
    /// (Gemma 3's key; none of its released checkpoints sets it).
    pub fn lm_logits(&self, hidden: &Tensor) -> Tensor {
        let w = self.lm_head.as_ref().unwrap_or(self.body.token_embedding());
        let logits = match self.body.autocast() {
            Some(k) => hidden.to_kind(k).matmul(&w.to_kind(k).tr()),
            None => hidden.matmul(&w.tr()),
        };
        match self
            .config
            .as_llama()
            .and_then(|c| c.final_logit_softcapping())
        {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        }
    }

    /// Mixed-precision training and inference (see [`crate::Gpt2::set_autocast`]).
    pub fn set_autocast(&mut self, kind: Option<Kind>) {
        self.body.set_autocast(kind);
    }

    /// Sets the training-mode dropout probabilities (see [`crate::Gpt2::set_dropout`]).
    pub fn set_dropout(&mut self, resid: f64, embd: f64, attn: f64) {
        self.body.set_dropout(resid, embd, attn);
        self.config = self.body.config();
    }

    /// Saves the checkpoint plus extra files (e.g. optimizer state) in the same atomic
    /// directory write.
    pub fn save_with(&self, dir: impl AsRef<Path>, extra: Vec<(&str, Vec<u8>)>) -> Result<()> {
        let mut extra = extra;
        extra.extend(self.adapter_files()?);
        extra.extend(self.generation_config_file());
        write_checkpoint_with(
            dir.as_ref(),
            &self.config,
            &self.vs,
            self.tokenizer.as_ref(),
            &self.meta,
            extra,
        )
    }

    /// Greedy/sampled generation recomputing the whole sequence each step (no KV cache): the
    /// reference the cached sampler is tested against.
    pub fn generate_uncached(
        &self,
        prompt_ids: &Tensor,
        prompt_mask: &Tensor,
        cfg: &GenerateConfig,
    ) -> Result<Generation> {
        generate_uncached(self, prompt_ids, prompt_mask, cfg)
    }
}

impl Policy for CausalLm {
    fn logits(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.lm_logits(&self.hidden(input_ids, attention_mask, train)?))
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// The body's last block, the unembedding and the log-softmax only at the positions that
    /// predict a selected token (from the first such column to the last; half the rows in
    /// W-SFT, where the prompt is masked).
    fn masked_token_log_probs(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        target_mask: &Tensor,
        temperature: f64,
        train: bool,
    ) -> Result<Tensor> {
        check_target_mask(input_ids, target_mask)?;
        let t = input_ids.size()[1];
        let (rows, targets) = selected_positions(target_mask, input_ids);
        // The columns that predict a selected token, `lo..=hi` (one host read: the rows are
        // already known on the host side of `nonzero`).
        let cols = rows.remainder(t);
        let (lo, hi) = if rows.numel() == 0 {
            (0, 0)
        } else {
            (cols.min().int64_value(&[]), cols.max().int64_value(&[]))
        };
        let hidden = self.hidden_rows(input_ids, attention_mask, train, Some(lo..hi + 1))?;
        let (len, e) = (hi + 1 - lo, hidden.size()[2]);
        let rows = rows.divide_scalar_mode(t, "floor") * len + (cols - lo);
        let h = hidden.reshape([-1, e]).index_select(0, &rows);
        Ok(log_probs_of(&self.lm_logits(&h), &targets, temperature))
    }

    /// The body's last block and the unembedding only at the last `n` predicting positions
    /// (the response in PPO: half the rows of W-PPO).
    fn logits_for_last(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        n: i64,
        train: bool,
    ) -> Result<Tensor> {
        let t = check_last_n(input_ids, n, "logits_for_last")?;
        let hidden = self.hidden_rows(input_ids, attention_mask, train, Some(t - 1 - n..t - 1))?;
        Ok(self.lm_logits(&hidden))
    }

    /// KV-cache sampling: one forward of the prompts, then one token per step.
    fn generate(
        &self,
        prompt_ids: &Tensor,
        prompt_mask: &Tensor,
        cfg: &GenerateConfig,
    ) -> Result<Generation> {
        check_pair(prompt_ids, prompt_mask)?;
        let (b, p) = prompt_ids.size2()?;
        let left_padded = padding_mask(prompt_mask)?.is_some();
        let mut cache = KvCache::new(
            &self.config,
            b,
            p + cfg.max_new_tokens.max(0),
            self.body.compute_kind(),
            self.device(),
        );
        generate_with(prompt_ids, prompt_mask, cfg, |ids, mask, n_new| {
            let len = ids.size()[1];
            let new_ids = ids.narrow(1, len - n_new, n_new);
            let key_mask = left_padded.then_some(mask);
            // Only the last position's output is sampled from (the prompt's in the first call).
            let hidden = self.body.forward_rows(
                &new_ids,
                key_mask,
                Some(&mut cache),
                false,
                Some(n_new - 1..n_new),
            )?;
            Ok(self.lm_logits(&hidden.select(1, 0)))
        })
    }
}

/// A transformer body with a scalar head (Hugging Face `GPT2ForSequenceClassification` /
/// `LlamaForSequenceClassification` with one label, weight `score.weight [1, E]`, no bias): a [`RewardModel`] (one score per sequence at
/// its last non-pad token, plus the checkpoint's normalization bias) and a [`ValueFunction`]
/// (the head on every token).
#[derive(Debug)]
pub struct ScalarModel {
    vs: nn::VarStore,
    body: Body,
    score: Tensor,
    config: ModelConfig,
    tokenizer: Option<Tokenizer>,
    meta: CheckpointMeta,
    lora: LoraState,
    /// With adapters: the head as it was when they were attached, which `model.safetensors`
    /// keeps (the trained head is the adapter's `modules_to_save` copy, as in PEFT), so the
    /// base weights' file stays the same from one checkpoint to the next.
    head_base: Option<Tensor>,
}

impl ScalarModel {
    /// A randomly initialized model with a `Reward` or `Value` head. The head is
    /// normal(0, 1/sqrt(n_embd + 1)), as in lm-human-preferences.
    pub fn new<C: ArchConfig + ?Sized>(config: &C, head: HeadKind, device: Device) -> Result<Self> {
        Self::new_in(config, head, device, Kind::Float)
    }

    /// [`ScalarModel::new`] with the variables created in `kind` (see [`CausalLm::new_in`]).
    fn new_in<C: ArchConfig + ?Sized>(
        config: &C,
        head: HeadKind,
        device: Device,
        kind: Kind,
    ) -> Result<Self> {
        let config = config.to_model_config();
        if head == HeadKind::Lm {
            return Err(ModelError::Input(
                "ScalarModel takes HeadKind::Reward or HeadKind::Value".into(),
            ));
        }
        let vs = store_in(device, kind);
        let root = vs.root();
        let body = Body::new(&root, &config)?;
        let e = config.hidden_size();
        let std = 1.0 / ((e + 1) as f64).sqrt();
        let score = normal_var(&(&root / "score"), "weight", &[1, e], std);
        if kind != Kind::Float {
            // A load keeps a fresh head when it makes a reward model from an LM: drawn as an
            // f32 model draws it, then rounded.
            let drawn = nn::init(
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
                &[1, e],
                device,
            );
            tch::no_grad(|| score.shallow_clone().copy_(&drawn));
        }
        Ok(ScalarModel {
            vs,
            body,
            score,
            config,
            tokenizer: None,
            meta: CheckpointMeta::new(head),
            lora: LoraState::default(),
            head_base: None,
        })
    }

    /// Loads a reward or value checkpoint. Errors if it holds a language model.
    pub fn load(dir: impl AsRef<Path>, opts: impl Into<LoadOptions>) -> Result<Self> {
        let files = read_checkpoint(dir.as_ref())?;
        if files.head == HeadKind::Lm {
            return Err(ModelError::ckpt(
                &files.dir,
                "this is a language-model checkpoint, but a reward/value model was expected: \
                 build one from it with ScalarModel::reward_from_lm",
            ));
        }
        Self::from_files(files, files_head_keep, opts.into())
    }

    /// A reward model made from an LM (SFT) checkpoint: the unembedding is dropped and a fresh
    /// scalar head added. The tokenizer is kept.
    pub fn reward_from_lm(dir: impl AsRef<Path>, opts: impl Into<LoadOptions>) -> Result<Self> {
        let files = read_checkpoint(dir.as_ref())?;
        if files.head != HeadKind::Lm {
            return Err(ModelError::ckpt(
                &files.dir,
                format!(
                    "a reward model is built from a language-model checkpoint; this one is {:?}",
                    files.head
                ),
            ));
        }
        Self::from_files(files, |_| HeadKind::Reward, opts.into())
    }

    /// A value function initialized from a reward checkpoint (body and head), on the reward's
    /// normalized scale: the gain is folded into the head's weights and the bias is added to
    /// every value, so the first values are the normalized rewards the returns are made of.
    pub fn value_from_reward(dir: impl AsRef<Path>, opts: impl Into<LoadOptions>) -> Result<Self> {
        let files = read_checkpoint(dir.as_ref())?;
        if files.head == HeadKind::Lm {
            return Err(ModelError::ckpt(
                &files.dir,
                "a value function is initialized from a reward-model checkpoint; this one is a \
                 language model",
            ));
        }
        let mut m = Self::from_files(files, |_| HeadKind::Value, opts.into())?;
        let gain = m.meta.reward_gain;
        if gain != 1.0 {
            let _ = tch::no_grad(|| m.score.f_mul_(&Tensor::from(gain)))?;
            m.meta.reward_gain = 1.0;
        }
        Ok(m)
    }

    fn from_files(
        files: CheckpointFiles,
        head: impl Fn(HeadKind) -> HeadKind,
        opts: LoadOptions,
    ) -> Result<Self> {
        let new_head = head(files.head);
        let mut model = ScalarModel::new_in(&files.config, new_head, opts.device, opts.kind)?;
        // An LM checkpoint's unembedding is dropped; its RM gets a fresh head, kept as
        // initialized.
        let keep: &[&str] = if files.head == HeadKind::Lm {
            &["score.weight"]
        } else {
            &[]
        };
        load_into_varstore(
            &model.vs,
            files.weights.iter(),
            &files.dir,
            &["lm_head.weight"],
            keep,
            files.config.body_prefix(),
        )?;
        model.tokenizer = files.tokenizer;
        if files.dir.join(ADAPTER_CONFIG_FILE).exists() {
            if files.head == HeadKind::Lm {
                return Err(ModelError::ckpt(
                    &files.dir,
                    "this language model has LoRA adapters: a reward model is built from plain \
                     weights, so merge them into the checkpoint first (CausalLm::save_merged; \
                     `sft` with [lora] writes its best epoch merged as RUN/merged/)",
                ));
            }
            model.load_adapter(&files.dir)?;
        }
        if files.head != HeadKind::Lm {
            model.meta = files.meta;
            model.meta.head = new_head;
        } else {
            model.meta.step = 0;
        }
        model.set_kind(opts.kind);
        Ok(model)
    }

    /// Attaches LoRA adapters to the body (see [`CausalLm::attach_lora`]); the scalar head
    /// keeps training whole, as PEFT's `modules_to_save` does for sequence classification.
    pub fn attach_lora(&mut self, cfg: &LoraConfig) -> Result<usize> {
        let base = self.score.detach().copy();
        let n = self.lora.attach(
            &self.vs,
            &mut self.body,
            &self.config,
            cfg,
            &head_module(&self.score),
        )?;
        self.head_base = Some(base);
        Ok(n)
    }

    /// The LoRA settings, when adapters are attached.
    pub fn lora(&self) -> Option<&LoraConfig> {
        self.lora.config()
    }

    /// Switches the adapters on or off for later forward passes (see
    /// [`CausalLm::set_adapters_enabled`]); the head is used either way.
    pub fn set_adapters_enabled(&self, on: bool) {
        self.lora.set_enabled(on)
    }

    /// Attaches the PEFT adapter in `dir` (task type `SEQ_CLS`; the head as
    /// `modules_to_save`).
    pub fn load_adapter(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let base = self.score.detach().copy();
        self.lora.load(
            &self.vs,
            &mut self.body,
            &self.config,
            dir.as_ref(),
            &head_module(&self.score),
        )?;
        self.head_base = Some(base);
        Ok(())
    }

    /// Saves an ordinary checkpoint with the adapters folded into the weights.
    pub fn save_merged(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        self.lora.save_merged(
            dir.as_ref(),
            &self.vs,
            &mut self.body,
            &self.config,
            self.tokenizer.as_ref(),
            &self.meta,
            vec![],
        )
    }

    /// Saves the checkpoint (see [`CausalLm::save`]); `config.json` names
    /// `GPT2ForSequenceClassification` (or the Llama family's) with one label, so
    /// `transformers` loads it too. With adapters, PEFT's files are written beside the base
    /// (the head in them as `modules_to_save`).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.save_with(dir, vec![])
    }

    /// Saves the checkpoint plus extra files (e.g. optimizer state) in the same atomic
    /// directory write.
    ///
    /// With adapters, `model.safetensors` holds the head as it was when they were attached
    /// (PEFT's layout: the trained head is the adapter's `modules_to_save` copy, and loading
    /// applies it), so that file is byte-identical from one checkpoint to the next and later
    /// saves hard-link it ([`rlhf_io::write_files_atomic`]).
    pub fn save_with(&self, dir: impl AsRef<Path>, extra: Vec<(&str, Vec<u8>)>) -> Result<()> {
        let mut files =
            self.lora
                .files(&self.vs, &self.config, "SEQ_CLS", &head_module(&self.score))?;
        files.extend(extra);
        let mut tensors = named_variables(&self.vs);
        if let (Some(_), Some(base)) = (self.lora.config(), &self.head_base) {
            for (name, t) in tensors.iter_mut() {
                if name == "score.weight" {
                    *t = base.to_kind(t.kind());
                }
            }
        }
        write_checkpoint_tensors(
            dir.as_ref(),
            &self.config,
            &tensors,
            self.tokenizer.as_ref(),
            &self.meta,
            files,
        )
    }

    /// Mixed-precision training and inference (see [`crate::Gpt2::set_autocast`]).
    pub fn set_autocast(&mut self, kind: Option<Kind>) {
        self.body.set_autocast(kind);
    }

    /// Sets the training-mode dropout probabilities (see [`crate::Gpt2::set_dropout`]).
    pub fn set_dropout(&mut self, resid: f64, embd: f64, attn: f64) {
        self.body.set_dropout(resid, embd, attn);
        self.config = self.body.config();
    }

    /// The Hugging Face config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Reward or value.
    pub fn head_kind(&self) -> HeadKind {
        self.meta.head
    }

    /// The tokenizer saved with the checkpoint, if any.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    /// Attaches a tokenizer.
    pub fn set_tokenizer(&mut self, tokenizer: Tokenizer) {
        self.tokenizer = Some(tokenizer);
    }

    /// Checkpoint metadata.
    pub fn meta(&self) -> &CheckpointMeta {
        &self.meta
    }

    /// Mutable checkpoint metadata (e.g. `reward_bias` after normalization).
    pub fn meta_mut(&mut self) -> &mut CheckpointMeta {
        &mut self.meta
    }

    /// Mutable access to the variables.
    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Casts every variable to `kind`.
    pub fn set_kind(&mut self, kind: Kind) {
        if kind == Kind::BFloat16 {
            crate::cpu::ensure_usable_cpu_isa();
        }
        if self.score.kind() != kind {
            self.vs.set_kind(kind);
        }
    }

    /// The head on every token. Shapes: `[B, T]` ids and mask -> `[B, T]` (f32).
    pub fn per_token(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        check_pair(input_ids, attention_mask)?;
        let hidden = self
            .body
            .forward(input_ids, padding_mask(attention_mask)?, None, train)?;
        Ok(hidden
            .matmul(&self.score.tr())
            .squeeze_dim(-1)
            .to_kind(Kind::Float))
    }

    /// The head at each row's last non-pad token, without the normalization bias.
    /// Shapes: `[B, T]` ids and mask -> `[B]` (f32).
    pub fn score_raw(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        check_pair(input_ids, attention_mask)?;
        let last = last_token_index(attention_mask);
        // The last block runs for the columns `lo..=hi` that hold some row's last token only
        // (one column when every row ends in the same one, as left-padded rows do).
        let (lo, hi) = if last.numel() == 0 {
            (0, 0)
        } else {
            (last.min().int64_value(&[]), last.max().int64_value(&[]))
        };
        let hidden = self.body.forward_rows(
            input_ids,
            padding_mask(attention_mask)?,
            None,
            train,
            Some(lo..hi + 1),
        )?;
        let (b, _, e) = hidden.size3()?;
        let last = (last - lo).view([b, 1, 1]).expand([b, 1, e], false);
        let h = hidden.gather(1, &last, false).squeeze_dim(1);
        Ok(h.matmul(&self.score.tr())
            .squeeze_dim(-1)
            .to_kind(Kind::Float))
    }
}

impl ScalarModel {
    /// Adds `reward_bias` (see [`ValueFunction::values`] below), skipping the op when it is 0.
    fn with_reward_bias(&self, v: Tensor) -> Tensor {
        if self.meta.reward_bias == 0.0 {
            v
        } else {
            v + self.meta.reward_bias
        }
    }
}

/// A scalar model's head, trained whole beside its adapters (PEFT's `modules_to_save`, as
/// for a `SEQ_CLS` task).
fn head_module(score: &Tensor) -> [SavedModule<'_>; 1] {
    [SavedModule {
        name: "score",
        aliases: &["classifier"],
        weight: score,
    }]
}

fn files_head_keep(h: HeadKind) -> HeadKind {
    h
}

impl RewardModel for ScalarModel {
    fn score(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self
            .meta
            .normalize_reward(self.score_raw(input_ids, attention_mask, train)?))
    }

    fn device(&self) -> Device {
        self.vs.device()
    }
}

impl ValueFunction for ScalarModel {
    /// The head on every token, plus `reward_bias` (0 for a fresh value head; the reward's
    /// normalization bias for one made by [`ScalarModel::value_from_reward`]).
    fn values(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor> {
        let v = self.per_token(input_ids, attention_mask, train)?;
        Ok(self.with_reward_bias(v))
    }

    /// The head at positions `T-1-n ..= T-2` only, with the body's last block run for those
    /// positions only.
    fn values_for_last(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        n: i64,
        train: bool,
    ) -> Result<Tensor> {
        check_pair(input_ids, attention_mask)?;
        let t = check_last_n(input_ids, n, "values_for_last")?;
        let hidden = self.body.forward_rows(
            input_ids,
            padding_mask(attention_mask)?,
            None,
            train,
            Some(t - 1 - n..t - 1),
        )?;
        let v = hidden
            .matmul(&self.score.tr())
            .squeeze_dim(-1)
            .to_kind(Kind::Float);
        Ok(self.with_reward_bias(v))
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}
