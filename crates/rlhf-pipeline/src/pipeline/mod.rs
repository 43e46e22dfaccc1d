//! InstructGPT in miniature on the toy world: data (split by user) -> pretrain a base model ->
//! SFT -> K-wise rankings of SFT samples by simulated labelers -> reward model -> PPO and
//! PPO-ptx -> evaluation on held-out users' prompts.
//!
//! Every stage writes its own run directory under the pipeline's output directory and a
//! `done.json` when finished; a rerun skips finished stages and resumes the unfinished one.
//!
//! Under `mpirun -np N` ([`run_on`]), the training stages (pretraining, SFT, the RM, PPO and
//! PPO-ptx) are data-parallel over the ranks; rank 0 alone does the rest (rankings, labeler
//! calibration, evaluation) and writes every file, and the other ranks read what it wrote, so
//! the run directory must be on a file system every rank sees.

use crate::run::RunDir;
use crate::stage::train_lm;
use anyhow::Context;
use rlhf_data::collate::{CollateConfig, Collator};
use rlhf_data::hygiene::{cap_per_user, dedup_prompts, split_by_user, DedupConfig, PiiScrubber};
use rlhf_data::records::{write_jsonl, Demonstration, PromptRecord, Ranking};
use rlhf_dist::Collective;
use rlhf_model::{CausalLm, Gpt2Config, Policy, Tokenizer};
use rlhf_sft::{evaluate_loss, LmData, ResidualDropout, SftConfig};
use rlhf_toy::eval::{
    answers, conduct_stats, kl_to_reference, mean_gold, win_rate, ConductStats, EvalPrompts,
};
use rlhf_toy::{
    toy_tokenizer, LabelerConfig, LabelerPool, ToyConfig, ToyPrompt, ToyWorld, TOY_EOS_ID,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

mod data;
mod eval;
mod larger;
mod lm;
mod ppo;
mod rm;

pub use data::*;
pub use eval::*;
pub use larger::*;
pub use lm::*;
pub use ppo::*;
pub use rm::*;

/// Shape of the base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelShape {
    /// Transformer blocks. Default 2.
    pub n_layer: i64,
    /// Attention heads. Default 4.
    pub n_head: i64,
    /// Width. Default 128.
    pub n_embd: i64,
    /// Context length. Default 128.
    pub n_positions: i64,
}

impl Default for ModelShape {
    fn default() -> Self {
        ModelShape {
            n_layer: 2,
            n_head: 4,
            n_embd: 128,
            n_positions: 128,
        }
    }
}

