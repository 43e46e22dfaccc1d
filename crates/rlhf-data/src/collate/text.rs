//! The text path: the [`Collator`], which tokenizes (through the chat template when set) and collates.

use super::*;

/// The id of a token that must exist in the tokenizer (e.g. `<|endoftext|>`).
pub fn special_token_id(tokenizer: &Tokenizer, token: &str) -> Result<u32> {
    tokenizer.token_to_id(token).ok_or_else(|| {
        Error::Tokenizer(format!(
            "token {token:?} is not in the vocabulary: expected the tokenizer to define it"
        ))
    })
}

/// Tokenizes text with an HF tokenizer and collates it.
///
/// Text is encoded without the tokenizer's own special tokens or post-processing; the prompt
/// and the response are encoded separately and concatenated, and the EOS is added by the
/// collation rules of [`CollateConfig`].
///
/// With a chat template ([`Collator::with_chat_template`]), every prompt (of demonstrations,
/// rankings and prompt batches, and [`Collator::encode_prompt`]) is first rendered as one user
/// message followed by the template's generation prompt; responses are encoded as they are.
#[derive(Clone)]
pub struct Collator {
    tokenizer: Tokenizer,
    config: CollateConfig,
    chat: Option<ChatTemplate>,
    /// What the tokenizer puts before a text ([`prompt_prefix`]).
    prefix: Vec<u32>,
}

impl std::fmt::Debug for Collator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collator")
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("config", &self.config)
            .field("chat_template", &self.chat.is_some())
            .finish()
    }
}

impl Collator {
    /// A collator with explicit ids in `config`.
    pub fn new(tokenizer: Tokenizer, config: CollateConfig) -> Result<Self> {
        config.validate()?;
        Ok(Collator {
            prefix: prompt_prefix(&tokenizer),
            tokenizer,
            config,
            chat: None,
        })
    }

    /// Renders prompts through `template` (or, with `None`, encodes them as they are).
    pub fn with_chat_template(mut self, template: Option<ChatTemplate>) -> Self {
        self.chat = template;
        self
    }

