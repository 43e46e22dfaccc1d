//! LoRA: low-rank adapters on a frozen model (Hu et al. 2021), in the layout of Hugging Face
//! PEFT.
//!
//! An adapted projection computes `W x + (alpha / r) * B A dropout(x)` with `A [r, in]` drawn
//! as PEFT draws it (Kaiming-uniform, bound `1 / sqrt(in)`) and `B [out, r]` zero, so a freshly
//! adapted model equals its base. [`LoraConfig::target_modules`] names the projections by their
//! Hugging Face module names: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
//! `down_proj` on the Llama family; `c_attn` (the fused q/k/v), `c_proj` (attention and MLP
//! outputs, as PEFT matches it) and `c_fc` on GPT-2.
//!
//! Attaching adapters ([`crate::CausalLm::attach_lora`]) freezes every base weight and removes
//! it from the variable store's trainable set, so optimizers, gradient norms and the trainers
//! see only the adapters (AdamW state is the adapters' size, not the model's). The adapters can
//! be switched off for a forward pass ([`crate::CausalLm::set_adapters_enabled`]), which gives
//! the base model back without a second copy of its weights.
//!
//! On disk, a checkpoint with adapters holds the base weights in `model.safetensors` as usual
//! plus PEFT's `adapter_config.json` and `adapter_model.safetensors` (names
//! `base_model.model.<module>.lora_A.weight`); [`crate::CausalLm::load`] attaches them again,
//! and `transformers` + `peft` load the same directory (`PeftModel.from_pretrained`).
//! [`crate::CausalLm::save_merged`] writes an ordinary checkpoint with `W + (alpha / r) B A`
//! folded in.

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tch::{nn, Kind, Tensor};

/// PEFT's adapter config file.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// PEFT's adapter weights file.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// The prefix PEFT puts before a module's name in `adapter_model.safetensors`.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// The adapter settings (PEFT's `LoraConfig` fields of the same names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of the update. Default 8.
    pub r: i64,
    /// Scale numerator: the update is multiplied by `lora_alpha / r`. Default 16.
    pub lora_alpha: f64,
    /// Dropout on the adapter's input while training. Default 0.
    pub lora_dropout: f64,
    /// Module names to adapt (see the module docs). Default: `q_proj`, `v_proj` on the Llama
    /// family and `c_attn` on GPT-2 (PEFT's defaults), when empty.
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            target_modules: vec![],
        }
    }
}

/// The adaptable module names of an architecture.
pub fn adaptable_modules(gpt2: bool) -> &'static [&'static str] {
    if gpt2 {
        &["c_attn", "c_proj", "c_fc"]
    } else {
        &[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    }
}

impl LoraConfig {
    /// The scale `lora_alpha / r`.
    pub fn scale(&self) -> f64 {
        self.lora_alpha / self.r as f64
    }

    /// The modules to adapt on this architecture (the defaults when none are named), checked.
    pub fn targets(&self, gpt2: bool) -> Result<Vec<String>> {
        let bad = |m: String| Err(ModelError::Input(format!("lora: {m}")));
        if self.r < 1 {
            return bad(format!("r is {}: expected at least 1", self.r));
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return bad(format!(
                "lora_alpha is {}: expected a positive number",
                self.lora_alpha
            ));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad(format!(
                "lora_dropout is {}: expected a probability in [0, 1)",
                self.lora_dropout
            ));
        }
        let known = adaptable_modules(gpt2);
        if self.target_modules.is_empty() {
            let d: &[&str] = if gpt2 {
                &["c_attn"]
            } else {
                &["q_proj", "v_proj"]
            };
            return Ok(d.iter().map(|s| s.to_string()).collect());
        }
        for m in &self.target_modules {
            if !known.contains(&m.as_str()) {
                return bad(format!(
                    "target module {m:?} is not a projection of this {} model: choose among {}",
                    if gpt2 { "GPT-2" } else { "Llama-family" },
                    known.join(", ")
                ));
            }
        }
        Ok(self.target_modules.clone())
    }

    /// PEFT's `adapter_config.json` for these settings (`fan_in_fan_out` for GPT-2's Conv1D).
    pub fn to_peft_json(&self, gpt2: bool, targets: &[String]) -> serde_json::Value {
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": targets,
            "fan_in_fan_out": gpt2,
            "bias": "none",
            "modules_to_save": null,
            "init_lora_weights": true,
            "use_rslora": false,
            "use_dora": false,
            "inference_mode": false,
            "base_model_name_or_path": null,
        })
    }

    /// Reads PEFT's `adapter_config.json`; settings we do not implement (rsLoRA, DoRA, biases,
    /// per-module ranks, ...) are errors that name the field.
    pub fn from_peft_json(v: &serde_json::Value) -> std::result::Result<Self, String> {
        if let Some(t) = v.get("peft_type").and_then(|t| t.as_str()) {
            if t != "LORA" {
                return Err(format!(
                    "peft_type is {t:?}: only LORA adapters are supported"
                ));
            }
        }
        let off = |key: &str| match v.get(key) {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => Ok(()),
            Some(serde_json::Value::Object(o)) if o.is_empty() => Ok(()),
            Some(serde_json::Value::String(s)) if s == "none" => Ok(()),
            Some(other) => Err(format!("{key} = {other} is not supported")),
        };
        for key in [
            "use_rslora",
            "use_dora",
            "bias",
            "modules_to_save",
            "rank_pattern",
            "alpha_pattern",
            "layers_to_transform",
        ] {
            off(key)?;
        }
        let r = v
            .get("r")
            .and_then(|x| x.as_i64())
            .ok_or("missing integer field r")?;
        let lora_alpha = v
            .get("lora_alpha")
            .and_then(|x| x.as_f64())
            .ok_or("missing number field lora_alpha")?;
        let lora_dropout = v
            .get("lora_dropout")
            .and_then(|x| x.as_f64())
            .unwrap_or(0.0);
        let target_modules = match v.get("target_modules") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|m| {
                    m.as_str()
                        .map(str::to_string)
                        .ok_or("target_modules: expected strings")
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => return Err("missing field target_modules (a list of module names)".into()),
        };
        Ok(LoraConfig {
            r,
            lora_alpha,
            lora_dropout,
            target_modules,
        })
    }
}