/// Everything the pipeline does, with defaults that run on a 2-core CPU in minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Seed of the whole run.
    pub seed: u64,
    /// The toy world's sizes.
    pub world: ToyConfig,
    /// Simulated labelers: the training group is calibrated to the paper's 73% agreement and
    /// the held-out group (which judges the evaluation) to 77%, both on comparisons of the SFT
    /// model's own samples on `labelers.calibration_prompts` training prompts.
    pub labelers: LabelerConfig,
    /// Prompts per user kept (the paper's cap: 200).
    pub max_prompts_per_user: usize,
    /// Fraction of (training) users held out for validation.
    pub valid_fraction: f64,
    /// Base model shape.
    pub model: ModelShape,
    /// Tokens per packed pretraining block.
    pub block_len: usize,
    /// Pretraining.
    pub pretrain: SftConfig,
    /// Supervised fine-tuning.
    pub sft: SftConfig,
    /// Training prompts whose SFT samples the labelers rank for the RM.
    pub rm_prompts: usize,
    /// Validation prompts ranked to measure the RM's held-out accuracy.
    pub rm_valid_prompts: usize,
    /// Fewest and most responses ranked per prompt (the paper: 4..9).
    pub rm_k: (usize, usize),
    /// Sampling temperature of the SFT samples that are ranked.
    pub rm_sample_temperature: f64,
    /// Reward-model training.
    pub rm: rlhf_reward::RewardTrainConfig,
    /// PPO settings (shared by PPO and PPO-ptx, except `ptx_coef`).
    pub ppo: rlhf_ppo::PpoConfig,
    /// PPO iterations per run.
    pub ppo_iterations: u64,
    /// Every N PPO iterations (and after the last), the policy's sampled answers to
    /// `ppo_eval_prompts` fixed validation prompts (training users' validation split) are
    /// scored with the gold score and logged as `eval/gold` (0 = never). Default 5.
    pub ppo_eval_every: u64,
    /// Validation prompts of that check. Default 128.
    pub ppo_eval_prompts: usize,
    /// gamma_ptx of the PPO-ptx run (plain PPO uses 0).
    pub ptx_coef: f64,
    /// A PPO stage saves a resumable checkpoint every N iterations (0 = never; a killed stage
    /// then starts over, with the same result). Default 10.
    pub ppo_save_every: u64,
    /// Rounds of the paper's iteration. Round 1 trains the RM on rankings of SFT samples, then
    /// PPO and PPO-ptx; each later round has the labelers rank samples of the previous round's
    /// PPO-ptx policy, retrains the RM (from the SFT model) on all rankings so far, and trains a
    /// new PPO-ptx policy from SFT against it (reported as `ppo_ptx_r2`, ...). The last
    /// round's PPO-ptx policy is the run's final policy (`final_policy` in the report).
    /// Default 2: chosen on validation data (`docs/results.md`, "How the defaults were chosen"; a
    /// small gain, within noise on the held-out prompts). A second round's RM also sees
    /// rankings of answers without habits, which differ mostly in correctness (at the default
    /// size it barely learns to judge them: `docs/results.md`). `rounds = 1` saves about 1.5 minutes.
    pub rounds: u64,
    /// Held-out prompts evaluated.
    pub eval_prompts: usize,
    /// How the table's answers are decoded: `false` (default) samples at temperature 1, the
    /// distribution PPO optimizes and the KL is measured on (one sample per prompt, fixed
    /// seed); `true` decodes greedily. `gold_score_greedy` is reported either way.
    pub eval_greedy: bool,
    /// Tokens generated per answer.
    pub max_new_tokens: i64,
    /// Prompts per generation batch.
    pub gen_batch: usize,
    /// LoRA adapters instead of full fine-tuning in SFT, the RM and PPO (`[lora]`: r,
    /// lora_alpha, lora_dropout, target_modules; absent by default). SFT trains adapters on the
    /// pretrained model and exports the merged SFT model (`sft/merged/`), which every later
    /// stage starts from; the RM trains adapters and its head on it; PPO trains adapters on the
    /// policy (its reference is the same weights with adapters off) and on the value function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<rlhf_model::LoraConfig>,
}

