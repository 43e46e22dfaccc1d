//! The supervised trainer: SFT on demonstrations and LM pretraining on packed text.

use crate::loss::masked_lm_loss;
use rlhf_data::collate::{collate_sft, CollateConfig, PackedBlocks, SftBatch, TokenizedPair};
use rlhf_data::seed::{mix3 as mix_seed, shuffled};
use rlhf_dist::data_parallel::{self, average_gradients, shard};
use rlhf_dist::{Collective, Single};
use rlhf_model::array::tensor_from;
use rlhf_model::checkpoint::{read_safetensors, safetensors_bytes};
use rlhf_model::train::{AdamW, CosineSchedule, MetricsSink};
use rlhf_model::{CausalLm, Checkpointable, ModelError, Policy, TrainingSwitches};
use serde::{Deserialize, Serialize};

pub use crate::config::{ResidualDropout, SftConfig};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Errors of the supervised trainer.
#[derive(Debug, thiserror::Error)]
pub enum SftError {
    /// From the model (forward, checkpoint IO).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// From collation.
    #[error(transparent)]
    Data(#[from] rlhf_data::Error),
    /// A setting is out of range.
    #[error("invalid SFT config: {0}")]
    Config(String),
    /// A run directory cannot be resumed.
    #[error("cannot resume from {path}: {msg}")]
    Resume {
        /// The state directory.
        path: PathBuf,
        /// Why.
        msg: String,
    },
    /// Writing the trainer state failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error (in the message already, so not also a `source()`: error reports would
        /// print it twice).
        error: std::io::Error,
    },
    /// A collective operation of a data-parallel run failed.
    #[error(transparent)]
    Dist(#[from] rlhf_dist::Error),
    /// The loss became NaN or infinite.
    #[error("the loss is not finite ({loss}) at step {step}: lower the learning rate")]
    NonFinite {
        /// The optimizer step.
        step: u64,
        /// The loss.
        loss: f64,
    },
}

/// Result with [`SftError`].
pub type Result<T, E = SftError> = std::result::Result<T, E>;

/// Training data for the LM loss: demonstrations (the loss covers the response and its EOS)
/// or packed pretraining blocks (the loss covers every real token).
#[derive(Debug, Clone)]
pub enum LmData {
    /// Tokenized (prompt, response) pairs, collated per batch.
    Demonstrations {
        /// The pairs.
        pairs: Vec<TokenizedPair>,
        /// Special tokens and length limits.
        collate: CollateConfig,
    },
    /// Fixed-length blocks of packed text.
    Blocks(PackedBlocks),
}

impl LmData {
    /// Number of sequences.
    pub fn len(&self) -> usize {
        match self {
            LmData::Demonstrations { pairs, .. } => pairs.len(),
            LmData::Blocks(b) => b.num_blocks,
        }
    }

    /// True when there is no sequence.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch of the sequences at `idx`.
    pub fn batch(&self, idx: &[usize]) -> Result<SftBatch> {
        match self {
            LmData::Demonstrations { pairs, collate } => {
                let sel: Vec<TokenizedPair> = idx.iter().map(|&i| pairs[i].clone()).collect();
                Ok(collate_sft(&sel, collate)?)
            }
            LmData::Blocks(b) => {
                let l = b.block_len;
                let mut input_ids = Vec::with_capacity(idx.len() * l);
                let mut attention_mask = Vec::with_capacity(idx.len() * l);
                let mut loss_mask = Vec::with_capacity(idx.len() * l);
                let mut response_lens = Vec::with_capacity(idx.len());
                for &i in idx {
                    input_ids.extend_from_slice(&b.input_ids[i * l..(i + 1) * l]);
                    let m = &b.attention_mask[i * l..(i + 1) * l];
                    attention_mask.extend_from_slice(m);
                    loss_mask.push(0.0);
                    loss_mask.extend(m[1..].iter().map(|&x| x as f32));
                    response_lens.push(m.iter().filter(|&&x| x > 0).count());
                }
                Ok(SftBatch {
                    batch: idx.len(),
                    seq_len: l,
                    input_ids,
                    attention_mask,
                    loss_mask,
                    prompt_lens: vec![0; idx.len()],
                    response_lens,
                })
            }
        }
    }
}

/// An [`SftBatch`] as tensors on `device`: `(input_ids [B, T], attention_mask [B, T],
/// loss_mask [B, T])`.
pub fn batch_tensors(b: &SftBatch, device: Device) -> (Tensor, Tensor, Tensor) {
    (
        tensor_from(b.input_ids_2d(), device),
        tensor_from(b.attention_mask_2d(), device),
        tensor_from(b.loss_mask_2d(), device),
    )
}

/// Token-weighted mean LM loss (nats per trained token) of `policy` on `data`, without grad
/// and without dropout.
pub fn evaluate_loss<P: Policy + ?Sized>(
    policy: &P,
    data: &LmData,
    batch_size: usize,
) -> Result<f64> {
    let _g = tch::no_grad_guard();
    let (mut sum, mut count) = (0.0, 0.0);
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        let b = data.batch(chunk)?;
        let n = b.num_loss_tokens() as f64;
        if n == 0.0 {
            continue;
        }
        let (ids, mask, lm) = batch_tensors(&b, policy.device());
        sum += masked_lm_loss(policy, &ids, &mask, &lm, false)?.double_value(&[]) * n;
        count += n;
    }
    Ok(if count > 0.0 { sum / count } else { f64::NAN })
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss of the epoch's steps.
    pub train_loss: f64,
    /// Validation loss after the epoch, if validation data was given.
    pub valid_loss: Option<f64>,
    /// The selector's score (e.g. mean RM score of greedy answers on validation prompts).
    pub rm_score: Option<f64>,
    /// Optimizer steps taken so far.
    pub step: u64,
}

