//! Tokenization and collation into padded, row-major batches.
//!
//! This crate does not depend on LibTorch: batches are plain buffers (`Vec<i64>` for ids and
//! masks, `Vec<f32>` for loss masks) with explicit shapes, row-major, which a trainer turns into
//! tensors with e.g. `Tensor::from_slice(&b.input_ids).view([b.batch as i64, b.seq_len as i64])`.
//!
//! Conventions:
//! * Prompts are truncated from the **left** (their end is kept: it is what the response
//!   continues); responses from the **right**.
//! * The EOS token is appended after a response only when the whole response fits within
//!   `max_response_tokens` (the EOS counts towards the limit): a truncated response gets no EOS,
//!   so a model is never taught to stop in mid-response.
//! * Training batches ([`SftBatch`], [`RewardBatch`], [`PackedBlocks`]) are **right**-padded;
//!   generation batches ([`PromptBatch`]) are **left**-padded so every row ends at the same
//!   position.
//! * `loss_mask[b, t] == 1.0` iff `input_ids[b, t]` is a response token or the EOS ending the
//!   response. A trainer scores token `t` with the logits at `t - 1`, so `loss_mask[b, 0]` is
//!   always 0 (every row starts with at least one prompt token).
//!
//! Two paths produce the same batches: the [`Collator`] takes text and an HF
//! [`tokenizers::Tokenizer`]; the `collate_*` functions take pre-tokenized ids (tokenize a
//! dataset once, then collate each step in microseconds).

use std::path::Path;

use rayon::prelude::*;
use tokenizers::Tokenizer;

use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::records::{Demonstration, Ranking};

/// How a batch's sequence length is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// The longest row of the batch.
    #[default]
    Longest,
    /// Exactly this length (an error if a row is longer).
    Fixed(usize),
    /// The longest row rounded up to a multiple of this.
    MultipleOf(usize),
}

/// Limits and special tokens for collation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollateConfig {
    /// Longest prompt in tokens; longer prompts lose tokens from the left. Default: 128.
    pub max_prompt_tokens: usize,
    /// Longest response in tokens, counting the EOS; longer responses lose tokens from the
    /// right (and get no EOS). Default: 128.
    pub max_response_tokens: usize,
    /// End-of-sequence token id.
    pub eos_id: u32,
    /// Padding token id (may equal `eos_id`; masks tell them apart).
    pub pad_id: u32,
    /// Append `eos_id` after each complete response. Default: true.
    pub append_eos: bool,
    /// Sequence length policy. Default: [`Padding::Longest`].
    pub padding: Padding,
}

impl CollateConfig {
    /// Default limits with the given special tokens.
    pub fn new(eos_id: u32, pad_id: u32) -> Self {
        CollateConfig {
            max_prompt_tokens: 128,
            max_response_tokens: 128,
            eos_id,
            pad_id,
            append_eos: true,
            padding: Padding::Longest,
        }
    }

    /// Sets the prompt and response limits.
    pub fn with_limits(mut self, max_prompt_tokens: usize, max_response_tokens: usize) -> Self {
        self.max_prompt_tokens = max_prompt_tokens;
        self.max_response_tokens = max_response_tokens;
        self
    }

    /// Sets the padding policy.
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        if self.max_prompt_tokens == 0 {
            return Err(Error::Config(
                "max_prompt_tokens is 0: expected at least 1 (a response needs a token before it)"
                    .into(),
            ));
        }
        if self.max_response_tokens == 0 {
            return Err(Error::Config(
                "max_response_tokens is 0: expected at least 1".into(),
            ));
        }
        match self.padding {
            Padding::Fixed(0) => Err(Error::Config(
                "padding Fixed(0): expected a length >= 1".into(),
            )),
            Padding::MultipleOf(0) => Err(Error::Config(
                "padding MultipleOf(0): expected a multiple >= 1".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The kept part of a prompt: its last `max_prompt_tokens` tokens.
    pub fn truncate_prompt<'a>(&self, prompt: &'a [u32]) -> &'a [u32] {
        let start = prompt.len().saturating_sub(self.max_prompt_tokens);
        &prompt[start..]
    }

    /// The kept part of a response and whether an EOS follows it.
    pub fn truncate_response<'a>(&self, response: &'a [u32]) -> (&'a [u32], bool) {
        if self.append_eos && response.len() < self.max_response_tokens {
            (response, true)
        } else {
            let n = response.len().min(self.max_response_tokens);
            (&response[..n], false)
        }
    }