impl PipelineConfig {
    /// The resolved config of a pipeline run directory (its `config.toml`), for tools that
    /// work on a finished run; the error names the file.
    pub fn from_run(run: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let path = run.join("config.toml");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {}: is {} a pipeline run directory?",
                path.display(),
                run.display()
            )
        })?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a pipeline config", path.display()))
    }

    /// The SFT model of a run in directory `run` made with this config: `sft/best`, or with
    /// LoRA the merged model `sft/merged` (what every later stage starts from and the table
    /// compares with).
    pub fn sft_dir(&self, run: &Path) -> PathBuf {
        run.join(if self.lora.is_some() {
            "sft/merged"
        } else {
            "sft/best"
        })
    }

    /// Checks every setting before any work starts, naming the key to change (a bad value
    /// found only when its stage comes would cost the minutes of the stages before it).
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::{bail, Context as _};
        let positive = |key: &str, v: u64| -> anyhow::Result<()> {
            if v == 0 {
                bail!("{key} is 0: expected at least 1");
            }
            Ok(())
        };
        positive("rounds", self.rounds)?;
        positive("ppo_iterations", self.ppo_iterations)?;
        positive("eval_prompts", self.eval_prompts as u64)?;
        positive("rm_prompts", self.rm_prompts as u64)?;
        positive("rm_valid_prompts", self.rm_valid_prompts as u64)?;
        positive("gen_batch", self.gen_batch as u64)?;
        positive("max_prompts_per_user", self.max_prompts_per_user as u64)?;
        if self.max_new_tokens < 1 {
            bail!(
                "max_new_tokens is {}: expected at least 1",
                self.max_new_tokens
            );
        }
        let (min_k, max_k) = self.rm_k;
        if min_k < 2 || min_k > max_k {
            bail!(
                "rm_k is [{min_k}, {max_k}]: expected [fewest, most] responses per ranking with \
                 2 <= fewest <= most (the paper: [4, 9])"
            );
        }
        if !(self.valid_fraction > 0.0 && self.valid_fraction < 1.0) {
            bail!(
                "valid_fraction is {}: expected a share in (0, 1) (the RM's held-out accuracy \
                 and the PPO evaluation need validation users)",
                self.valid_fraction
            );
        }
        if !(self.ptx_coef >= 0.0 && self.ptx_coef.is_finite()) {
            bail!(
                "ptx_coef is {}: expected a finite value >= 0",
                self.ptx_coef
            );
        }
        if !(self.rm_sample_temperature > 0.0 && self.rm_sample_temperature.is_finite()) {
            bail!(
                "rm_sample_temperature is {}: expected a finite value > 0",
                self.rm_sample_temperature
            );
        }
        let m = &self.model;
        if m.n_layer < 1 || m.n_head < 1 || m.n_embd < 1 || m.n_embd % m.n_head != 0 {
            bail!(
                "model: n_layer {}, n_head {}, n_embd {}: expected positive sizes with n_embd a \
                 multiple of n_head",
                m.n_layer,
                m.n_head,
                m.n_embd
            );
        }
        if self.block_len < 2 || self.block_len as i64 > m.n_positions {
            bail!(
                "block_len is {}: expected 2 to model.n_positions ({})",
                self.block_len,
                m.n_positions
            );
        }
        let longest = self.sft.max_prompt_tokens as i64
            + self.max_new_tokens.max(self.sft.max_response_tokens as i64);
        if longest > m.n_positions {
            bail!(
                "sft.max_prompt_tokens ({}) + the longest answer (max_new_tokens {}, \
                 sft.max_response_tokens {}) is {longest} tokens, more than model.n_positions \
                 ({}): lower them or raise model.n_positions",
                self.sft.max_prompt_tokens,
                self.max_new_tokens,
                self.sft.max_response_tokens,
                m.n_positions
            );
        }
        self.world.validate().context("world")?;
        self.labelers.validate().context("labelers")?;
        self.pretrain.validate().context("pretrain")?;
        self.sft.validate().context("sft")?;
        self.rm.validate().context("rm")?;
        self.ppo.validate().context("ppo")?;
        Ok(())
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            seed: 0,
            // Ten times the toy world's default: ~7,600 SFT demonstrations and 40,000
            // pretraining documents, enough for the 2x128 model to learn most task kinds (SFT
            // greedy gold 0.65, against 0.39 with the default world).
            world: ToyConfig {
                num_users: 4000,
                heldout_users: 400,
                pretrain_docs: 40_000,
                ..ToyConfig::default()
            },
            labelers: LabelerConfig::default(),
            max_prompts_per_user: 200,
            valid_fraction: 0.1,
            model: ModelShape::default(),
            block_len: 64,
            pretrain: SftConfig {
                epochs: 3,
                batch_size: 32,
                warmup_steps: 20,
                residual_dropout: ResidualDropout::Off,
                optimizer: rlhf_model::train::AdamWConfig {
                    lr: 3e-3,
                    weight_decay: 0.01,
                    ..Default::default()
                },
                ..Default::default()
            },
            sft: SftConfig {
                epochs: 4,
                batch_size: 32,
                warmup_steps: 10,
                residual_dropout: ResidualDropout::Rate(0.1),
                max_prompt_tokens: 64,
                max_response_tokens: 32,
                optimizer: rlhf_model::train::AdamWConfig {
                    lr: 1e-3,
                    ..Default::default()
                },
                ..Default::default()
            },
            rm_prompts: 3000,
            rm_valid_prompts: 150,
            rm_k: (4, 9),
            rm_sample_temperature: 1.0,
            rm: rlhf_reward::RewardTrainConfig {
                epochs: 2,
                optimizer: rlhf_model::train::AdamWConfig {
                    lr: 1e-3,
                    ..Default::default()
                },
                batch_prompts: 16,
                ..Default::default()
            },
            ppo: rlhf_ppo::PpoConfig {
                batch_size: 64,
                minibatch_size: 32,
                ppo_epochs: 2,
                max_new_tokens: 24,
                kl_coef: 0.1,
                // The RM is normalized to mean 0 and standard deviation 1 on the demonstrations,
                // so scores and returns have a fixed scale: no reward whitening, and the critic
                // (initialized from the RM on that scale) predicts returns in the same units.
                whiten_rewards: false,
                // An answer cut off at max_new_tokens costs one RM standard deviation.
                no_eos_penalty: Some(1.0),
                // Critic-only first iterations, with a higher critic lr: the value function
                // starts from the RM, whose per-token outputs are not values yet.
                value_warmup_iterations: 5,
                policy_optimizer: rlhf_model::train::AdamWConfig {
                    lr: 1e-4,
                    ..Default::default()
                },
                value_optimizer: rlhf_model::train::AdamWConfig {
                    lr: 1e-3,
                    ..Default::default()
                },
                ..Default::default()
            },
            ppo_iterations: 30,
            ppo_eval_every: 5,
            ppo_eval_prompts: 128,
            // Chosen on validation prompts with the training labelers (seeds 0-2: PPO-ptx's win
            // rate against SFT 0.689 at 0.05, 0.688 at 0.1, 0.683 at 0.2; within noise, and
            // every setting keeps the pretraining loss below SFT's): see `docs/results.md`.
            ptx_coef: 0.05,
            ppo_save_every: 10,
            rounds: 2,
            eval_prompts: 1000,
            eval_greedy: false,
            max_new_tokens: 24,
            gen_batch: 64,
            lora: None,
        }
    }
}

