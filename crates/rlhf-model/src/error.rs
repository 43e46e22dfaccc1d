//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `rlhf-model`. Each variant says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error (in the message already, so not also a `source()`: error
        /// reports would print it twice).
        error: std::io::Error,
    },
    /// A JSON file (config.json, rlhf.json) is malformed or has a field of the wrong type.
    #[error("{path}: {msg}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column when serde knows them.
        msg: String,
    },
    /// A configuration value (of a model, an optimizer or a training switch) is out of range or
    /// inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A checkpoint directory is incomplete, of the wrong kind, or does not match the config.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        msg: String,
    },
    /// The tokenizer could not be loaded, saved or used.
    #[error("tokenizer {path}: {msg}")]
    Tokenizer {
        /// The tokenizer.json (or `"<memory>"`).
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// A tensor argument has the wrong shape, dtype or device.
    #[error("bad input: {0}")]
    Input(String),
    /// An error reported by libtorch.
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
}

/// Not `#[from]`: that would also make the libtorch error the `source()`, and error reports
/// (`anyhow`'s) would print its message, often long, twice.
impl From<tch::TchError> for ModelError {
    fn from(e: tch::TchError) -> Self {
        ModelError::Torch(e)
    }
}

/// Result with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            error,
        }
    }
    pub(crate) fn ckpt(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        ModelError::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

impl From<rlhf_io::Error> for ModelError {
    fn from(e: rlhf_io::Error) -> Self {
        ModelError::io(e.path, e.source)
    }
}
