//! Checkpoint directories in Hugging Face layout — `config.json`, `model.safetensors`,
//! `tokenizer.json` — plus `rlhf.json`, a small file of ours (head kind, reward normalization,
//! training step). Directories are written whole into a temporary sibling and renamed into
//! place, so a crash never leaves a half-written checkpoint. Reading also takes sharded
//! weights (`model.safetensors.index.json` and its shards), tensor by tensor.

use crate::error::{ModelError, Result};
use crate::model_config::ModelConfig;
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{nn, Kind, Tensor};

/// File names inside a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";
/// Weights, safetensors format with `{"format": "pt"}` metadata as `transformers` expects;
/// a sharded checkpoint has [`WEIGHTS_INDEX_FILE`] and its shards instead (read, not written).
pub use crate::weights::{WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
/// Hugging Face `tokenizers` JSON.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Our own metadata.
pub const META_FILE: &str = "rlhf.json";
/// Hugging Face's tokenizer settings (special tokens, `chat_template`), kept with the tokenizer.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// The chat template as its own file (newer `transformers` write it so).
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// Hugging Face's generation defaults (EOS ids, sampling settings), kept with a language model.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// What head a checkpoint carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// A causal LM (tied unembedding): `GPT2LMHeadModel`.
    Lm,
    /// A reward model: one scalar per sequence (`GPT2ForSequenceClassification`, 1 label).
    Reward,
    /// A value function: one scalar per token (same weights layout as `Reward`).
    Value,
}

impl HeadKind {
    /// The GPT-2 Hugging Face class name written in `config.json`'s `architectures` (see
    /// [`ModelConfig::hf_architecture`] for every architecture's).
    pub fn hf_architecture(self) -> &'static str {
        match self {
            HeadKind::Lm => "GPT2LMHeadModel",
            HeadKind::Reward | HeadKind::Value => "GPT2ForSequenceClassification",
        }
    }
}

/// The content of `rlhf.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Which head the weights carry.
    pub head: HeadKind,
    /// Added to every reward (`RewardModel::score`, after [`CheckpointMeta::reward_gain`]) so
    /// that labeler demonstrations score 0 on average. 0 until the reward trainer sets it.
    #[serde(default)]
    pub reward_bias: f64,
    /// Multiplies every raw reward (before the bias) so that labeler demonstrations' scores
    /// have a standard deviation of 1, which gives the PPO KL coefficient a fixed meaning. 1
    /// until the reward trainer sets it (and in checkpoints written before it existed).
    #[serde(default = "one")]
    pub reward_gain: f64,
    /// Optimizer steps taken so far.
    #[serde(default)]
    pub step: u64,
    /// Free-form fields stages may add (stage name, epoch, metrics).
    #[serde(default, flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn one() -> f64 {
    1.0
}

impl CheckpointMeta {
    /// The normalized reward of raw head outputs: `raw * reward_gain + reward_bias`.
    pub fn normalize_reward(&self, raw: Tensor) -> Tensor {
        if self.reward_gain == 1.0 {
            raw + self.reward_bias
        } else {
            raw * self.reward_gain + self.reward_bias
        }
    }

    /// Metadata for a fresh model with this head.
    pub fn new(head: HeadKind) -> Self {
        CheckpointMeta {
            head,
            reward_bias: 0.0,
            reward_gain: 1.0,
            step: 0,
            extra: Default::default(),
        }
    }

    /// Reads `dir/rlhf.json`, or `None` if the directory has none (a plain HF checkpoint).
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(META_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ModelError::Json {
                path,
                msg: e.to_string(),
            })
    }
}

/// The files of a checkpoint directory, read and checked.
pub(crate) struct CheckpointFiles {
    pub(crate) dir: PathBuf,
    pub(crate) config: ModelConfig,
    pub(crate) head: HeadKind,
    pub(crate) meta: CheckpointMeta,
    pub(crate) weights: Weights,
    pub(crate) tokenizer: Option<Tokenizer>,
    pub(crate) generation_config: Option<serde_json::Value>,
}