/// The InstructGPT-style table (also `report.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    /// Win rate against SFT on held-out users' prompts, judged by simulated labelers.
    pub win_rate_vs_sft: BTreeMap<String, f64>,
    /// Mean gold score of the answers (sampled, or greedy with `eval_greedy`).
    pub gold_score: BTreeMap<String, f64>,
    /// Mean gold score of greedy answers.
    #[serde(default)]
    pub gold_score_greedy: BTreeMap<String, f64>,
    /// KL to the SFT model of sampled answers (nats per answer).
    pub kl_to_sft: BTreeMap<String, f64>,
    /// LM loss on held-out pretraining text (the alignment tax).
    pub pretrain_loss: BTreeMap<String, f64>,
    /// Per model: mean correctness and the shares of answers with a filler, a sign-off, and
    /// (among `answer only :` prompts) a broken constraint: where the gold score comes from.
    #[serde(default)]
    pub conduct: BTreeMap<String, ConductStats>,
    /// Measured agreement of two training labelers on the pipeline's comparisons (rankings of
    /// SFT samples on training prompts; the paper: 72.6%).
    #[serde(default)]
    pub labeler_agreement: Option<f64>,
    /// Measured agreement of two held-out labelers on the same comparisons (the paper: 77.3%).
    #[serde(default)]
    pub heldout_labeler_agreement: Option<f64>,
    /// Reward model's held-out pairwise accuracy against the labelers.
    pub rm_accuracy: Option<f64>,
    /// The accuracy a perfect gold-score model reaches against the same labelers.
    pub rm_accuracy_ceiling: Option<f64>,
    /// With `rounds > 1`: the RM's held-out accuracy in each round (`round-1`, `round-2`, ...),
    /// on rankings of that round's samples.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rm_accuracy_by_round: BTreeMap<String, f64>,
    /// With `rounds > 1`: the noise ceiling of each round's held-out rankings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rm_accuracy_ceiling_by_round: BTreeMap<String, f64>,
    /// Wall-clock seconds per stage and in total, over every process that ran the run (a
    /// resumed run adds its own time to what earlier ones recorded in `timings.json`).
    pub seconds: BTreeMap<String, f64>,
    /// Processes the run was trained with (`mpirun -np N`; 1 otherwise).
    #[serde(default = "one")]
    pub world_size: usize,
    /// The run's final policy: the last round's PPO-ptx (`ppo_ptx` with one round,
    /// `ppo_ptx_rN` with N), the model the paper would ship.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_policy: Option<String>,
}

fn one() -> usize {
    1
}

fn stage_done(dir: &Path) -> bool {
    dir.join("done.json").exists()
}

fn mark_done(dir: &Path, info: serde_json::Value) -> anyhow::Result<()> {
    rlhf_model::checkpoint::write_atomic(&dir.join("done.json"), info.to_string().as_bytes())?;
    Ok(())
}

