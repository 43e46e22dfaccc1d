//! The K-wise reward-model trainer: batches of ranked prompts, each response forwarded once,
//! AdamW with a cosine schedule, gradient clipping and accumulation, epochs, validation,
//! atomic checkpoints and exact resumption, and the reward normalization of the paper.
//!
//! ## Exact resumption
//!
//! A checkpoint directory holds the model (HF layout, loadable with `ScalarModel::load`), the
//! AdamW moments (`optimizer.safetensors`, from [`rlhf_model::train::AdamW`]) and
//! `trainer_state.json` (epoch, position in the epoch, optimizer step, config). Everything
//! random is a function of the seed and the position: the order of an epoch is a permutation
//! drawn from `(seed, epoch)`, and when the model uses dropout libtorch's global generator is
//! reseeded from `(seed, step, micro-batch)` before each forward. So resuming from any
//! checkpoint, including one written mid-epoch (`save_every_steps`), continues exactly as the
//! uninterrupted run would (bit for bit on the CPU with the same thread count).
//!
//! Note that reseeding touches libtorch's process-global generator.

use crate::error::{Result, RewardError};
use crate::loss::{gold_agreement, kwise_ranking_loss, PairIndex, RankingStats};
use crate::model::TrainableRewardModel;
use crate::shared::SharedPromptBatch;
use rlhf_data::collate::{
    collate_rewards, collate_sft, CollateConfig, RewardBatch, TokenizedPair, TokenizedRanking,
};
use rlhf_data::seed::{shuffled, splitmix64};
use rlhf_dist::{data_parallel, Collective, Single};
use rlhf_model::array::tensor_from;
use rlhf_model::checkpoint::{read_safetensors, safetensors_bytes};
use rlhf_model::train::{AdamW, CosineSchedule, MetricsSink};
use rlhf_model::{LoadOptions, ScalarModel};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use tch::{Device, Kind, Tensor};

mod checkpoint;
mod config;
mod eval;

pub use checkpoint::*;
pub use config::RewardTrainConfig;
pub use eval::*;

/// File of the optimizer moments inside a checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File of the trainer's position inside a checkpoint directory.
pub const STATE_FILE: &str = "trainer_state.json";

/// Where a run stands; saved as `trainer_state.json` in each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed epochs.
    pub epoch: usize,
    /// Batches of the current epoch already trained.
    pub batch_in_epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// Training prompts of the run (the schedule and epoch orders depend on it).
    pub num_train: usize,
    /// The config of the run.
    pub config: RewardTrainConfig,
}

/// Ranked groups for validation, optionally with gold scores per response (toy world).
#[derive(Debug, Clone, Default)]
pub struct RankingData {
    /// The groups (prompt, K responses, labeler ranking).
    pub groups: Vec<TokenizedRanking>,
    /// Gold score of each response of each group, when known.
    pub gold: Option<Vec<Vec<f64>>>,
}

/// Validation results.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// Loss and accuracy against the labelers, in total and per K.
    pub stats: RankingStats,
    /// Pairwise accuracy against the gold order (pairs with distinct gold scores), if known.
    pub gold_accuracy: Option<f64>,
    /// Pairs counted in `gold_accuracy`.
    pub gold_pairs: usize,
    /// Mean reward (with the normalization bias) over all responses.
    pub reward_mean: f64,
    /// Standard deviation of the rewards.
    pub reward_std: f64,
}

