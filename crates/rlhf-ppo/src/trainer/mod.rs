//! The PPO-ptx trainer over the four models, each used only through its trait.

use crate::config::PpoConfig;
use crate::error::{config_err, input_err, PpoError, Result};
use crate::kl::KlController;
use crate::ops::{
    assemble_rewards, clipped_surrogate, clipped_value_loss, explained_variance, gae,
    masked_entropy, masked_mean, masked_sum_rows, masked_whiten, ppo_loss, ShapedRewards,
};
use crate::ptx::{ptx_loss, PtxSource};
use crate::rollout::{collect_rollout_with, sync, Rollout, RolloutOptions, SpecialTokens};
use crate::state::{config_differences, write_state_dir, PpoState};
use rlhf_dist::{data_parallel, Collective, Single};
use rlhf_model::ops::log_probs_of;
use rlhf_model::train::{global_grad_norm, AdamW, MetricsSink};
use rlhf_model::{GenerateConfig, Policy, RewardModel, ValueFunction};
use serde_json::{Map, Value};
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;
use tch::{nn, Kind, Tensor};

mod update;

/// The four models of PPO.
#[derive(Debug)]
pub struct PpoModels<P, R, M, V> {
    /// Trained; starts as the SFT model.
    pub policy: P,
    /// Frozen SFT model: only forwarded under `no_grad`, never given to an optimizer.
    pub reference: R,
    /// Frozen reward model: only forwarded under `no_grad`.
    pub reward: M,
    /// Trained critic, usually initialized from the RM (`ScalarModel::value_from_reward`).
    pub value: V,
}

/// Rewards, advantages and returns of a rollout (no grad).
#[derive(Debug)]
pub struct Advantages {
    /// Per-token rewards, KL, penalty and the (penalized, clipped) scores.
    pub shaped: ShapedRewards,
    /// GAE advantages `[B, N]` (whitened when configured).
    pub advantages: Tensor,
    /// Value targets `[B, N]` (GAE advantages before whitening + values).
    pub returns: Tensor,
}

/// Everything measured in one iteration; [`IterationStats::to_metrics`] gives the standard
/// names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IterationStats {
    /// 1-based iteration number.
    pub iteration: u64,
    /// `objective/kl`: mean over responses of the summed per-token KL estimate.
    pub kl: f64,
    /// `objective/scores`: mean raw RM score.
    pub scores: f64,
    /// `objective/entropy`: mean over responses of the summed `-log p` of the sampled tokens.
    pub entropy: f64,
    /// `objective/non_score_reward`: mean summed `-beta * KL`.
    pub non_score_reward: f64,
    /// `objective/rlhf_reward`: scores (after penalties) + non-score reward.
    pub rlhf_reward: f64,
    /// `objective/kl_coef`: beta used in this iteration's rewards.
    pub kl_coef: f64,
    /// `policy/approxkl`: mean over minibatches of `0.5 * mean((logp - old)^2)`.
    pub approx_kl: f64,
    /// `policy/clipfrac`.
    pub clipfrac: f64,
    /// `policy/entropy`: mean per-token entropy of the policy's distribution (first epoch).
    pub policy_entropy: f64,
    /// `loss/policy`: mean clipped surrogate.
    pub policy_loss: f64,
    /// `loss/value`: mean clipped value loss (before `vf_coef`).
    pub value_loss: f64,
    /// `loss/ptx`: mean pretraining LM loss (before `ptx_coef`; 0 without ptx).
    pub ptx_loss: f64,
    /// `val/clipfrac`.
    pub value_clipfrac: f64,
    /// `val/explained_variance` of the rollout's values against its returns.
    pub explained_variance: f64,
    /// `val/mean`: mean value of the rollout.
    pub value_mean: f64,
    /// `policy/grad_norm`: mean global gradient norm before clipping.
    pub policy_grad_norm: f64,
    /// `val/grad_norm`.
    pub value_grad_norm: f64,
    /// `policy/lr`.
    pub lr: f64,
    /// `policy/optimizer_steps` taken this iteration (0 during `value_warmup_iterations`,
    /// when only the value function trains).
    pub optimizer_steps: u64,
    /// `policy/early_stopped`: the update stopped at `target_kl`.
    pub early_stopped: bool,
    /// `objective/response_length`: mean real tokens per response.
    pub response_length: f64,
    /// `objective/no_eos_fraction`: share of responses without EOS (0 when EOS is unset).
    pub no_eos_fraction: f64,
    /// `time/generation` (s).
    pub time_generation: f64,
    /// `time/scoring` (s).
    pub time_scoring: f64,
    /// `time/training` (s): advantages + the PPO update.
    pub time_training: f64,
}

