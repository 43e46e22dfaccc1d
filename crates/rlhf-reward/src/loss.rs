//! The InstructGPT K-wise ranking loss and its metrics.
//!
//! For a prompt `x` with `K` ranked responses, the loss is
//!
//! ```text
//! loss(x) = -1 / C(K, 2) * sum over pairs (y_w ranked above y_l) of log sigmoid(r(x, y_w) - r(x, y_l))
//! ```
//!
//! and a batch's loss is the mean of `loss(x)` over its prompts: all C(K, 2) comparisons of one
//! prompt form a **single** batch element, so a prompt with K = 9 (36 pairs) weighs as much as
//! one with K = 4 (6 pairs). Each response is scored once; the pairs only index into the scores.
//!
//! [`PairIndex`] holds the pair structure of a batch as index tensors (built once per batch);
//! [`kwise_ranking_loss`] is then one gather, one `log_sigmoid` and one weighted sum.

use crate::error::{Result, RewardError};
use rlhf_data::collate::RewardBatch;
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// The comparisons of a batch of ranked groups, as index tensors.
///
/// Rows of the score vector are grouped by prompt: rows `offset[g] .. offset[g] + K_g` are the
/// `K_g` responses of prompt `g`, in the order they are listed; `rankings[g]` ranks them (local
/// indices, best first). Every ordered pair `(w, l)` with `w` ranked above `l` is one
/// comparison.
#[derive(Debug)]
pub struct PairIndex {
    /// `[2, P]` int64: row 0 the winners' global rows, row 1 the losers'.
    index: Tensor,
    /// `[P]` int64: the group of each pair.
    pair_group: Tensor,
    /// `[P]` f32: `1 / C(K_g, 2)` of the pair's group.
    inv_pairs: Tensor,
    /// `[P]` f32: `1 / (C(K_g, 2) * G)`, the pair's weight in the batch loss.
    weights: Tensor,
    group_sizes: Vec<usize>,
    pair_groups_host: Vec<usize>,
    num_rows: usize,
}

impl PairIndex {
    /// Builds the pair index of groups of sizes `group_sizes` ranked by `rankings` (local
    /// indices, best first, a permutation of `0..K`). Errors if a group has K < 2, or a
    /// ranking is not a permutation, or the two lists differ in length.
    pub fn new(group_sizes: &[usize], rankings: &[Vec<usize>], device: Device) -> Result<Self> {
        if group_sizes.is_empty() {
            return Err(RewardError::Input(
                "a ranking batch needs at least one group (prompt)".into(),
            ));
        }
        if group_sizes.len() != rankings.len() {
            return Err(RewardError::Input(format!(
                "{} group sizes but {} rankings: expected one ranking per group",
                group_sizes.len(),
                rankings.len()
            )));
        }
        let g_count = group_sizes.len();
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        let mut pair_group = Vec::new();
        let mut inv_pairs = Vec::new();
        let mut offset = 0usize;
        for (g, (&k, ranking)) in group_sizes.iter().zip(rankings).enumerate() {
            if k < 2 {
                return Err(RewardError::Input(format!(
                    "group {g} has K = {k} responses: a ranking needs K >= 2"
                )));
            }
            let mut seen = vec![false; k];
            let is_perm = ranking.len() == k
                && ranking
                    .iter()
                    .all(|&i| i < k && !std::mem::replace(&mut seen[i], true));
            if !is_perm {
                return Err(RewardError::Input(format!(
                    "group {g}: ranking {ranking:?} is not a permutation of 0..{k} (best first)"
                )));
            }
            let c = (k * (k - 1) / 2) as f32;
            for i in 0..k {
                for j in i + 1..k {
                    winners.push((offset + ranking[i]) as i64);
                    losers.push((offset + ranking[j]) as i64);
                    pair_group.push(g);
                    inv_pairs.push(1.0 / c);
                }
            }
            offset += k;
        }
        let p = winners.len() as i64;
        let index = Tensor::from_slice(&[winners, losers].concat())
            .view([2, p])
            .to_device(device);
        let weights: Vec<f32> = inv_pairs.iter().map(|w| w / g_count as f32).collect();
        Ok(PairIndex {
            index,
            pair_group: Tensor::from_slice(
                &pair_group.iter().map(|&g| g as i64).collect::<Vec<_>>(),
            )
            .to_device(device),
            inv_pairs: Tensor::from_slice(&inv_pairs).to_device(device),
            weights: Tensor::from_slice(&weights).to_device(device),
            group_sizes: group_sizes.to_vec(),
            pair_groups_host: pair_group,
            num_rows: offset,
        })
    }