impl EvalReport {
    /// The report as metrics named `{prefix}/loss`, `{prefix}/accuracy`,
    /// `{prefix}/accuracy_gold`, `{prefix}/loss_k{K}`, `{prefix}/accuracy_k{K}`,
    /// `{prefix}/reward_mean`, `{prefix}/reward_std`, `{prefix}/prompts`, `{prefix}/pairs`.
    pub fn to_metrics(&self, prefix: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(format!("{prefix}/loss"), json!(self.stats.loss()));
        m.insert(format!("{prefix}/accuracy"), json!(self.stats.accuracy()));
        if let Some(g) = self.gold_accuracy {
            m.insert(format!("{prefix}/accuracy_gold"), json!(g));
        }
        for (k, s) in &self.stats.per_k {
            m.insert(format!("{prefix}/loss_k{k}"), json!(s.loss()));
            m.insert(format!("{prefix}/accuracy_k{k}"), json!(s.accuracy()));
        }
        m.insert(format!("{prefix}/reward_mean"), json!(self.reward_mean));
        m.insert(format!("{prefix}/reward_std"), json!(self.reward_std));
        m.insert(format!("{prefix}/prompts"), json!(self.stats.total.groups));
        m.insert(format!("{prefix}/pairs"), json!(self.stats.total.pairs));
        m
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The step's number (1-based after the step).
    pub step: u64,
    /// Learning rate used.
    pub lr: f64,
    /// Loss and accuracy of the batch (before the update).
    pub stats: RankingStats,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Sequences forwarded (responses; plus prompts on the shared-prompt path).
    pub rows_forwarded: usize,
}

/// The result of the reward normalization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// The bias now stored in the model's metadata (`-raw_mean * gain`).
    pub bias: f64,
    /// The gain now stored in the model's metadata (`1 / raw_std`; 1 when the scores do not
    /// vary).
    pub gain: f64,
    /// Demonstrations scored.
    pub demonstrations: usize,
    /// Their mean raw score (before the bias).
    pub raw_mean: f64,
    /// Their raw score standard deviation.
    pub raw_std: f64,
}

/// Checks that every group has K >= 2 responses and a permutation as its ranking.
pub fn check_rankings(groups: &[TokenizedRanking], what: &str) -> Result<()> {
    for (i, g) in groups.iter().enumerate() {
        PairIndex::new(
            &[g.responses.len()],
            std::slice::from_ref(&g.ranking),
            Device::Cpu,
        )
        .map_err(|e| RewardError::Input(format!("{what} ranking {i}: {e}")))?;
    }
    Ok(())
}

/// The order of the training prompts in `epoch`: a permutation drawn from `(seed, epoch)`.
pub fn epoch_order(num: usize, seed: u64, epoch: usize) -> Vec<usize> {
    shuffled(num, splitmix64(seed ^ splitmix64(epoch as u64)))
}

fn tensors(b: &RewardBatch, device: Device) -> (Tensor, Tensor) {
    (
        tensor_from(b.input_ids_2d(), device),
        tensor_from(b.attention_mask_2d(), device),
    )
}

/// Scores every response of a collated batch once, through the shared-prompt path when
/// `shared_prompt` is set and the model supports it, else as full rows. Returns the raw
/// scores `[N]` and the number of sequences forwarded.
pub fn score_batch<M: TrainableRewardModel + ?Sized>(
    model: &M,
    batch: &RewardBatch,
    shared_prompt: bool,
    train: bool,
) -> Result<(Tensor, usize)> {
    let device = model.var_store().device();
    if shared_prompt {
        if let Ok(sb) = SharedPromptBatch::from_reward_batch(batch, device) {
            if let Some(scores) = model.forward_shared_prompt(&sb, train) {
                let rows = (sb.num_prompts() + sb.num_responses()) as usize;
                return Ok((scores?, rows));
            }
        }
    }
    let (ids, mask) = tensors(batch, device);
    Ok((model.forward_scores(&ids, &mask, train)?, batch.batch))
}

/// The K-wise reward-model trainer (see the module docs).
#[derive(Debug)]
pub struct RewardTrainer<M: TrainableRewardModel = ScalarModel> {
    model: M,
    cfg: RewardTrainConfig,
    collate: CollateConfig,
    opt: AdamW,
    schedule: CosineSchedule,
    state: TrainState,
    pause_at: Option<u64>,
    comm: Rc<dyn Collective>,
}

