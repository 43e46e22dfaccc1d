//! Optimizer pieces shared by every trainer: AdamW with weight-decay groups, the cosine
//! schedule with warmup, and the global gradient norm.

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Tensor};

/// Optimizer group of weight matrices (weight decay applies).
pub const DECAY_GROUP: usize = 0;
/// Optimizer group of biases and LayerNorm parameters (never decayed).
pub const NO_DECAY_GROUP: usize = 1;
/// Optimizer group of token and position embeddings (decayed only if asked).
pub const EMBEDDING_GROUP: usize = 2;

/// AdamW settings. Defaults: lr 1e-5, betas (0.9, 0.95), eps 1e-8, weight decay 0.0 on weight
/// matrices, none on biases, norms and embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Peak learning rate (default 1e-5).
    pub lr: f64,
    /// First-moment decay (default 0.9).
    pub beta1: f64,
    /// Second-moment decay (default 0.95).
    pub beta2: f64,
    /// Denominator epsilon (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay of weight matrices (default 0.0).
    pub weight_decay: f64,
    /// Also decay the embeddings (default false).
    pub decay_embeddings: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-5,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
            decay_embeddings: false,
        }
    }
}

impl AdamWConfig {
    /// Checks ranges, naming the key to change.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(ModelError::Config(format!(
                "lr must be positive, got {}",
                self.lr
            )));
        }
        for (k, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(ModelError::Config(format!(
                    "{k} must be in [0, 1), got {b}"
                )));
            }
        }
        if self.eps <= 0.0 || self.weight_decay < 0.0 {
            return Err(ModelError::Config(
                "eps must be positive and weight_decay non-negative".into(),
            ));
        }
        Ok(())
    }

    /// Builds AdamW over the trainable variables of `vs` with the decay groups applied.
    pub fn build(&self, vs: &nn::VarStore) -> Result<nn::Optimizer> {
        self.validate()?;
        let mut opt = nn::AdamW {
            beta1: self.beta1,
            beta2: self.beta2,
            wd: self.weight_decay,
            eps: self.eps,
            amsgrad: false,
        }
        .build(vs, self.lr)?;
        opt.set_weight_decay_group(DECAY_GROUP, self.weight_decay);
        opt.set_weight_decay_group(NO_DECAY_GROUP, 0.0);
        let emb = if self.decay_embeddings {
            self.weight_decay
        } else {
            0.0
        };
        opt.set_weight_decay_group(EMBEDDING_GROUP, emb);
        Ok(opt)
    }
}

/// AdamW (decoupled weight decay) whose state can be saved and restored, so that a resumed
/// run continues exactly. tch's built-in optimizer cannot export its moments.
///
/// Weight decay applies per variable group: [`DECAY_GROUP`] gets `weight_decay`,
/// [`NO_DECAY_GROUP`] none, [`EMBEDDING_GROUP`] only with `decay_embeddings`.
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    params: Vec<Param>,
    step: u64,
    lr: f64,
}

#[derive(Debug)]
struct Param {
    name: String,
    var: Tensor,
    decay: f64,
    m: Tensor,
    v: Tensor,
}

impl AdamW {
    /// AdamW over the trainable variables of `vs`, at learning rate `cfg.lr`.
    pub fn new(vs: &nn::VarStore, cfg: &AdamWConfig) -> Result<Self> {
        cfg.validate()?;
        let groups = vs.variables_.lock().expect("var store lock");
        let mut params = Vec::new();
        let mut named: Vec<(String, Tensor, usize)> = groups
            .trainable_variables
            .iter()
            .map(|v| {
                let name = groups
                    .named_variables
                    .iter()
                    .find(|(_, t)| t.data_ptr() == v.tensor.data_ptr())
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default();
                (name, v.tensor.shallow_clone(), v.group)
            })
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, var, group) in named {
            let decay = match group {
                NO_DECAY_GROUP => 0.0,
                EMBEDDING_GROUP if !cfg.decay_embeddings => 0.0,
                _ => cfg.weight_decay,
            };
            let m = var.zeros_like().to_kind(tch::Kind::Float);
            let v = m.zeros_like();
            params.push(Param {
                name,
                var,
                decay,
                m,
                v,
            });
        }
        Ok(AdamW {
            cfg: cfg.clone(),
            params,
            step: 0,
            lr: cfg.lr,
        })
    }

    /// Sets the learning rate of the next steps.
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Clears the gradients of every variable.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.var.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// Scales the gradients so that their global L2 norm is at most `max_norm`; returns the
    /// norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let _g = tch::no_grad_guard();
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| p.var.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let sq: Vec<Tensor> = grads
            .iter()
            .map(|g| g.to_kind(tch::Kind::Float).square().sum(tch::Kind::Float))
            .collect();
        let norm = Tensor::stack(&sq, 0)
            .sum(tch::Kind::Float)
            .sqrt()
            .double_value(&[]);
        if norm.is_finite() && norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for mut g in grads {
                let _ = g.g_mul_scalar_(scale);
            }
        }
        norm
    }

    /// One AdamW update from the current gradients (variables without a gradient are left
    /// alone).
    pub fn step(&mut self) {
        let _g = tch::no_grad_guard();
        self.step += 1;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2 = 1.0 - b2.powi(self.step as i32);
        for p in &mut self.params {
            let g = p.var.grad();
            if !g.defined() {
                continue;
            }
            let g = g.to_kind(tch::Kind::Float);
            let _ = p.m.lerp_(&g, 1.0 - b1);
            let _ =
                p.v.g_mul_scalar_(b2)
                    .addcmul_(&g, &g.g_mul_scalar(1.0 - b2));
            let denom = (p.v.sqrt() / bc2.sqrt()).g_add_scalar_(self.cfg.eps);
            let update = p.m.g_div(&denom).g_mul_scalar_(self.lr / bc1);
            if p.decay > 0.0 {
                let _ = p.var.g_mul_scalar_(1.0 - self.lr * p.decay);
            }
            let _ = p.var.g_sub_(&update.to_kind(p.var.kind()));
        }
    }

    /// The state (moments per variable and the step count) as named tensors.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_string(), Tensor::from_slice(&[self.step as i64]))];
        for p in &self.params {
            out.push((format!("m.{}", p.name), p.m.shallow_clone()));
            out.push((format!("v.{}", p.name), p.v.shallow_clone()));
        }
        out
    }

    /// Restores a state saved by [`AdamW::state`] (same variables); errors name what differs.
    pub fn load_state(&mut self, state: &std::collections::BTreeMap<String, Tensor>) -> Result<()> {
        let step = state
            .get("step")
            .ok_or_else(|| ModelError::Input("optimizer state has no step".into()))?;
        let _g = tch::no_grad_guard();
        for p in &mut self.params {
            for (key, dst) in [
                (format!("m.{}", p.name), &mut p.m),
                (format!("v.{}", p.name), &mut p.v),
            ] {
                let src = state
                    .get(&key)
                    .ok_or_else(|| ModelError::Input(format!("optimizer state has no {key}")))?;
                if src.size() != dst.size() {
                    return Err(ModelError::Input(format!(
                        "optimizer state {key} has shape {:?}, the model needs {:?}",
                        src.size(),
                        dst.size()
                    )));
                }
                dst.copy_(src);
            }
        }
        self.step = step.int64_value(&[0]) as u64;
        Ok(())
    }
}

