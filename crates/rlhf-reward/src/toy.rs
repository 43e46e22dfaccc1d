//! Reward-model data from the toy world without a policy: candidates from
//! `rlhf_data::toy::sample_candidates`, ranked by simulated labelers, with the gold score of
//! every response and the accuracy ceiling the labelers' noise allows.
//!
//! ## The noise ceiling
//!
//! A simulated labeler prefers response `a` over `b` with probability
//! `sigmoid((gold_a - gold_b) / T_j)` (Bradley-Terry in the gold score). The best any reward
//! model can do against such labels is to order every pair by the gold score, which agrees with
//! labeler `j` on a pair with probability `max(p, 1 - p)` (one half for gold ties).
//! [`ToyRankings::ceiling`] is that expectation averaged over the pool's labelers and over all
//! C(K, 2) pairs of the held-out rankings (`rlhf_data::toy::noise_ceiling`);
//! [`ToyRankings::ceiling_realized`] is the gold order's accuracy against the labels actually
//! drawn (the same quantity measured on this sample).

use crate::error::{Result, RewardError};
use crate::trainer::RankingData;
use rlhf_data::collate::{Collator, TokenizedRanking};
use rlhf_data::records::Ranking;
use rlhf_data::toy::{gold_score, simulate_rankings, LabelerPool, ToyTask, ToyWorld};

/// Train and held-out rankings of a toy world, with gold scores and the noise ceiling.
#[derive(Debug, Clone)]
pub struct ToyRankings {
    /// Rankings of the training users' prompts.
    pub train: Vec<Ranking>,
    /// Rankings of the held-out users' prompts.
    pub heldout: Vec<Ranking>,
    /// Gold score of every held-out response.
    pub heldout_gold: Vec<Vec<f64>>,
    /// Expected accuracy of the gold order against the pool's labelers on the held-out pairs.
    pub ceiling: f64,
    /// Accuracy of the gold order against the held-out labels actually drawn.
    pub ceiling_realized: f64,
}

/// Gold scores of every response of toy-world rankings (the task is parsed from the prompt).
pub fn gold_scores(rankings: &[Ranking]) -> Result<Vec<Vec<f64>>> {
    rankings
        .iter()
        .map(|r| {
            let task = ToyTask::from_prompt(&r.prompt)?;
            Ok(r.responses.iter().map(|s| gold_score(&task, s)).collect())
        })
        .collect()
}

/// Accuracy of `gold` against the rankings' labeled pairs (gold ties count one half).
pub fn gold_label_accuracy(rankings: &[Ranking], gold: &[Vec<f64>]) -> f64 {
    let (mut correct, mut n) = (0.0, 0usize);
    for (r, g) in rankings.iter().zip(gold) {
        for (w, l) in r.pairs() {
            n += 1;
            correct += if g[w] > g[l] {
                1.0
            } else if g[w] == g[l] {
                0.5
            } else {
                0.0
            };
        }
    }
    correct / n.max(1) as f64
}

/// The pool's noise ceiling on all pairs of responses with these gold scores (one entry per
/// ranking; see the module docs).
pub fn noise_ceiling(gold: &[Vec<f64>], pool: &LabelerPool) -> f64 {
    let pairs: Vec<(f64, f64)> = gold
        .iter()
        .flat_map(|g| (0..g.len()).flat_map(move |i| (i + 1..g.len()).map(move |j| (g[i], g[j]))))
        .collect();
    pool.noise_ceiling(&pairs)
}

impl ToyRankings {
    /// Simulates rankings (K uniform in `min_k..=max_k`) of the world's training and held-out
    /// prompts with `pool`, seeded by `seed`.
    pub fn simulate(
        world: &ToyWorld,
        pool: &LabelerPool,
        min_k: usize,
        max_k: usize,
        seed: u64,
    ) -> Result<Self> {
        let train = simulate_rankings(&world.prompts, pool, min_k, max_k, seed)?;
        let heldout = simulate_rankings(
            &world.heldout_prompts,
            pool,
            min_k,
            max_k,
            seed.wrapping_add(1),
        )?;
        if train.is_empty() || heldout.is_empty() {
            return Err(RewardError::Config(
                "the toy world has no training or no held-out prompts: raise num_users / \
                 heldout_users"
                    .into(),
            ));
        }
        let heldout_gold = gold_scores(&heldout)?;
        Ok(ToyRankings {
            ceiling: noise_ceiling(&heldout_gold, pool),
            ceiling_realized: gold_label_accuracy(&heldout, &heldout_gold),
            train,
            heldout,
            heldout_gold,
        })
    }

    /// Tokenizes the training rankings.
    pub fn train_tokens(&self, collator: &Collator) -> Result<Vec<TokenizedRanking>> {
        Ok(collator.tokenize_rankings(&self.train)?)
    }

    /// The held-out rankings as validation data with gold scores.
    pub fn heldout_data(&self, collator: &Collator) -> Result<RankingData> {
        Ok(RankingData {
            groups: collator.tokenize_rankings(&self.heldout)?,
            gold: Some(self.heldout_gold.clone()),
        })
    }
}