/// Runs `f` on rank 0, which writes the stage's files, then (after a barrier) on the other
/// ranks, which find the stage done and read them.
fn root_first<T>(
    comm: &dyn Collective,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if comm.world_size() == 1 {
        return f();
    }
    if comm.is_root() {
        let r = with_node_cores(comm, &mut f)?;
        comm.barrier()?;
        Ok(r)
    } else {
        comm.barrier()?;
        f()
    }
}

/// Runs `f` with libtorch's threads on all of this machine's cores, then restores the rank's
/// share: for work rank 0 does alone while the other ranks wait (their barrier sleeps).
fn with_node_cores<T>(comm: &dyn Collective, f: impl FnOnce() -> T) -> T {
    if comm.world_size() == 1 {
        return f();
    }
    let share = tch::get_num_threads();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tch::set_num_threads(cores as i32);
    let r = f();
    tch::set_num_threads(share);
    r
}

/// Opens (rank 0: creates and tidies after a kill) a stage's run directory; the other ranks
/// wait for it.
fn open_stage_dir(dir: &Path, stage: &str, comm: &dyn Collective) -> anyhow::Result<RunDir> {
    let run = if comm.is_root() {
        let run = RunDir::open(dir)?;
        run.recover(stage)?;
        Some(run)
    } else {
        None
    };
    comm.barrier()?;
    Ok(run.unwrap_or_else(|| RunDir {
        path: dir.to_path_buf(),
    }))
}

/// Rank 0 marks a stage done; every rank returns after it has.
fn finish_stage(dir: &Path, info: serde_json::Value, comm: &dyn Collective) -> anyhow::Result<()> {
    if comm.is_root() {
        mark_done(dir, info)?;
    }
    comm.barrier()?;
    Ok(())
}

/// The device of this rank: `RLHF_DEVICE` (see [`crate::stage_device`]); under mpirun, `cuda`
/// is the GPU of the rank's local rank (one rank per GPU).
pub fn rank_device(comm: &dyn Collective) -> anyhow::Result<tch::Device> {
    Ok(match crate::stage_device()? {
        tch::Device::Cuda(_) if comm.world_size() > 1 => tch::Device::Cuda(comm.local_rank()),
        d => d,
    })
}

/// Runs the pipeline into `out` (resuming finished stages) in this process.
pub fn run(cfg: &PipelineConfig, out: &Path) -> anyhow::Result<PipelineReport> {
    run_on(cfg, out, Rc::new(rlhf_dist::Single))?
        .context("a single process is rank 0 and has the report")
}

/// Wall-clock seconds per stage, kept in `timings.json` of the run directory so that a resumed
/// run reports what each stage took over every process that ran it (a process killed in a
/// stage loses that stage's unfinished part), not the near-zero time of skipping a finished one.
struct StageClock {
    /// `timings.json` (rank 0 only writes it).
    path: Option<PathBuf>,
    /// Seconds recorded by earlier processes, stage by stage, and `total`.
    prior: BTreeMap<String, f64>,
    /// This process's start, and the total recorded before it.
    t0: Instant,
    total_before: f64,
}

impl StageClock {
    fn open(out: &Path, root: bool) -> Self {
        let path = out.join("timings.json");
        let prior: BTreeMap<String, f64> = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(
                    "[pipeline] {} is not valid ({e}): stage times start from 0",
                    path.display()
                );
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        StageClock {
            total_before: prior.get("total").copied().unwrap_or(0.0),
            path: root.then_some(path),
            prior,
            t0: Instant::now(),
        }
    }

    /// Adds the time since `t` to stage `name` (and the process's time to `total`), in the
    /// report and in `timings.json`.
    fn record(&mut self, name: &str, t: Instant, report: &mut PipelineReport) {
        let secs = self.prior.get(name).copied().unwrap_or(0.0) + t.elapsed().as_secs_f64();
        self.prior.insert(name.to_string(), secs);
        let total = self.total_before + self.t0.elapsed().as_secs_f64();
        self.prior.insert("total".into(), total);
        report.seconds = self.prior.clone();
        if let Some(path) = &self.path {
            let text = serde_json::to_string_pretty(&self.prior).unwrap_or_default();
            if let Err(e) = rlhf_model::checkpoint::write_atomic(path, text.as_bytes()) {
                tracing::warn!("[pipeline] warning: {} not written: {e}", path.display());
            }
        }
    }
}