/// What [`SftTrainer::train`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftReport {
    /// Every epoch, in order.
    pub epochs: Vec<EpochReport>,
    /// 1-based epoch selected (highest RM score if a selector was given, else lowest
    /// validation loss, else the last).
    pub best_epoch: usize,
    /// "rm_score", "valid_loss" or "last".
    pub selected_by: String,
}

/// Trainer state saved beside the model for exact resumption.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    /// Epochs fully done.
    epoch: usize,
    /// Micro-batches of the current epoch already done.
    micro_in_epoch: usize,
    step: u64,
    loss_sum: f64,
    loss_count: f64,
    epochs: Vec<EpochReport>,
    config: SftConfig,
}

const STATE_DIR: &str = "state";
const OPT_FILE: &str = "optimizer.safetensors";
const TRAINER_FILE: &str = "trainer_state.json";

/// A selector scores the model after each epoch (higher is better), e.g. the mean reward of
/// its greedy answers to validation prompts.
pub type Selector<'a, P = CausalLm> = Box<dyn FnMut(&P) -> Result<f64> + 'a>;

/// A progress callback: `(optimizer steps done, total steps, status)`.
pub type ProgressFn<'a> = Box<dyn FnMut(u64, u64, &str) + 'a>;

/// Supervised training of any [`Policy`] (a [`CausalLm`] by default): shuffled epochs, gradient
/// accumulation, AdamW with a cosine schedule, global-norm clipping, validation and checkpoints
/// each epoch, model selection, and exact resumption from its output directory. The model is
/// saved and restored through [`Checkpointable`] and set up through [`TrainingSwitches`], so
/// any architecture implementing them trains and resumes.
pub struct SftTrainer<'a, P = CausalLm> {
    cfg: SftConfig,
    out_dir: Option<PathBuf>,
    metrics: &'a mut dyn MetricsSink,
    selector: Option<Selector<'a, P>>,
    progress: Option<ProgressFn<'a>>,
    stop_after: Option<u64>,
    comm: &'a dyn Collective,
}

impl<'a, P: Policy + Checkpointable + TrainingSwitches> SftTrainer<'a, P> {
    /// A trainer logging to `metrics`. Without [`SftTrainer::output_dir`] nothing is written.
    /// The model type is inferred from [`SftTrainer::train`]'s argument; name it
    /// (`SftTrainer::<CausalLm>::new`) when the trainer is built without being trained.
    pub fn new(cfg: SftConfig, metrics: &'a mut dyn MetricsSink) -> Result<Self> {
        cfg.validate()?;
        Ok(SftTrainer {
            cfg,
            out_dir: None,
            metrics,
            selector: None,
            progress: None,
            stop_after: None,
            comm: &Single,
        })
    }

    /// Stops this invocation once `steps` optimizer steps are done in total (the report then
    /// holds the finished epochs only). Rerunning with the same output directory resumes from
    /// the last saved state: work after it is redone, identically.
    pub fn stop_after(mut self, steps: u64) -> Self {
        self.stop_after = Some(steps);
        self
    }

