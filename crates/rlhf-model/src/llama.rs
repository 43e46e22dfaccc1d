//! The Llama-family decoder body (Hugging Face `LlamaModel` / `Qwen2Model` / `Qwen3Model` /
//! `MistralModel` / `Gemma2Model` / `Gemma3TextModel` / `SmolLM3Model` / `Olmo2Model`): token
//! embedding, pre-RMSNorm layers with rotary grouped-query self-attention (Qwen3 and Gemma 3:
//! with an RMSNorm on each head's queries and keys) and a SwiGLU MLP, final RMSNorm. Gemma adds
//! a norm after the attention and after the MLP, scales the embeddings, gates its MLP with GELU
//! and slides the attention window of its local layers ([`LlamaConfig::is_gemma3`],
//! [`LlamaConfig::is_gemma`]); SmolLM3 leaves RoPE out of some layers
//! ([`LlamaConfig::layer_rope`]); OLMo 2 normalizes the attention's and the MLP's outputs
//! instead of their inputs ([`LlamaConfig::qk_norm_wide`]).
//!
//! Variable names mirror Hugging Face (`embed_tokens`, `layers.{i}.self_attn.q_proj`,
//! `layers.{i}.mlp.gate_proj`, `norm`, ...) and linear weights are stored `[out, in]` as
//! `nn.Linear` stores them, so a `model.safetensors` written by `transformers` loads without
//! renaming. RoPE is the non-interleaved `rotate_half` form of Hugging Face, with `rope_theta`
//! and Llama 3's `rope_scaling`.

use crate::body::normal_var;
use crate::error::Result;
use crate::gpt2::{narrow_rows, AttnMask, Keys, KvCache, Step};
use crate::llama_config::{LlamaConfig, RopeScaling};
use crate::lora::{Adapter, Projection};
use crate::train::{EMBEDDING_GROUP, NO_DECAY_GROUP};
use std::ops::Range;
use tch::{nn, Kind, Tensor};

/// `nn.Linear`: weight `[out, in]`, optional bias `[out]`.
#[derive(Debug)]
struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<Adapter>,
}

impl Linear {
    fn new(p: nn::Path, n_in: i64, n_out: i64, bias: bool, std: f64) -> Self {
        let weight = normal_var(&p, "weight", &[n_out, n_in], std);
        let bias = bias.then(|| p.set_group(NO_DECAY_GROUP).zeros("bias", &[n_out]));
        Linear {
            weight,
            bias,
            lora: None,
        }
    }

    /// Shapes: `[.., in] -> [.., out]`, in the autocast kind when given; plus the LoRA update
    /// when adapted and enabled.
    fn forward(&self, x: &Tensor, train: bool, autocast: Option<Kind>) -> Tensor {
        let y = self.forward_base(x, autocast);
        match &self.lora {
            Some(a) => a.apply(x, y, train, autocast),
            None => y,
        }
    }

    fn forward_base(&self, x: &Tensor, autocast: Option<Kind>) -> Tensor {
        match autocast {
            Some(k) => x.to_kind(k).linear(
                &self.weight.to_kind(k),
                self.bias.as_ref().map(|b| b.to_kind(k)),
            ),
            None => x.linear(&self.weight, self.bias.as_ref()),
        }
    }
}

impl Projection for Linear {
    fn features(&self) -> (i64, i64) {
        let (n_out, n_in) = self.weight.size2().expect("a [out, in] weight");
        (n_in, n_out)
    }

    fn adapter(&mut self) -> &mut Option<Adapter> {
        &mut self.lora
    }

    fn merged_weight(&mut self) -> Option<Tensor> {
        Some(&self.weight + self.lora.as_ref()?.delta())
    }
}

/// How an RMSNorm applies its weight; each normalizes in f32.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NormStyle {
    /// Hugging Face's `LlamaRMSNorm`: cast back to the input's dtype, then scale.
    Llama,
    /// Gemma's: scale by `1 + weight` in f32, then cast back (the weight starts at 0).
    Gemma,
    /// OLMo 2's: scale in f32, then cast back.
    Olmo,
}