/// A JSON value as `a.b.c` keys (nested objects flattened; arrays and scalars are leaves):
/// how a config's settings are compared and listed.
pub fn flatten_json(v: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, v: &serde_json::Value, into: &mut BTreeMap<String, serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, into);
                }
            }
            other => {
                into.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

/// Keys a rerun may change in an existing run directory: they only decide which rounds run
/// and how the (always repeated) evaluation is done.
const RERUN_MAY_CHANGE: [&str; 3] = ["rounds", "eval_prompts", "eval_greedy"];

/// A rerun into an existing run directory resumes it, so its config must be the run's: stages
/// that the run finished are not redone, and a changed setting would silently not apply to
/// them while `config.toml` claimed it did. The error lists the keys that differ.
fn check_resumable(cfg: &PipelineConfig, out: &Path) -> anyhow::Result<()> {
    let settings = |c: &PipelineConfig| -> anyhow::Result<BTreeMap<String, String>> {
        Ok(flatten_json(&serde_json::to_value(c)?)
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect())
    };
    let old = PipelineConfig::from_run(out)?;
    let (a, b) = (settings(&old)?, settings(cfg)?);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let none = "(unset)".to_string();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| !RERUN_MAY_CHANGE.contains(&k.as_str()))
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "{k}: {} -> {}",
                a.get(k).unwrap_or(&none),
                b.get(k).unwrap_or(&none)
            )
        })
        .collect();
    if !changed.is_empty() {
        anyhow::bail!(
            "{} holds a pipeline run with another config ({}): a rerun resumes the run and would \
             not redo the stages it finished. Give a new --out, or rerun with the run's own \
             config ({}) to resume it; only {} may change between reruns",
            out.display(),
            changed.join(", "),
            out.join("config.toml").display(),
            RERUN_MAY_CHANGE.join(", ")
        );
    }
    Ok(())
}