    /// Writes `epoch-N/` checkpoints, `best/`, and the resumable `state/` here; if `state/`
    /// exists, training resumes from it.
    pub fn output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Selects the best epoch by this score instead of the validation loss.
    pub fn selector(mut self, f: Selector<'a, P>) -> Self {
        self.selector = Some(f);
        self
    }

    /// Trains data-parallel over the ranks of `comm` (default [`Single`]: one process): every
    /// rank starts from rank 0's weights, takes its share of each micro-batch, and the
    /// gradients are averaged before clipping, so `N` ranks end with the weights one process
    /// would (up to float rounding; with dropout each rank draws its own masks). Only rank 0
    /// logs and writes the output directory; every rank resumes from it.
    pub fn collective(mut self, comm: &'a dyn Collective) -> Self {
        self.comm = comm;
        self
    }

    /// Reports progress after each optimizer step.
    pub fn progress(mut self, f: ProgressFn<'a>) -> Self {
        self.progress = Some(f);
        self
    }

    /// Trains `model` on `train`, validating on `valid` after each epoch.
    ///
    /// On the CPU this calls [`rlhf_model::train::retain_freed_memory`]: from then on the
    /// process keeps freed memory for reuse (faster steps, resident size stays at its peak).
    pub fn train(
        &mut self,
        model: &mut P,
        train: &LmData,
        valid: Option<&LmData>,
    ) -> Result<SftReport> {
        if train.is_empty() {
            return Err(SftError::Config("the training set is empty".into()));
        }
        let cfg = self.cfg.clone();
        if Policy::device(model) == Device::Cpu {
            // Each step frees and reallocates the same large buffers: reuse them instead of
            // faulting fresh pages in (see `retain_freed_memory`).
            rlhf_model::train::retain_freed_memory();
        }
        if let Some(p) = cfg
            .residual_dropout
            .rate_for(model.pretrained_with_dropout())
        {
            model.set_residual_dropout(p)?;
        }
        model.set_autocast(cfg.bf16_autocast.then_some(Kind::BFloat16))?;
        let micro_per_epoch = train.len().div_ceil(cfg.batch_size);
        let steps_per_epoch = micro_per_epoch.div_ceil(cfg.grad_accum_steps) as u64;
        let total_steps = steps_per_epoch * cfg.epochs as u64;
        let schedule = CosineSchedule {
            peak_lr: cfg.optimizer.lr,
            warmup_steps: cfg.warmup_steps.min(total_steps / 2),
            total_steps,
            min_lr_ratio: cfg.min_lr_ratio,
        };
        let mut opt = AdamW::new(model.var_store(), &cfg.optimizer)?;
        let mut st = TrainerState {
            epoch: 0,
            micro_in_epoch: 0,
            step: 0,
            loss_sum: 0.0,
            loss_count: 0.0,
            epochs: vec![],
            config: cfg.clone(),
        };
        if let Some(dir) = &self.out_dir {
            if let Some(state_dir) = saved_state(&dir.join(STATE_DIR)) {
                st = self.resume(&state_dir, model, &mut opt)?;
            }
        }
        let comm = self.comm;
        let root = comm.is_root();
        let start = serde_json::to_vec(&(&cfg, train.len())).expect("config serializes");
        data_parallel::start(comm, "SFT config and data size", &start, model.var_store())?;
        let t0 = Instant::now();
        while st.epoch < cfg.epochs {
            let order = epoch_order(train.len(), cfg.seed, st.epoch);
            let micro: Vec<&[usize]> = order.chunks(cfg.batch_size).collect();
            let mut i = st.micro_in_epoch;
            while i < micro.len() {
                let end = (i + cfg.grad_accum_steps).min(micro.len());
                let step_loss = step_gradients(
                    &*model,
                    &mut opt,
                    train,
                    &micro[i..end],
                    &cfg,
                    st.step,
                    comm,
                )?;
                if !step_loss.is_finite() {
                    return Err(SftError::NonFinite {
                        step: st.step,
                        loss: step_loss,
                    });
                }
                let grad_norm = match cfg.max_grad_norm {
                    Some(max) => opt.clip_grad_norm(max),
                    None => rlhf_model::train::global_grad_norm(model.var_store()),
                };
                let lr = schedule.lr(st.step);
                opt.set_lr(lr);
                opt.step();
                st.step += 1;
                st.loss_sum += step_loss;
                st.loss_count += 1.0;
                i = end;
                st.micro_in_epoch = i;
                let mut m = serde_json::Map::new();
                m.insert("loss/train".into(), json!(step_loss));
                m.insert("lr".into(), json!(lr));
                m.insert("grad_norm".into(), json!(grad_norm));
                m.insert(
                    "epoch".into(),
                    json!(st.epoch as f64 + i as f64 / micro.len() as f64),
                );
                m.insert("time/elapsed".into(), json!(t0.elapsed().as_secs_f64()));
                if root {
                    self.metrics.log(st.step, &m)?;
                }
                if let (true, Some(p)) = (root, self.progress.as_mut()) {
                    p(
                        st.step,
                        total_steps,
                        &format!("epoch {} loss {step_loss:.4}", st.epoch + 1),
                    );
                }
                if let (Some(every), Some(dir), true) = (cfg.save_every_steps, &self.out_dir, root)
                {
                    if st.step % every == 0 && i < micro.len() {
                        save_state(model, &opt, &st, &dir.join(STATE_DIR))?;
                    }
                }
                if self.stop_after.is_some_and(|n| st.step >= n) {
                    model.set_autocast(None)?;
                    let (best_epoch, selected_by) =
                        select_best(&st.epochs, self.selector.is_some());
                    return Ok(SftReport {
                        epochs: st.epochs,
                        best_epoch,
                        selected_by,
                    });
                }
            }
            // End of epoch: validation, selection score, checkpoints.
            data_parallel::ensure_in_sync(comm, model.var_store())?;
            let valid_loss = valid
                .map(|v| evaluate_loss(&*model, v, cfg.eval_batch_size))
                .transpose()?;
            let rm_score = match self.selector.as_mut() {
                Some(f) => Some(f(model)?),
                None => None,
            };
            let report = EpochReport {
                epoch: st.epoch + 1,
                train_loss: st.loss_sum / st.loss_count.max(1.0),
                valid_loss,
                rm_score,
                step: st.step,
            };
            let mut m = serde_json::Map::new();
            m.insert("epoch".into(), json!(report.epoch));
            m.insert("loss/train_epoch".into(), json!(report.train_loss));
            if let Some(v) = valid_loss {
                m.insert("loss/valid".into(), json!(v));
            }
            if let Some(r) = rm_score {
                m.insert("eval/rm_score".into(), json!(r));
            }
            if root {
                self.metrics.log(st.step, &m)?;
            }
            let improved = is_better(&report, &st.epochs, self.selector.is_some());
            st.epochs.push(report);
            st.epoch += 1;
            st.micro_in_epoch = 0;
            st.loss_sum = 0.0;
            st.loss_count = 0.0;
            model.meta_mut().step = st.step;
            model
                .meta_mut()
                .extra
                .insert("epoch".into(), json!(st.epoch));
            if let (Some(dir), true) = (&self.out_dir, root) {
                model.save_dir(&dir.join(format!("epoch-{}", st.epoch)))?;
                if improved {
                    model.save_dir(&dir.join("best"))?;
                }
                save_state(model, &opt, &st, &dir.join(STATE_DIR))?;
            }
        }
        model.set_autocast(None)?;
        let (best_epoch, selected_by) = select_best(&st.epochs, self.selector.is_some());
        Ok(SftReport {
            epochs: st.epochs,
            best_epoch,
            selected_by,
        })
    }

