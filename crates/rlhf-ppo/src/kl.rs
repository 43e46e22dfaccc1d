//! KL coefficient controllers behind one trait: fixed (InstructGPT) and adaptive (Ziegler et
//! al. 2019, as in lm-human-preferences).

use serde::{Deserialize, Serialize};

/// Chooses beta, the coefficient of the per-token KL penalty, from iteration to iteration.
pub trait KlController: std::fmt::Debug {
    /// The current coefficient.
    fn value(&self) -> f64;
    /// Adapts after an iteration whose mean per-sequence KL was `current_kl`, over `n_steps`
    /// episodes (the rollout batch size).
    fn update(&mut self, current_kl: f64, n_steps: u64);
    /// Sets the coefficient (used when resuming a run).
    fn set_value(&mut self, value: f64);
}

/// A constant coefficient (the paper: beta = 0.02).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedKlController {
    /// The coefficient.
    pub value: f64,
}

impl KlController for FixedKlController {
    fn value(&self) -> f64 {
        self.value
    }
    fn update(&mut self, _current_kl: f64, _n_steps: u64) {}
    fn set_value(&mut self, value: f64) {
        self.value = value;
    }
}

/// Settings of the adaptive controller (lm-human-preferences: target 6 nats, horizon 10000
/// episodes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveKlConfig {
    /// The KL (nats per sequence) the controller steers towards. Default 6.0.
    pub target: f64,
    /// Episodes over which a full proportional correction applies. Default 10000.
    pub horizon: f64,
}

impl Default for AdaptiveKlConfig {
    fn default() -> Self {
        AdaptiveKlConfig {
            target: 6.0,
            horizon: 10000.0,
        }
    }
}

/// Ziegler et al.'s proportional controller:
/// `error = clip(KL / target - 1, -0.2, 0.2)`, `beta *= 1 + error * n_steps / horizon`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveKlController {
    /// The current coefficient.
    pub value: f64,
    /// Target and horizon.
    pub config: AdaptiveKlConfig,
}

impl AdaptiveKlController {
    /// Starts at `init` with the given target and horizon.
    pub fn new(init: f64, config: AdaptiveKlConfig) -> Self {
        AdaptiveKlController {
            value: init,
            config,
        }
    }
}

impl KlController for AdaptiveKlController {
    fn value(&self) -> f64 {
        self.value
    }
    fn update(&mut self, current_kl: f64, n_steps: u64) {
        if !current_kl.is_finite() {
            return;
        }
        let error = (current_kl / self.config.target - 1.0).clamp(-0.2, 0.2);
        self.value *= 1.0 + error * n_steps as f64 / self.config.horizon;
    }
    fn set_value(&mut self, value: f64) {
        self.value = value;
    }
}