    /// The pair index of a collated [`RewardBatch`].
    pub fn from_batch(batch: &RewardBatch, device: Device) -> Result<Self> {
        Self::new(&batch.group_sizes, &batch.rankings, device)
    }

    /// Number of groups (prompts), G.
    pub fn num_groups(&self) -> usize {
        self.group_sizes.len()
    }

    /// Number of comparisons, P = sum of C(K_g, 2).
    pub fn num_pairs(&self) -> usize {
        self.pair_groups_host.len()
    }

    /// Number of scored rows, N = sum of K_g.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// K of each group.
    pub fn group_sizes(&self) -> &[usize] {
        &self.group_sizes
    }

    /// The group of each pair (host copy).
    pub fn pair_groups(&self) -> &[usize] {
        &self.pair_groups_host
    }

    /// Global rows of the winners, `[P]` int64.
    pub fn winners(&self) -> Tensor {
        self.index.get(0)
    }

    /// Global rows of the losers, `[P]` int64.
    pub fn losers(&self) -> Tensor {
        self.index.get(1)
    }
}

/// The K-wise loss of a batch and the per-pair and per-group values it was made of.
#[derive(Debug)]
pub struct RankingLoss {
    /// The batch loss (mean over groups of each group's mean pair loss); scalar f32, with
    /// gradient when the scores have one.
    pub loss: Tensor,
    /// Each group's loss, `[G]` f32.
    pub group_losses: Tensor,
    /// `r_w - r_l` of every pair, `[P]` f32 (pairs in [`PairIndex`] order).
    pub margins: Tensor,
}

/// The InstructGPT K-wise ranking loss.
///
/// Shapes: `scores [N]` (N = sum of K_g, grouped as in `pairs`) -> scalar. Computed as one
/// gather of the `[2, P]` pair index, `log_sigmoid` of the margins and a weighted sum (weights
/// `1 / (C(K_g, 2) G)`), so the result is the mean over prompts of
/// `-1/C(K,2) sum log sigmoid(r_w - r_l)`.
pub fn kwise_ranking_loss(scores: &Tensor, pairs: &PairIndex) -> Result<RankingLoss> {
    if scores.dim() != 1 || scores.size()[0] != pairs.num_rows as i64 {
        return Err(RewardError::Input(format!(
            "scores must be [N] with N = {} (the sum of the group sizes), got {:?}",
            pairs.num_rows,
            scores.size()
        )));
    }
    let scores = scores.to_kind(Kind::Float);
    let p = pairs.num_pairs() as i64;
    let picked = scores
        .f_index_select(0, &pairs.index.view([-1]))?
        .view([2, p]);
    let margins = picked.get(0) - picked.get(1);
    let nll = -margins.log_sigmoid();
    let loss = (&nll * &pairs.weights).sum(Kind::Float);
    let group_losses = Tensor::zeros([pairs.num_groups() as i64], (Kind::Float, scores.device()))
        .f_index_add(0, &pairs.pair_group, &(&nll * &pairs.inv_pairs))?;
    Ok(RankingLoss {
        loss,
        group_losses,
        margins,
    })
}

/// The pairwise (Bradley-Terry) loss of the TRL way: mean over pairs of
/// `-log sigmoid(r_chosen - r_rejected)`. Shapes: `chosen [P]`, `rejected [P]` -> scalar.
pub fn pairwise_loss(chosen: &Tensor, rejected: &Tensor) -> Tensor {
    -(chosen.to_kind(Kind::Float) - rejected.to_kind(Kind::Float))
        .log_sigmoid()
        .mean(Kind::Float)
}