impl<M: TrainableRewardModel> RewardTrainer<M> {
    /// A trainer at step 0 for a run over `num_train` training prompts.
    pub fn new(
        model: M,
        cfg: RewardTrainConfig,
        collate: CollateConfig,
        num_train: usize,
    ) -> Result<Self> {
        cfg.validate()?;
        collate.validate()?;
        if num_train == 0 {
            return Err(RewardError::Input(
                "no training rankings: expected at least one".into(),
            ));
        }
        let opt = AdamW::new(model.var_store(), &cfg.optimizer)?;
        Ok(RewardTrainer {
            schedule: cfg.schedule(num_train),
            state: TrainState {
                epoch: 0,
                batch_in_epoch: 0,
                step: 0,
                num_train,
                config: cfg.clone(),
            },
            model,
            cfg,
            collate,
            opt,
            pause_at: None,
            comm: Rc::new(Single),
        })
    }

    /// The number of ranks this trainer splits its batches across (1 unless
    /// [`RewardTrainer::set_collective`] gave it a data-parallel group).
    pub fn world_size(&self) -> usize {
        self.comm.world_size()
    }

    /// Trains data-parallel over the ranks of `comm` (default [`Single`]: one process). Every
    /// rank starts from rank 0's weights (copied here) and must be given the same data and
    /// config (checked here); each step, every rank forwards its share of the batch's prompts
    /// (whole K-wise groups), and the gradients are averaged before clipping, so `N` ranks end
    /// with the weights one process would (up to float rounding; with dropout each rank draws
    /// its own masks). Only rank 0 logs and writes checkpoints in [`RewardTrainer::fit`];
    /// validation and normalization run whole on every rank.
    pub fn set_collective(&mut self, comm: Rc<dyn Collective>) -> Result<()> {
        let start = serde_json::to_vec(&(&self.state, &self.cfg)).expect("state serializes");
        data_parallel::start(
            &*comm,
            "reward-trainer config, data size and position",
            &start,
            self.model.var_store(),
        )?;
        self.comm = comm;
        Ok(())
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The model, mutably.
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    /// Gives the model back.
    pub fn into_model(self) -> M {
        self.model
    }

    /// The config.
    pub fn config(&self) -> &RewardTrainConfig {
        &self.cfg
    }

    /// Where the run stands.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The learning-rate schedule.
    pub fn schedule(&self) -> CosineSchedule {
        self.schedule
    }

    /// Makes [`RewardTrainer::fit`] stop once `step` optimizer steps are done (writing the
    /// resumable checkpoint `run_dir/latest/` first when stopping mid-epoch): for time-limited
    /// jobs, and to test resumption. `None` (the default) trains to the end.
    pub fn pause_at(&mut self, step: Option<u64>) {
        self.pause_at = step;
    }

    /// True when all epochs are done.
    pub fn finished(&self) -> bool {
        self.state.epoch >= self.cfg.epochs
    }

    fn device(&self) -> Device {
        self.model.var_store().device()
    }

    /// One optimizer step on a batch of groups (micro-batched per the config): each response
    /// forwarded once, the K-wise loss (mean over the batch's prompts), backward, clipping,
    /// AdamW at the scheduled learning rate. Does not move the epoch position (see
    /// [`RewardTrainer::fit`]). Data parallel: `groups` is the global batch, of which this
    /// rank trains its share; the returned statistics' totals cover the whole batch.
    pub fn train_step(&mut self, groups: &[TokenizedRanking]) -> Result<StepReport> {
        if groups.is_empty() {
            return Err(RewardError::Input("empty training batch".into()));
        }
        let (rank, world) = (self.comm.rank(), self.comm.world_size());
        let share = data_parallel::shard(groups.len(), rank, world);
        let global = groups.len();
        // A rank without a share of a tiny batch runs one group with weight 0, so that its
        // gradients exist for the all-reduce.
        let (groups, share_weight) = if share.is_empty() {
            (&groups[..1], 0.0)
        } else {
            (&groups[share], world as f64)
        };
        let lr = self.schedule.lr(self.state.step);
        self.opt.set_lr(lr);
        self.opt.zero_grad();
        let micro = match self.cfg.micro_batch_prompts {
            0 => groups.len(),
            m => m,
        };
        let train = self.cfg.dropout;
        let reseed = train && self.model.uses_dropout();
        let mut stats = RankingStats::default();
        let mut rows = 0;
        let device = self.device();
        for (mi, chunk) in groups.chunks(micro).enumerate() {
            if reseed {
                let s = splitmix64(
                    self.cfg.seed ^ splitmix64(self.state.step) ^ splitmix64(mi as u64 + 1),
                );
                // Each rank draws its own dropout masks (rank 0 those of one process).
                let s = if rank == 0 {
                    s
                } else {
                    s ^ splitmix64(!(rank as u64))
                };
                tch::manual_seed((s >> 1) as i64);
            }
            let batch = collate_rewards(chunk, &self.collate)?;
            let pairs = PairIndex::from_batch(&batch, device)?;
            let (scores, n) = score_batch(&self.model, &batch, self.cfg.shared_prompt, train)?;
            rows += n;
            let l = kwise_ranking_loss(&scores, &pairs)?;
            let weight = if world == 1 {
                chunk.len() as f64 / global as f64
            } else {
                chunk.len() as f64 * share_weight / global as f64
            };
            (&l.loss * weight).f_backward()?;
            if share_weight > 0.0 {
                stats.add(&l, &pairs)?;
            }
        }
        if world > 1 {
            data_parallel::average_gradients(&*self.comm, self.model.var_store())?;
            let t = &mut stats.total;
            let mut sums = [
                t.groups as f64,
                t.loss_sum,
                t.pairs as f64,
                t.correct,
                rows as f64,
            ];
            self.comm.all_reduce_sum_f64(&mut sums)?;
            t.groups = sums[0] as usize;
            t.loss_sum = sums[1];
            t.pairs = sums[2] as usize;
            t.correct = sums[3];
            rows = sums[4] as usize;
        }
        let grad_norm = if self.cfg.max_grad_norm > 0.0 {
            self.opt.clip_grad_norm(self.cfg.max_grad_norm)
        } else {
            rlhf_model::train::global_grad_norm(self.model.var_store())
        };
        self.opt.step();
        self.state.step += 1;
        Ok(StepReport {
            step: self.state.step,
            lr,
            stats,
            grad_norm,
            rows_forwarded: rows,
        })
    }

    /// Trains from the current position to the end of the last epoch. Each step logs
    /// `loss/rm`, `rm/accuracy`, `rm/lr`, `rm/grad_norm`, `rm/epoch` (every
    /// `log_every_steps`); each epoch runs validation (when `valid` is given; metrics
    /// `val/*`, see [`EvalReport::to_metrics`]) and, with a `run_dir`, writes the checkpoint
    /// `run_dir/epoch-N/` (and `run_dir/latest/` every `save_every_steps`). `progress` gets
    /// `(steps done, total steps, status)`.
    pub fn fit(
        &mut self,
        train: &[TokenizedRanking],
        valid: Option<&RankingData>,
        sink: &mut dyn MetricsSink,
        run_dir: Option<&Path>,
        progress: &mut dyn FnMut(u64, u64, &str),
    ) -> Result<Vec<EvalReport>> {
        if train.len() != self.state.num_train {
            return Err(RewardError::Input(format!(
                "the trainer was set up for {} training prompts but got {}: resume with the \
                 same training data",
                self.state.num_train,
                train.len()
            )));
        }
        check_rankings(train, "training")?;
        let total = self.schedule.total_steps;
        let root = self.comm.is_root();
        let mut reports = Vec::new();
        while self.state.epoch < self.cfg.epochs {
            let epoch = self.state.epoch;
            let order = epoch_order(train.len(), self.cfg.seed, epoch);
            let batches: Vec<&[usize]> = order.chunks(self.cfg.batch_prompts).collect();
            while self.state.batch_in_epoch < batches.len() {
                let groups: Vec<TokenizedRanking> = batches[self.state.batch_in_epoch]
                    .iter()
                    .map(|&i| train[i].clone())
                    .collect();
                let rep = self.train_step(&groups)?;
                self.state.batch_in_epoch += 1;
                let status = format!(
                    "epoch {} loss {:.4} acc {:.3}",
                    epoch + 1,
                    rep.stats.loss(),
                    rep.stats.accuracy()
                );
                if rep.step % self.cfg.log_every_steps == 0 {
                    let mut m = Map::new();
                    m.insert("loss/rm".into(), json!(rep.stats.loss()));
                    m.insert("rm/accuracy".into(), json!(rep.stats.accuracy()));
                    m.insert("rm/lr".into(), json!(rep.lr));
                    m.insert("rm/grad_norm".into(), json!(rep.grad_norm));
                    m.insert(
                        "rm/epoch".into(),
                        json!(
                            epoch as f64 + self.state.batch_in_epoch as f64 / batches.len() as f64
                        ),
                    );
                    m.insert("rm/sequences".into(), json!(rep.rows_forwarded));
                    if root {
                        sink.log(rep.step, &m)?;
                    }
                }
                if root {
                    progress(rep.step, total, &status);
                }
                let mid_epoch = self.state.batch_in_epoch < batches.len();
                let pause = self.pause_at.is_some_and(|p| rep.step >= p) && mid_epoch;
                if let (Some(dir), true) = (run_dir, root) {
                    let periodic =
                        self.cfg.save_every_steps > 0 && rep.step % self.cfg.save_every_steps == 0;
                    if mid_epoch && (periodic || pause) {
                        self.save_checkpoint(&dir.join("latest"))?;
                    }
                }
                if pause {
                    return Ok(reports);
                }
            }
            self.state.epoch += 1;
            self.state.batch_in_epoch = 0;
            if let Some(v) = valid {
                let rep = self.evaluate(v)?;
                let mut m = rep.to_metrics("val");
                m.insert("rm/epoch".into(), json!(self.state.epoch));
                if root {
                    sink.log(self.state.step, &m)?;
                }
                if root {
                    progress(
                        self.state.step,
                        total,
                        &format!(
                            "epoch {} validation: loss {:.4} acc {:.3}{}",
                            self.state.epoch,
                            rep.stats.loss(),
                            rep.stats.accuracy(),
                            rep.gold_accuracy
                                .map(|g| format!(" gold acc {g:.3}"))
                                .unwrap_or_default()
                        ),
                    );
                }
                reports.push(rep);
            }
            data_parallel::ensure_in_sync(&*self.comm, self.model.var_store())?;
            if let (Some(dir), true) = (run_dir, root) {
                self.save_checkpoint(&dir.join(format!("epoch-{}", self.state.epoch)))?;
                let latest = dir.join("latest");
                if latest.exists() {
                    std::fs::remove_dir_all(&latest).map_err(|e| RewardError::state(&latest, e))?;
                }
            }
            if self.pause_at.is_some_and(|p| self.state.step >= p) {
                break;
            }
        }
        Ok(reports)
    }

    /// Validation without gradients or dropout: loss and pairwise accuracy against the
    /// labelers (total and per K), accuracy against the gold order when known, and the
    /// mean/std of the (normalized) rewards.
    pub fn evaluate(&self, data: &RankingData) -> Result<EvalReport> {
        evaluate(&self.model, data, &self.collate, &self.cfg)
    }

    /// The paper's normalization, with a gain: scores `demos` (prompt + demonstration, EOS
    /// appended as in collation) and sets the model's `reward_gain` and `reward_bias` so that
    /// they score 0 on average with a standard deviation of 1 (a fixed scale, so the PPO KL
    /// coefficient means the same for every RM). Both replace any earlier ones; they are recorded
    /// in the metadata (`meta.reward_gain`, `meta.reward_bias`, plus
    /// `extra.reward_normalization`).
    pub fn normalize(&mut self, demos: &[TokenizedPair]) -> Result<Normalization> {
        normalize(
            &mut self.model,
            demos,
            &self.collate,
            self.cfg.eval_batch_prompts,
        )
    }

    /// Writes a resumable checkpoint: the model (HF layout), `optimizer.safetensors` and
    /// `trainer_state.json`, as one atomic directory.
    pub fn save_checkpoint(&mut self, dir: &Path) -> Result<()> {
        {
            let meta = self.model.meta_mut();
            meta.step = self.state.step;
            meta.extra.insert("stage".into(), json!("reward"));
            meta.extra.insert("epoch".into(), json!(self.state.epoch));
        }
        let state = serde_json::to_string_pretty(&self.state).expect("state serializes");
        let opt = safetensors_bytes(&self.opt.state())?;
        Ok(self.model.save_with_extras(
            dir,
            vec![(OPTIMIZER_FILE, opt), (STATE_FILE, state.into_bytes())],
        )?)
    }

    /// Restores the optimizer moments and the run position from a checkpoint written by
    /// [`RewardTrainer::save_checkpoint`]. The model must already hold that checkpoint's
    /// weights (see [`RewardTrainer::resume`]). Errors if the run's config or training-set size
    /// differ from this trainer's.
    pub fn restore(&mut self, dir: &Path) -> Result<()> {
        let dir = rlhf_model::checkpoint::resolve_dir(dir)?;
        let state = read_state(&dir)?;
        if state.num_train != self.state.num_train {
            return Err(RewardError::state(
                dir.join(STATE_FILE),
                format!(
                    "the run trained on {} prompts, but {} were given: resume with the same \
                     training data",
                    state.num_train, self.state.num_train
                ),
            ));
        }
        if state.config != self.cfg {
            let a = serde_json::to_value(&state.config).expect("config serializes");
            let b = serde_json::to_value(&self.cfg).expect("config serializes");
            let diff: Vec<String> = a
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| b.get(k.as_str()) != Some(v))
                .map(|(k, v)| format!("{k} (run: {v}, now: {})", b[k.as_str()]))
                .collect();
            return Err(RewardError::state(
                dir.join(STATE_FILE),
                format!(
                    "the training config changed since the checkpoint: {}; resume with the \
                     run's config",
                    diff.join(", ")
                ),
            ));
        }
        let opt_path = dir.join(OPTIMIZER_FILE);
        if !opt_path.exists() {
            return Err(RewardError::state(
                &opt_path,
                "missing: not a resumable reward-trainer checkpoint",
            ));
        }
        let tensors = read_safetensors(&opt_path)?;
        let device = self.device();
        let tensors = tensors
            .into_iter()
            .map(|(k, t)| (k, t.to_device(device)))
            .collect();
        self.opt.load_state(&tensors)?;
        self.state = state;
        Ok(())
    }
}

