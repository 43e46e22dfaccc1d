//! A Llama-family GGUF (llama.cpp) as an ordinary checkpoint directory: `config.json`
//! (`model_type` llama, qwen2 or qwen3), `model.safetensors` with Hugging Face names (dequantized to
//! f32; llama.cpp's Q/K row permutation undone), `tokenizer.json` built from the metadata
//! (byte-level BPE), `tokenizer_config.json` with the special tokens and the chat template
//! (which travels with the tokenizer through every later save), and our `rlhf.json`.

use super::{GgufFile, GgufValue};
use crate::checkpoint::load_into_varstore;
use crate::error::{ModelError, Result};
use crate::llama_config::LlamaConfig;
use crate::model::CausalLm;
use crate::tokenizer::Tokenizer;
use crate::traits::Policy;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Tensor};

/// What [`import_gguf`] wrote.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The config written.
    pub config: LlamaConfig,
    /// Number of tensors imported.
    pub n_tensors: usize,
    /// Storage types seen, with tensor counts (e.g. `{"Q4_1": 210, "F32": 61}`).
    pub types: BTreeMap<String, usize>,
    /// Whether the GGUF carried a chat template.
    pub chat_template: bool,
}

/// The GGUF architectures this importer reads.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3"];

/// Inverse of convert_hf_to_gguf.py's `permute` of Q and K rows for llama.cpp's interleaved
/// RoPE: `w.reshape(n_head, head_dim / 2, 2, in).swapaxes(1, 2).reshape(out, in)`.
/// Shapes: `[n_head * head_dim, in]` (a weight) or `[n_head * head_dim]` (a bias).
pub fn unpermute_qk(w: &Tensor, n_head: i64) -> Tensor {
    let shape = w.size();
    let rest: Vec<i64> = shape[1..].to_vec();
    let mut v = vec![n_head, shape[0] / n_head / 2, 2];
    v.extend(&rest);
    w.reshape(v.as_slice())
        .swapaxes(1, 2)
        .contiguous()
        .reshape(shape.as_slice())
}

/// The permutation itself (convert_hf_to_gguf.py's `permute`), for tests.
pub fn permute_qk(w: &Tensor, n_head: i64) -> Tensor {
    let shape = w.size();
    let mut v = vec![n_head, 2, shape[0] / n_head / 2];
    v.extend(&shape[1..]);
    w.reshape(v.as_slice())
        .swapaxes(1, 2)
        .contiguous()
        .reshape(shape.as_slice())
}

fn meta_u64(g: &GgufFile, key: &str) -> Result<u64> {
    g.get(key).and_then(GgufValue::as_u64).ok_or_else(|| {
        ModelError::ckpt(
            &g.path,
            format!("metadata {key} is missing or not an integer"),
        )
    })
}

fn meta_str<'a>(g: &'a GgufFile, key: &str) -> Option<&'a str> {
    g.get(key).and_then(GgufValue::as_str)
}

