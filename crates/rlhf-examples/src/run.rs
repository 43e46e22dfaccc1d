//! What every stage binary shares: TOML configs with defaults and `--set key=value` overrides,
//! run directories (resolved config, metrics.jsonl, checkpoints), and progress on stderr.

use anyhow::{bail, Context};
use rlhf_model::train::JsonlMetrics;
use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Loads a config: the type's defaults, then the TOML file (if given), then each
/// `key=value` override (`value` in TOML syntax, or a bare string; dotted keys reach nested
/// tables). Unknown keys and wrong types are errors naming the key (and the file's line).
///
/// `T` should be `#[serde(default, deny_unknown_fields)]`.
pub fn load_config<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    overrides: &[String],
) -> anyhow::Result<T> {
    let cfg: T = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => T::default(),
    };
    if overrides.is_empty() {
        return Ok(cfg);
    }
    let mut value = toml::Value::try_from(&cfg).context("config does not serialize to TOML")?;
    for ov in overrides {
        let Some((key, raw)) = ov.split_once('=') else {
            bail!("override {ov:?} is not key=value (e.g. --set lr=1e-4)");
        };
        let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let mut slot = &mut value;
        let parts: Vec<&str> = key.trim().split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let table = slot.as_table_mut().with_context(|| {
                format!("override {key}: {} is not a table", parts[..i].join("."))
            })?;
            if i + 1 == parts.len() {
                table.insert(part.to_string(), parsed.clone());
                break;
            }
            slot = table
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()));
        }
    }
    T::deserialize(value).map_err(|e| anyhow::anyhow!("in --set overrides: {e}"))
}

/// A run directory: `config.toml` (the resolved config), `metrics.jsonl`, checkpoints.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The directory.
    pub path: PathBuf,
}

impl RunDir {
    /// Creates the directory (or reuses it, to resume).
    pub fn open(path: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let path = path.into();
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create run directory {}", path.display()))?;
        Ok(RunDir { path })
    }

    /// A fresh directory `runs/<stage>-<unix seconds>` when none is given.
    pub fn default_for(stage: &str) -> PathBuf {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("runs").join(format!("{stage}-{secs}"))
    }

    /// Writes the resolved config as `config.toml` (atomically).
    pub fn write_config<T: Serialize>(&self, cfg: &T) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(cfg).context("config does not serialize to TOML")?;
        rlhf_model::checkpoint::write_atomic(&self.path.join("config.toml"), text.as_bytes())?;
        Ok(())
    }

    /// The `metrics.jsonl` sink (appending, so a resumed run continues the file).
    pub fn metrics(&self) -> anyhow::Result<JsonlMetrics> {
        Ok(JsonlMetrics::append(self.path.join("metrics.jsonl"))?)
    }

    /// A path inside the run directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

/// Progress of long work on stderr: at most one line a second, plus the last one.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: u64,
    start: Instant,
    last: Option<Instant>,
}

impl Progress {
    /// Progress over `total` units of work.
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        Progress {
            label: label.into(),
            total,
            start: Instant::now(),
            last: None,
        }
    }

    /// Reports that `done` units are finished, with a short status (e.g. the loss).
    pub fn update(&mut self, done: u64, status: &str) {
        let now = Instant::now();
        let due = self.last.is_none_or(|t| now - t >= Duration::from_secs(1));
        if !due && done < self.total {
            return;
        }
        self.last = Some(now);
        let elapsed = (now - self.start).as_secs_f64();
        let eta = if done > 0 && done < self.total {
            format!(
                ", eta {:.0}s",
                elapsed / done as f64 * (self.total - done) as f64
            )
        } else {
            String::new()
        };
        eprintln!(
            "[{}] {done}/{} ({:.0}%) {elapsed:.1}s{eta} {status}",
            self.label,
            self.total,
            100.0 * done as f64 / self.total.max(1) as f64
        );
    }
}
