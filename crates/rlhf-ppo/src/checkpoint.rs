//! One checkpoint layout for PPO runs, used by the `ppo` binary and the pipeline alike:
//!
//! ```text
//! RUN/checkpoints/latest.json          {"iteration": N, "dir": "iter-NNNNNN"}
//! RUN/checkpoints/iter-NNNNNN/policy/  the policy (its own checkpoint layout; with LoRA,
//!                                      base + PEFT adapter files)
//! RUN/checkpoints/iter-NNNNNN/value/   the value function
//! RUN/checkpoints/iter-NNNNNN/trainer/ the trainer's state ([`crate::state`]: AdamW moments,
//!                                      KL coefficient, iteration, settings)
//! RUN/checkpoints/iter-NNNNNN/state.json  {"iteration", "kl_coef", "ptx_position"}
//! ```
//!
//! Every part is written atomically and `latest.json` moves only once all parts are complete,
//! so a process killed at any moment leaves the previous checkpoint intact and named.
//! [`PpoCheckpoints::latest`] also reads the layout the pipeline wrote before this module
//! (`RUN/latest.json` naming `RUN/ckpt-NNNNNN/`), so those runs resume too.

use crate::error::{PpoError, Result};
use crate::trainer::PpoTrainer;
use rlhf_model::checkpoint::write_atomic;
use rlhf_model::{Checkpointable, Policy, RewardModel, SaveDir, ValueFunction};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The trainer's state inside a checkpoint.
pub const TRAINER_DIR: &str = "trainer";
/// The checkpoints' folder in a run directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// `state.json`: what a checkpoint remembers beyond the models and the trainer's own state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Iterations completed.
    pub iteration: u64,
    /// The KL coefficient for the next iteration.
    pub kl_coef: f64,
    /// Pretraining blocks the PPO-ptx source has handed out (0 without PPO-ptx).
    pub ptx_position: u64,
}

/// `checkpoints/latest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Latest {
    iteration: u64,
    dir: String,
}

/// The pipeline's `latest.json` before this module (in the stage directory itself).
#[derive(Debug, Deserialize)]
struct LegacyLatest {
    iteration: u64,
    dir: String,
    ptx_position: u64,
}

/// The newest complete checkpoint of a run.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The checkpoint directory (`policy/`, `value/`, `trainer/` inside).
    pub dir: PathBuf,
    /// Its `state.json`.
    pub state: CheckpointState,
}

impl Checkpoint {
    /// The policy's checkpoint directory.
    pub fn policy(&self) -> PathBuf {
        self.dir.join("policy")
    }

    /// The value function's checkpoint directory.
    pub fn value(&self) -> PathBuf {
        self.dir.join("value")
    }

    /// The trainer's state directory (absent in checkpoints of old versions of the `ppo`
    /// binary).
    pub fn trainer(&self) -> PathBuf {
        self.dir.join(TRAINER_DIR)
    }

    /// Loads the policy's and the value function's weights of this checkpoint into the given
    /// models, in place, through [`Checkpointable::restore_from`] (so any architecture that
    /// implements it resumes; call it before building the trainer, or before
    /// [`Checkpoint::restore`]).
    pub fn restore_models<P, V>(&self, policy: &mut P, value: &mut V) -> Result<()>
    where
        P: Checkpointable + ?Sized,
        V: Checkpointable + ?Sized,
    {
        policy.restore_from(&self.policy())?;
        value.restore_from(&self.value())?;
        Ok(())
    }

    /// Restores the trainer's state from [`Checkpoint::trainer`] and checks it against
    /// `state.json`. A checkpoint without a trainer state (old `ppo` versions) restores the
    /// iteration and the KL coefficient only, and says so in the returned warning.
    pub fn restore<P, R, M, V>(
        &self,
        trainer: &mut PpoTrainer<P, R, M, V>,
    ) -> Result<Option<String>>
    where
        P: Policy,
        R: Policy,
        M: RewardModel,
        V: ValueFunction,
    {
        let dir = self.trainer();
        if !dir.exists() {
            trainer.set_iteration(self.state.iteration);
            trainer.set_kl_coef(self.state.kl_coef);
            return Ok(Some(format!(
                "{} has no {TRAINER_DIR}/ (written by an older version): the AdamW moments \
                 start afresh, so the run will not match an uninterrupted one",
                self.dir.display()
            )));
        }
        trainer.load_state(&dir)?;
        if trainer.iteration() != self.state.iteration {
            return Err(PpoError::Resume {
                path: self.dir.clone(),
                msg: format!(
                    "state.json says iteration {} but {TRAINER_DIR}/ says {}: the checkpoint \
                     is damaged; delete it (and point latest.json at an older one)",
                    self.state.iteration,
                    trainer.iteration()
                ),
            });
        }
        Ok(None)
    }
}