/// The Hugging Face config of a GGUF's model.
pub fn config_from_gguf(g: &GgufFile) -> Result<LlamaConfig> {
    let arch = meta_str(g, "general.architecture").unwrap_or("<none>");
    if !SUPPORTED_ARCHITECTURES.contains(&arch) {
        return Err(ModelError::ckpt(
            &g.path,
            format!(
                "general.architecture is {arch:?}; supported: {}",
                SUPPORTED_ARCHITECTURES.join(", ")
            ),
        ));
    }
    let k = |s: &str| format!("{arch}.{s}");
    let n_tokens = g
        .get("tokenizer.ggml.tokens")
        .and_then(GgufValue::as_array)
        .map(|a| a.len() as u64);
    let vocab = match g.get(&k("vocab_size")).and_then(GgufValue::as_u64) {
        Some(v) => v,
        None => n_tokens.ok_or_else(|| {
            ModelError::ckpt(&g.path, "neither a vocab_size nor tokenizer tokens")
        })?,
    };
    let hidden = meta_u64(g, &k("embedding_length"))? as i64;
    let heads = meta_u64(g, &k("attention.head_count"))? as i64;
    let kv = g
        .get(&k("attention.head_count_kv"))
        .and_then(GgufValue::as_u64)
        .map_or(heads, |v| v as i64);
    let head_dim = g
        .get(&k("attention.key_length"))
        .and_then(GgufValue::as_u64)
        .map(|v| v as i64)
        .filter(|&d| d != hidden / heads);
    let mut cfg = LlamaConfig {
        model_type: arch.to_string(),
        vocab_size: vocab as i64,
        hidden_size: hidden,
        intermediate_size: meta_u64(g, &k("feed_forward_length"))? as i64,
        num_hidden_layers: meta_u64(g, &k("block_count"))? as i64,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv),
        head_dim,
        max_position_embeddings: meta_u64(g, &k("context_length"))? as i64,
        rms_norm_eps: g
            .get(&k("attention.layer_norm_rms_epsilon"))
            .and_then(GgufValue::as_f64)
            .unwrap_or(1e-6),
        rope_theta: Some(
            g.get(&k("rope.freq_base"))
                .and_then(GgufValue::as_f64)
                .unwrap_or(10000.0),
        ),
        tie_word_embeddings: g.tensor("output.weight").is_none(),
        bos_token_id: g
            .get("tokenizer.ggml.bos_token_id")
            .and_then(GgufValue::as_u64)
            .map(|v| v as i64),
        eos_token_id: g
            .get("tokenizer.ggml.eos_token_id")
            .and_then(GgufValue::as_u64)
            .map(|v| v as i64),
        pad_token_id: g
            .get("tokenizer.ggml.padding_token_id")
            .and_then(GgufValue::as_u64)
            .map(|v| v as i64),
        architectures: Some(vec![match arch {
            "qwen2" => "Qwen2ForCausalLM".into(),
            "qwen3" => "Qwen3ForCausalLM".into(),
            _ => "LlamaForCausalLM".into(),
        }]),
        ..Default::default()
    };
    match meta_str(g, &k("rope.scaling.type")) {
        None | Some("none") => {}
        Some("linear") => {
            let factor = g
                .get(&k("rope.scaling.factor"))
                .and_then(GgufValue::as_f64)
                .unwrap_or(1.0);
            cfg.rope_scaling = Some(json!({"rope_type": "linear", "factor": factor}));
        }
        Some(other) => {
            return Err(ModelError::ckpt(
                &g.path,
                format!("rope scaling {other:?} is not supported (none, linear)"),
            ))
        }
    }
    // Llama 3 GGUFs name the end of a turn (`<|eot_id|>`) and of a tool message apart from
    // the EOS: all of them end generation, as the Hugging Face config lists them.
    let mut eos_ids: Vec<i64> = vec![];
    for key in ["eos", "eot", "eom"] {
        let id = g.get(&format!("tokenizer.ggml.{key}_token_id"));
        if let Some(id) = id.and_then(GgufValue::as_u64).map(|v| v as i64) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
    }
    if eos_ids.len() > 1 {
        cfg.eos_token_id = eos_ids.first().copied();
        cfg.eos_token_ids = eos_ids;
    }
    if g.tensor("rope_freqs.weight").is_some() {
        return Err(ModelError::ckpt(
            &g.path,
            "the GGUF carries rope_freqs (Llama 3.1 rope scaling as a tensor), which this \
             importer does not translate back to rope_scaling",
        ));
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The Hugging Face name of a llama.cpp tensor name, or `None` for one we do not import.
fn hf_name(name: &str) -> Option<String> {
    let top = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (i, part) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    let (module, suffix) = part.rsplit_once('.')?;
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{i}.{hf}.{suffix}"))
}

/// The tensors of a GGUF under Hugging Face names, dequantized to f32, Q/K rows of a "llama"
/// GGUF un-permuted. Errors on a tensor that has no Hugging Face counterpart.
pub fn hf_tensors(g: &GgufFile, cfg: &LlamaConfig) -> Result<BTreeMap<String, Tensor>> {
    let permuted = cfg.model_type == "llama";
    let mut out = BTreeMap::new();
    for t in &g.tensors {
        let name = hf_name(&t.name).ok_or_else(|| {
            ModelError::ckpt(
                &g.path,
                format!("tensor {} has no Hugging Face name", t.name),
            )
        })?;
        let mut w = g.tensor_f32(t)?;
        if permuted && name.contains("self_attn.q_proj") {
            w = unpermute_qk(&w, cfg.num_attention_heads);
        } else if permuted && name.contains("self_attn.k_proj") {
            w = unpermute_qk(&w, cfg.kv_heads());
        }
        out.insert(name, w);
    }
    Ok(out)
}

/// GPT-2-style regex of llama.cpp's byte-level pre-tokenizers, by `tokenizer.ggml.pre`.
fn pre_tokenizer(pre: &str) -> Option<Value> {
    let byte_level = |use_regex: bool| {
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
               "use_regex": use_regex})
    };
    let split = |regex: &str| {
        json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated",
               "invert": false})
    };
    Some(match pre {
        "default" | "gpt2" | "gpt-2" => byte_level(true),
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "qwen2" => json!({"type": "Sequence", "pretokenizers": [
            split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
            byte_level(false)]}),
        "llama-bpe" | "llama3" => json!({"type": "Sequence", "pretokenizers": [
            split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
            byte_level(false)]}),
        _ => return None,
    })
}