/// Linear warmup to the peak, then cosine decay to `min_lr_ratio * peak` at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineSchedule {
    /// Peak learning rate.
    pub peak_lr: f64,
    /// Steps of linear warmup from 0.
    pub warmup_steps: u64,
    /// Step at which the decay ends.
    pub total_steps: u64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
}

impl CosineSchedule {
    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak_lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cos)
    }
}

/// The L2 norm of all gradients of `vs`'s trainable variables together (0 when none has one).
pub fn global_grad_norm(vs: &nn::VarStore) -> f64 {
    let _g = tch::no_grad_guard();
    let sq: Vec<Tensor> = vs
        .trainable_variables()
        .iter()
        .map(|v| v.grad())
        .filter(|g| g.defined())
        .map(|g| g.to_kind(tch::Kind::Float).square().sum(tch::Kind::Float))
        .collect();
    if sq.is_empty() {
        return 0.0;
    }
    Tensor::stack(&sq, 0)
        .sum(tch::Kind::Float)
        .sqrt()
        .double_value(&[])
}

/// Sets `requires_grad = false` on every variable (reference and reward models in PPO).
pub fn freeze(vs: &mut nn::VarStore) {
    vs.freeze();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_warms_up_then_decays_to_the_floor() {
        let s = CosineSchedule {
            peak_lr: 1.0,
            warmup_steps: 4,
            total_steps: 14,
            min_lr_ratio: 0.1,
        };
        let lrs: Vec<f64> = (0..16).map(|i| s.lr(i)).collect();
        assert_eq!(&lrs[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert!((lrs[4] - 1.0).abs() < 1e-12);
        assert!((lrs[9] - 0.55).abs() < 1e-12, "halfway: {}", lrs[9]);
        assert!((lrs[14] - 0.1).abs() < 1e-12 && (lrs[15] - 0.1).abs() < 1e-12);
        assert!(lrs[4..15].windows(2).all(|w| w[0] >= w[1]));
    }
}

/// Where trainers send their per-step metrics (standard names such as `loss/policy`).
pub trait MetricsSink {
    /// Records the metrics of one step.
    fn log(
        &mut self,
        step: u64,
        metrics: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<()>;
}

/// Appends one JSON object per step (`{"step": .., ..metrics}`) to a `metrics.jsonl` file,
/// flushed after each line so that an interrupted run keeps everything logged before.
#[derive(Debug)]
pub struct JsonlMetrics {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl JsonlMetrics {
    /// Opens `path` for appending (created if missing).
    pub fn append(path: impl Into<std::path::PathBuf>) -> Result<Self> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ModelError::io(&path, e))?;
        Ok(JsonlMetrics { path, file })
    }
}

impl MetricsSink for JsonlMetrics {
    fn log(
        &mut self,
        step: u64,
        metrics: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<()> {
        use std::io::Write;
        let mut line = serde_json::Map::new();
        line.insert("step".into(), step.into());
        line.extend(metrics.clone());
        let mut text = serde_json::Value::Object(line).to_string();
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| ModelError::io(&self.path, e))
    }
}

/// Keeps metrics in memory (tests, and callers that aggregate themselves).
#[derive(Debug, Default, Clone)]
pub struct MemoryMetrics {
    /// `(step, metrics)` in logging order.
    pub records: Vec<(u64, serde_json::Map<String, serde_json::Value>)>,
}

impl MemoryMetrics {
    /// The values of one metric in logging order.
    pub fn series(&self, name: &str) -> Vec<f64> {
        self.records
            .iter()
            .filter_map(|(_, m)| m.get(name).and_then(|v| v.as_f64()))
            .collect()
    }
}

impl MetricsSink for MemoryMetrics {
    fn log(
        &mut self,
        step: u64,
        metrics: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<()> {
        self.records.push((step, metrics.clone()));
        Ok(())
    }
}

/// Discards everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn log(&mut self, _: u64, _: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
        Ok(())
    }
}
