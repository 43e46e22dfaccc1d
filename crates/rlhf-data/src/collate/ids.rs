//! The fast path: collating pre-tokenized ids into padded batches and masks.

use super::*;

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
