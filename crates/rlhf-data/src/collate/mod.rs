//! Tokenization and collation into padded, row-major batches.
//!
//! This crate does not depend on LibTorch: batches are plain buffers (`Vec<i64>` for ids and
//! masks, `Vec<f32>` for loss masks) with explicit shapes, row-major, also seen as 2-D `ndarray`
//! views (`input_ids_2d()`, ...), which a trainer turns into tensors with
//! `rlhf_model::array::tensor_from`.
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

use ndarray::ArrayView2;
use rayon::prelude::*;
use tokenizers::Tokenizer;

use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::records::{Demonstration, Ranking};

mod ids;
mod text;

pub use ids::*;
pub use text::*;

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

    /// Whether [`CollateConfig::truncate_prompt`] drops tokens of this prompt.
    pub fn cuts_prompt(&self, prompt: &[u32]) -> bool {
        prompt.len() > self.max_prompt_tokens
    }

    /// Whether [`CollateConfig::truncate_response`] drops tokens of this response, or the EOS
    /// that would follow it.
    pub fn cuts_response(&self, response: &[u32]) -> bool {
        self.truncate_response(response).0.len() < response.len()
            || (self.append_eos && !self.truncate_response(response).1)
    }

    /// What these limits cut from prompt/response pairs (demonstrations).
    pub fn truncation_of_pairs<E: PromptResponseIds>(&self, examples: &[E]) -> Truncation {
        Truncation {
            examples: examples.len(),
            prompts_cut: examples
                .iter()
                .filter(|e| self.cuts_prompt(e.prompt_ids()))
                .count(),
            responses: examples.len(),
            responses_cut: examples
                .iter()
                .filter(|e| self.cuts_response(e.response_ids()))
                .count(),
        }
    }

    /// What these limits cut from rankings (each prompt once, each of its responses).
    pub fn truncation_of_rankings(&self, rankings: &[TokenizedRanking]) -> Truncation {
        let responses = rankings.iter().flat_map(|r| &r.responses);
        Truncation {
            examples: rankings.len(),
            prompts_cut: rankings
                .iter()
                .filter(|r| self.cuts_prompt(&r.prompt))
                .count(),
            responses: responses.clone().count(),
            responses_cut: responses.filter(|x| self.cuts_response(x)).count(),
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

/// What the collation limits cut from a dataset ([`CollateConfig::truncation_of_pairs`],
/// [`CollateConfig::truncation_of_rankings`]): the stages report it, so that no token is
/// dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Truncation {
    /// Examples (demonstrations, rankings or prompts) counted.
    pub examples: usize,
    /// Examples whose prompt is longer than `max_prompt_tokens` (its first tokens are dropped).
    pub prompts_cut: usize,
    /// Responses counted.
    pub responses: usize,
    /// Responses cut at `max_response_tokens` (their last tokens, or the EOS after them, are
    /// dropped).
    pub responses_cut: usize,
}

impl Truncation {
    /// A sentence for the log, or `None` when nothing is cut. `what` names the examples
    /// (`"demonstrations of demos.jsonl"`), `prompt_key` and `response_key` the settings that
    /// raise the limits.
    pub fn message(
        &self,
        what: &str,
        cfg: &CollateConfig,
        prompt_key: &str,
        response_key: &str,
    ) -> Option<String> {
        let mut parts = vec![];
        if self.prompts_cut > 0 {
            parts.push(format!(
                "{} of {} {what} have a prompt longer than {prompt_key} = {} tokens (its first \
                 tokens are dropped)",
                self.prompts_cut, self.examples, cfg.max_prompt_tokens
            ));
        }
        if self.responses_cut > 0 {
            parts.push(format!(
                "{} of {} responses are cut at {response_key} = {} tokens, EOS included (their \
                 last tokens or their EOS are dropped)",
                self.responses_cut, self.responses, cfg.max_response_tokens
            ));
        }
        (!parts.is_empty()).then(|| format!("{}: raise the limits to keep them", parts.join("; ")))
    }
}

/// How much of a dataset a tokenizer mapped to its unknown token ([`Collator::unknown_tokens`]):
/// text outside a word-level vocabulary becomes `<unk>`, and the model never sees what it was,
/// so the stages report it rather than train on it silently. Byte-level BPE tokenizers (GPT-2,
/// the Llama family) have no unknown token and never lose text this way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTokens {
    /// The tokenizer's unknown token (e.g. `<unk>`).
    pub token: String,
    /// Sequences counted (prompts, responses, documents or packed blocks).
    pub sequences: usize,
    /// Sequences with at least one unknown token.
    pub sequences_with_unknown: usize,
    /// Tokens counted.
    pub tokens: usize,
    /// Unknown tokens among them.
    pub unknown: usize,
}

