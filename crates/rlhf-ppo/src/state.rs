//! What a resumed PPO run needs besides the weights of the policy and the value function:
//! [`PpoState`], and the directory it is saved in.
//!
//! Everything else an iteration depends on is a function of `(config, iteration)`: the
//! sampler's seed, the minibatch shuffles, the learning-rate warmup, and (in the `ppo` binary
//! and the pipeline) the prompts of the iteration ([`crate::data::prompt_indices`]). PPO runs
//! every forward pass with dropout off, so libtorch's global generator is never drawn from.
//! The pretraining batches of PPO-ptx come from a [`crate::PtxSource`] the caller owns; a
//! [`crate::PackedPtx`] resumes with [`crate::PackedPtx::set_position`].
//!
//! A state directory holds
//!
//! * `trainer_state.json`: format version, iterations completed, the KL coefficient (also as
//!   its IEEE bits, so that it is restored exactly), the optimizer step counts and the
//!   [`PpoConfig`];
//! * `policy_optimizer.safetensors`, `value_optimizer.safetensors`: the AdamW moments of each
//!   trained variable and the step count ([`rlhf_model::train::AdamW::state`]).
//!
//! It is written whole into a temporary sibling and renamed into place
//! ([`rlhf_model::checkpoint::write_dir_atomic`]).

use crate::config::PpoConfig;
use crate::error::{PpoError, Result};
use rlhf_model::checkpoint::{read_safetensors, safetensors_bytes, write_dir_atomic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The trainer's own file in a state directory.
pub const STATE_FILE: &str = "trainer_state.json";
/// The policy's AdamW state.
pub const POLICY_OPTIMIZER_FILE: &str = "policy_optimizer.safetensors";
/// The value function's AdamW state.
pub const VALUE_OPTIMIZER_FILE: &str = "value_optimizer.safetensors";
/// Version of the state directory's layout.
pub const STATE_FORMAT: u32 = 1;

/// The trainer's state besides the model weights: with the weights of the policy and the
/// value function at the same iteration, a fresh [`crate::PpoTrainer`] given this state
/// continues exactly as the original would have (see [`crate::PpoTrainer::restore`]).
#[derive(Debug)]
pub struct PpoState {
    /// Iterations completed.
    pub iteration: u64,
    /// The KL coefficient beta for the next iteration (the controller's state).
    pub kl_coef: f64,
    /// The settings the run was made with; restoring under other settings is refused.
    pub config: PpoConfig,
    /// The policy's AdamW state (`step`, `m.<variable>`, `v.<variable>`).
    pub policy_optimizer: BTreeMap<String, Tensor>,
    /// The value function's AdamW state.
    pub value_optimizer: BTreeMap<String, Tensor>,
}

/// `trainer_state.json`.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    format: u32,
    iteration: u64,
    kl_coef: f64,
    /// `kl_coef.to_bits()`: the exact value, whatever a JSON reader does with decimals.
    kl_coef_bits: u64,
    policy_optimizer_steps: u64,
    value_optimizer_steps: u64,
    config: PpoConfig,
}