impl NormStyle {
    fn of(cfg: &LlamaConfig) -> Self {
        match () {
            _ if cfg.is_gemma() => NormStyle::Gemma,
            _ if cfg.model_type == "olmo2" => NormStyle::Olmo,
            _ => NormStyle::Llama,
        }
    }
}

/// An RMSNorm over the last dim, weighted as its [`NormStyle`] says.
#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
    style: NormStyle,
}

impl RmsNorm {
    fn new(p: nn::Path, dim: i64, eps: f64, style: NormStyle) -> Self {
        let p = p.set_group(NO_DECAY_GROUP);
        RmsNorm {
            weight: match style {
                NormStyle::Gemma => p.zeros("weight", &[dim]),
                _ => p.ones("weight", &[dim]),
            },
            eps,
            style,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let var = xf.square().mean_dim(-1, true, Kind::Float);
        let normed = xf * (var + self.eps).rsqrt();
        match self.style {
            NormStyle::Llama => &self.weight * normed.to_kind(kind),
            NormStyle::Gemma => (normed * (self.weight.to_kind(Kind::Float) + 1.0)).to_kind(kind),
            NormStyle::Olmo => (normed * self.weight.to_kind(Kind::Float)).to_kind(kind),
        }
    }
}

/// The rotary embedding's inverse frequencies `[head_dim / 2]` (f32), as Hugging Face's
/// `ROPE_INIT_FUNCTIONS` compute them for "default", "linear" and "llama3"; of Gemma 3's local
/// layers when `local`.
fn inv_freq(cfg: &LlamaConfig, local: bool) -> Result<Tensor> {
    let dim = cfg.head_dim();
    let exponent = Tensor::arange_start_step(0, dim, 2, (Kind::Int64, tch::Device::Cpu))
        .to_kind(Kind::Float)
        / dim as f64;
    let (base, scaling) = cfg.rope(local)?;
    let base = Tensor::from(base as f32);
    let inv = base.pow(&exponent).reciprocal();
    Ok(match scaling {
        RopeScaling::None => inv,
        RopeScaling::Linear { factor } => inv / factor,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        } => {
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            let freqs = Vec::<f32>::try_from(&inv)?;
            let scaled: Vec<f32> = freqs
                .iter()
                .map(|&f| {
                    let f = f as f64;
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    let r = if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    };
                    r as f32
                })
                .collect();
            Tensor::from_slice(&scaled)
        }
    })
}

/// `rotate_half`: `[x1, x2] -> [-x2, x1]` on the last dim.
fn rotate_half(x: &Tensor) -> Tensor {
    let half = x
        .size()
        .last()
        .copied()
        .expect("rotary input has a last dim")
        / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    Tensor::cat(&[x2.neg(), x1], -1)
}

#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// Qwen3's (Gemma 3's) RMSNorm over each head's queries and keys, before RoPE; OLMo 2's
    /// over all the queries (keys) of a position (`qk_norm_wide`).
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    qk_norm_wide: bool,
    /// The score scale; `None` is `1 / sqrt(head_dim)`.
    scale: Option<f64>,
    /// Gemma 2's soft cap on the scores.
    softcap: Option<f64>,
    n_head: i64,
    n_kv: i64,
    head_dim: i64,
    attn_pdrop: f64,
    resid_pdrop: f64,
}