    fn seq_len(&self, longest: usize, what: &str) -> Result<usize> {
        match self.padding {
            Padding::Longest => Ok(longest),
            Padding::Fixed(n) => {
                if longest > n {
                    Err(Error::Collate(format!(
                        "a {what} row has {longest} tokens but padding is Fixed({n}): \
                         expected rows of at most {n} tokens (lower the limits or raise the length)"
                    )))
                } else {
                    Ok(n)
                }
            }
            Padding::MultipleOf(m) => Ok(longest.div_ceil(m) * m),
        }
    }
}

/// Token ids of one prompt/response pair (the fast path's input).
pub trait PromptResponseIds {
    /// Prompt token ids (no special tokens).
    fn prompt_ids(&self) -> &[u32];
    /// Response token ids (no EOS).
    fn response_ids(&self) -> &[u32];
}

/// A tokenized prompt/response pair.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenizedPair {
    /// Prompt ids.
    pub prompt: Vec<u32>,
    /// Response ids (no EOS).
    pub response: Vec<u32>,
}

impl PromptResponseIds for TokenizedPair {
    fn prompt_ids(&self) -> &[u32] {
        &self.prompt
    }
    fn response_ids(&self) -> &[u32] {
        &self.response
    }
}

impl PromptResponseIds for (Vec<u32>, Vec<u32>) {
    fn prompt_ids(&self) -> &[u32] {
        &self.0
    }
    fn response_ids(&self) -> &[u32] {
        &self.1
    }
}

impl PromptResponseIds for (&[u32], &[u32]) {
    fn prompt_ids(&self) -> &[u32] {
        self.0
    }
    fn response_ids(&self) -> &[u32] {
        self.1
    }
}

/// A tokenized ranking: one prompt, K responses, and the ranking (best first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenizedRanking {
    /// Prompt ids.
    pub prompt: Vec<u32>,
    /// The K responses' ids (no EOS).
    pub responses: Vec<Vec<u32>>,
    /// A permutation of `0..K`, best first.
    pub ranking: Vec<usize>,
}

/// A supervised batch: right-padded prompt+response rows with a loss mask on the response.
///
/// Shapes: `input_ids`, `attention_mask`, `loss_mask` are `[batch, seq_len]`, row-major.
/// Also used for language-modelling batches (see [`PackedBlocks::to_lm_batch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SftBatch {
    /// Rows.
    pub batch: usize,
    /// Columns.
    pub seq_len: usize,
    /// Token ids, `pad_id` after each row's end.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// 1.0 for response tokens (and the EOS ending the response), else 0.0.
    pub loss_mask: Vec<f32>,
    /// Kept prompt tokens per row.
    pub prompt_lens: Vec<usize>,
    /// Kept response tokens per row, including the EOS if appended.
    pub response_lens: Vec<usize>,
}

impl SftBatch {
    /// The ids of row `b`, including padding.
    pub fn row(&self, b: usize) -> &[i64] {
        &self.input_ids[b * self.seq_len..(b + 1) * self.seq_len]
    }

    /// The loss mask of row `b`.
    pub fn loss_row(&self, b: usize) -> &[f32] {
        &self.loss_mask[b * self.seq_len..(b + 1) * self.seq_len]
    }

    /// Number of tokens the loss is computed on.
    pub fn num_loss_tokens(&self) -> usize {
        self.response_lens.iter().sum()
    }
}

