//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `rlhf-ppo`. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum PpoError {
    /// A configuration value is out of range or inconsistent with another.
    #[error("invalid PPO config: {0}")]
    Config(String),
    /// A tensor or batch given to the trainer has the wrong shape, size or content.
    #[error("bad input: {0}")]
    Input(String),
    /// A model failed (forward pass, generation, checkpoint IO).
    #[error(transparent)]
    Model(#[from] rlhf_model::ModelError),
    /// A collective operation of a data-parallel run failed.
    #[error(transparent)]
    Dist(#[from] rlhf_dist::Error),
    /// Reading or collating data failed.
    #[error(transparent)]
    Data(#[from] rlhf_data::Error),
    /// An error reported by libtorch.
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
    /// A saved trainer state cannot be restored (missing, damaged, or made for other settings
    /// or other models).
    #[error("cannot resume from {path}: {msg}")]
    Resume {
        /// The state directory or file.
        path: PathBuf,
        /// Why, and what to do.
        msg: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message already, so not also a `source()`: error
        /// reports would print it twice).
        error: std::io::Error,
    },
}

/// Not `#[from]`: that would also make the libtorch error the `source()`, and error reports
/// (`anyhow`'s) would print its message, often long, twice.
impl From<tch::TchError> for PpoError {
    fn from(e: tch::TchError) -> Self {
        PpoError::Torch(e)
    }
}

/// Result with [`PpoError`].
pub type Result<T, E = PpoError> = std::result::Result<T, E>;

pub(crate) fn config_err(msg: impl Into<String>) -> PpoError {
    PpoError::Config(msg.into())
}

pub(crate) fn input_err(msg: impl Into<String>) -> PpoError {
    PpoError::Input(msg.into())
}