pub(crate) fn read_checkpoint(dir: &Path) -> Result<CheckpointFiles> {
    let dir = resolve_dir(dir)?;
    let config = ModelConfig::from_file(dir.join(CONFIG_FILE))?;
    let weights = Weights::open_dir(&dir)?;
    let meta = CheckpointMeta::read(&dir)?;
    let head = match &meta {
        Some(m) => m.head,
        None if weights.contains("score.weight") => HeadKind::Reward,
        None => HeadKind::Lm,
    };
    let meta = meta.unwrap_or_else(|| CheckpointMeta::new(head));
    let tok_path = dir.join(TOKENIZER_FILE);
    let tokenizer = if tok_path.exists() {
        let mut tok = Tokenizer::from_file(&tok_path)?;
        tok.set_tokenizer_config(read_tokenizer_config(&dir)?);
        if tok.vocab_size() as i64 > config.vocab_size() {
            return Err(ModelError::ckpt(
                &dir,
                format!(
                    "{TOKENIZER_FILE} has {} tokens but the model's vocab_size is {}: the \
                     tokenizer does not belong to this model",
                    tok.vocab_size(),
                    config.vocab_size()
                ),
            ));
        }
        Some(tok)
    } else {
        None
    };
    let generation_config = read_json_object(&dir.join(GENERATION_CONFIG_FILE))?;
    Ok(CheckpointFiles {
        dir,
        config,
        head,
        meta,
        weights,
        tokenizer,
        generation_config,
    })
}

/// The JSON object in `path`, or `None` when there is no such file.
fn read_json_object(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(ModelError::Json {
            path: path.to_path_buf(),
            msg: "expected a JSON object".into(),
        });
    }
    Ok(Some(value))
}

/// `tokenizer_config.json`, with the template of `chat_template.jinja` (which wins, as in
/// `transformers`) as its `chat_template`; `None` when the checkpoint has neither.
fn read_tokenizer_config(dir: &Path) -> Result<Option<serde_json::Value>> {
    let path = dir.join(TOKENIZER_CONFIG_FILE);
    let mut config = if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Json {
                path: path.clone(),
                msg: e.to_string(),
            })?;
        if !value.is_object() {
            return Err(ModelError::Json {
                path,
                msg: "expected a JSON object".into(),
            });
        }
        Some(value)
    } else {
        None
    };
    let jinja = dir.join(CHAT_TEMPLATE_FILE);
    if jinja.exists() {
        let text = std::fs::read_to_string(&jinja).map_err(|e| ModelError::io(&jinja, e))?;
        config
            .get_or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .expect("checked above")
            .insert("chat_template".into(), text.into());
    }
    Ok(config)
}

pub(crate) fn write_checkpoint_with(
    dir: &Path,
    config: &ModelConfig,
    vs: &nn::VarStore,
    tokenizer: Option<&Tokenizer>,
    meta: &CheckpointMeta,
    extra: Vec<(&str, Vec<u8>)>,
) -> Result<()> {
    write_checkpoint_tensors(dir, config, &named_variables(vs), tokenizer, meta, extra)
}