/// A Hugging Face `tokenizer.json` (byte-level BPE) from `tokenizer.ggml.*` metadata: vocab
/// from `tokens`, `merges`, control tokens (`token_type` 3) and user-defined ones (4) as added
/// tokens, the pre-tokenizer named by `tokenizer.ggml.pre`.
pub fn tokenizer_json_from_gguf(g: &GgufFile) -> Result<String> {
    let bad = |msg: String| ModelError::ckpt(&g.path, msg);
    let model = meta_str(g, "tokenizer.ggml.model").unwrap_or("<none>");
    if model != "gpt2" {
        return Err(bad(format!(
            "tokenizer.ggml.model is {model:?}; only \"gpt2\" (byte-level BPE) is supported"
        )));
    }
    let strings = |key: &str| -> Result<Vec<String>> {
        let arr = g
            .get(key)
            .and_then(GgufValue::as_array)
            .ok_or_else(|| bad(format!("metadata {key} is missing")))?;
        arr.iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(format!("metadata {key} is not an array of strings")))
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<i64> = match g
        .get("tokenizer.ggml.token_type")
        .and_then(GgufValue::as_array)
    {
        Some(a) => a
            .iter()
            .map(|v| match v {
                GgufValue::Int(i) => *i,
                GgufValue::Uint(u) => *u as i64,
                _ => 1,
            })
            .collect(),
        None => vec![1; tokens.len()],
    };
    let pre = meta_str(g, "tokenizer.ggml.pre").unwrap_or("default");
    let pre_tokenizer = pre_tokenizer(pre).ok_or_else(|| {
        bad(format!(
            "tokenizer.ggml.pre {pre:?} is not supported; supported: default, gpt2, smollm, \
             qwen2, llama-bpe"
        ))
    })?;
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, &ty))| ty == 3 || ty == 4)
        .map(|(i, (t, &ty))| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": ty == 4, "special": ty == 3})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": true,
                            "trim_offsets": false, "use_regex": true});
    // `tokenizer.ggml.add_bos_token` (Llama 3's GGUFs): a text starts with the BOS, as the
    // `TemplateProcessing` of Hugging Face's own tokenizer.json for these models adds it.
    let bos = g
        .get("tokenizer.ggml.bos_token_id")
        .and_then(GgufValue::as_u64)
        .and_then(|i| Some((i, tokens.get(i as usize)?.clone())));
    let post_processor = match bos {
        Some((id, name))
            if g.get("tokenizer.ggml.add_bos_token") == Some(&GgufValue::Bool(true)) =>
        {
            let special = |type_id: u32| json!({"SpecialToken": {"id": name, "type_id": type_id}});
            let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
            json!({"type": "Sequence", "processors": [byte_level, {
                "type": "TemplateProcessing",
                "single": [special(0), seq("A", 0)],
                "pair": [special(0), seq("A", 0), special(1), seq("B", 1)],
                "special_tokens": {name.clone(): {"id": name, "ids": [id], "tokens": [name]}},
            }]})
        }
        _ => byte_level,
    };
    let tok = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    Ok(serde_json::to_string(&tok).expect("a JSON value serializes"))
}

/// Imports a Llama-family GGUF into the checkpoint directory `out` (written atomically):
/// config.json, model.safetensors (f32), tokenizer.json, tokenizer_config.json (with
/// `chat_template` when the GGUF has one) and rlhf.json.
pub fn import_gguf(gguf: impl AsRef<Path>, out: impl AsRef<Path>) -> Result<ImportReport> {
    let g = GgufFile::read(gguf.as_ref())?;
    let cfg = config_from_gguf(&g)?;
    let tensors = hf_tensors(&g, &cfg)?;
    let mut types = BTreeMap::new();
    for t in &g.tensors {
        *types.entry(t.ggml_type.name().to_string()).or_insert(0) += 1;
    }
    let tokenizer = Tokenizer::from_json(&tokenizer_json_from_gguf(&g)?)?;
    let mut lm = CausalLm::new(&cfg, Device::Cpu)?;
    let n_tensors = tensors.len();
    load_into_varstore(
        lm.var_store(),
        tensors.into_iter().map(Ok),
        &g.path,
        &[],
        &[],
        "model",
    )?;
    let template = meta_str(&g, "tokenizer.chat_template").map(str::to_string);
    let token = |key: &str| -> Value {
        let id = g.get(key).and_then(GgufValue::as_u64);
        match id.and_then(|i| tokenizer.inner().id_to_token(i as u32)) {
            Some(s) => json!(s),
            None => Value::Null,
        }
    };
    let tok_config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
        "pad_token": token("tokenizer.ggml.padding_token_id"),
        "unk_token": token("tokenizer.ggml.unknown_token_id"),
        "add_bos_token": g.get("tokenizer.ggml.add_bos_token") == Some(&GgufValue::Bool(true)),
        "chat_template": template,
        "model_max_length": cfg.max_position_embeddings,
    });
    let mut tokenizer = tokenizer;
    tokenizer.set_tokenizer_config(Some(tok_config));
    lm.set_tokenizer(tokenizer)?;
    let meta = lm.meta_mut();
    meta.extra
        .insert("source".into(), json!(g.path.display().to_string()));
    lm.save(out.as_ref())?;
    Ok(ImportReport {
        config: cfg,
        n_tensors,
        types,
        chat_template: template.is_some(),
    })
}
