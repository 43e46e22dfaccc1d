//! # rlhf-ppo
//!
//! Stage 3 of InstructGPT: PPO-ptx against a reward model with a per-token KL penalty to the
//! frozen SFT model,
//!
//! ```text
//! objective(phi) = E_(x,y)~pi_phi [ r(x, y) - beta * log(pi_phi(y|x) / pi_SFT(y|x)) ]
//!                + gamma_ptx * E_x~D_pretrain [ log pi_phi(x) ]
//! ```
//!
//! * [`ops`]: the math as small pure tensor functions (KL estimators, masked statistics,
//!   reward assembly, GAE, clipped surrogate and value losses, entropy, approx-KL, clip
//!   fraction, explained variance), each tested against a plain loop.
//! * [`kl`]: KL controllers behind [`KlController`]: fixed and adaptive (Ziegler et al.).
//! * [`PpoTrainer`]: four models used only through the `rlhf_model` traits: the policy
//!   ([`rlhf_model::Policy`], trained), the reference (`Policy`, frozen), the reward model
//!   ([`rlhf_model::RewardModel`], frozen) and the value function
//!   ([`rlhf_model::ValueFunction`], trained, usually `ScalarModel::value_from_reward`). A
//!   rule-based reward or another architecture plugs in by implementing the trait.
//! * [`ptx`]: the pretraining term and where its batches come from.
//! * [`PpoState`] ([`state`]): what a resumed run needs besides the weights (iteration, KL
//!   coefficient, both AdamW states); [`PpoTrainer::save_state`] / [`PpoTrainer::load_state`]
//!   (or [`PpoTrainer::state`] / [`PpoTrainer::restore`]) make resumption exact.
//! * [`bench_w_ppo`]: the W-PPO workload of benches/WORKLOAD.md (time split, FLOPs, fraction of the
//!   matmul peak, peak resident memory); [`memory`]: peak resident memory.
//!
//! Memory: the reference and the reward model are only forwarded under `tch::no_grad` and get
//! no optimizer; a [`Rollout`] holds no autograd graph ([`Rollout::is_graph_free`]).
//!
//! ```no_run
//! use rlhf_model::{train::NoMetrics, CausalLm, ScalarModel};
//! use rlhf_ppo::{PpoConfig, PpoModels, PpoTrainer, SpecialTokens};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dev = tch::Device::Cpu;
//! let mut reference = CausalLm::load("runs/sft/best", dev)?;
//! reference.var_store_mut().freeze();
//! let mut reward = ScalarModel::load("runs/rm/final", dev)?;
//! reward.var_store_mut().freeze();
//! let models = PpoModels {
//!     policy: CausalLm::load("runs/sft/best", dev)?,
//!     reference,
//!     reward,
//!     value: ScalarModel::value_from_reward("runs/rm/final", dev)?,
//! };
//! let cfg = PpoConfig { batch_size: 2, minibatch_size: 1, ..PpoConfig::default() };
//! let mut trainer = PpoTrainer::new(cfg, models, SpecialTokens { eos: Some(0), pad: 0 })?;
//! let (ids, mask) = rlhf_ppo::data::left_pad(&[&[5, 6, 7], &[8, 9]], 0)?;
//! let stats = trainer.step(&ids, &mask, None, &mut NoMetrics)?;
//! println!("score {:.3} kl {:.3}", stats.scores, stats.kl);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dist;
pub mod error;
pub mod kl;
pub mod memory;
pub mod ops;
pub mod ptx;
pub mod rollout;
pub mod state;
pub mod trainer;

pub use bench::{bench_w_ppo, bench_w_ppo_on, WPpoSpec};
pub use checkpoint::{Checkpoint, CheckpointState, PpoCheckpoints};
pub use config::PpoConfig;
pub use error::{PpoError, Result};
pub use kl::{AdaptiveKlConfig, AdaptiveKlController, FixedKlController, KlController};
pub use ops::KlEstimator;
pub use ptx::{ptx_loss, LmBatch, PackedPtx, PtxSource};
pub use rollout::{Rollout, RolloutOptions, SpecialTokens};
pub use state::PpoState;
pub use trainer::{Advantages, IterationStats, PpoModels, PpoTrainer, UpdateStats};