impl<M: TrainableRewardModel> RewardTrainer<M> {
    /// Restores `model` from a checkpoint written by [`RewardTrainer::save_checkpoint`]
    /// (weights through [`rlhf_model::Checkpointable::restore_from`], then the optimizer and
    /// position) to continue the run exactly, whatever the model's architecture.
    pub fn resume_model(
        mut model: M,
        dir: &Path,
        cfg: RewardTrainConfig,
        collate: CollateConfig,
        num_train: usize,
    ) -> Result<Self> {
        model.restore_from(dir)?;
        let mut t = RewardTrainer::new(model, cfg, collate, num_train)?;
        t.restore(dir)?;
        Ok(t)
    }
}

impl RewardTrainer<ScalarModel> {
    /// Loads a checkpoint written by [`RewardTrainer::save_checkpoint`] (model, optimizer,
    /// position) to continue the run exactly.
    pub fn resume(
        dir: &Path,
        opts: impl Into<LoadOptions>,
        cfg: RewardTrainConfig,
        collate: CollateConfig,
        num_train: usize,
    ) -> Result<Self> {
        let model = ScalarModel::load(dir, opts)?;
        let mut t = RewardTrainer::new(model, cfg, collate, num_train)?;
        t.restore(dir)?;
        Ok(t)
    }
}
