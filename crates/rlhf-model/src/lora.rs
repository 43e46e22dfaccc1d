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

use crate::body::Body;
use crate::checkpoint::{named_variables, read_safetensors, safetensors_bytes};
use crate::error::{ModelError, Result};
use crate::generate::{GenerateConfig, Generation};
use crate::model::CausalLm;
use crate::model_config::ModelConfig;
use crate::traits::Policy;
use serde::{Deserialize, Serialize};
use std::path::Path;
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

    /// PEFT's `adapter_config.json` for these settings (`fan_in_fan_out` for GPT-2's Conv1D;
    /// `task_type` `CAUSAL_LM` or `SEQ_CLS`; `modules_to_save`: whole modules trained beside
    /// the adapters, e.g. a scalar head's `score`).
    pub fn to_peft_json(
        &self,
        gpt2: bool,
        targets: &[String],
        task_type: &str,
        modules_to_save: &[&str],
    ) -> serde_json::Value {
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": task_type,
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": targets,
            "fan_in_fan_out": gpt2,
            "bias": "none",
            "modules_to_save": if modules_to_save.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::json!(modules_to_save)
            },
            "init_lora_weights": true,
            "use_rslora": false,
            "use_dora": false,
            "inference_mode": false,
            "base_model_name_or_path": null,
        })
    }

    /// Reads PEFT's `adapter_config.json`; settings we do not implement (rsLoRA, DoRA, biases,
    /// per-module ranks, ...) are errors that name the field. `modules_to_save` is read by
    /// [`modules_to_save`], as what it may name depends on the model.
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

/// Freezes every variable now in `vs` but those whose storage is at `keep` and drops them from
/// the trainable set (before adapters are created in it, so that they and `keep` alone train).
fn freeze_base(vs: &nn::VarStore, keep: &[*mut std::ffi::c_void]) {
    let mut vars = vs.variables_.lock().expect("var store lock");
    vars.trainable_variables.retain_mut(|v| {
        let k = keep.contains(&v.tensor.data_ptr());
        if !k {
            let _ = v.tensor.set_requires_grad(false);
        }
        k
    });
}

/// The `modules_to_save` of PEFT's `adapter_config.json` (none when null or absent).
pub fn modules_to_save(v: &serde_json::Value) -> std::result::Result<Vec<String>, String> {
    match v.get("modules_to_save") {
        None | Some(serde_json::Value::Null) => Ok(vec![]),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|m| {
                m.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "modules_to_save: expected module names".to_string())
            })
            .collect(),
        Some(other) => Err(format!(
            "modules_to_save = {other}: expected a list of module names"
        )),
    }
}

/// A module trained whole beside the adapters (PEFT's `modules_to_save`): its name, as PEFT
/// and `config.json` know it, and its weight.
pub(crate) struct SavedModule<'a> {
    /// Module name (`score`).
    pub(crate) name: &'static str,
    /// Other names PEFT may list for the same role (`classifier`, in its default for `SEQ_CLS`).
    pub(crate) aliases: &'static [&'static str],
    /// The module's `weight`.
    pub(crate) weight: &'a Tensor,
}

/// The LoRA side of a model ([`crate::CausalLm`] or [`crate::ScalarModel`]): the settings and
/// adapted module names once adapters are attached, and the on/off switch all of its adapters
/// share.
#[derive(Debug)]
pub(crate) struct LoraState {
    attached: Option<(LoraConfig, Vec<String>)>,
    enabled: Arc<AtomicBool>,
}