    fn resume(&self, state_dir: &Path, model: &mut P, opt: &mut AdamW) -> Result<TrainerState> {
        let dir = state_dir.to_path_buf();
        let text =
            std::fs::read_to_string(dir.join(TRAINER_FILE)).map_err(|e| SftError::Resume {
                path: dir.clone(),
                msg: format!("{TRAINER_FILE}: {e}"),
            })?;
        let st: TrainerState = serde_json::from_str(&text).map_err(|e| SftError::Resume {
            path: dir.clone(),
            msg: format!("{TRAINER_FILE}: {e}"),
        })?;
        if st.config != self.cfg {
            return Err(SftError::Resume {
                path: dir,
                msg: "the run was started with another config; use a new output directory or \
                      the same settings"
                    .into(),
            });
        }
        model.restore_from(&dir)?;
        opt.load_state(&read_safetensors(&dir.join(OPT_FILE))?)?;
        Ok(st)
    }
}

/// The forward and backward passes of one optimizer step over `micro` (this rank's share of
/// each micro-batch), leaving the step's gradient, averaged over the ranks, in the model's
/// variables; returns the step's loss. Each micro-batch's loss is the token-weighted mean over
/// all ranks' tokens, so `N` ranks compute the gradient one process would.
fn step_gradients<P: Policy>(
    model: &P,
    opt: &mut AdamW,
    train: &LmData,
    micro: &[&[usize]],
    cfg: &SftConfig,
    step: u64,
    comm: &dyn Collective,
) -> Result<f64> {
    let (rank, world) = (comm.rank(), comm.world_size());
    let device = Policy::device(model);
    let mut step_loss = 0.0;
    for (j, idx) in micro.iter().enumerate() {
        // Dropout draws from libtorch's generator: seed it per micro-batch (and rank) so that a
        // resumed run sees the same masks.
        tch::manual_seed(mix_seed(cfg.seed, step, j as u64 | (rank as u64) << 32) as i64);
        let share = shard(idx.len(), rank, world);
        // A rank without a share of a tiny micro-batch runs one row with weight 0, so that its
        // gradients exist for the all-reduce.
        let rows = if share.is_empty() {
            &idx[..1]
        } else {
            &idx[share.clone()]
        };
        let b = train.batch(rows)?;
        let (ids, mask, lm) = batch_tensors(&b, device);
        let mut loss = masked_lm_loss(model, &ids, &mask, &lm, true)? / micro.len() as f64;
        if world > 1 {
            let t = lm.size()[1];
            let mine = if share.is_empty() {
                0.0
            } else {
                lm.narrow(1, 1, t - 1)
                    .ne(0)
                    .sum(Kind::Float)
                    .double_value(&[])
            };
            let mut all = [mine];
            comm.all_reduce_sum_f64(&mut all)?;
            loss *= mine * world as f64 / all[0].max(1.0);
        }
        if j == 0 {
            // zero_grad + backward, without filling and accumulating passes.
            opt.zero_grad_backward(&loss)?;
        } else {
            loss.backward();
        }
        step_loss += loss.double_value(&[]);
    }
    if world > 1 {
        let mut l = [step_loss];
        comm.all_reduce_sum_f64(&mut l)?;
        step_loss = l[0] / world as f64;
        average_gradients(comm, model.var_store())?;
    }
    Ok(step_loss)
}