/// [`write_checkpoint_with`] from named tensors (the model's variables, perhaps with some
/// replaced, as a merged LoRA export does).
pub(crate) fn write_checkpoint_tensors(
    dir: &Path,
    config: &ModelConfig,
    tensors: &[(String, Tensor)],
    tokenizer: Option<&Tokenizer>,
    meta: &CheckpointMeta,
    extra: Vec<(&str, Vec<u8>)>,
) -> Result<()> {
    let mut config = config.clone();
    let arch = config.hf_architecture(meta.head == HeadKind::Lm);
    config.set_architectures(vec![arch.to_string()]);
    // `transformers` loads weights in the config's `dtype` (`torch_dtype` before version 5):
    // say what this file holds, or an f32 model trained from a bf16 checkpoint would load back
    // rounded to bf16. A config without the key gets none (it then loads as stored).
    let name = tensors.iter().find_map(|(_, t)| match t.kind() {
        Kind::Float => Some("float32"),
        Kind::BFloat16 => Some("bfloat16"),
        Kind::Half => Some("float16"),
        _ => None,
    });
    if let Some(name) = name {
        for key in ["dtype", "torch_dtype"] {
            if let Some(v) = config.extra_mut().get_mut(key) {
                *v = name.into();
            }
        }
    }
    if meta.head != HeadKind::Lm {
        let extra = config.extra_mut();
        extra.insert("id2label".into(), serde_json::json!({"0": "LABEL_0"}));
        extra.insert("label2id".into(), serde_json::json!({"LABEL_0": 0}));
        // transformers finds the last non-pad token through pad_token_id.
        config.ensure_pad_token_id();
    }
    let weights = SafetensorsFile::new(tensors)?;
    let mut files: Vec<(&str, Vec<u8>)> = vec![(CONFIG_FILE, config.to_json().into_bytes())];
    if let Some(tok) = tokenizer {
        files.push((TOKENIZER_FILE, tok.to_json()?.into_bytes()));
        if let Some(tc) = tok.tokenizer_config() {
            let text = serde_json::to_string_pretty(tc).expect("JSON serializes");
            files.push((TOKENIZER_CONFIG_FILE, text.into_bytes()));
        }
    }
    let meta_json = serde_json::to_string_pretty(meta).expect("metadata serializes");
    files.extend(extra);
    files.push((META_FILE, meta_json.into_bytes()));
    // The weights are streamed into the file (or compared with an equal earlier save before
    // they are linked to it), never whole in memory.
    let contents: Vec<(&str, rlhf_io::Contents)> = files
        .iter()
        .map(|(name, bytes)| (*name, rlhf_io::Contents::Bytes(bytes)))
        .chain([(WEIGHTS_FILE, rlhf_io::Contents::Streamed(&weights))])
        .collect();
    Ok(rlhf_io::write_contents_atomic(dir, &contents)?)
}

fn kind_to_dtype(kind: Kind) -> Result<safetensors::Dtype> {
    use safetensors::Dtype;
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => {
            return Err(ModelError::Input(format!(
                "cannot store a {other:?} tensor in safetensors"
            )))
        }
    })
}

/// Serializes named tensors to safetensors bytes with `{"format": "pt"}` metadata (which
/// `transformers` requires): the bytes of [`SafetensorsFile`], in memory.
pub fn safetensors_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let file = SafetensorsFile::new(tensors)?;
    let mut out = Vec::with_capacity(file.len as usize);
    rlhf_io::Streamed::stream(&file, &mut |piece| {
        out.extend_from_slice(piece);
        Ok(())
    })
    .map_err(|e| ModelError::Input(format!("safetensors serialization failed: {e}")))?;
    Ok(out)
}

/// A safetensors file of named tensors (`{"format": "pt"}` metadata, which `transformers`
/// requires), made piece by piece as it is written ([`rlhf_io::Streamed`]): the header, then
/// each tensor's bytes, read from the tensor itself when it is a contiguous CPU tensor (else
/// from a CPU copy of that one tensor). A save thus holds the model and at most one tensor's
/// copy, never the file's bytes. The bytes are exactly `safetensors::serialize`'s: its header
/// is made by `safetensors` itself, and the tensors follow in the order it puts them in.
pub struct SafetensorsFile {
    header: Vec<u8>,
    tensors: Vec<Tensor>,
    len: u64,
}

/// A tensor as `safetensors::serialize` sees it when only the header is wanted: its dtype and
/// size, no bytes; it records when the writer asks for its bytes, which gives the order the
/// writer puts the tensors in.
struct HeaderView<'a> {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    len: usize,
    index: usize,
    asked: &'a std::cell::RefCell<Vec<usize>>,
}

impl safetensors::View for &HeaderView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        self.asked.borrow_mut().push(self.index);
        std::borrow::Cow::Borrowed(&[])
    }
    fn data_len(&self) -> usize {
        self.len
    }
}

