//! Tiny models and a rule-based reward for the trainer tests.
#![allow(dead_code)]

use rlhf_model::{CausalLm, Gpt2Config, HeadKind, Policy, RewardModel, ScalarModel};
use tch::{Device, Kind, Tensor};

/// libtorch's generator is process-global: tests that seed and then draw hold this lock.
pub static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub const VOCAB: i64 = 16;
pub const PROMPT_LEN: i64 = 6;

pub fn tiny_cfg() -> Gpt2Config {
    let mut cfg = Gpt2Config::sized(2, 2, 32, VOCAB, 32).with_dropout(0.0);
    cfg.initializer_range = 0.1;
    cfg
}

/// One intra-op thread per test thread: tests run in parallel on few cores, and libtorch's
/// OpenMP workers slow down by orders of magnitude when cores are oversubscribed. The setting
/// is per calling thread, so every test calls this (through [`models`] and [`prompts`]).
pub fn init() {
    tch::set_num_threads(1);
}

/// Policy, an identical reference, an RM-shaped scalar model and a value model initialized from
/// it, all from `seed`.
pub fn models(seed: i64) -> (CausalLm, CausalLm, ScalarModel, ScalarModel) {
    init();
    let _g = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    let cfg = tiny_cfg();
    let policy = CausalLm::new(&cfg, Device::Cpu).unwrap();
    let mut reference = CausalLm::new(&cfg, Device::Cpu).unwrap();
    reference.var_store_mut().copy(policy.var_store()).unwrap();
    let rm = ScalarModel::new(&cfg, HeadKind::Reward, Device::Cpu).unwrap();
    let mut value = ScalarModel::new(&cfg, HeadKind::Value, Device::Cpu).unwrap();
    value
        .var_store_mut()
        .copy(rlhf_model::ValueFunction::var_store(&rm))
        .unwrap();
    (policy, reference, rm, value)
}

/// Random prompts `[b, PROMPT_LEN]`, some left padded.
pub fn prompts(b: i64, seed: i64) -> (Tensor, Tensor) {
    init();
    let _g = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    let ids = Tensor::randint_low(2, VOCAB, [b, PROMPT_LEN], (Kind::Int64, Device::Cpu));
    let lens = Tensor::randint_low(2, PROMPT_LEN + 1, [b, 1], (Kind::Int64, Device::Cpu));
    let col = Tensor::arange(PROMPT_LEN, (Kind::Int64, Device::Cpu)).view([1, PROMPT_LEN]);
    let mask = col.ge_tensor(&(PROMPT_LEN - lens)).to_kind(Kind::Int64);
    let ids = ids * &mask; // pad id 0
    (ids, mask)
}

/// A rule-based reward: the share of response tokens (after the fixed-width prompt) equal to
/// `target`. Knows nothing of models: the traits let any scorer in.
#[derive(Debug, Clone, Copy)]
pub struct CountReward {
    pub target: i64,
    pub prompt_len: i64,
}

impl RewardModel for CountReward {
    fn score(&self, ids: &Tensor, mask: &Tensor, _train: bool) -> rlhf_model::Result<Tensor> {
        let n = ids.size()[1] - self.prompt_len;
        let resp = ids.narrow(1, self.prompt_len, n);
        let m = mask.narrow(1, self.prompt_len, n).to_kind(Kind::Float);
        let hits = resp.eq(self.target).to_kind(Kind::Float) * &m;
        Ok(hits.sum_dim_intlist(-1, false, Kind::Float) / n as f64)
    }
}

/// Flattened copy of every variable of a var store, by name.
pub fn snapshot(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.detach().copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

pub fn max_change(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    a.iter()
        .zip(b)
        .map(|((_, x), (_, y))| (x - y).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

pub fn policy_logits_ok<P: Policy>(p: &P) -> bool {
    let ids = Tensor::zeros([1, 2], (Kind::Int64, Device::Cpu));
    p.logits(&ids, &ids.ones_like(), false).is_ok()
}