/// A generation batch: left-padded prompts.
///
/// Shapes: `input_ids`, `attention_mask` are `[batch, seq_len]`, row-major; each row's last
/// token is at column `seq_len - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptBatch {
    /// Rows.
    pub batch: usize,
    /// Columns.
    pub seq_len: usize,
    /// Token ids, `pad_id` before each row's start.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Kept prompt tokens per row.
    pub prompt_lens: Vec<usize>,
}

impl PromptBatch {
    /// Position ids for a left-padded batch: 0 on padding, then 0, 1, 2, ... on real tokens.
    /// Shape `[batch, seq_len]`.
    pub fn position_ids(&self) -> Vec<i64> {
        let mut out = vec![0i64; self.batch * self.seq_len];
        for b in 0..self.batch {
            let pad = self.seq_len - self.prompt_lens[b];
            for (i, p) in out[b * self.seq_len + pad..(b + 1) * self.seq_len]
                .iter_mut()
                .enumerate()
            {
                *p = i as i64;
            }
        }
        out
    }

    /// The ids of row `b`, including padding.
    pub fn row(&self, b: usize) -> &[i64] {
        &self.input_ids[b * self.seq_len..(b + 1) * self.seq_len]
    }
}

/// One comparison inside a [`RewardBatch`]: global row indices of the preferred and the
/// rejected response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComparisonPair {
    /// The group (prompt) index.
    pub group: usize,
    /// Row of the better response.
    pub winner_row: usize,
    /// Row of the worse response.
    pub loser_row: usize,
}

/// A reward-model batch: every response of every prompt once, as a right-padded
/// prompt+response(+EOS) row, grouped by prompt.
///
/// Rows `group_offsets()[g] .. group_offsets()[g] + group_sizes[g]` are the K responses of
/// prompt `g`, in their original order; `rankings[g]` ranks them (local indices, best first).
/// A trainer forwards all `batch` rows once, reads each row's scalar at `last_token[row]`, and
/// forms the C(K, 2) comparisons of each group from [`RewardBatch::pairs`].
///
/// Shapes: `input_ids`, `attention_mask` are `[batch, seq_len]`, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardBatch {
    /// Rows (sum of `group_sizes`).
    pub batch: usize,
    /// Columns.
    pub seq_len: usize,
    /// Token ids.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Column of each row's last real token (where the reward is read).
    pub last_token: Vec<usize>,
    /// Kept prompt tokens per row.
    pub prompt_lens: Vec<usize>,
    /// Kept response tokens per row (including the EOS if appended).
    pub response_lens: Vec<usize>,
    /// K of each group.
    pub group_sizes: Vec<usize>,
    /// Each group's ranking, local indices best first.
    pub rankings: Vec<Vec<usize>>,
}

impl RewardBatch {
    /// First row of each group.
    pub fn group_offsets(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.group_sizes.len());
        let mut acc = 0;
        for &k in &self.group_sizes {
            out.push(acc);
            acc += k;
        }
        out
    }

    /// All comparisons: for each group, the C(K, 2) pairs implied by its ranking.
    pub fn pairs(&self) -> Vec<ComparisonPair> {
        let offsets = self.group_offsets();
        let mut out = Vec::new();
        for (g, ranking) in self.rankings.iter().enumerate() {
            for i in 0..ranking.len() {
                for j in i + 1..ranking.len() {
                    out.push(ComparisonPair {
                        group: g,
                        winner_row: offsets[g] + ranking[i],
                        loser_row: offsets[g] + ranking[j],
                    });
                }
            }
        }
        out
    }

    /// The ids of row `r`, including padding.
    pub fn row(&self, r: usize) -> &[i64] {
        &self.input_ids[r * self.seq_len..(r + 1) * self.seq_len]
    }
}

/// Fixed-length blocks of packed pretraining text.
///
/// Documents are concatenated, each followed by an EOS, and cut into blocks of `block_len`;
/// only the last block may be partial (right-padded, with `attention_mask` 0 on padding).
/// No token is dropped. Shapes: `[num_blocks, block_len]`, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedBlocks {
    /// Rows.
    pub num_blocks: usize,
    /// Columns.
    pub block_len: usize,
    /// Token ids.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Real (non-padding) tokens in all blocks.
    pub num_tokens: usize,
}