/// The checkpoints of one PPO run directory.
#[derive(Debug, Clone)]
pub struct PpoCheckpoints {
    run: PathBuf,
}

fn pretty<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("JSON serializes")
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| PpoError::Io {
        path: path.to_path_buf(),
        error: e,
    })?;
    serde_json::from_str(&text).map_err(|e| PpoError::Resume {
        path: path.to_path_buf(),
        msg: format!("not valid JSON ({e}): the file is damaged; delete the checkpoint"),
    })
}

impl PpoCheckpoints {
    /// The checkpoints of the run in `run` (nothing is created until the first save).
    pub fn new(run: impl Into<PathBuf>) -> Self {
        PpoCheckpoints { run: run.into() }
    }

    /// `RUN/checkpoints`.
    pub fn root(&self) -> PathBuf {
        self.run.join(CHECKPOINTS_DIR)
    }

    /// The newest complete checkpoint, if any.
    pub fn latest(&self) -> Result<Option<Checkpoint>> {
        let path = self.root().join("latest.json");
        if path.exists() {
            let l: Latest = read_json(&path)?;
            let dir = self.root().join(&l.dir);
            let state: CheckpointState = read_json(&dir.join("state.json"))?;
            if state.iteration != l.iteration {
                return Err(PpoError::Resume {
                    path: dir,
                    msg: format!(
                        "latest.json names iteration {} but state.json says {}",
                        l.iteration, state.iteration
                    ),
                });
            }
            return Ok(Some(Checkpoint { dir, state }));
        }
        // The pipeline's layout before this module.
        let legacy = self.run.join("latest.json");
        if legacy.exists() {
            let l: LegacyLatest = read_json(&legacy)?;
            let dir = self.run.join(&l.dir);
            let kl_coef = crate::state::PpoState::load(dir.join(TRAINER_DIR))
                .map(|s| s.kl_coef)
                .map_err(|e| PpoError::Resume {
                    path: dir.clone(),
                    msg: format!("a checkpoint of the older pipeline layout: {e}"),
                })?;
            return Ok(Some(Checkpoint {
                dir,
                state: CheckpointState {
                    iteration: l.iteration,
                    kl_coef,
                    ptx_position: l.ptx_position,
                },
            }));
        }
        Ok(None)
    }

    /// Saves the policy, the value function and the trainer's state as
    /// `checkpoints/iter-NNNNNN/` (each atomically), then points `latest.json` at it, then
    /// deletes the oldest checkpoints beyond `keep` (at least 1; the legacy `ckpt-*` ones too).
    pub fn save<P, R, M, V>(
        &self,
        trainer: &PpoTrainer<P, R, M, V>,
        ptx_position: u64,
        keep: usize,
    ) -> Result<Checkpoint>
    where
        P: Policy + SaveDir,
        R: Policy,
        M: RewardModel,
        V: ValueFunction + SaveDir,
    {
        let it = trainer.iteration();
        let name = format!("iter-{it:06}");
        let dir = self.root().join(&name);
        let io = |path: &Path, e| PpoError::Io {
            path: path.to_path_buf(),
            error: e,
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let models = trainer.models();
        models.policy.save_dir(&dir.join("policy"))?;
        models.value.save_dir(&dir.join("value"))?;
        trainer.save_state(dir.join(TRAINER_DIR))?;
        let state = CheckpointState {
            iteration: it,
            kl_coef: trainer.kl_coef(),
            ptx_position,
        };
        write_atomic(&dir.join("state.json"), pretty(&state).as_bytes())?;
        let latest = Latest {
            iteration: it,
            dir: name,
        };
        write_atomic(&self.root().join("latest.json"), pretty(&latest).as_bytes())?;
        let legacy = self.run.join("latest.json");
        if legacy.exists() {
            std::fs::remove_file(&legacy).map_err(|e| io(&legacy, e))?;
        }
        let mut olds: Vec<PathBuf> = std::fs::read_dir(self.root())
            .map_err(|e| io(&self.root(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("iter-"))
            })
            .collect();
        olds.sort();
        while olds.len() > keep.max(1) {
            let p = olds.remove(0);
            std::fs::remove_dir_all(&p).map_err(|e| io(&p, e))?;
        }
        for e in std::fs::read_dir(&self.run)
            .map_err(|e| io(&self.run, e))?
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with("ckpt-") && e.path().is_dir() {
                std::fs::remove_dir_all(e.path()).map_err(|err| io(&e.path(), err))?;
            }
        }
        Ok(Checkpoint { dir, state })
    }
}
