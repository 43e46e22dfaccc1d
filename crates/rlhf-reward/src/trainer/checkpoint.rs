//! Where a reward run's checkpoints are and how they are written: the trainer's state, and the newest checkpoint.

use super::*;

/// Reads `trainer_state.json` of a checkpoint.
pub fn read_state(dir: &Path) -> Result<TrainState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| RewardError::state(&path, e))?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| RewardError::state(&path, e))?;
    if let Some(config) = value.get_mut("config") {
        super::config::migrate_flat_optimizer_keys(config);
    }
    serde_json::from_value(value).map_err(|e| RewardError::state(&path, e))
}

/// The resumable checkpoint of a run directory with the most optimizer steps (among
/// `epoch-N/` and `latest/`), or `None` if there is none.
pub fn latest_checkpoint(run_dir: &Path) -> Result<Option<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return Ok(None);
    };
    let mut best: Option<(u64, PathBuf)> = None;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !(name.starts_with("epoch-") || name == "latest") {
            continue;
        }
        let Ok(dir) = rlhf_model::checkpoint::resolve_dir(&e.path()) else {
            continue;
        };
        if let Ok(state) = read_state(&dir) {
            if best.as_ref().is_none_or(|(s, _)| state.step > *s) {
                best = Some((state.step, e.path()));
            }
        }
    }
    Ok(best.map(|(_, p)| p))
}