    /// The chat template prompts are rendered with, if any.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// Encodes a prompt: rendered through the chat template when there is one (which writes
    /// its own BOS), else as [`Collator::encode`] after the tokenizer's [`prompt_prefix`] (the
    /// BOS of Llama and Gemma), as `transformers`' `tokenizer(prompt)` encodes it.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        match &self.chat {
            Some(t) => self.encode(&t.render_prompt(prompt)?),
            None => Ok([self.prefix.clone(), self.encode(prompt)?].concat()),
        }
    }

    /// A collator whose EOS and pad tokens are looked up by name (often both `<|endoftext|>`),
    /// with default limits.
    pub fn with_special_tokens(
        tokenizer: Tokenizer,
        eos_token: &str,
        pad_token: &str,
    ) -> Result<Self> {
        let eos = special_token_id(&tokenizer, eos_token)?;
        let pad = special_token_id(&tokenizer, pad_token)?;
        Self::new(tokenizer, CollateConfig::new(eos, pad))
    }

    /// Loads a `tokenizer.json` and resolves the special tokens by name.
    pub fn from_file(path: impl AsRef<Path>, eos_token: &str, pad_token: &str) -> Result<Self> {
        let path = path.as_ref();
        let tok = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::with_special_tokens(tok, eos_token, pad_token)
    }

    /// Replaces the configuration (limits, padding; keep the ids).
    pub fn with_config(mut self, config: CollateConfig) -> Result<Self> {
        config.validate()?;
        self.config = config;
        Ok(self)
    }

    /// The tokenizer's unknown token and its id (`unk_token` of a word-level, WordPiece or
    /// BPE model, `unk_id` of a Unigram one), or `None` when it has none (byte-level BPE).
    pub fn unknown_token(&self) -> Option<(String, u32)> {
        unknown_token(&self.tokenizer)
    }

    /// How many tokens of `sequences` (ids from this collator) are the unknown token; `None`
    /// when the tokenizer has none. See [`UnknownTokens`].
    pub fn unknown_tokens<'a, T>(
        &self,
        sequences: impl IntoIterator<Item = &'a [T]>,
    ) -> Option<UnknownTokens>
    where
        T: Copy + Into<i64> + 'a,
    {
        let (token, id) = self.unknown_token()?;
        Some(UnknownTokens::count(&token, id, sequences))
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The configuration.
    pub fn config(&self) -> &CollateConfig {
        &self.config
    }

    /// Encodes text to ids (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(Error::tokenizer)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids to text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(Error::tokenizer)
    }

    /// Tokenizes a demonstration.
    pub fn tokenize_demonstration(&self, d: &Demonstration) -> Result<TokenizedPair> {
        Ok(TokenizedPair {
            prompt: self.encode_prompt(&d.prompt)?,
            response: self.encode(&d.response)?,
        })
    }

    /// Tokenizes a ranking.
    pub fn tokenize_ranking(&self, r: &Ranking) -> Result<TokenizedRanking> {
        Ok(TokenizedRanking {
            prompt: self.encode_prompt(&r.prompt)?,
            responses: r
                .responses
                .iter()
                .map(|s| self.encode(s))
                .collect::<Result<_>>()?,
            ranking: r.ranking.clone(),
        })
    }

    /// Tokenizes many demonstrations in parallel (rayon), in order: pre-tokenize a dataset
    /// once, then collate each step with [`collate_sft`].
    pub fn tokenize_demonstrations(&self, demos: &[Demonstration]) -> Result<Vec<TokenizedPair>> {
        demos
            .par_iter()
            .map(|d| self.tokenize_demonstration(d))
            .collect()
    }

    /// Tokenizes many rankings in parallel (rayon), in order.
    pub fn tokenize_rankings(&self, rankings: &[Ranking]) -> Result<Vec<TokenizedRanking>> {
        rankings
            .par_iter()
            .map(|r| self.tokenize_ranking(r))
            .collect()
    }

    /// Encodes many texts in parallel (rayon), in order.
    pub fn encode_all<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        texts.par_iter().map(|t| self.encode(t.as_ref())).collect()
    }

    /// Tokenizes and collates demonstrations into an [`SftBatch`].
    pub fn sft_batch(&self, demos: &[Demonstration]) -> Result<SftBatch> {
        let pairs = demos
            .iter()
            .map(|d| self.tokenize_demonstration(d))
            .collect::<Result<Vec<_>>>()?;
        collate_sft(&pairs, &self.config)
    }

    /// Tokenizes (through the chat template, if any) and collates prompts into a left-padded
    /// [`PromptBatch`].
    pub fn prompt_batch<S: AsRef<str>>(&self, prompts: &[S]) -> Result<PromptBatch> {
        let ids = prompts
            .iter()
            .map(|p| self.encode_prompt(p.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        collate_prompts(&ids, &self.config)
    }

    /// Tokenizes and collates rankings into a [`RewardBatch`].
    pub fn reward_batch(&self, rankings: &[Ranking]) -> Result<RewardBatch> {
        let groups = rankings
            .iter()
            .map(|r| self.tokenize_ranking(r))
            .collect::<Result<Vec<_>>>()?;
        collate_rewards(&groups, &self.config)
    }

    /// Tokenizes texts and packs them into blocks of `block_len`.
    pub fn pack_texts<S: AsRef<str>>(&self, texts: &[S], block_len: usize) -> Result<PackedBlocks> {
        let docs = texts
            .iter()
            .map(|t| self.encode(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        pack_documents(&docs, block_len, self.config.eos_id, self.config.pad_id)
    }
}

/// The special tokens `tokenizer`'s post-processor puts before a text: Llama's `<s>` or
/// `<|begin_of_text|>`, Gemma's `<bos>` (`tokenizer.json`'s `TemplateProcessing`); none for
/// GPT-2, SmolLM2 or Qwen. Found by encoding a probe with and without special tokens; a suffix
/// the post-processor adds (an EOS) is not part of it. A prompt encoded without a chat
/// template starts with these, as `transformers`' `tokenizer(prompt)` (special tokens on by
/// default) starts it: a Llama or Gemma base model reads its text after its BOS.
pub fn prompt_prefix(tokenizer: &Tokenizer) -> Vec<u32> {
    let probe = "a";
    let (Ok(plain), Ok(full)) = (
        tokenizer.encode_fast(probe, false),
        tokenizer.encode_fast(probe, true),
    ) else {
        return vec![];
    };
    let (plain, full) = (plain.get_ids(), full.get_ids());
    if plain.is_empty() || full.len() < plain.len() {
        return vec![];
    }
    (0..=full.len() - plain.len())
        .find(|&k| full[k..k + plain.len()] == *plain)
        .map(|k| full[..k].to_vec())
        .unwrap_or_default()
}

/// The unknown token of `tokenizer` and its id, read from its model's serialized settings
/// (`unk_token` of WordLevel, WordPiece and BPE, `unk_id` of Unigram); `None` when it has none.
pub fn unknown_token(tokenizer: &Tokenizer) -> Option<(String, u32)> {
    let model = serde_json::to_value(tokenizer.get_model()).ok()?;
    if let Some(token) = model.get("unk_token").and_then(|t| t.as_str()) {
        return Some((token.to_string(), tokenizer.token_to_id(token)?));
    }
    let id = u32::try_from(model.get("unk_id")?.as_u64()?).ok()?;
    Some((tokenizer.id_to_token(id)?, id))
}