impl PackedBlocks {
    /// The ids of block `b`, including padding.
    pub fn row(&self, b: usize) -> &[i64] {
        &self.input_ids[b * self.block_len..(b + 1) * self.block_len]
    }

    /// The real tokens of all blocks, in order (what was packed, EOS separators included).
    pub fn tokens(&self) -> Vec<u32> {
        self.input_ids
            .iter()
            .zip(&self.attention_mask)
            .filter(|(_, &m)| m == 1)
            .map(|(&t, _)| t as u32)
            .collect()
    }

    /// A language-modelling batch: the loss covers every real token except each block's first
    /// (which has no preceding token to predict it from).
    pub fn to_lm_batch(&self) -> SftBatch {
        let mut loss_mask: Vec<f32> = self.attention_mask.iter().map(|&m| m as f32).collect();
        let mut response_lens = Vec::with_capacity(self.num_blocks);
        for b in 0..self.num_blocks {
            let row = &mut loss_mask[b * self.block_len..(b + 1) * self.block_len];
            row[0] = 0.0;
            response_lens.push(row.iter().filter(|&&m| m > 0.0).count());
        }
        SftBatch {
            batch: self.num_blocks,
            seq_len: self.block_len,
            input_ids: self.input_ids.clone(),
            attention_mask: self.attention_mask.clone(),
            loss_mask,
            prompt_lens: vec![0; self.num_blocks],
            response_lens,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fast path: pre-tokenized ids
// ---------------------------------------------------------------------------------------------

/// Collates pre-tokenized prompt/response pairs into an [`SftBatch`] (right-padded).
///
/// Errors on an empty batch, an example whose prompt has no tokens, or rows longer than a
/// [`Padding::Fixed`] length.
pub fn collate_sft<E: PromptResponseIds>(examples: &[E], cfg: &CollateConfig) -> Result<SftBatch> {
    cfg.validate()?;
    if examples.is_empty() {
        return Err(Error::Collate(
            "empty batch: expected at least one example".into(),
        ));
    }
    let mut parts = Vec::with_capacity(examples.len());
    let mut longest = 0;
    for (i, ex) in examples.iter().enumerate() {
        let p = cfg.truncate_prompt(ex.prompt_ids());
        if p.is_empty() {
            return Err(Error::Collate(format!(
                "example {i}: the prompt has no tokens; expected at least one token before the response"
            )));
        }
        let (r, eos) = cfg.truncate_response(ex.response_ids());
        longest = longest.max(p.len() + r.len() + eos as usize);
        parts.push((p, r, eos));
    }
    let seq_len = cfg.seq_len(longest, "SFT")?;
    let n = examples.len();
    let mut input_ids = vec![i64::from(cfg.pad_id); n * seq_len];
    let mut attention_mask = vec![0i64; n * seq_len];
    let mut loss_mask = vec![0f32; n * seq_len];
    let mut prompt_lens = Vec::with_capacity(n);
    let mut response_lens = Vec::with_capacity(n);
    for (b, (p, r, eos)) in parts.into_iter().enumerate() {
        let row = b * seq_len;
        let ids = &mut input_ids[row..row + seq_len];
        for (dst, &t) in ids.iter_mut().zip(p.iter().chain(r)) {
            *dst = i64::from(t);
        }
        let rlen = r.len() + eos as usize;
        if eos {
            ids[p.len() + r.len()] = i64::from(cfg.eos_id);
        }
        let total = p.len() + rlen;
        attention_mask[row..row + total].fill(1);
        loss_mask[row + p.len()..row + total].fill(1.0);
        prompt_lens.push(p.len());
        response_lens.push(rlen);
    }
    Ok(SftBatch {
        batch: n,
        seq_len,
        input_ids,
        attention_mask,
        loss_mask,
        prompt_lens,
        response_lens,
    })
}

/// Collates pre-tokenized prompts into a left-padded [`PromptBatch`] for generation.
pub fn collate_prompts<P: AsRef<[u32]>>(prompts: &[P], cfg: &CollateConfig) -> Result<PromptBatch> {
    cfg.validate()?;
    if prompts.is_empty() {
        return Err(Error::Collate(
            "empty batch: expected at least one prompt".into(),
        ));
    }
    let kept: Vec<&[u32]> = prompts
        .iter()
        .map(|p| cfg.truncate_prompt(p.as_ref()))
        .collect();
    if let Some(i) = kept.iter().position(|p| p.is_empty()) {
        return Err(Error::Collate(format!(
            "prompt {i} has no tokens: expected at least one token to generate from"
        )));
    }
    let longest = kept.iter().map(|p| p.len()).max().unwrap_or(0);
    let seq_len = cfg.seq_len(longest, "prompt")?;
    let n = prompts.len();
    let mut input_ids = vec![i64::from(cfg.pad_id); n * seq_len];
    let mut attention_mask = vec![0i64; n * seq_len];
    let mut prompt_lens = Vec::with_capacity(n);
    for (b, p) in kept.into_iter().enumerate() {
        let start = b * seq_len + seq_len - p.len();
        for (dst, &t) in input_ids[start..(b + 1) * seq_len].iter_mut().zip(p) {
            *dst = i64::from(t);
        }
        attention_mask[start..(b + 1) * seq_len].fill(1);
        prompt_lens.push(p.len());
    }
    Ok(PromptBatch {
        batch: n,
        seq_len,
        input_ids,
        attention_mask,
        prompt_lens,
    })
}

fn check_ranking(g: usize, k: usize, ranking: &[usize]) -> Result<()> {
    if k < 2 {
        return Err(Error::Collate(format!(
            "group {g}: expected at least 2 responses (K >= 2), found {k}"
        )));
    }
    let mut seen = vec![false; k];
    let ok = ranking.len() == k
        && ranking
            .iter()
            .all(|&i| i < k && !std::mem::replace(&mut seen[i], true));
    if ok {
        Ok(())
    } else {
        Err(Error::Collate(format!(
            "group {g}: expected the ranking to be a permutation of 0..{k}, found {ranking:?}"
        )))
    }
}

/// Collates pre-tokenized rankings into a [`RewardBatch`] (each response once, right-padded).
pub fn collate_rewards(groups: &[TokenizedRanking], cfg: &CollateConfig) -> Result<RewardBatch> {
    cfg.validate()?;
    if groups.is_empty() {
        return Err(Error::Collate(
            "empty batch: expected at least one ranking".into(),
        ));
    }
    let mut rows = Vec::new();
    let mut longest = 0;
    for (g, grp) in groups.iter().enumerate() {
        check_ranking(g, grp.responses.len(), &grp.ranking)?;
        let p = cfg.truncate_prompt(&grp.prompt);
        if p.is_empty() {
            return Err(Error::Collate(format!(
                "group {g}: the prompt has no tokens; expected at least one"
            )));
        }
        for resp in &grp.responses {
            let (r, eos) = cfg.truncate_response(resp);
            longest = longest.max(p.len() + r.len() + eos as usize);
            rows.push((p, r, eos));
        }
    }
    let seq_len = cfg.seq_len(longest, "reward")?;
    let n = rows.len();
    let mut input_ids = vec![i64::from(cfg.pad_id); n * seq_len];
    let mut attention_mask = vec![0i64; n * seq_len];
    let mut last_token = Vec::with_capacity(n);
    let mut prompt_lens = Vec::with_capacity(n);
    let mut response_lens = Vec::with_capacity(n);
    for (b, (p, r, eos)) in rows.into_iter().enumerate() {
        let row = b * seq_len;
        let ids = &mut input_ids[row..row + seq_len];
        for (dst, &t) in ids.iter_mut().zip(p.iter().chain(r)) {
            *dst = i64::from(t);
        }
        if eos {
            ids[p.len() + r.len()] = i64::from(cfg.eos_id);
        }
        let total = p.len() + r.len() + eos as usize;
        attention_mask[row..row + total].fill(1);
        last_token.push(total - 1);
        prompt_lens.push(p.len());
        response_lens.push(total - p.len());
    }
    Ok(RewardBatch {
        batch: n,
        seq_len,
        input_ids,
        attention_mask,
        last_token,
        prompt_lens,
        response_lens,
        group_sizes: groups.iter().map(|g| g.responses.len()).collect(),
        rankings: groups.iter().map(|g| g.ranking.clone()).collect(),
    })
}

/// Packs documents into fixed-length blocks, each document followed by `eos_id`; the last
/// block is padded with `pad_id`. No token is lost: [`PackedBlocks::tokens`] returns
/// `doc0 EOS doc1 EOS ...`.
pub fn pack_documents<D: AsRef<[u32]>>(
    docs: &[D],
    block_len: usize,
    eos_id: u32,
    pad_id: u32,
) -> Result<PackedBlocks> {
    let mut packer = Packer::new(block_len, eos_id, pad_id)?;
    let mut input_ids: Vec<i64> = Vec::new();
    let mut attention_mask: Vec<i64> = Vec::new();
    let mut num_tokens = 0;
    let mut num_blocks = 0;
    let mut emit = |block: Vec<u32>, real: usize| {
        input_ids.extend(block.into_iter().map(i64::from));
        attention_mask.extend((0..block_len).map(|i| i64::from(i < real)));
        num_tokens += real;
        num_blocks += 1;
    };
    for d in docs {
        packer.push(d.as_ref());
        while let Some(block) = packer.pop_block() {
            emit(block, block_len);
        }
    }
    for (block, real) in packer.finish() {
        emit(block, real);
    }
    Ok(PackedBlocks {
        num_blocks,
        block_len,
        input_ids,
        attention_mask,
        num_tokens,
    })
}

/// Streaming packer: push documents, pop full blocks as they fill, and [`Packer::finish`] for
/// the last partial block. Suited to corpora that do not fit in memory.
#[derive(Debug, Clone)]
pub struct Packer {
    block_len: usize,
    eos_id: u32,
    pad_id: u32,
    buf: std::collections::VecDeque<u32>,
}

impl Packer {
    /// A packer for blocks of `block_len` tokens.
    pub fn new(block_len: usize, eos_id: u32, pad_id: u32) -> Result<Self> {
        if block_len == 0 {
            return Err(Error::Config(
                "block_len is 0: expected a block length >= 1".into(),
            ));
        }
        Ok(Packer {
            block_len,
            eos_id,
            pad_id,
            buf: std::collections::VecDeque::new(),
        })
    }

    /// Appends a document and its EOS.
    pub fn push(&mut self, doc: &[u32]) {
        self.buf.extend(doc.iter().copied());
        self.buf.push_back(self.eos_id);
    }

    /// Tokens waiting for the next block.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next full block, if one is ready.
    pub fn pop_block(&mut self) -> Option<Vec<u32>> {
        if self.buf.len() >= self.block_len {
            Some(self.buf.drain(..self.block_len).collect())
        } else {
            None
        }
    }

    /// The remaining tokens as blocks with their number of real tokens: any full blocks not
    /// yet popped, then the last partial block padded with `pad_id` (if tokens remain).
    pub fn finish(mut self) -> Vec<(Vec<u32>, usize)> {
        let mut out = Vec::new();
        while let Some(block) = self.pop_block() {
            out.push((block, self.block_len));
        }
        if !self.buf.is_empty() {
            let real = self.buf.len();
            let mut block: Vec<u32> = self.buf.drain(..).collect();
            block.resize(self.block_len, self.pad_id);
            out.push((block, real));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Text path
// ---------------------------------------------------------------------------------------------

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

    /// Encodes a prompt: rendered through the chat template when there is one, else as
    /// [`Collator::encode`].
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        match &self.chat {
            Some(t) => self.encode(&t.render_prompt(prompt)?),
            None => self.encode(prompt),
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