/// The resumable state directory: `dir` when it holds the trainer's file, else the complete
/// copy an interrupted atomic write left moved aside; `None` when there is none. Found by the
/// trainer's own file, so any model format works.
fn saved_state(dir: &Path) -> Option<PathBuf> {
    let complete = |d: &Path| d.join(TRAINER_FILE).exists();
    if complete(dir) {
        return Some(dir.to_path_buf());
    }
    rlhf_io::moved_aside(dir, complete)
}

fn save_state<P: Checkpointable>(
    model: &P,
    opt: &AdamW,
    st: &TrainerState,
    dir: &Path,
) -> Result<()> {
    let opt_bytes = safetensors_bytes(&opt.state())?;
    let st_bytes = serde_json::to_vec_pretty(st).expect("trainer state serializes");
    model.save_with_extras(dir, vec![(OPT_FILE, opt_bytes), (TRAINER_FILE, st_bytes)])?;
    Ok(())
}

fn is_better(r: &EpochReport, prev: &[EpochReport], by_rm: bool) -> bool {
    let key = |e: &EpochReport| {
        if by_rm {
            e.rm_score.map(|s| -s)
        } else {
            e.valid_loss
        }
    };
    match key(r) {
        None => true,
        Some(k) => prev.iter().filter_map(key).all(|p| k < p),
    }
}

fn select_best(epochs: &[EpochReport], by_rm: bool) -> (usize, String) {
    let mut best = epochs.len();
    let mut by = "last";
    let mut best_key = f64::INFINITY;
    for e in epochs {
        let k = if by_rm {
            e.rm_score.map(|s| -s)
        } else {
            e.valid_loss
        };
        if let Some(k) = k {
            by = if by_rm { "rm_score" } else { "valid_loss" };
            if k < best_key {
                best_key = k;
                best = e.epoch;
            }
        }
    }
    (best, by.to_string())
}

/// The shuffled order of an epoch: a function of (seed, epoch) only.
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    shuffled(n, mix_seed(seed, epoch as u64, 0x5f7))
}