impl IterationStats {
    /// The metrics under their standard names (non-finite values become null).
    pub fn to_metrics(&self) -> Map<String, Value> {
        let f = |x: f64| {
            if x.is_finite() {
                Value::from(x)
            } else {
                Value::Null
            }
        };
        let mut m = Map::new();
        for (k, v) in [
            ("objective/kl", self.kl),
            ("objective/scores", self.scores),
            ("objective/entropy", self.entropy),
            ("objective/non_score_reward", self.non_score_reward),
            ("objective/rlhf_reward", self.rlhf_reward),
            ("objective/kl_coef", self.kl_coef),
            ("objective/response_length", self.response_length),
            ("objective/no_eos_fraction", self.no_eos_fraction),
            ("policy/approxkl", self.approx_kl),
            ("policy/clipfrac", self.clipfrac),
            ("policy/entropy", self.policy_entropy),
            ("policy/grad_norm", self.policy_grad_norm),
            ("policy/lr", self.lr),
            ("loss/policy", self.policy_loss),
            ("loss/value", self.value_loss),
            ("loss/ptx", self.ptx_loss),
            ("val/clipfrac", self.value_clipfrac),
            ("val/explained_variance", self.explained_variance),
            ("val/mean", self.value_mean),
            ("val/grad_norm", self.value_grad_norm),
            ("time/generation", self.time_generation),
            ("time/scoring", self.time_scoring),
            ("time/training", self.time_training),
        ] {
            m.insert(k.into(), f(v));
        }
        m.insert("policy/optimizer_steps".into(), self.optimizer_steps.into());
        m.insert(
            "policy/early_stopped".into(),
            Value::from(self.early_stopped as u8),
        );
        m.insert("iteration".into(), self.iteration.into());
        m
    }
}

/// What the update phase measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateStats {
    /// Mean approx-KL over minibatches.
    pub approx_kl: f64,
    /// Mean policy clip fraction.
    pub clipfrac: f64,
    /// Mean per-token policy entropy (first epoch).
    pub policy_entropy: f64,
    /// Mean clipped surrogate.
    pub policy_loss: f64,
    /// Mean value loss (before `vf_coef`).
    pub value_loss: f64,
    /// Mean value clip fraction.
    pub value_clipfrac: f64,
    /// Mean LM loss of the ptx batches (before `ptx_coef`).
    pub ptx_loss: f64,
    /// Mean policy gradient norm before clipping.
    pub policy_grad_norm: f64,
    /// Mean value gradient norm before clipping.
    pub value_grad_norm: f64,
    /// Optimizer steps taken.
    pub optimizer_steps: u64,
    /// Whether `target_kl` stopped the update.
    pub early_stopped: bool,
}