/// Sums of one slice of [`RankingStats`] (all groups, or the groups of one K).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatSums {
    /// Groups (prompts) seen.
    pub groups: usize,
    /// Sum of the group losses.
    pub loss_sum: f64,
    /// Comparisons seen.
    pub pairs: usize,
    /// Comparisons the model orders like the labeler (ties count one half).
    pub correct: f64,
}

impl StatSums {
    /// Mean group loss.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.groups.max(1) as f64
    }

    /// Pairwise accuracy against the labeler's ranking.
    pub fn accuracy(&self) -> f64 {
        self.correct / self.pairs.max(1) as f64
    }
}

/// Loss and pairwise accuracy accumulated over batches, in total and per K.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankingStats {
    /// All groups.
    pub total: StatSums,
    /// Groups by their K.
    pub per_k: BTreeMap<usize, StatSums>,
}

impl RankingStats {
    /// Adds one batch (its loss values and pair structure).
    pub fn add(&mut self, loss: &RankingLoss, pairs: &PairIndex) -> Result<()> {
        let group_losses = Vec::<f64>::try_from(loss.group_losses.to_kind(Kind::Double))?;
        let margins = Vec::<f64>::try_from(loss.margins.to_kind(Kind::Double))?;
        for (&k, &l) in pairs.group_sizes().iter().zip(&group_losses) {
            for s in [&mut self.total, self.per_k.entry(k).or_default()] {
                s.groups += 1;
                s.loss_sum += l;
            }
        }
        for (&g, &m) in pairs.pair_groups().iter().zip(&margins) {
            let k = pairs.group_sizes()[g];
            let c = if m > 0.0 {
                1.0
            } else if m == 0.0 {
                0.5
            } else {
                0.0
            };
            for s in [&mut self.total, self.per_k.entry(k).or_default()] {
                s.pairs += 1;
                s.correct += c;
            }
        }
        Ok(())
    }

    /// Mean group loss.
    pub fn loss(&self) -> f64 {
        self.total.loss()
    }

    /// Pairwise accuracy against the labelers.
    pub fn accuracy(&self) -> f64 {
        self.total.accuracy()
    }

    /// Mean group loss per K.
    pub fn loss_per_k(&self) -> BTreeMap<usize, f64> {
        self.per_k.iter().map(|(&k, s)| (k, s.loss())).collect()
    }

    /// Pairwise accuracy per K.
    pub fn accuracy_per_k(&self) -> BTreeMap<usize, f64> {
        self.per_k.iter().map(|(&k, s)| (k, s.accuracy())).collect()
    }
}

/// Loss and accuracy of one batch without gradients: a convenience for metrics.
pub fn batch_stats(scores: &Tensor, pairs: &PairIndex) -> Result<RankingStats> {
    let _g = tch::no_grad_guard();
    let loss = kwise_ranking_loss(scores, pairs)?;
    let mut stats = RankingStats::default();
    stats.add(&loss, pairs)?;
    Ok(stats)
}

/// Pairwise agreement of predicted scores with gold scores over all pairs of one group whose
/// gold scores differ: `(correct, counted)`, where a tie in the prediction counts one half.
pub fn gold_agreement(scores: &[f64], gold: &[f64]) -> (f64, usize) {
    let mut correct = 0.0;
    let mut counted = 0;
    for i in 0..scores.len().min(gold.len()) {
        for j in i + 1..scores.len().min(gold.len()) {
            if gold[i] == gold[j] {
                continue;
            }
            counted += 1;
            let d = (scores[i] - scores[j]) * (gold[i] - gold[j]).signum();
            correct += if d > 0.0 {
                1.0
            } else if d == 0.0 {
                0.5
            } else {
                0.0
            };
        }
    }
    (correct, counted)
}