impl Default for LoraState {
    fn default() -> Self {
        LoraState {
            attached: None,
            enabled: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl LoraState {
    pub(crate) fn config(&self) -> Option<&LoraConfig> {
        self.attached.as_ref().map(|(c, _)| c)
    }

    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn with_disabled<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = self.enabled.swap(false, Ordering::Relaxed);
        let out = f();
        self.enabled.store(was, Ordering::Relaxed);
        out
    }

    /// Freezes every variable of `vs` except the `keep` modules' weights (trained whole), then
    /// adds adapters to `body`'s projections named by `cfg`; returns how many.
    pub(crate) fn attach(
        &mut self,
        vs: &nn::VarStore,
        body: &mut Body,
        config: &ModelConfig,
        cfg: &LoraConfig,
        keep: &[SavedModule],
    ) -> Result<usize> {
        if let Some((have, _)) = &self.attached {
            return Err(ModelError::Input(format!(
                "the model has LoRA adapters already (r = {}): attach them once",
                have.r
            )));
        }
        let targets = cfg.targets(config.as_gpt2().is_some())?;
        let keep: Vec<_> = keep.iter().map(|k| k.weight.data_ptr()).collect();
        freeze_base(vs, &keep);
        let n = body.attach_lora(
            &vs.root(),
            config.body_prefix(),
            cfg,
            &targets,
            &self.enabled,
        );
        self.attached = Some((cfg.clone(), targets));
        Ok(n)
    }

    /// Attaches the PEFT adapter in `dir` and loads its weights (and the `keep` modules', which
    /// it carries when its config lists them in `modules_to_save`).
    pub(crate) fn load(
        &mut self,
        vs: &nn::VarStore,
        body: &mut Body,
        config: &ModelConfig,
        dir: &Path,
        keep: &[SavedModule],
    ) -> Result<()> {
        let cfg_path = dir.join(ADAPTER_CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
        let json_err = |msg: String| ModelError::Json {
            path: cfg_path.clone(),
            msg,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| json_err(e.to_string()))?;
        let cfg = LoraConfig::from_peft_json(&json).map_err(json_err)?;
        let saved = modules_to_save(&json).map_err(json_err)?;
        for m in &saved {
            if !keep
                .iter()
                .any(|k| k.name == m || k.aliases.contains(&m.as_str()))
            {
                return Err(json_err(format!(
                    "modules_to_save names {m:?}, which this model does not train whole \
                     (it can: {})",
                    if keep.is_empty() {
                        "none".to_string()
                    } else {
                        keep.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                    }
                )));
            }
        }
        let gpt2 = config.as_gpt2().is_some();
        let fan_in_fan_out = json
            .get("fan_in_fan_out")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if fan_in_fan_out != gpt2 {
            return Err(ModelError::ckpt(
                dir,
                format!(
                    "{ADAPTER_CONFIG_FILE}: fan_in_fan_out is {fan_in_fan_out}, but this is a {} \
                     model: the adapter was made for another architecture",
                    if gpt2 {
                        "GPT-2 (Conv1D)"
                    } else {
                        "Llama-family (Linear)"
                    }
                ),
            ));
        }
        // The whole modules train only when the adapter saved them: otherwise they are base.
        let trained: &[SavedModule] = if saved.is_empty() { &[] } else { keep };
        self.attach(vs, body, config, &cfg, trained)
            .map_err(|e| ModelError::ckpt(dir, e.to_string()))?;
        let weights = dir.join(ADAPTER_WEIGHTS_FILE);
        let mut tensors = read_safetensors(&weights)?;
        let _g = tch::no_grad_guard();
        let mut wanted: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(n, _)| is_adapter_variable(n))
            .map(|(n, t)| (format!("{PEFT_PREFIX}{n}"), t))
            .collect();
        for k in trained {
            wanted.push((
                format!("{PEFT_PREFIX}{}.weight", k.name),
                k.weight.shallow_clone(),
            ));
        }
        for (key, mut var) in wanted {
            let t = tensors.remove(&key).ok_or_else(|| {
                ModelError::ckpt(
                    dir,
                    format!(
                        "{ADAPTER_WEIGHTS_FILE} has no {key}: the adapter does not match \
                         {ADAPTER_CONFIG_FILE}'s target_modules or this model"
                    ),
                )
            })?;
            if t.size() != var.size() {
                return Err(ModelError::ckpt(
                    dir,
                    format!(
                        "{ADAPTER_WEIGHTS_FILE}: {key} is {:?} but this model needs {:?}",
                        t.size(),
                        var.size()
                    ),
                ));
            }
            var.copy_(&t);
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(ModelError::ckpt(
                dir,
                format!(
                    "{ADAPTER_WEIGHTS_FILE} has {extra}, which no adapted module of this model \
                     takes ({} unused tensors)",
                    tensors.len()
                ),
            ));
        }
        Ok(())
    }

    /// PEFT's two files for the attached adapters and the `keep` modules (none without
    /// adapters).
    pub(crate) fn files(
        &self,
        vs: &nn::VarStore,
        config: &ModelConfig,
        task_type: &str,
        keep: &[SavedModule],
    ) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let Some((cfg, targets)) = &self.attached else {
            return Ok(vec![]);
        };
        let gpt2 = config.as_gpt2().is_some();
        let names: Vec<&str> = keep.iter().map(|k| k.name).collect();
        let json =
            serde_json::to_string_pretty(&cfg.to_peft_json(gpt2, targets, task_type, &names))
                .expect("JSON serializes");
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(n, _)| is_adapter_variable(n))
            .map(|(n, t)| (format!("{PEFT_PREFIX}{n}"), t))
            .chain(keep.iter().map(|k| {
                (
                    format!("{PEFT_PREFIX}{}.weight", k.name),
                    k.weight.shallow_clone(),
                )
            }))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(vec![
            (ADAPTER_CONFIG_FILE, json.into_bytes()),
            (ADAPTER_WEIGHTS_FILE, safetensors_bytes(&named)?),
        ])
    }