/// PPO-ptx over a trained policy and value function, a frozen reference and a frozen reward
/// model. Each iteration ([`PpoTrainer::step`]): roll out a batch of prompts, assemble
/// per-token rewards (`-beta * KL` plus the RM score on the last real token), GAE, then
/// `ppo_epochs` passes of shuffled minibatches (micro-batches accumulate gradients), each step
/// minimizing `clipped surrogate + vf_coef * clipped value loss - entropy_coef * entropy +
/// ptx_coef * LM loss on a pretraining batch`, with separate AdamW optimizers for the policy
/// and the value function ([`rlhf_model::train::AdamW`], whose moments can be saved).
///
/// # Exact resumption
///
/// Everything an iteration depends on is the weights of the policy and the value function,
/// the [`PpoState`] (iterations completed, beta, both optimizers' moments and step counts, the
/// config) and, for PPO-ptx, the position of the pretraining source; sampling seeds, minibatch
/// shuffles and the learning-rate warmup are functions of `(seed, iteration)`, and no forward
/// pass uses dropout. So a run of `k` iterations, saved with the models' own `save` plus
/// [`PpoTrainer::save_state`] (or kept in memory with [`PpoTrainer::state`]), then loaded into
/// a fresh trainer with [`PpoTrainer::load_state`] (or [`PpoTrainer::restore`]), continues
/// bit for bit as the uninterrupted run (on the CPU; CUDA kernels may differ from run to run).
///
/// ```no_run
/// # use rlhf_model::{CausalLm, ScalarModel};
/// # use rlhf_ppo::{PpoConfig, PpoModels, PpoTrainer, SpecialTokens};
/// # fn f(mut trainer: PpoTrainer<CausalLm, CausalLm, ScalarModel, ScalarModel>,
/// #      reference: CausalLm, reward: ScalarModel) -> rlhf_ppo::Result<()> {
/// let dev = tch::Device::Cpu;
/// // Save after some iterations ...
/// trainer.policy().save("ckpt/policy")?;
/// trainer.value().save("ckpt/value")?;
/// trainer.save_state("ckpt/trainer")?;
/// let cfg = trainer.config().clone();
/// // ... and continue later in a fresh trainer.
/// let models = PpoModels {
///     policy: CausalLm::load("ckpt/policy", dev)?,
///     reference,
///     reward,
///     value: ScalarModel::load("ckpt/value", dev)?,
/// };
/// let mut trainer = PpoTrainer::new(cfg, models, SpecialTokens { eos: Some(0), pad: 0 })?;
/// trainer.load_state("ckpt/trainer")?;
/// # Ok(()) }
/// ```
pub struct PpoTrainer<P, R, M, V> {
    config: PpoConfig,
    tokens: SpecialTokens,
    models: PpoModels<P, R, M, V>,
    policy_opt: AdamW,
    value_opt: AdamW,
    kl_ctl: Box<dyn KlController>,
    iteration: u64,
    comm: Rc<dyn Collective>,
}

impl<P, R, M, V> std::fmt::Debug for PpoTrainer<P, R, M, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PpoTrainer")
            .field("config", &self.config)
            .field("tokens", &self.tokens)
            .field("kl_ctl", &self.kl_ctl)
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

use rlhf_data::seed::mix2 as mix;

