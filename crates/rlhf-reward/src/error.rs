//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `rlhf-reward`. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    /// A model, checkpoint or optimizer error from `rlhf-model`.
    #[error(transparent)]
    Model(#[from] rlhf_model::ModelError),
    /// A data error from `rlhf-data` (bad JSONL line, tokenizer, collation).
    #[error(transparent)]
    Data(#[from] rlhf_data::Error),
    /// A configuration value is out of range or inconsistent.
    #[error("invalid reward-model config: {0}")]
    Config(String),
    /// An argument (rankings, scores, batch) does not have the expected form.
    #[error("bad input: {0}")]
    Input(String),
    /// A run-state file could not be read or written.
    #[error("{path}: {msg}")]
    State {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An error reported by libtorch.
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
    /// A collective operation of a data-parallel run failed.
    #[error(transparent)]
    Dist(#[from] rlhf_dist::Error),
}

/// Not `#[from]`: that would also make the libtorch error the `source()`, and error reports
/// (`anyhow`'s) would print its message, often long, twice.
impl From<tch::TchError> for RewardError {
    fn from(e: tch::TchError) -> Self {
        RewardError::Torch(e)
    }
}

/// Result with [`RewardError`].
pub type Result<T, E = RewardError> = std::result::Result<T, E>;

impl RewardError {
    pub(crate) fn state(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        RewardError::State {
            path: path.into(),
            msg: msg.to_string(),
        }
    }
}

impl From<rlhf_io::Error> for RewardError {
    fn from(e: rlhf_io::Error) -> Self {
        RewardError::state(e.path, e.source)
    }
}