impl Attention {
    fn new(p: nn::Path, cfg: &LlamaConfig) -> Self {
        let (e, d, std) = (cfg.hidden_size, cfg.head_dim(), cfg.initializer_range);
        let (h, kv) = (cfg.num_attention_heads, cfg.kv_heads());
        Attention {
            q_proj: Linear::new(&p / "q_proj", e, h * d, cfg.qkv_bias(), std),
            k_proj: Linear::new(&p / "k_proj", e, kv * d, cfg.qkv_bias(), std),
            v_proj: Linear::new(&p / "v_proj", e, kv * d, cfg.qkv_bias(), std),
            o_proj: Linear::new(&p / "o_proj", h * d, e, cfg.o_bias(), std),
            qk_norm: cfg.qk_norm().then(|| {
                let st = NormStyle::of(cfg);
                let (dq, dk) = match cfg.qk_norm_wide() {
                    true => (h * d, kv * d),
                    false => (d, d),
                };
                (
                    RmsNorm::new(&p / "q_norm", dq, cfg.rms_norm_eps, st),
                    RmsNorm::new(&p / "k_norm", dk, cfg.rms_norm_eps, st),
                )
            }),
            qk_norm_wide: cfg.qk_norm_wide(),
            scale: cfg.attention_scale(),
            softcap: cfg.attention_softcapping(),
            n_head: h,
            n_kv: kv,
            head_dim: d,
            attn_pdrop: cfg.attention_dropout,
            resid_pdrop: cfg.resid_pdrop,
        }
    }

    /// Shapes: `x [B, T, E]`, `cos`/`sin` `[B or 1, 1, T, D]` (`None`: a layer without RoPE,
    /// SmolLM3's) -> `[B, R, E]`, the outputs of
    /// the query positions `rows` (`R` of them; all `T` for `None`, and `mask` is then the
    /// queries' own). Keys and values (and the cache) cover all `T`.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        rotary: Option<(&Tensor, &Tensor)>,
        mask: &AttnMask,
        cache: Option<(&mut (Tensor, Tensor), i64)>,
        train: bool,
        autocast: Option<Kind>,
        rows: Option<&Range<i64>>,
    ) -> Tensor {
        let (b, _, _) = x.size3().expect("attention input is [B, T, E]");
        let heads_of = |y: Tensor, n: i64| {
            let len = y.size()[1];
            y.view([b, len, n, self.head_dim]).transpose(1, 2)
        };
        // Qwen3: each head's queries (keys) normalized over the head's width, in the
        // activations' dtype as Hugging Face casts back before the weight; OLMo 2: a
        // position's queries (keys) over all heads, before they are split into heads.
        let norm = |y: Tensor, which: usize| match &self.qk_norm {
            Some(n) => {
                let n = if which == 0 { &n.0 } else { &n.1 };
                let kind = y.kind();
                n.forward(&y).to_kind(kind)
            }
            None => y,
        };
        let wide = self.qk_norm_wide;
        let heads = |y: Tensor, n: i64, which: usize| match wide {
            true => heads_of(norm(y, which), n),
            false => norm(heads_of(y, n), which),
        };
        // RoPE over the positions `span` of the new tokens (all of them for `None`).
        let rope = |y: Tensor, span: Option<&Range<i64>>| match rotary {
            None => y,
            Some((cos, sin)) => {
                let (cos, sin) = match span {
                    None => (cos.shallow_clone(), sin.shallow_clone()),
                    Some(r) => (
                        cos.narrow(2, r.start, r.end - r.start),
                        sin.narrow(2, r.start, r.end - r.start),
                    ),
                };
                // In the dtype of `cos` when wider (OLMo 2's f32), then back to `y`'s.
                (&y * &cos + rotate_half(&y) * &sin).to_kind(y.kind())
            }
        };
        let q = match rows {
            None => rope(
                heads(self.q_proj.forward(x, train, autocast), self.n_head, 0),
                None,
            ),
            Some(r) => {
                let xq = x.narrow(1, r.start, r.end - r.start);
                rope(
                    heads(self.q_proj.forward(&xq, train, autocast), self.n_head, 0),
                    Some(r),
                )
            }
        };
        let k = rope(
            heads(self.k_proj.forward(x, train, autocast), self.n_kv, 1),
            None,
        );
        let v = heads_of(self.v_proj.forward(x, train, autocast), self.n_kv);
        let keys = Keys::new(k, v, cache);
        let dropout = if train { self.attn_pdrop } else { 0.0 };
        // Grouped-query attention: `attend` lets query head h read key/value head h / (H / KV).
        let y = mask.attend(&q, &keys, dropout, self.scale, self.softcap);
        let r = q.size()[2];
        let y = y
            .transpose(1, 2)
            .reshape([b, r, self.n_head * self.head_dim]);
        self.o_proj
            .forward(&y, train, autocast)
            .dropout(self.resid_pdrop, train)
    }
}