impl<P, R, M, V> PpoTrainer<P, R, M, V>
where
    P: Policy,
    R: Policy,
    M: RewardModel,
    V: ValueFunction,
{
    /// Validates the config and builds one AdamW per trained model (over its trainable
    /// variables). The reference and the reward model get no optimizer and are only ever
    /// forwarded under `no_grad`.
    pub fn new(
        config: PpoConfig,
        models: PpoModels<P, R, M, V>,
        tokens: SpecialTokens,
    ) -> Result<Self> {
        config.validate()?;
        let trainable =
            |vs: &nn::VarStore| vs.trainable_variables().iter().any(|v| v.requires_grad());
        if !trainable(models.policy.var_store()) {
            return Err(config_err(
                "the policy has no trainable variables (is it frozen?): PPO trains it",
            ));
        }
        if !trainable(models.value.var_store()) {
            return Err(config_err(
                "the value function has no trainable variables (is it frozen?): PPO trains it",
            ));
        }
        if models.policy.device() == tch::Device::Cpu {
            // Every rollout and update frees and reallocates the same large buffers (logits,
            // activations, gradients): reuse them instead of faulting fresh pages in (see
            // `retain_freed_memory`), as the SFT trainer does.
            rlhf_model::train::retain_freed_memory();
        }
        let policy_opt = AdamW::new(models.policy.var_store(), &config.policy_optimizer)?;
        let value_opt = AdamW::new(models.value.var_store(), &config.value_optimizer)?;
        let kl_ctl = config.kl_controller();
        Ok(PpoTrainer {
            config,
            tokens,
            models,
            policy_opt,
            value_opt,
            kl_ctl,
            iteration: 0,
            comm: Rc::new(Single),
        })
    }

    /// The number of ranks this trainer splits its batches across (1 unless
    /// [`PpoTrainer::set_collective`] gave it a data-parallel group).
    pub fn world_size(&self) -> usize {
        self.comm.world_size()
    }

    /// Runs PPO data-parallel over the ranks of `comm` (default [`Single`]: one process).
    /// Every rank gets the whole batch of prompts each iteration, samples and scores its share
    /// ([`rlhf_dist::data_parallel::shard`]) and receives the others' rollouts
    /// ([`crate::dist::gather_rollout`]), so advantages, whitening, the KL controller, the
    /// early-stop decision and the statistics are those of the global batch on every rank. The
    /// update gives each minibatch's micro-batches to the ranks in turn when their number is a
    /// multiple of the ranks', else splits every micro-batch across the ranks by rows, each
    /// rank's token-mean losses weighted by its share of the tokens (every rank draws every
    /// pretraining batch, to keep the same position), and averages the gradients before
    /// clipping, so `N` ranks take the steps one process would on the same rollout (sampling
    /// draws differ per rank unless it is greedy, `top_k = 1`). Rank 0's policy and value
    /// weights are copied here; the config and position must match on every rank (checked
    /// here). Only rank 0 logs in [`PpoTrainer::step`].
    pub fn set_collective(&mut self, comm: Rc<dyn Collective>) -> Result<()> {
        if self.config.batch_size < comm.world_size() {
            return Err(config_err(format!(
                "batch_size {} is smaller than the {} ranks: give every rank a prompt",
                self.config.batch_size,
                comm.world_size()
            )));
        }
        let start = serde_json::to_vec(&(&self.config, self.iteration, self.kl_ctl.value()))
            .expect("config serializes");
        data_parallel::start(
            &*comm,
            "PPO config and position",
            &start,
            self.models.policy.var_store(),
        )?;
        data_parallel::start(&*comm, "PPO config", &start, self.models.value.var_store())?;
        self.comm = comm;
        Ok(())
    }

    /// The settings.
    pub fn config(&self) -> &PpoConfig {
        &self.config
    }

    /// The four models.
    pub fn models(&self) -> &PpoModels<P, R, M, V> {
        &self.models
    }

    /// Gives the models back.
    pub fn into_models(self) -> PpoModels<P, R, M, V> {
        self.models
    }

    /// The policy being trained.
    pub fn policy(&self) -> &P {
        &self.models.policy
    }

    /// The value function being trained.
    pub fn value(&self) -> &V {
        &self.models.value
    }

    /// The frozen reference.
    pub fn reference(&self) -> &R {
        &self.models.reference
    }

    /// The frozen reward model.
    pub fn reward_model(&self) -> &M {
        &self.models.reward
    }

    /// The current KL coefficient beta.
    pub fn kl_coef(&self) -> f64 {
        self.kl_ctl.value()
    }

    /// Sets beta. (To resume a run, prefer [`PpoTrainer::restore`] / [`PpoTrainer::load_state`],
    /// which also restore the optimizers.)
    pub fn set_kl_coef(&mut self, beta: f64) {
        self.kl_ctl.set_value(beta);
    }

    /// Replaces the KL controller (e.g. a custom schedule).
    pub fn set_kl_controller(&mut self, ctl: Box<dyn KlController>) {
        self.kl_ctl = ctl;
    }

    /// Iterations completed.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// Sets the number of completed iterations: sampling seeds, minibatch order and the
    /// learning-rate warmup continue from there. (To resume a run, prefer
    /// [`PpoTrainer::restore`] / [`PpoTrainer::load_state`], which also restore the
    /// optimizers.)
    pub fn set_iteration(&mut self, iteration: u64) {
        self.iteration = iteration;
    }

    /// The policy's optimizer.
    pub fn policy_optimizer(&self) -> &AdamW {
        &self.policy_opt
    }

    /// The value function's optimizer.
    pub fn value_optimizer(&self) -> &AdamW {
        &self.value_opt
    }

    /// A copy of the state a resumed run needs besides the weights of the policy and the
    /// value function (the tensors are deep copies: later steps leave it unchanged). Memory:
    /// twice the trained parameters of both models, in f32; to write it to disk without the
    /// copy, use [`PpoTrainer::save_state`].
    pub fn state(&self) -> PpoState {
        let copy = |opt: &AdamW| {
            opt.state()
                .into_iter()
                .map(|(k, t)| (k, t.copy()))
                .collect()
        };
        PpoState {
            iteration: self.iteration,
            kl_coef: self.kl_ctl.value(),
            config: self.config.clone(),
            policy_optimizer: copy(&self.policy_opt),
            value_optimizer: copy(&self.value_opt),
        }
    }

    /// Continues from `state`: iterations completed, beta (through
    /// [`KlController::set_value`]; a custom controller keeps any other state of its own) and
    /// both optimizers' moments and step counts. The policy and the value function must
    /// already hold the weights saved with the state.
    ///
    /// Refused, naming the keys, when `state.config` differs from this trainer's config (to
    /// continue under other settings on purpose, set `state.config` to [`PpoTrainer::config`]
    /// first), and when the optimizer states do not match the models' variables. On an
    /// optimizer mismatch the trainer may be left partly restored: build a new one.
    pub fn restore(&mut self, state: &PpoState) -> Result<()> {
        if state.config != self.config {
            return Err(PpoError::Resume {
                path: Default::default(),
                msg: format!(
                    "the state was saved under other settings (differing keys: {}): resume with                      the run's config, or start a new run",
                    config_differences(&state.config, &self.config).join(", ")
                ),
            });
        }
        for (name, opt, saved) in [
            ("policy", &mut self.policy_opt, &state.policy_optimizer),
            ("value", &mut self.value_opt, &state.value_optimizer),
        ] {
            opt.load_state(saved).map_err(|e| PpoError::Resume {
                path: Default::default(),
                msg: format!(
                    "the {name} optimizer state does not fit the {name} model ({e}): load the                      weights saved with the state"
                ),
            })?;
        }
        self.iteration = state.iteration;
        self.kl_ctl.set_value(state.kl_coef);
        Ok(())
    }

    /// Writes the state (see [`PpoState`] for the layout) to the directory `dir`, atomically.
    /// The weights are not included: save the policy and the value function beside it (e.g.
    /// `CausalLm::save`, `ScalarModel::save`), and for PPO-ptx the pretraining source's
    /// position ([`crate::PackedPtx::position`]).
    pub fn save_state(&self, dir: impl AsRef<Path>) -> Result<()> {
        write_state_dir(
            dir.as_ref(),
            self.iteration,
            self.kl_ctl.value(),
            &self.config,
            &self.policy_opt.state(),
            &self.value_opt.state(),
        )
    }

    /// Reads a state directory written by [`PpoTrainer::save_state`] and [`restores`] it.
    ///
    /// [`restores`]: PpoTrainer::restore
    pub fn load_state(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let state = PpoState::load(dir)?;
        self.restore(&state).map_err(|e| match e {
            PpoError::Resume { msg, .. } => PpoError::Resume {
                path: dir.to_path_buf(),
                msg,
            },
            other => other,
        })
    }

    /// The sampler settings of iteration `it`.
    pub fn generate_config(&self, it: u64) -> GenerateConfig {
        GenerateConfig {
            max_new_tokens: self.config.max_new_tokens,
            do_sample: true,
            temperature: self.config.temperature,
            top_k: self.config.top_k,
            top_p: self.config.top_p,
            // Rollouts end at the one EOS the policy was fine-tuned to end responses with.
            eos_token_id: self.tokens.eos,
            stop_token_ids: vec![],
            pad_token_id: self.tokens.pad,
            seed: Some(mix(self.config.seed, 2 * it + 1)),
        }
    }

    /// Samples responses to left-padded prompts `[B, P]` and scores them (no grad).
    pub fn rollout(&self, prompt_ids: &Tensor, prompt_mask: &Tensor) -> Result<Rollout> {
        let b = prompt_ids.size().first().copied().unwrap_or(0);
        if b != self.config.batch_size as i64 {
            return Err(input_err(format!(
                "got {b} prompts but batch_size is {}: pass exactly batch_size prompts per \
                 iteration (or change batch_size)",
                self.config.batch_size
            )));
        }
        let m = &self.models;
        // Data parallel: this rank's share of the rows (all of them for one process).
        let share = data_parallel::shard(b as usize, self.comm.rank(), self.comm.world_size());
        let rows = |t: &Tensor| t.narrow(0, share.start as i64, share.len() as i64);
        let opts = RolloutOptions {
            chunk: self.config.scoring_batch(),
            logprobs_from_generation: self.config.logprobs_from_generation,
        };
        let local = collect_rollout_with(
            &m.policy,
            &m.reference,
            &m.reward,
            &m.value,
            &rows(prompt_ids),
            &rows(prompt_mask),
            &self.generate_config(self.iteration),
            &opts,
        )?;
        crate::dist::gather_rollout(&*self.comm, local, b as usize, self.tokens.pad)
    }

    /// Rewards (at the current beta), GAE advantages and returns of a rollout (no grad).
    pub fn advantages(&self, rollout: &Rollout) -> Advantages {
        let _g = tch::no_grad_guard();
        let mask = &rollout.response_mask;
        let shaped = assemble_rewards(
            &rollout.scores,
            &rollout.logprobs,
            &rollout.ref_logprobs,
            mask,
            rollout.has_eos.as_ref(),
            &self.config.shaping(self.kl_ctl.value()),
        );
        let (adv, returns) = gae(
            &shaped.rewards,
            &rollout.values,
            mask,
            self.config.gamma,
            self.config.lam,
        );
        let advantages = if self.config.whiten_advantages {
            masked_whiten(&adv, mask, true)
        } else {
            adv
        };
        Advantages {
            shaped,
            advantages,
            returns,
        }
    }

    /// One PPO iteration on `batch_size` left-padded prompts: rollout, rewards and advantages,
    /// update, KL-controller update; logs the metrics to `metrics` at step = the new iteration
    /// count and returns them.
    pub fn step(
        &mut self,
        prompt_ids: &Tensor,
        prompt_mask: &Tensor,
        ptx: Option<&mut dyn PtxSource>,
        metrics: &mut dyn MetricsSink,
    ) -> Result<IterationStats> {
        let rollout = self.rollout(prompt_ids, prompt_mask)?;
        let device = self.models.policy.device();
        let t0 = Instant::now();
        let beta = self.kl_ctl.value();
        let adv = self.advantages(&rollout);
        let sum = RolloutSummary::of(&rollout, &adv);
        let upd = self.update(&rollout, &adv, ptx)?;
        let (lr, _) = self.config.lr_now(self.iteration);
        self.kl_ctl.update(sum.kl, self.config.batch_size as u64);
        sync(device);
        let time_training = t0.elapsed().as_secs_f64();
        self.iteration += 1;
        let stats = IterationStats {
            iteration: self.iteration,
            kl: sum.kl,
            scores: sum.scores,
            entropy: sum.entropy,
            non_score_reward: sum.non_score_reward,
            rlhf_reward: sum.rlhf_reward,
            kl_coef: beta,
            approx_kl: upd.approx_kl,
            clipfrac: upd.clipfrac,
            policy_entropy: upd.policy_entropy,
            policy_loss: upd.policy_loss,
            value_loss: upd.value_loss,
            ptx_loss: upd.ptx_loss,
            value_clipfrac: upd.value_clipfrac,
            explained_variance: sum.explained_variance,
            value_mean: sum.value_mean,
            policy_grad_norm: upd.policy_grad_norm,
            value_grad_norm: upd.value_grad_norm,
            lr,
            optimizer_steps: upd.optimizer_steps,
            early_stopped: upd.early_stopped,
            response_length: sum.response_length,
            no_eos_fraction: sum.no_eos_fraction,
            time_generation: rollout.generation_s,
            time_scoring: rollout.scoring_s,
            time_training,
        };
        data_parallel::ensure_in_sync(&*self.comm, self.models.policy.var_store())?;
        if self.comm.is_root() {
            metrics.log(self.iteration, &stats.to_metrics())?;
        }
        Ok(stats)
    }
}