/// [`run`] as one rank of a data-parallel job (`comm` from `rlhf_dist::init_for_devices`): every rank
/// calls it with the same config and `out`; the training stages split each batch across the
/// ranks, rank 0 does the rest and writes every file. Returns the report on rank 0, `None` on
/// the others. An error on one rank leaves the others waiting for it: with several ranks,
/// treat it as fatal and end the job with [`Collective::abort`], as the `pipeline` binary does.
pub fn run_on(
    cfg: &PipelineConfig,
    out: &Path,
    comm: Rc<dyn Collective>,
) -> anyhow::Result<Option<PipelineReport>> {
    cfg.validate().context("invalid pipeline config")?;
    let root = comm.is_root();
    comm.ensure_same(
        "pipeline config",
        toml::to_string(cfg)
            .context("serializing the pipeline config")?
            .as_bytes(),
    )?;
    if root {
        if out.join("config.toml").exists() {
            check_resumable(cfg, out)?;
        } else {
            crate::run::ensure_no_other_files(out, "--out")?;
        }
        std::fs::create_dir_all(out)?;
        RunDir::open(out)?.write_config(cfg)?;
    }
    let mut report = PipelineReport {
        world_size: comm.world_size(),
        ..Default::default()
    };
    let mut clock = StageClock::open(out, root);
    let mut timed = |name: &str, t: Instant, report: &mut PipelineReport| {
        clock.record(name, t, report);
    };
    let t = Instant::now();
    let data = prepare_data_on(cfg, out, root)?;
    timed("data", t, &mut report);
    let t = Instant::now();
    let base_dir = pretrain_stage_on(cfg, &data, out, &*comm)?;
    timed("pretrain", t, &mut report);
    let t = Instant::now();
    let sft_dir = sft_stage_on(cfg, &data, &base_dir, out, &*comm)?;
    timed("sft", t, &mut report);
    let t = Instant::now();
    let labelers = root_first(&*comm, || labeler_stage(cfg, &data, &sft_dir, out))?;
    report.labeler_agreement = Some(labelers.agreement);
    report.heldout_labeler_agreement = Some(labelers.heldout_agreement);
    timed("labelers", t, &mut report);
    let t = Instant::now();
    let (rm_dir, acc, ceiling) = rm_stage_in(
        cfg,
        &data,
        &labelers.train,
        &sft_dir,
        &sft_dir,
        &[],
        &out.join("rm"),
        1,
        &comm,
    )?;
    report.rm_accuracy = Some(acc);
    report.rm_accuracy_ceiling = Some(ceiling);
    timed("rm", t, &mut report);
    let t = Instant::now();
    let ppo_dir = ppo_stage_on(cfg, &data, &sft_dir, &rm_dir, out, "ppo", 0.0, &comm)?;
    timed("ppo", t, &mut report);
    let t = Instant::now();
    let ptx_dir = ppo_stage_on(
        cfg,
        &data,
        &sft_dir,
        &rm_dir,
        out,
        "ppo_ptx",
        cfg.ptx_coef,
        &comm,
    )?;
    timed("ppo_ptx", t, &mut report);
    let mut policies = vec![
        ("ppo".to_string(), ppo_dir),
        ("ppo_ptx".to_string(), ptx_dir.clone()),
    ];
    if cfg.rounds > 1 {
        report.rm_accuracy_by_round.insert("round-1".into(), acc);
        report
            .rm_accuracy_ceiling_by_round
            .insert("round-1".into(), ceiling);
    }
    let mut earlier = vec![out.join("rm")];
    let mut current = ptx_dir;
    for round in 2..=cfg.rounds {
        let rdir = out.join(format!("round-{round}"));
        tracing::info!(
            "[pipeline] round {round}/{}: rankings of the current policy, new RM, new PPO-ptx",
            cfg.rounds
        );
        let t = Instant::now();
        let (rm_r, acc_r, ceil_r) = rm_stage_in(
            cfg,
            &data,
            &labelers.train,
            &sft_dir,
            &current,
            &earlier,
            &rdir.join("rm"),
            round,
            &comm,
        )?;
        timed(&format!("rm_r{round}"), t, &mut report);
        report
            .rm_accuracy_by_round
            .insert(format!("round-{round}"), acc_r);
        report
            .rm_accuracy_ceiling_by_round
            .insert(format!("round-{round}"), ceil_r);
        let t = Instant::now();
        let ptx_r = ppo_stage_on(
            cfg,
            &data,
            &sft_dir,
            &rm_r,
            &rdir,
            "ppo_ptx",
            cfg.ptx_coef,
            &comm,
        )?;
        timed(&format!("ppo_ptx_r{round}"), t, &mut report);
        earlier.push(rdir.join("rm"));
        policies.push((format!("ppo_ptx_r{round}"), ptx_r.clone()));
        current = ptx_r;
    }
    report.final_policy = policies.last().map(|(name, _)| name.clone());
    if !root {
        // Rank 0 evaluates and writes the report; the others wait (without spinning).
        comm.barrier()?;
        return Ok(None);
    }
    let report = with_node_cores(&*comm, || {
        evaluate_and_report(
            cfg,
            out,
            &data,
            &labelers,
            (&base_dir, &sft_dir),
            &policies,
            &*comm,
            report,
            &mut clock,
        )
    })?;
    comm.barrier()?;
    Ok(Some(report))
}

/// Rank 0's end of [`run_on`]: the evaluation, `report.json`, `report.md` and the plots.
#[allow(clippy::too_many_arguments)]
fn evaluate_and_report(
    cfg: &PipelineConfig,
    out: &Path,
    data: &PipelineData,
    labelers: &Labelers,
    (base_dir, sft_dir): (&Path, &Path),
    policies: &[(String, PathBuf)],
    comm: &dyn Collective,
    mut report: PipelineReport,
    clock: &mut StageClock,
) -> anyhow::Result<PipelineReport> {
    let t = Instant::now();
    let device = rank_device(comm)?;
    let base = CausalLm::load(base_dir, device)?;
    let sft = CausalLm::load(sft_dir, device)?;
    let loaded: Vec<(String, CausalLm)> = policies
        .iter()
        .map(|(n, d)| Ok((n.clone(), CausalLm::load(d, device)?)))
        .collect::<anyhow::Result<_>>()?;
    let mut models: Vec<(&str, &CausalLm)> = vec![("base", &base), ("sft", &sft)];
    models.extend(loaded.iter().map(|(n, m)| (n.as_str(), m)));
    let judged = evaluate_models(cfg, data, &labelers.heldout, &models, &sft, &mut report)?;
    clock.record("evaluate", t, &mut report);
    let text = serde_json::to_string_pretty(&report)?;
    rlhf_model::checkpoint::write_atomic(&out.join("report.json"), text.as_bytes())?;
    let md = report.to_markdown() + &judged.to_markdown(3);
    rlhf_model::checkpoint::write_atomic(&out.join("report.md"), md.as_bytes())?;
    rlhf_model::checkpoint::write_atomic(&out.join("answers.jsonl"), judged.to_jsonl().as_bytes())?;
    match crate::plot::pipeline_plots(out, &report) {
        Ok(files) => tracing::info!(
            "[pipeline] {} plots written (summary in {})",
            files.len(),
            out.join("plots").display()
        ),
        Err(e) => tracing::warn!("[pipeline] warning: plots not written: {e:#}"),
    }
    Ok(report)
}

