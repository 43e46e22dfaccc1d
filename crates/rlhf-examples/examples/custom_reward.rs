//! Bring your own reward: a rule-based [`RewardModel`] instead of a trained network, driven by
//! PPO exactly like a learned one (PPO sees models only through the `rlhf_model` traits).
//!
//! `cargo run --release -p rlhf-examples --example custom_reward` (a few seconds on a CPU: tiny
//! random models, three PPO iterations).
//!
//! README.md quotes the part between the `[readme:...]` markers; a test checks that the two
//! are the same, so edit both together.

// [readme:custom_reward]
use rlhf_model::{train::NoMetrics, CausalLm, Gpt2Config, HeadKind, RewardModel, ScalarModel};
use rlhf_ppo::{PpoConfig, PpoModels, PpoTrainer, SpecialTokens};
use tch::{Device, Kind, Tensor};

/// Scores the share of a sequence's real tokens that equal `token`: a stand-in for any rule
/// (a regex over the decoded text, unit tests run on generated code, a call to a judge, ...).
struct TokenShare {
    token: i64,
}

impl RewardModel for TokenShare {
    /// `input_ids [B, T]` and `attention_mask [B, T]` (prompt + response, left-padded prompts)
    /// -> one score per sequence, `[B]` f32.
    fn score(&self, ids: &Tensor, mask: &Tensor, _train: bool) -> rlhf_model::Result<Tensor> {
        let mask = mask.to_kind(Kind::Float);
        let hits = ids.eq(self.token).to_kind(Kind::Float) * &mask;
        let len = mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0);
        Ok(hits.sum_dim_intlist(1, false, Kind::Float) / len)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    // A tiny random GPT-2 (layers, heads, width, vocab, context). In practice both policy and
    // reference are CausalLm::load("runs/x/sft/best", dev).
    let cfg = Gpt2Config::sized(2, 2, 64, 64, 64);
    tch::manual_seed(0);
    let policy = CausalLm::new(&cfg, dev)?;
    tch::manual_seed(0);
    let mut reference = CausalLm::new(&cfg, dev)?; // same weights as the policy, frozen
    reference.var_store_mut().freeze();
    // In practice: ScalarModel::value_from_reward("runs/x/rm/final", dev).
    let value = ScalarModel::new(&cfg, HeadKind::Value, dev)?;
    let reward = TokenShare { token: 7 };
    let models = PpoModels {
        policy,
        reference,
        reward,
        value,
    };
    let ppo = PpoConfig {
        batch_size: 16,
        minibatch_size: 8,
        max_new_tokens: 8,
        ..PpoConfig::default()
    };
    let eos = cfg.eos_token_id;
    let mut trainer = PpoTrainer::new(ppo, models, SpecialTokens { eos, pad: 0 })?;
    let prompts: Vec<Vec<i64>> = (0..16).map(|i| vec![1 + i % 5, 2, 3]).collect();
    let rows: Vec<&[i64]> = prompts.iter().map(Vec::as_slice).collect();
    let (ids, mask) = rlhf_ppo::data::left_pad(&rows, 0)?;
    for _ in 0..3 {
        let s = trainer.step(&ids, &mask, None, &mut NoMetrics)?;
        println!(
            "iteration {}: score {:.3}, KL {:.4}",
            s.iteration, s.scores, s.kl
        );
    }
    Ok(())
}
// [/readme:custom_reward]

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_runs() {
        main().unwrap();
    }

    #[test]
    fn token_share_counts_real_tokens_only() {
        let ids = Tensor::from_slice(&[0i64, 7, 2, 7, 7, 7, 1, 0]).view([2, 4]);
        let mask = Tensor::from_slice(&[0i64, 1, 1, 1, 1, 1, 1, 0]).view([2, 4]);
        let s = TokenShare { token: 7 }.score(&ids, &mask, false).unwrap();
        assert_eq!(Vec::<f32>::try_from(&s).unwrap(), [2.0 / 3.0, 2.0 / 3.0]);
    }

    /// The README quotes this example verbatim.
    #[test]
    fn readme_quotes_this_example() {
        let this = include_str!("custom_reward.rs");
        let readme = include_str!("../../../README.md");
        let (start, end) = ("// [readme:custom_reward]\n", "// [/readme:custom_reward]");
        let a = this.find(start).expect("start marker") + start.len();
        let b = this.find(end).expect("end marker");
        assert!(
            readme.contains(&this[a..b]),
            "README.md no longer quotes examples/custom_reward.rs: update one or the other"
        );
    }
}