/// The rollout's statistics for the metrics (means over episodes; no grad).
struct RolloutSummary {
    kl: f64,
    scores: f64,
    entropy: f64,
    non_score_reward: f64,
    rlhf_reward: f64,
    response_length: f64,
    no_eos_fraction: f64,
    explained_variance: f64,
    value_mean: f64,
}

impl RolloutSummary {
    fn of(rollout: &Rollout, adv: &Advantages) -> Self {
        let _g = tch::no_grad_guard();
        let mask = &rollout.response_mask;
        let mean = |t: Tensor| t.mean(Kind::Float).double_value(&[]);
        let non_score_reward = mean(masked_sum_rows(&adv.shaped.non_score_reward, mask));
        RolloutSummary {
            kl: mean(masked_sum_rows(&adv.shaped.kl, mask)),
            scores: mean(rollout.scores.shallow_clone()),
            entropy: mean(masked_sum_rows(&(-&rollout.logprobs), mask)),
            non_score_reward,
            rlhf_reward: mean(adv.shaped.scores.shallow_clone()) + non_score_reward,
            response_length: mean(mask.sum_dim_intlist(-1, false, Kind::Float)),
            no_eos_fraction: rollout
                .has_eos
                .as_ref()
                .map_or(0.0, |e| mean(e.logical_not().to_kind(Kind::Float))),
            explained_variance: explained_variance(&rollout.values, &adv.returns, mask),
            value_mean: masked_mean(&rollout.values, mask).double_value(&[]),
        }
    }
}
