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
    let defaults =
        toml::Value::try_from(T::default()).context("config does not serialize to TOML")?;
    let mut value = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            // Parsed as `T` first for errors that name the line; then merged over the defaults
            // so that a partial sub-table (say `[optimizer]` with `beta2` only) keeps the
            // defaults of `T` for its other keys, not those of the sub-table's own type.
            toml::from_str::<T>(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let file_value: toml::Value =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            merge_toml(defaults, file_value)
        }
        None => defaults,
    };
    if overrides.is_empty() {
        return T::deserialize(value).map_err(|e| anyhow::anyhow!("in the config: {e}"));
    }
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

/// `over` laid over `base`: tables merge key by key (recursively), anything else replaces.
fn merge_toml(base: toml::Value, over: toml::Value) -> toml::Value {
    match (base, over) {
        (toml::Value::Table(mut b), toml::Value::Table(o)) => {
            for (k, v) in o {
                let merged = match b.remove(&k) {
                    Some(old) => merge_toml(old, v),
                    None => v,
                };
                b.insert(k, merged);
            }
            toml::Value::Table(b)
        }
        (_, o) => o,
    }
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

    /// Tidies what a killed run left behind (see [`recover_interrupted_writes`]) and says so on
    /// stderr. Call before resuming.
    pub fn recover(&self, stage: &str) -> anyhow::Result<()> {
        let fixed = recover_interrupted_writes(&self.path)?;
        if !fixed.is_empty() {
            tracing::info!(
                "[{stage}] cleaned up {} temporary file(s) left by an interrupted run",
                fixed.len()
            );
        }
        Ok(())
    }

    /// Drops the `metrics.jsonl` lines of steps after `keep` (logged by an interrupted run after
    /// its last checkpoint, and about to be logged again), and a torn last line.
    pub fn truncate_metrics(&self, keep: u64) -> anyhow::Result<()> {
        truncate_metrics(&self.join("metrics.jsonl"), keep)
    }
}

/// Errors when `dir` exists and holds anything: a new run goes into a new or empty folder, so
/// that its files never mix with (or overwrite) a user's. `flag` names the option in the
/// message (`--out`).
pub fn ensure_no_other_files(dir: &Path, flag: &str) -> anyhow::Result<()> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!(
                "{flag} {} is a file: give a new or empty folder",
                dir.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("{flag} {}", dir.display())),
    };
    if let Some(e) = entries.next() {
        let name = e
            .with_context(|| format!("{flag} {}", dir.display()))?
            .file_name();
        bail!(
            "{flag} {} holds other files ({:?}, ...) and no run: give a new or empty folder, so \
             that the run's files do not mix with them",
            dir.display(),
            name.to_string_lossy()
        );
    }
    Ok(())
}

/// Repairs a directory tree after a process writing into it was killed in the middle of an
/// atomic write (see `rlhf_io::recover_interrupted_writes`, which knows the temporary names of
/// every writer). Returns the paths it removed or restored.
pub fn recover_interrupted_writes(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    rlhf_io::recover_interrupted_writes(dir)
        .map_err(|e| anyhow::anyhow!("cleaning up after an interrupted run: {e}"))
}

/// Keeps the lines of a metrics file whose `step` is at most `keep` (every line of a finished
/// step is written before its checkpoint), dropping later ones and unparsable (torn) lines.
pub fn truncate_metrics(path: &Path, keep: u64) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let step = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
        if step.is_some_and(|s| s <= keep) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if out != text {
        rlhf_model::checkpoint::write_atomic(path, out.as_bytes())?;
    }
    Ok(())
}