/// One projection's adapter.
#[derive(Debug)]
pub(crate) struct Adapter {
    /// `[r, in]`
    pub(crate) a: Tensor,
    /// `[out, r]`
    pub(crate) b: Tensor,
    scale: f64,
    dropout: f64,
    enabled: Arc<AtomicBool>,
}

impl Adapter {
    /// Creates `lora_A.weight` and `lora_B.weight` under `p` (the projection's path).
    pub(crate) fn new(
        p: &nn::Path,
        n_in: i64,
        n_out: i64,
        cfg: &LoraConfig,
        enabled: &Arc<AtomicBool>,
    ) -> Self {
        let bound = 1.0 / (n_in as f64).sqrt();
        let a = (p / "lora_A").var(
            "weight",
            &[cfg.r, n_in],
            nn::Init::Uniform {
                lo: -bound,
                up: bound,
            },
        );
        let b = (p / "lora_B").zeros("weight", &[n_out, cfg.r]);
        Adapter {
            a,
            b,
            scale: cfg.scale(),
            dropout: cfg.lora_dropout,
            enabled: enabled.clone(),
        }
    }

    /// `y + scale * B A dropout(x)` while enabled, else `y`. Shapes: `x [.., in]`, `y [.., out]`.
    pub(crate) fn apply(
        &self,
        x: &Tensor,
        y: Tensor,
        train: bool,
        autocast: Option<Kind>,
    ) -> Tensor {
        if !self.enabled.load(Ordering::Relaxed) {
            return y;
        }
        let k = autocast.unwrap_or(y.kind());
        let h = x
            .to_kind(k)
            .dropout(self.dropout, train)
            .linear::<Tensor>(&self.a.to_kind(k), None)
            .linear::<Tensor>(&self.b.to_kind(k), None);
        y + h * self.scale
    }

    /// The update `scale * B A`, `[out, in]`.
    pub(crate) fn delta(&self) -> Tensor {
        self.b.matmul(&self.a) * self.scale
    }
}

/// A projection that can carry an adapter: `nn.Linear` (weight `[out, in]`) or GPT-2's Conv1D
/// (weight `[in, out]`).
pub(crate) trait Projection {
    /// `(in, out)` features.
    fn features(&self) -> (i64, i64);
    /// The adapter slot.
    fn adapter(&mut self) -> &mut Option<Adapter>;
    /// The weight with the adapter's update folded in, in the weight's own layout.
    fn merged_weight(&mut self) -> Option<Tensor>;
}

/// Adds adapters under `p` to the projections (named by their path under `p`, e.g.
/// `layers.0.self_attn.q_proj`) whose last name is in `targets`; returns how many.
pub(crate) fn attach(
    p: &nn::Path,
    projections: Vec<(String, &mut dyn Projection)>,
    cfg: &LoraConfig,
    targets: &[String],
    enabled: &Arc<AtomicBool>,
) -> usize {
    let mut n = 0;
    for (path, proj) in projections {
        let module = path.rsplit('.').next().expect("a module name");
        if proj.adapter().is_none() && targets.iter().any(|t| t == module) {
            let (n_in, n_out) = proj.features();
            let q = path.split('.').fold(p.clone(), |q, part| &q / part);
            *proj.adapter() = Some(Adapter::new(&q, n_in, n_out, cfg, enabled));
            n += 1;
        }
    }
    n
}

/// `(weight's name under the body, merged weight)` of every adapted projection.
pub(crate) fn merged(projections: Vec<(String, &mut dyn Projection)>) -> Vec<(String, Tensor)> {
    projections
        .into_iter()
        .filter_map(|(path, proj)| Some((format!("{path}.weight"), proj.merged_weight()?)))
        .collect()
}

/// Whether a variable name is an adapter's (`...lora_A.weight` / `...lora_B.weight`).
pub fn is_adapter_variable(name: &str) -> bool {
    name.contains(".lora_A.") || name.contains(".lora_B.")
}

/// Freezes every variable now in `vs` and drops it from the trainable set (before adapters are
/// created in it, so that they alone train).
pub(crate) fn freeze_base(vs: &nn::VarStore) {
    let mut vars = vs.variables_.lock().expect("var store lock");
    for v in vars.trainable_variables.iter_mut() {
        let _ = v.tensor.set_requires_grad(false);
    }
    vars.trainable_variables.clear();
}