fn resume_err(path: &Path, msg: impl Into<String>) -> PpoError {
    PpoError::Resume {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn opt_steps(state: &BTreeMap<String, Tensor>) -> u64 {
    state
        .get("step")
        .map_or(0, |t| t.int64_value(&[0]).max(0) as u64)
}

/// Writes a state directory from its parts (the tensors may be shallow views of live
/// optimizer state: they are serialized before this returns).
pub(crate) fn write_state_dir(
    dir: &Path,
    iteration: u64,
    kl_coef: f64,
    config: &PpoConfig,
    policy_optimizer: &[(String, Tensor)],
    value_optimizer: &[(String, Tensor)],
) -> Result<()> {
    let steps = |v: &[(String, Tensor)]| {
        v.iter()
            .find(|(k, _)| k == "step")
            .map_or(0, |(_, t)| t.int64_value(&[0]).max(0) as u64)
    };
    let file = StateFile {
        format: STATE_FORMAT,
        iteration,
        kl_coef,
        kl_coef_bits: kl_coef.to_bits(),
        policy_optimizer_steps: steps(policy_optimizer),
        value_optimizer_steps: steps(value_optimizer),
        config: config.clone(),
    };
    let json = serde_json::to_vec_pretty(&file).expect("the trainer state serializes");
    write_dir_atomic(
        dir,
        &[
            (STATE_FILE, json),
            (POLICY_OPTIMIZER_FILE, safetensors_bytes(policy_optimizer)?),
            (VALUE_OPTIMIZER_FILE, safetensors_bytes(value_optimizer)?),
        ],
    )?;
    Ok(())
}

/// `dir` itself, or (after a crash between the two renames of `write_dir_atomic`) the complete
/// copy that was moved aside.
fn resolve_state_dir(dir: &Path) -> Result<PathBuf> {
    if dir.join(STATE_FILE).exists() {
        return Ok(dir.to_path_buf());
    }
    if let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let prefix = format!(".{}.old-", name.to_string_lossy());
        if let Ok(entries) = std::fs::read_dir(parent) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix)
                    && e.path().join(STATE_FILE).exists()
                {
                    return Ok(e.path());
                }
            }
        }
    }
    Err(resume_err(
        dir,
        if dir.exists() {
            format!("no {STATE_FILE}: not a PPO trainer state directory")
        } else {
            "no such directory".to_string()
        },
    ))
}

impl PpoState {
    /// Saves the state as a directory (atomically; an existing one is replaced).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let v = |m: &BTreeMap<String, Tensor>| -> Vec<(String, Tensor)> {
            m.iter()
                .map(|(k, t)| (k.clone(), t.shallow_clone()))
                .collect()
        };
        write_state_dir(
            dir.as_ref(),
            self.iteration,
            self.kl_coef,
            &self.config,
            &v(&self.policy_optimizer),
            &v(&self.value_optimizer),
        )
    }

    /// Reads a state directory written by [`PpoState::save`] or
    /// [`crate::PpoTrainer::save_state`]. The tensors are on the CPU.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = resolve_state_dir(dir.as_ref())?;
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| PpoError::Io {
            path: path.clone(),
            error: e,
        })?;
        let file: StateFile = serde_json::from_str(&text)
            .map_err(|e| resume_err(&path, format!("not a PPO trainer state: {e}")))?;
        if file.format != STATE_FORMAT {
            return Err(resume_err(
                &path,
                format!(
                    "state format {} is not the {STATE_FORMAT} this version reads",
                    file.format
                ),
            ));
        }
        let policy_optimizer = read_safetensors(&dir.join(POLICY_OPTIMIZER_FILE))?;
        let value_optimizer = read_safetensors(&dir.join(VALUE_OPTIMIZER_FILE))?;
        for (name, opt, want) in [
            (
                POLICY_OPTIMIZER_FILE,
                &policy_optimizer,
                file.policy_optimizer_steps,
            ),
            (
                VALUE_OPTIMIZER_FILE,
                &value_optimizer,
                file.value_optimizer_steps,
            ),
        ] {
            if opt_steps(opt) != want {
                return Err(resume_err(
                    &dir,
                    format!(
                        "{name} holds step {} but {STATE_FILE} says {want}: the directory mixes \
                         two saves",
                        opt_steps(opt)
                    ),
                ));
            }
        }
        Ok(PpoState {
            iteration: file.iteration,
            kl_coef: f64::from_bits(file.kl_coef_bits),
            config: file.config,
            policy_optimizer,
            value_optimizer,
        })
    }
}

/// The config keys (dotted paths) whose values differ between `a` and `b`.
pub(crate) fn config_differences(a: &PpoConfig, b: &PpoConfig) -> Vec<String> {
    fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    match (x.get(k), y.get(k)) {
                        (Some(u), Some(v)) => walk(&key, u, v, out),
                        _ => out.push(key),
                    }
                }
            }
            _ if a != b => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let to = |c: &PpoConfig| serde_json::to_value(c).expect("the config serializes");
    let mut out = vec![];
    walk("", &to(a), &to(b), &mut out);
    out
}