impl SafetensorsFile {
    /// The file of `tensors` (any device; f32, f16, bf16, f64 or integer kinds).
    pub fn new(tensors: &[(String, Tensor)]) -> Result<Self> {
        let asked = std::cell::RefCell::new(Vec::with_capacity(tensors.len()));
        let views = tensors
            .iter()
            .enumerate()
            .map(|(index, (name, t))| {
                let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
                let len = shape.iter().product::<usize>() * t.kind().elt_size_in_bytes();
                let dtype = kind_to_dtype(t.kind())?;
                Ok((name.as_str(), (index, shape, len, dtype)))
            })
            .collect::<Result<Vec<_>>>()?;
        let views: Vec<(&str, HeaderView)> = views
            .into_iter()
            .map(|(name, (index, shape, len, dtype))| {
                let asked = &asked;
                let view = HeaderView {
                    dtype,
                    shape,
                    len,
                    index,
                    asked,
                };
                (name, view)
            })
            .collect();
        let data_len: usize = views.iter().map(|(_, v)| v.len).sum();
        let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
        let header = safetensors::serialize(views.iter().map(|(n, v)| (*n, v)), Some(meta))
            .map_err(|e| ModelError::Input(format!("safetensors serialization failed: {e}")))?;
        drop(views);
        let order = asked.into_inner();
        if order.len() != tensors.len() {
            return Err(ModelError::Input(format!(
                "safetensors asked for {} of {} tensors",
                order.len(),
                tensors.len()
            )));
        }
        Ok(SafetensorsFile {
            len: (header.len() + data_len) as u64,
            header,
            tensors: order
                .iter()
                .map(|&i| tensors[i].1.shallow_clone())
                .collect(),
        })
    }
}

impl rlhf_io::Streamed for SafetensorsFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn stream(&self, sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        sink(&self.header)?;
        for t in &self.tensors {
            let t = t.to_device(tch::Device::Cpu).contiguous();
            let len = t.numel() * t.kind().elt_size_in_bytes();
            if len == 0 {
                continue;
            }
            // SAFETY: `t` is a contiguous CPU tensor of `len` bytes (numel x element size),
            // alive and not written to while the slice is in use (the sink only reads it).
            let bytes = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, len) };
            sink(bytes)?;
        }
        Ok(())
    }
}

/// Reads every tensor of a safetensors file (on the CPU, in the file's dtype), sorted by name.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    Weights::open_file(path)?.read_all()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename
/// (`rlhf_io::write_atomic`, the one implementation every crate uses).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(rlhf_io::write_atomic(path, bytes)?)
}

/// Writes a whole directory atomically: the files go into a temporary sibling directory, which
/// then replaces `dir` (an existing `dir` is moved aside and removed after the swap;
/// `rlhf_io::write_files_atomic`). An existing `dir` holding a name that `files` lacks is not
/// replaced: an error, so that a mistaken path never loses a user's files.
pub fn write_dir_atomic(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    Ok(rlhf_io::write_files_atomic(dir, files)?)
}

/// Resolves a checkpoint path: `dir` itself, or (after a crash between the two renames of
/// [`write_dir_atomic`]) the complete copy that was moved aside.
pub fn resolve_dir(dir: &Path) -> Result<PathBuf> {
    if dir.join(CONFIG_FILE).exists() {
        return Ok(dir.to_path_buf());
    }
    if let Some(aside) = rlhf_io::moved_aside(dir, |c| c.join(CONFIG_FILE).exists()) {
        return Ok(aside);
    }
    if !dir.exists() {
        return Err(ModelError::ckpt(dir, "no such directory"));
    }
    Err(ModelError::ckpt(
        dir,
        format!(
            "no {CONFIG_FILE}: not a checkpoint directory (expected {CONFIG_FILE}, {WEIGHTS_FILE})"
        ),
    ))
}