#[derive(Debug)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    /// Gemma's GELU (tanh approximation) in place of SiLU.
    gelu: bool,
    resid_pdrop: f64,
}

impl Mlp {
    fn new(p: nn::Path, cfg: &LlamaConfig) -> Self {
        let (e, i, std, bias) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.initializer_range,
            cfg.mlp_bias,
        );
        Mlp {
            gate_proj: Linear::new(&p / "gate_proj", e, i, bias, std),
            up_proj: Linear::new(&p / "up_proj", e, i, bias, std),
            down_proj: Linear::new(&p / "down_proj", i, e, bias, std),
            gelu: cfg.is_gemma(),
            resid_pdrop: cfg.resid_pdrop,
        }
    }

    /// SwiGLU: `down(silu(gate(x)) * up(x))` (Gemma: `gelu_tanh` in place of `silu`).
    fn forward(&self, x: &Tensor, train: bool, autocast: Option<Kind>) -> Tensor {
        let gate = self.gate_proj.forward(x, train, autocast);
        let gate = if self.gelu {
            gate.gelu("tanh")
        } else {
            gate.silu()
        };
        let h = gate * self.up_proj.forward(x, train, autocast);
        self.down_proj
            .forward(&h, train, autocast)
            .dropout(self.resid_pdrop, train)
    }
}

#[derive(Debug)]
struct Layer {
    /// Before the attention (none in OLMo 2).
    input_layernorm: Option<RmsNorm>,
    self_attn: Attention,
    /// Before the MLP (Llama); on the attention's output (Gemma, OLMo 2).
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
    /// Gemma's `pre_feedforward_layernorm` (none in OLMo 2) and the
    /// `post_feedforward_layernorm` on the MLP's output of Gemma and OLMo 2.
    feedforward_norms: Option<(Option<RmsNorm>, RmsNorm)>,
    /// Local attention over this many positions (Gemma 3's sliding layers).
    window: Option<i64>,
    /// Whether the layer applies RoPE (not SmolLM3's "NoPE" layers).
    rope: bool,
}

/// The Llama-family decoder (Hugging Face's `LlamaModel` / `Qwen2Model` / `Qwen3Model` /
/// `MistralModel` / `Gemma2Model` / `Gemma3TextModel` / `SmolLM3Model` / `Olmo2Model`).
#[derive(Debug)]
pub struct Llama {
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    inv_freq: Tensor,
    /// Gemma 3's local layers' RoPE.
    inv_freq_local: Option<Tensor>,
    cfg: LlamaConfig,
    autocast: Option<Kind>,
}