impl UnknownTokens {
    /// Counts the occurrences of `unk` (the id of `token`) in `sequences`.
    ///
    /// ```
    /// use rlhf_data::collate::UnknownTokens;
    /// let seqs: [&[u32]; 3] = [&[5, 0, 7], &[3], &[0, 0]];
    /// let u = UnknownTokens::count("<unk>", 0, seqs);
    /// assert_eq!((u.sequences, u.sequences_with_unknown, u.tokens, u.unknown), (3, 2, 6, 3));
    /// let m = u.message("prompts of p.jsonl").unwrap();
    /// assert!(m.starts_with("prompts of p.jsonl: 3 of 6 tokens (50.0%, in 2 of 3 sequences)"));
    /// ```
    pub fn count<'a, T>(token: &str, unk: u32, sequences: impl IntoIterator<Item = &'a [T]>) -> Self
    where
        T: Copy + Into<i64> + 'a,
    {
        let mut u = UnknownTokens {
            token: token.to_string(),
            sequences: 0,
            sequences_with_unknown: 0,
            tokens: 0,
            unknown: 0,
        };
        for seq in sequences {
            let n = seq.iter().filter(|&&t| t.into() == i64::from(unk)).count();
            u.sequences += 1;
            u.sequences_with_unknown += usize::from(n > 0);
            u.tokens += seq.len();
            u.unknown += n;
        }
        u
    }

    /// A sentence for the log, or `None` when no token is unknown. `what` names the data
    /// (`"demonstrations of demos.jsonl"`).
    pub fn message(&self, what: &str) -> Option<String> {
        (self.unknown > 0).then(|| {
            format!(
                "{what}: {} of {} tokens ({:.1}%, in {} of {} sequences) are the tokenizer's \
                 unknown token {}: the model sees {} where the text had something outside the \
                 vocabulary; use a tokenizer that covers the data (a byte-level BPE, as GPT-2's \
                 or Llama's, has no unknown token)",
                self.unknown,
                self.tokens,
                100.0 * self.unknown as f64 / self.tokens.max(1) as f64,
                self.sequences_with_unknown,
                self.sequences,
                self.token,
                self.token
            )
        })
    }
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

/// `data` (row-major, `rows x cols`) as a 2-D view.
fn view2<T>(data: &[T], rows: usize, cols: usize) -> ArrayView2<'_, T> {
    ArrayView2::from_shape((rows, cols), data).expect("a batch's buffers match its shape")
}

impl SftBatch {
    /// `input_ids` as a `[batch, seq_len]` view.
    pub fn input_ids_2d(&self) -> ArrayView2<'_, i64> {
        view2(&self.input_ids, self.batch, self.seq_len)
    }

    /// `attention_mask` as a `[batch, seq_len]` view.
    pub fn attention_mask_2d(&self) -> ArrayView2<'_, i64> {
        view2(&self.attention_mask, self.batch, self.seq_len)
    }

    /// `loss_mask` as a `[batch, seq_len]` view.
    pub fn loss_mask_2d(&self) -> ArrayView2<'_, f32> {
        view2(&self.loss_mask, self.batch, self.seq_len)
    }
}

impl PromptBatch {
    /// `input_ids` as a `[batch, seq_len]` view.
    pub fn input_ids_2d(&self) -> ArrayView2<'_, i64> {
        view2(&self.input_ids, self.batch, self.seq_len)
    }

    /// `attention_mask` as a `[batch, seq_len]` view.
    pub fn attention_mask_2d(&self) -> ArrayView2<'_, i64> {
        view2(&self.attention_mask, self.batch, self.seq_len)
    }

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
    /// `input_ids` as a `[batch, seq_len]` view.
    pub fn input_ids_2d(&self) -> ArrayView2<'_, i64> {
        view2(&self.input_ids, self.batch, self.seq_len)
    }

    /// `attention_mask` as a `[batch, seq_len]` view.
    pub fn attention_mask_2d(&self) -> ArrayView2<'_, i64> {
        view2(&self.attention_mask, self.batch, self.seq_len)
    }

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
    /// `input_ids` as a `[num_blocks, block_len]` view.
    pub fn input_ids_2d(&self) -> ArrayView2<'_, i64> {
        view2(&self.input_ids, self.num_blocks, self.block_len)
    }

    /// `attention_mask` as a `[num_blocks, block_len]` view.
    pub fn attention_mask_2d(&self) -> ArrayView2<'_, i64> {
        view2(&self.attention_mask, self.num_blocks, self.block_len)
    }

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
