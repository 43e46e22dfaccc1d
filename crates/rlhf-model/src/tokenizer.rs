//! Tokenizers in Hugging Face `tokenizers` JSON format (`tokenizer.json`).

use crate::error::{ModelError, Result};
use std::path::{Path, PathBuf};

/// A `tokenizer.json` tokenizer (any model the `tokenizers` crate knows: BPE, WordLevel, ...),
/// with the checkpoint's `tokenizer_config.json` when it has one (special tokens, chat
/// template), which is kept as read and written back when the checkpoint is saved.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    source: PathBuf,
    config: Option<serde_json::Value>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

/// The end-of-text token of GPT-2 and of our byte-level tokenizer.
pub const ENDOFTEXT: &str = "<|endoftext|>";

impl Tokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Ok(Tokenizer {
            inner,
            source: path.to_path_buf(),
            config: None,
        })
    }

    /// Wraps a tokenizer built in code.
    pub fn from_inner(inner: tokenizers::Tokenizer) -> Self {
        Tokenizer {
            inner,
            source: PathBuf::from("<memory>"),
            config: None,
        }
    }

    /// Parses `tokenizer.json` text.
    pub fn from_json(json: &str) -> Result<Self> {
        let inner: tokenizers::Tokenizer =
            json.parse()
                .map_err(|e: tokenizers::Error| ModelError::Tokenizer {
                    path: "<memory>".into(),
                    msg: e.to_string(),
                })?;
        Ok(Self::from_inner(inner))
    }

    /// A byte-level BPE tokenizer with no merges: the 256 bytes (GPT-2's byte-to-unicode
    /// alphabet) plus `<|endoftext|>` as id 256. Any text round-trips; useful for models made
    /// from scratch.
    pub fn byte_level() -> Self {
        let mut vocab = serde_json::Map::new();
        for (i, c) in bytes_to_unicode().into_iter().enumerate() {
            vocab.insert(c.to_string(), serde_json::Value::from(i));
        }
        let bl = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
            "trim_offsets": true, "use_regex": true});
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [{"id": 256, "content": ENDOFTEXT, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": true, "special": true}],
            "normalizer": null,
            "pre_tokenizer": bl,
            "post_processor": bl,
            "decoder": bl,
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": []}
        });
        Self::from_json(&json.to_string()).expect("the byte-level tokenizer JSON is valid")
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The checkpoint's `tokenizer_config.json` (with `chat_template` filled in from
    /// `chat_template.jinja` when the checkpoint has that file instead).
    pub fn tokenizer_config(&self) -> Option<&serde_json::Value> {
        self.config.as_ref()
    }

    /// Sets the `tokenizer_config.json` saved with the tokenizer.
    pub fn set_tokenizer_config(&mut self, config: Option<serde_json::Value>) {
        self.config = config;
    }

    /// The chat template's source (`chat_template` of `tokenizer_config.json`), if a string.
    pub fn chat_template(&self) -> Option<&str> {
        self.config.as_ref()?.get("chat_template")?.as_str()
    }

    /// The id of `tokenizer_config.json`'s `eos_token` (a string, or `{"content": ...}`), when it
    /// names a token of this vocabulary: the token a chat template ends an assistant turn with
    /// (Llama 3 Instruct: `<|eot_id|>`, where `config.json`'s first EOS is `<|end_of_text|>`).
    pub fn eos_token_id(&self) -> Option<i64> {
        let eos = self.config.as_ref()?.get("eos_token")?;
        let text = eos.as_str().or_else(|| eos.get("content")?.as_str())?;
        self.token_id(text)
    }

    /// Where it was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether `id` is a special added token (`<|im_end|>`, `<end_of_turn>`, ...: an entry of
    /// `tokenizer.json`'s `added_tokens` with `"special": true`).
    pub fn is_special(&self, id: i64) -> bool {
        u32::try_from(id).is_ok_and(|id| {
            self.inner
                .get_added_tokens_decoder()
                .get(&id)
                .is_some_and(|t| t.special)
        })
    }

    /// Id of a token, e.g. `"<|endoftext|>"`.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// Encodes text into ids (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.inner.encode(text, false).map_err(|e| self.err(e))?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// Decodes ids into text, optionally skipping special tokens.
    pub fn decode(&self, ids: &[i64], skip_special_tokens: bool) -> Result<String> {
        let ids: Vec<u32> = ids
            .iter()
            .map(|&i| {
                u32::try_from(i).map_err(|_| ModelError::Input(format!("token id {i} is negative")))
            })
            .collect::<Result<_>>()?;
        self.inner
            .decode(&ids, skip_special_tokens)
            .map_err(|e| self.err(e))
    }

    /// The tokenizer as `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| self.err(e))
    }

    fn err(&self, e: tokenizers::Error) -> ModelError {
        ModelError::Tokenizer {
            path: self.source.clone(),
            msg: e.to_string(),
        }
    }
}

/// GPT-2's reversible map from bytes to printable unicode characters.
fn bytes_to_unicode() -> Vec<char> {
    let mut printable: Vec<u32> = ('!' as u32..='~' as u32)
        .chain('¡' as u32..='¬' as u32)
        .chain('®' as u32..='ÿ' as u32)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = printable.into_iter().zip(chars).collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(_, c)| char::from_u32(c).expect("valid char"))
        .collect()
}