/// Progress of long work on stderr: an `indicatif` bar on a terminal; otherwise (logs, CI, pipes)
/// a log line at most once a second, plus the last one.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: u64,
    start: Instant,
    last: Option<Instant>,
    /// An `indicatif` bar when stderr is a terminal (a log line per second otherwise).
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Progress over `total` units of work.
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        use std::io::IsTerminal;
        let label = label.into();
        let bar = (total > 0 && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "[{prefix}] {bar:30} {pos}/{len} {elapsed_precise} eta {eta} {msg}",
            )
            .expect("a valid template");
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar
        });
        Progress {
            label,
            total,
            start: Instant::now(),
            last: None,
            bar,
        }
    }

    /// Reports that `done` units are finished, with a short status (e.g. the loss).
    pub fn update(&mut self, done: u64, status: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(status.to_string());
            if done >= self.total {
                bar.finish();
            }
            return;
        }
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
        tracing::info!(
            "[{}] {done}/{} ({:.0}%) {elapsed:.1}s{eta} {status}",
            self.label,
            self.total,
            100.0 * done as f64 / self.total.max(1) as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_sub_table_keeps_the_configs_own_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("sft.toml");
        // SFT's lr default (1e-4) is not AdamW's own (1e-5): a file that sets only beta2 must
        // keep SFT's lr, and the reward trainer's the same way.
        std::fs::write(&file, "epochs = 2\n[optimizer]\nbeta2 = 0.99\n").unwrap();
        let c: rlhf_sft::SftConfig = load_config(Some(&file), &[]).unwrap();
        let want = rlhf_sft::SftConfig::default().optimizer.lr;
        assert_eq!(
            (c.epochs, c.optimizer.lr, c.optimizer.beta2),
            (2, want, 0.99)
        );
        let c: rlhf_sft::SftConfig = load_config(Some(&file), &["seed=3".into()]).unwrap();
        assert_eq!((c.seed, c.optimizer.lr, c.optimizer.beta2), (3, want, 0.99));
        std::fs::write(&file, "[optimizer]\nbeta1 = 0.8\n").unwrap();
        let c: rlhf_reward::RewardTrainConfig = load_config(Some(&file), &[]).unwrap();
        let want = rlhf_reward::RewardTrainConfig::default().optimizer.lr;
        assert_eq!((c.optimizer.lr, c.optimizer.beta1), (want, 0.8));
        // Errors still name the file's line.
        std::fs::write(&file, "epochs = 2\n[optimizer]\nlr = \"fast\"\n").unwrap();
        let err = load_config::<rlhf_sft::SftConfig>(Some(&file), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("sft.toml"), "{err}");
    }

    #[test]
    fn recovers_what_a_killed_writer_left() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let mk = |rel: &str| {
            let p = d.join(rel);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("config.json"), rel).unwrap();
        };
        // Killed between the two renames: only the moved-aside copy exists.
        mk(".state.old-11");
        std::fs::create_dir_all(d.join(".state.tmp-11")).unwrap();
        // Killed after the swap, before removing the old copy.
        mk("epoch-1");
        mk(".epoch-1.old-11");
        // Half-written files, nested too.
        std::fs::write(d.join(".metrics.jsonl.tmp-11"), "x").unwrap();
        mk("checkpoints/iter-000001/policy");
        std::fs::write(d.join("checkpoints/.latest.json.tmp-11"), "x").unwrap();
        mk("checkpoints/iter-000001/..value.building-3.tmp-3");
        mk(".latest.building-11");
        let fixed = recover_interrupted_writes(d).unwrap();
        assert_eq!(fixed.len(), 7, "{fixed:?}");
        assert_eq!(
            std::fs::read_to_string(d.join("state/config.json")).unwrap(),
            ".state.old-11"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("epoch-1/config.json")).unwrap(),
            "epoch-1"
        );
        assert!(d
            .join("checkpoints/iter-000001/policy/config.json")
            .exists());
        let mut left = vec![];
        let mut stack = vec![d.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap().path();
                if e.file_name().unwrap().to_string_lossy().starts_with('.') {
                    left.push(e.clone());
                }
                if e.is_dir() {
                    stack.push(e);
                }
            }
        }
        assert!(left.is_empty(), "{left:?}");
        assert!(recover_interrupted_writes(d).unwrap().is_empty());
    }

    #[test]
    fn truncates_metrics_after_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("metrics.jsonl");
        std::fs::write(
            &p,
            "{\"step\":1,\"a\":1}\n{\"step\":2,\"a\":2}\n{\"step\":2,\"v\":0}\n{\"step\":3,\"a\":3}\n{\"st",
        )
        .unwrap();
        truncate_metrics(&p, 2).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"step\":1,\"a\":1}\n{\"step\":2,\"a\":2}\n{\"step\":2,\"v\":0}\n"
        );
        truncate_metrics(&p, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
        truncate_metrics(&tmp.path().join("none.jsonl"), 0).unwrap();
    }
}