/// Maps a Hugging Face GPT-2 weight name to ours, or `None` for buffers we do not keep
/// (`h.{i}.attn.bias`, `h.{i}.attn.masked_bias`: causal-mask buffers of old checkpoints).
///
/// Names of `GPT2Model` (`h.0.ln_1.weight`) gain the `transformer.` prefix; names of
/// `GPT2LMHeadModel` / `GPT2ForSequenceClassification` pass through.
pub fn normalize_hf_name(name: &str) -> Option<String> {
    let body = name.strip_prefix("transformer.").unwrap_or(name);
    if body.ends_with(".attn.masked_bias")
        || (body.ends_with(".attn.bias") && !body.ends_with("c_attn.bias"))
    {
        return None;
    }
    if name == "lm_head.weight" || name.starts_with("score.") || name.starts_with("transformer.") {
        return Some(name.to_string());
    }
    Some(format!("transformer.{name}"))
}

/// A Hugging Face parameter name of a Llama-family checkpoint (`body_prefix` "model") as our
/// variable name, or `None` for buffers that are not parameters (`rotary_emb.inv_freq` of old
/// checkpoints). Names of the bare body (`layers.0.mlp.up_proj.weight`) gain the prefix.
pub fn normalize_prefixed_name(body_prefix: &str, name: &str) -> Option<String> {
    if name.ends_with("rotary_emb.inv_freq") {
        return None;
    }
    if name == "lm_head.weight"
        || name.starts_with("score.")
        || name.starts_with(&format!("{body_prefix}."))
    {
        return Some(name.to_string());
    }
    Some(format!("{body_prefix}.{name}"))
}

/// Copies named tensors (HF names) into the variables of `vs`, checking the key sets and
/// shapes. `tensors` may read each tensor only when it is asked for ([`Weights::iter`]), so
/// that loading holds one tensor besides the variables.
///
/// `ignore` lists names that may be in the file but are not variables (e.g. `lm_head.weight`
/// of a tied model); `keep` lists variables that keep their initialization (a fresh head).
/// Missing variables, unexpected tensors and shape mismatches are errors that name the tensor.
pub(crate) fn load_into_varstore(
    vs: &tch::nn::VarStore,
    tensors: impl IntoIterator<Item = Result<(String, Tensor)>>,
    path: &Path,
    ignore: &[&str],
    keep: &[&str],
    body_prefix: &str,
) -> Result<()> {
    let mut vars = vs.variables();
    for name in keep {
        vars.remove(*name);
    }
    let mut unexpected = vec![];
    let _guard = tch::no_grad_guard();
    for item in tensors {
        let (name, t) = item?;
        let normalized = match body_prefix {
            "transformer" => normalize_hf_name(&name),
            prefix => normalize_prefixed_name(prefix, &name),
        };
        let Some(name) = normalized else {
            continue;
        };
        if ignore.contains(&name.as_str()) || keep.contains(&name.as_str()) {
            continue;
        }
        match vars.remove(&name) {
            Some(mut var) => {
                if var.size() != t.size() {
                    return Err(ModelError::ckpt(
                        path,
                        format!(
                            "tensor {name} has shape {:?}, the config expects {:?}",
                            t.size(),
                            var.size()
                        ),
                    ));
                }
                var.f_copy_(&t)?;
            }
            None => unexpected.push(name),
        }
    }
    if !vars.is_empty() {
        let mut missing: Vec<_> = vars.into_keys().collect();
        missing.sort();
        return Err(ModelError::ckpt(
            path,
            format!("missing tensors: {}", missing.join(", ")),
        ));
    }
    if !unexpected.is_empty() {
        return Err(ModelError::ckpt(
            path,
            format!("unexpected tensors: {}", unexpected.join(", ")),
        ));
    }
    Ok(())
}

/// The variables of `vs`, sorted by name, for saving (HF names already).
/// The model's own variables by name, sorted; LoRA adapters (see [`crate::lora`]) are not
/// among them: they are saved in PEFT's files.
pub(crate) fn named_variables(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| !crate::lora::is_adapter_variable(n))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