    /// Writes an ordinary checkpoint of the model with the adapters folded into the weights.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn save_merged(
        &self,
        dir: &Path,
        vs: &nn::VarStore,
        body: &mut Body,
        config: &ModelConfig,
        tokenizer: Option<&crate::Tokenizer>,
        meta: &crate::CheckpointMeta,
        extra: Vec<(&str, Vec<u8>)>,
    ) -> Result<()> {
        let tensors = self.merged_tensors(vs, body, config);
        crate::checkpoint::write_checkpoint_tensors(dir, config, &tensors, tokenizer, meta, extra)
    }

    /// Every base variable under its checkpoint name, with the adapted projections' weights
    /// replaced by `W + (alpha / r) B A`.
    fn merged_tensors(
        &self,
        vs: &nn::VarStore,
        body: &mut Body,
        config: &ModelConfig,
    ) -> Vec<(String, Tensor)> {
        let _g = tch::no_grad_guard();
        let prefix = config.body_prefix();
        let merged: std::collections::BTreeMap<String, Tensor> = body
            .merged_weights()
            .into_iter()
            .map(|(n, t)| (format!("{prefix}.{n}"), t))
            .collect();
        named_variables(vs)
            .into_iter()
            .map(|(n, t)| match merged.get(&n) {
                Some(m) => (n, m.shallow_clone()),
                None => (n, t),
            })
            .collect()
    }
}

/// The base model of a [`crate::CausalLm`] with LoRA adapters: the same model, shared and not copied,
/// with its adapters switched off for each forward pass. PPO's reference policy when the policy
/// trains adapters (the paper's frozen SFT model is exactly the base).
#[derive(Debug, Clone)]
pub struct AdaptersOff(pub std::rc::Rc<CausalLm>);

impl Policy for AdaptersOff {
    fn logits(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor> {
        self.0
            .with_adapters_disabled(|| self.0.logits(input_ids, attention_mask, train))
    }

    fn var_store(&self) -> &nn::VarStore {
        self.0.var_store()
    }

    fn masked_token_log_probs(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        target_mask: &Tensor,
        temperature: f64,
        train: bool,
    ) -> Result<Tensor> {
        self.0.with_adapters_disabled(|| {
            self.0.masked_token_log_probs(
                input_ids,
                attention_mask,
                target_mask,
                temperature,
                train,
            )
        })
    }

    fn logits_for_last(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        n: i64,
        train: bool,
    ) -> Result<Tensor> {
        self.0
            .with_adapters_disabled(|| self.0.logits_for_last(input_ids, attention_mask, n, train))
    }

    fn generate(
        &self,
        prompt_ids: &Tensor,
        prompt_mask: &Tensor,
        cfg: &GenerateConfig,
    ) -> Result<Generation> {
        self.0
            .with_adapters_disabled(|| self.0.generate(prompt_ids, prompt_mask, cfg))
    }
}