impl Llama {
    /// Creates the variables under `p` (conventionally `root / "model"`), initialized as
    /// Hugging Face does (normal(0, initializer_range) weights, zero biases, unit RMSNorm).
    /// Weight matrices are in [`crate::train::DECAY_GROUP`], biases and norms in
    /// `NO_DECAY_GROUP`, the token embedding in `EMBEDDING_GROUP`.
    pub fn new(p: &nn::Path, cfg: &LlamaConfig) -> Result<Self> {
        cfg.validate()?;
        let embed_tokens = normal_var(
            &(&p.set_group(EMBEDDING_GROUP) / "embed_tokens"),
            "weight",
            &[cfg.vocab_size, cfg.hidden_size],
            cfg.initializer_range,
        );
        let (e, eps, st) = (cfg.hidden_size, cfg.rms_norm_eps, NormStyle::of(cfg));
        let (gemma, olmo) = (cfg.is_gemma(), cfg.model_type == "olmo2");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = p / "layers" / i;
                let norm = |name: &str| RmsNorm::new(&l / name, e, eps, st);
                Layer {
                    input_layernorm: (!olmo).then(|| norm("input_layernorm")),
                    self_attn: Attention::new(&l / "self_attn", cfg),
                    post_attention_layernorm: norm("post_attention_layernorm"),
                    mlp: Mlp::new(&l / "mlp", cfg),
                    feedforward_norms: (gemma || olmo).then(|| {
                        (
                            gemma.then(|| norm("pre_feedforward_layernorm")),
                            norm("post_feedforward_layernorm"),
                        )
                    }),
                    window: cfg.layer_window(i),
                    rope: cfg.layer_rope(i),
                }
            })
            .collect();
        let inv_freq_local = match cfg.is_gemma3() {
            true => Some(inv_freq(cfg, true)?.to_device(p.device())),
            false => None,
        };
        Ok(Llama {
            embed_tokens,
            layers,
            norm: RmsNorm::new(p / "norm", e, eps, st),
            inv_freq: inv_freq(cfg, false)?.to_device(p.device()),
            inv_freq_local,
            cfg: cfg.clone(),
            autocast: None,
        })
    }

    /// Mixed precision, as [`crate::Gpt2::set_autocast`]: matmuls and attention in `kind`,
    /// norms and the residual stream in the weights' dtype.
    pub fn set_autocast(&mut self, kind: Option<Kind>) {
        if kind == Some(Kind::BFloat16) {
            crate::cpu::ensure_usable_cpu_isa();
        }
        self.autocast = kind;
    }

    /// Sets the training-mode dropout probabilities (residual and embedding dropout are ours,
    /// not Hugging Face's, and are not saved; `attn` is `attention_dropout`).
    pub fn set_dropout(&mut self, resid: f64, embd: f64, attn: f64) {
        self.cfg.resid_pdrop = resid;
        self.cfg.embd_pdrop = embd;
        self.cfg.attention_dropout = attn;
        for l in &mut self.layers {
            l.self_attn.resid_pdrop = resid;
            l.self_attn.attn_pdrop = attn;
            l.mlp.resid_pdrop = resid;
        }
    }

    /// The autocast precision, if any.
    pub fn autocast(&self) -> Option<Kind> {
        self.autocast
    }

    /// The dtype activations are computed in: the autocast kind, else the weights'.
    pub fn compute_kind(&self) -> Kind {
        self.autocast.unwrap_or(self.embed_tokens.kind())
    }

    /// The config this body was built with.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The projections by module path under the body (`layers.{i}.self_attn.q_proj`, ...).
    pub(crate) fn projections(&mut self) -> Vec<(String, &mut dyn Projection)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            let a = &mut l.self_attn;
            let m = &mut l.mlp;
            for (name, lin) in [
                ("self_attn.q_proj", &mut a.q_proj),
                ("self_attn.k_proj", &mut a.k_proj),
                ("self_attn.v_proj", &mut a.v_proj),
                ("self_attn.o_proj", &mut a.o_proj),
                ("mlp.gate_proj", &mut m.gate_proj),
                ("mlp.up_proj", &mut m.up_proj),
                ("mlp.down_proj", &mut m.down_proj),
            ] {
                out.push((format!("layers.{i}.{name}"), lin as &mut dyn Projection));
            }
        }
        out
    }

    /// The token embedding `[V, E]` (also the tied unembedding).
    pub fn token_embedding(&self) -> &Tensor {
        &self.embed_tokens
    }

    /// `cos`, `sin` of shape `[B or 1, 1, T, D]` for position ids `[B or 1, T]`, in `kind`
    /// (Hugging Face computes them in f32 and casts to the activations' dtype).
    fn rotary(&self, inv_freq: &Tensor, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * inv_freq; // [B, T, D/2]
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }

    /// Runs the decoder; the same contract as [`crate::Gpt2::forward`].
    ///
    /// Shapes: `input_ids [B, T]` and `attention_mask [B, past + T]` (`None` = no padding) ->
    /// hidden states `[B, T, E]` after the final RMSNorm. Position ids come from the mask.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Result<Tensor> {
        self.forward_rows(input_ids, attention_mask, cache, train, None)
    }

    /// [`Llama::forward`] returning only the hidden states of the new-token positions `rows`
    /// (`[B, R, E]`; `None` = all), as [`crate::Gpt2::forward_rows`]: the last layer computes
    /// its queries, attention output and MLP for those positions only.
    pub fn forward_rows(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        train: bool,
        rows: Option<Range<i64>>,
    ) -> Result<Tensor> {
        let n_ctx = self.cfg.context_len();
        let step = Step::new(input_ids, attention_mask, cache.as_deref(), n_ctx, rows)?;
        let past = step.past;
        let x = Tensor::embedding(&self.embed_tokens, input_ids, -1, false, false);
        let x = match self.cfg.is_gemma() {
            // `* sqrt(hidden_size)`, the factor rounded to the weights' dtype as Hugging Face's
            // `Gemma3TextScaledWordEmbedding` rounds it.
            true => {
                let scale = Tensor::from((self.cfg.hidden_size as f64).sqrt() as f32)
                    .to_kind(x.kind())
                    .double_value(&[]);
                x * scale
            }
            false => x,
        };
        let mut x = x.dropout(self.cfg.embd_pdrop, train);
        // OLMo 2 rotates in f32 (its cos and sin stay f32, the result is cast back), the others
        // in the activations' dtype.
        let rope_kind = match self.cfg.model_type.as_str() {
            "olmo2" => Kind::Float,
            _ => self.autocast.unwrap_or(x.kind()),
        };
        let global = self.rotary(&self.inv_freq, &step.positions, rope_kind);
        let local = self
            .inv_freq_local
            .as_ref()
            .map(|f| self.rotary(f, &step.positions, rope_kind));
        // The local layers' mask, when some key lies outside their window.
        let mut windowed = None;
        let n_layer = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_mut().map(|c| (&mut c.layers[i], past));
            let mask = match layer.window {
                Some(w) => windowed
                    .get_or_insert_with(|| step.windowed(w))
                    .as_ref()
                    .unwrap_or(&step.mask),
                None => &step.mask,
            };
            let (cos, sin) = match (&local, layer.window) {
                (Some(l), Some(_)) => l,
                _ => &global,
            };
            let rotary = layer.rope.then_some((cos, sin));
            let (keep, keep_mask) = step.block_queries(i, n_layer, mask);
            let normed = layer.input_layernorm.as_ref().map(|n| n.forward(&x));
            let a = layer.self_attn.forward(
                normed.as_ref().unwrap_or(&x),
                rotary,
                keep_mask.as_ref().unwrap_or(mask),
                layer_cache,
                train,
                self.autocast,
                keep,
            );
            x = narrow_rows(x, keep);
            let a = a.to_kind(x.kind());
            match &layer.feedforward_norms {
                None => {
                    x = x.g_add(&a);
                    let m = layer.mlp.forward(
                        &layer.post_attention_layernorm.forward(&x),
                        train,
                        self.autocast,
                    );
                    x = x.g_add(&m.to_kind(x.kind()));
                }
                Some((pre, post)) => {
                    x = x.g_add(&layer.post_attention_layernorm.forward(&a));
                    let normed = pre.as_ref().map(|n| n.forward(&x));
                    let m = layer
                        .mlp
                        .forward(normed.as_ref().unwrap_or(&x), train, self.autocast);
                    x = x.g_add(&post.forward(&m.to_kind(x.kind())));
                }
            }
        }
        if n_layer == 0 {
            x = step.without_blocks(x);
        }
        if let Some(c) = cache {
            c.len = past + input_ids.size()[1];
        }
        Ok(self.norm.forward(&x))
    }
}
