//! Reward-model data from the toy world without a policy: candidates from
//! `crate::sample_candidates`, ranked by simulated labelers, with the gold score of
//! every response and the accuracy ceiling the labelers' noise allows.
//!
//! ## The noise ceiling
//!
//! A simulated labeler prefers response `a` over `b` with probability
//! `sigmoid((gold_a - gold_b) / T_j)` (Bradley-Terry in the gold score). The best any reward
//! model can do against such labels is to order every pair by the gold score, which agrees with
//! labeler `j` on a pair with probability `max(p, 1 - p)` (one half for gold ties).
//! [`ToyRankings::ceiling`] is that expectation averaged over the pool's labelers and over all
//! C(K, 2) pairs of the held-out rankings (`crate::noise_ceiling`);
//! [`ToyRankings::ceiling_realized`] is the gold order's accuracy against the labels actually
//! drawn (the same quantity measured on this sample).

use crate::{simulate_rankings, LabelerPool, ToyPrompt, ToyWorld};
use rlhf_data::collate::{Collator, TokenizedRanking};
use rlhf_data::records::Ranking;
use rlhf_reward::trainer::RankingData;
use rlhf_reward::{Result, RewardError};
use tch::{Device, Tensor};

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
            let prompt = ToyPrompt::parse(&r.prompt)?;
            Ok(r.responses.iter().map(|s| prompt.gold(s)).collect())
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

/// The toy world's gold score as a rule-based [`rlhf_model::RewardModel`]: the oracle a
/// learned reward model approximates. PPO against it shows what the policy can reach when the
/// reward model is perfect (a diagnostic: the pipeline's RM is learned from rankings).
///
/// Each scored row is prompt + response (left-padded prompt, response up to EOS); the prompt is
/// recognized among the ones given to [`GoldReward::new`] (the longest known prompt that
/// prefixes the row's real tokens), the rest is the response.
pub struct GoldReward {
    col: Collator,
    prompts: std::collections::HashMap<Vec<u32>, ToyPrompt>,
    lengths: Vec<usize>,
}

impl GoldReward {
    /// A reward for responses to `prompts` (toy-world prompts).
    pub fn new(prompts: &[rlhf_data::records::PromptRecord], col: &Collator) -> Result<Self> {
        let mut map = std::collections::HashMap::new();
        for p in prompts {
            let task = ToyPrompt::parse(&p.prompt)
                .map_err(|e| RewardError::Input(format!("prompt {}: {e}", p.id)))?;
            map.insert(col.encode(&p.prompt)?, task);
        }
        let mut lengths: Vec<usize> = map.keys().map(Vec::len).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        Ok(GoldReward {
            col: col.clone(),
            prompts: map,
            lengths,
        })
    }

    fn score_row(&self, ids: &[u32]) -> rlhf_model::Result<f64> {
        for &l in &self.lengths {
            if l > ids.len() {
                continue;
            }
            if let Some(task) = self.prompts.get(&ids[..l]) {
                let eos = self.col.config().eos_id;
                let resp: Vec<u32> = ids[l..].iter().copied().filter(|&t| t != eos).collect();
                let text = self
                    .col
                    .decode(&resp)
                    .map_err(|e| rlhf_model::ModelError::Input(e.to_string()))?;
                return Ok(task.gold(&text));
            }
        }
        Err(rlhf_model::ModelError::Input(
            "GoldReward: a scored sequence does not start with any of its prompts".into(),
        ))
    }
}

impl rlhf_model::RewardModel for GoldReward {
    fn score(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        _train: bool,
    ) -> rlhf_model::Result<Tensor> {
        let ids = input_ids.to_device(Device::Cpu);
        let mask = attention_mask.to_device(Device::Cpu);
        let mut out = Vec::with_capacity(ids.size()[0] as usize);
        for r in 0..ids.size()[0] {
            let row: Vec<i64> = Vec::<i64>::try_from(ids.get(r))
                .map_err(|e| rlhf_model::ModelError::Input(e.to_string()))?;
            let m: Vec<i64> = Vec::<i64>::try_from(mask.get(r))
                .map_err(|e| rlhf_model::ModelError::Input(e.to_string()))?;
            let real: Vec<u32> = row
                .iter()
                .zip(&m)
                .filter(|(_, &m)| m != 0)
                .map(|(&t, _)| t as u32)
                .collect();
            out.push(self.score_row(&real)? as f32);
        }
        Ok(Tensor::from_slice(&out).to_device(input_ids.device()))
    }
}