impl PipelineReport {
    /// The evaluated models in table order: base, sft, ppo, ppo_ptx, then later rounds.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["base", "sft", "ppo", "ppo_ptx"]
            .iter()
            .map(|s| s.to_string())
            .filter(|n| self.gold_score.contains_key(n))
            .collect();
        let mut rest: Vec<(u64, String)> = self
            .gold_score
            .keys()
            .filter(|k| !names.contains(k))
            .map(|k| {
                let r = k
                    .rsplit("_r")
                    .next()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(u64::MAX);
                (r, k.clone())
            })
            .collect();
        rest.sort();
        names.extend(rest.into_iter().map(|(_, k)| k));
        names
    }

    /// The InstructGPT-style table as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut md = String::from(
            "# rlhf pipeline report\n\nHeld-out users' prompts; win rate against SFT judged by the simulated labelers \
             (ties count half) and gold = mean programmatic score, both of answers sampled at temperature 1 (greedy \
             with `eval_greedy = true`); gold (greedy) of greedy answers; KL to SFT in nats per answer; \
             pretrain loss on held-out pretraining text (the alignment tax).\n\n\
             Correctness = gold of the answer without its habit words and penalties; filler, sign-off = share of \
             answers with one; broken = share of `answer only :` prompts whose answer has either.\n\n\
             | model | win rate vs SFT | gold score | gold (greedy) | KL to SFT | pretrain loss | correctness | filler | sign-off | broken |\n|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for name in self.model_names() {
            let name = name.as_str();
            if let Some(g) = self.gold_score.get(name) {
                let greedy = self
                    .gold_score_greedy
                    .get(name)
                    .map_or("-".to_string(), |x| format!("{x:.3}"));
                let c = self.conduct.get(name).copied().unwrap_or_default();
                md.push_str(&format!(
                    "| {name} | {:.3} | {g:.3} | {greedy} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                    self.win_rate_vs_sft[name], self.kl_to_sft[name], self.pretrain_loss[name],
                    c.correctness, c.filler, c.sign_off, c.broken_constraint
                ));
            }
        }
        if let Some(f) = &self.final_policy {
            if let Some(w) = self.win_rate_vs_sft.get(f) {
                md.push_str(&format!(
                    "\nFinal policy (the last round's PPO-ptx): {f}, win rate vs SFT {w:.3}.\n"
                ));
            }
        }
        if let (Some(a), Some(h)) = (self.labeler_agreement, self.heldout_labeler_agreement) {
            md.push_str(&format!("\nLabeler agreement on the pipeline's comparisons: training labelers {a:.3}, held-out labelers {h:.3} (the held-out group judges the win rates).\n"));
        }
        if let (Some(a), Some(c)) = (self.rm_accuracy, self.rm_accuracy_ceiling) {
            md.push_str(&format!("\nReward model held-out accuracy: {a:.3} (noise ceiling of the labelers: {c:.3}).\n"));
        }
        for (round, a) in &self.rm_accuracy_by_round {
            let c = self
                .rm_accuracy_ceiling_by_round
                .get(round)
                .copied()
                .unwrap_or(f64::NAN);
            md.push_str(&format!("- {round}: RM accuracy {a:.3} (ceiling {c:.3})\n"));
        }
        md.push_str(
            "\nSeconds per stage over every process that ran the run (`timings.json`; a resumed \
             run adds its own time).\n\n| stage | seconds |\n|---|---|\n",
        );
        for (k, v) in &self.seconds {
            md.push_str(&format!("| {k} | {v:.1} |\n"));
        }
        md
    }
}
