//! The GPT-2 transformer body: token and learned position embeddings, pre-LN blocks with causal
//! self-attention (scaled dot-product attention) and a GELU MLP, final LayerNorm.
//!
//! Variable names mirror Hugging Face (`wte`, `wpe`, `h.{i}.attn.c_attn`, `ln_f`, ...) and the
//! Conv1D weights are stored as Hugging Face stores them, `[in, out]`, and applied as
//! `x @ W + b`, so a `model.safetensors` written by `transformers` loads without renaming or
//! transposing.

use crate::body::normal_var;
use crate::config::{Activation, Gpt2Config};
use crate::error::{ModelError, Result};
use crate::lora::{Adapter, Projection};
use crate::model_config::KvLayout;
use crate::train::{EMBEDDING_GROUP, NO_DECAY_GROUP};
use std::ops::Range;
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// Hugging Face's `Conv1D`: a linear layer whose weight is stored `[in, out]`.
#[derive(Debug)]
pub(crate) struct Conv1D {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    lora: Option<Adapter>,
}

impl Conv1D {
    fn new(p: nn::Path, n_in: i64, n_out: i64, std: f64) -> Self {
        let weight = normal_var(&p, "weight", &[n_in, n_out], std);
        let bias = p.set_group(NO_DECAY_GROUP).zeros("bias", &[n_out]);
        Conv1D {
            weight,
            bias,
            lora: None,
        }
    }

    /// Shapes: `[.., in] -> [.., out]`. With `autocast`, computes in that precision from the
    /// f32 master weights (gradients flow back to them through the cast). Plus the LoRA update
    /// when adapted and enabled.
    fn forward(&self, x: &Tensor, train: bool, autocast: Option<Kind>) -> Tensor {
        let y = self.forward_base(x, autocast);
        match &self.lora {
            Some(a) => a.apply(x, y, train, autocast),
            None => y,
        }
    }

    fn forward_base(&self, x: &Tensor, autocast: Option<Kind>) -> Tensor {
        let mut shape = x.size();
        let n_in = *shape.last().expect("Conv1D input has at least one dim");
        let n_out = self.weight.size()[1];
        let y = match autocast {
            Some(k) => self
                .bias
                .to_kind(k)
                .addmm(&x.reshape([-1, n_in]).to_kind(k), &self.weight.to_kind(k)),
            None => self.bias.addmm(&x.reshape([-1, n_in]), &self.weight),
        };
        *shape.last_mut().unwrap() = n_out;
        y.view(shape.as_slice())
    }
}

impl Projection for Conv1D {
    fn features(&self) -> (i64, i64) {
        self.weight.size2().expect("an [in, out] weight")
    }

    fn adapter(&mut self) -> &mut Option<Adapter> {
        &mut self.lora
    }

    fn merged_weight(&mut self) -> Option<Tensor> {
        Some(&self.weight + self.lora.as_ref()?.delta().tr())
    }
}

/// Keys and values of every layer for incremental decoding, preallocated to `capacity` tokens.
///
/// Shapes: each layer holds `k`, `v` of `[B, n_kv_heads, capacity, head_dim]`; `len` tokens are
/// filled.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<(Tensor, Tensor)>,
    pub(crate) len: i64,
    pub(crate) capacity: i64,
}

impl KvCache {
    /// An empty cache for `batch` sequences of at most `capacity` tokens (any architecture's
    /// config: [`Gpt2Config`], [`crate::LlamaConfig`], [`crate::ModelConfig`]).
    pub fn new<C: KvLayout + ?Sized>(
        cfg: &C,
        batch: i64,
        capacity: i64,
        kind: Kind,
        device: Device,
    ) -> Self {
        let shape = [batch, cfg.cache_heads(), capacity, cfg.cache_head_dim()];
        let layers = (0..cfg.cache_layers())
            .map(|_| {
                (
                    Tensor::zeros(shape, (kind, device)),
                    Tensor::zeros(shape, (kind, device)),
                )
            })
            .collect();
        KvCache {
            layers,
            len: 0,
            capacity,
        }
    }

    /// Number of tokens already in the cache.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// True when nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of tokens.
    pub fn capacity(&self) -> i64 {
        self.capacity
    }
}

/// The keys and values one attention call reads: `k`, `v` of `[B, KV, C, D]`, of which the
/// first `len` positions are filled (`C > len` in a KV cache with room left).
pub(crate) struct Keys {
    pub(crate) k: Tensor,
    pub(crate) v: Tensor,
    pub(crate) len: i64,
}

impl Keys {
    /// The new keys and values `[B, KV, T, D]` of a forward call, first written into `cache`
    /// after its `past` tokens when there is one (then the keys are the whole cache).
    pub(crate) fn new(k: Tensor, v: Tensor, cache: Option<(&mut (Tensor, Tensor), i64)>) -> Keys {
        match cache {
            None => {
                let len = k.size()[2];
                Keys { k, v, len }
            }
            Some(((kc, vc), past)) => {
                let t = k.size()[2];
                kc.narrow(2, past, t).copy_(&k);
                vc.narrow(2, past, t).copy_(&v);
                Keys {
                    k: kc.shallow_clone(),
                    v: vc.shallow_clone(),
                    len: past + t,
                }
            }
        }
    }
}

/// How queries may attend to keys in one forward call.
pub(crate) enum AttnMask {
    /// Plain causal attention, no padding, no past: SDPA's `is_causal` fast path.
    Causal,
    /// Every query may see every key (one new token per row, no padding among the keys).
    All,
    /// Explicit boolean mask `[B or 1, 1, T, S]`, true = may attend.
    Bool(Tensor),
}

impl AttnMask {
    /// Builds the mask for `t` new queries after `past` cached tokens.
    ///
    /// `key_mask` is `[B, past + t]` with 1 for real tokens, or `None` when nothing is padded.
    /// A query always sees itself, so padded query rows never attend to nothing (which would
    /// give NaN); their outputs are garbage but finite and are never read.
    pub(crate) fn build(key_mask: Option<&Tensor>, past: i64, t: i64, device: Device) -> AttnMask {
        match key_mask {
            None if past == 0 => AttnMask::Causal,
            None if t == 1 => AttnMask::All,
            _ => {
                let s = past + t;
                let q_idx = Tensor::arange_start(past, s, (Kind::Int64, device)).view([t, 1]);
                let k_idx = Tensor::arange(s, (Kind::Int64, device)).view([1, s]);
                let causal = k_idx.le_tensor(&q_idx); // [t, s]
                let mask = match key_mask {
                    None => causal.view([1, 1, t, s]),
                    Some(km) => {
                        let b = km.size()[0];
                        let real = km.to_kind(Kind::Bool).view([b, 1, 1, s]);
                        let own = k_idx.eq_tensor(&q_idx).view([1, 1, t, s]);
                        causal
                            .view([1, 1, t, s])
                            .logical_and(&real)
                            .logical_or(&own)
                    }
                };
                AttnMask::Bool(mask)
            }
        }
    }

    /// Scaled dot-product attention of the queries over `keys` under this mask.
    ///
    /// Shapes: `q [B, H, R, D]`, `keys` of `[B, KV, C, D]` (their first `len` positions read)
    /// -> `[B, H, R, D]`, where `KV` divides `H` (grouped-query attention: query head `h` reads
    /// key/value head `h / (H / KV)`, as Hugging Face's `repeat_kv` arranges them). `scale`
    /// defaults to `1 / sqrt(D)`.
    ///
    /// One query per row without gradients (each decoding step of the KV-cache sampler, and
    /// the last-token rows of a scoring pass) with grouped queries, or in a reduced precision
    /// on the CPU, is computed as two batched products and a softmax in f32 directly on the
    /// cache: the fused kernel would need the cache repeated `H / KV` times (a copy of it at
    /// every step), and on the CPU it runs bf16 at a third of this path's speed. In bf16 the
    /// products read the whole cache, its unfilled positions masked out (their weights are
    /// exactly 0), because the bf16 product copies a view of the first `len` positions before
    /// it starts. Measured on a 2-core CPU, alternating with the fused kernel: SmolLM2-135M's
    /// decoding (`bench --workload gen --size smollm2 --shape 16,64,64`) in 0.89-0.94x the
    /// time in f32 and 0.68-0.74x in bf16; W-GEN tiny in bf16 in 0.67x (0.74x with views of
    /// the filled positions). Everything else, f32 GPT-2 decoding included (no faster this
    /// way), keeps the fused kernel, so its results are unchanged bit for bit. The same math
    /// as the fused kernel, up to float rounding (tests: cached decoding against the full
    /// forward in `generation.rs`, `llama_parity.rs` and `bf16.rs`; this path against the
    /// fused one, below).
    ///
    /// `softcap` (Gemma 2's `attn_logit_softcapping`) bounds the scores, `cap * tanh(scores /
    /// cap)` before the mask and the softmax, as `transformers`' eager attention does; the
    /// fused kernel cannot, so the scores are then computed explicitly.
    pub(crate) fn attend(
        &self,
        q: &Tensor,
        keys: &Keys,
        dropout: f64,
        scale: Option<f64>,
        softcap: Option<f64>,
    ) -> Tensor {
        let (b, h, r, d) = q.size4().expect("queries are [B, H, R, D]");
        let (kv, cap) = (keys.k.size()[1], keys.k.size()[2]);
        let rep = h / kv;
        let grad = q.requires_grad() || keys.k.requires_grad() || keys.v.requires_grad();
        let cpu_reduced = q.device() == Device::Cpu && q.kind() != Kind::Float;
        let (k, v) = (keys.k.narrow(2, 0, keys.len), keys.v.narrow(2, 0, keys.len));
        if let Some(softcap) = softcap {
            let s = keys.len;
            let scale = scale.unwrap_or(1.0 / (d as f64).sqrt());
            // [B, KV, rep * R, D] x [B, KV, D, S]: each key/value head's queries at once.
            let qg = q.reshape([b, kv, rep * r, d]);
            let scores = (qg.matmul(&k.transpose(-1, -2)) * scale).view([b, h, r, s]);
            let scores = (scores / softcap).tanh() * softcap;
            let allowed = match self {
                // The queries are the last `r` of the `s` positions.
                AttnMask::Causal => Some(
                    Tensor::ones([r, s], (Kind::Bool, q.device()))
                        .tril(s - r)
                        .view([1, 1, r, s]),
                ),
                AttnMask::All => None,
                AttnMask::Bool(m) => Some(m.shallow_clone()),
            };
            let scores = match allowed {
                Some(m) => scores.masked_fill(&m.logical_not(), f64::NEG_INFINITY),
                None => scores,
            };
            let p = scores
                .softmax(-1, Kind::Float)
                .to_kind(v.kind())
                .dropout(dropout, dropout > 0.0);
            return p.view([b, kv, rep * r, s]).matmul(&v).view([b, h, r, d]);
        }
        if r == 1
            && dropout == 0.0
            && !grad
            && !matches!(self, AttnMask::Causal)
            && (rep > 1 || cpu_reduced)
        {
            let scale = scale.unwrap_or(1.0 / (d as f64).sqrt());
            let whole = cpu_reduced && cap > keys.len;
            let (k, v) = if whole { (&keys.k, &keys.v) } else { (&k, &v) };
            let allowed = match self {
                AttnMask::Bool(m) if whole => {
                    let shut = Tensor::zeros(
                        [m.size()[0], 1, 1, cap - keys.len],
                        (Kind::Bool, m.device()),
                    );
                    Some(Tensor::cat(&[m, &shut], -1))
                }
                AttnMask::Bool(m) => Some(m.shallow_clone()),
                _ if whole => Some(
                    Tensor::arange(cap, (Kind::Int64, q.device()))
                        .lt(keys.len)
                        .view([1, 1, 1, cap]),
                ),
                _ => None,
            };
            // [B, KV, rep, D] x [B, KV, D, S]: each key/value head's `rep` queries at once.
            let scores = q.reshape([b, kv, rep, d]).matmul(&k.transpose(-1, -2)) * scale;
            let scores = match allowed {
                Some(m) => scores.masked_fill(&m.logical_not(), f64::NEG_INFINITY),
                None => scores,
            };
            let p = scores.softmax(-1, Kind::Float).to_kind(v.kind());
            return p.matmul(v).reshape([b, h, 1, d]);
        }
        let repeat = |y: Tensor| {
            if rep == 1 {
                return y;
            }
            let (_, _, s, d) = y.size4().expect("keys are [B, KV, S, D]");
            y.unsqueeze(2)
                .expand([b, kv, rep, s, d], false)
                .reshape([b, h, s, d])
        };
        let (k, v) = (repeat(k), repeat(v));
        let sdpa = |m: Option<&Tensor>, causal: bool| {
            Tensor::scaled_dot_product_attention(q, &k, &v, m, dropout, causal, scale, false)
        };
        match self {
            AttnMask::Causal => sdpa(None, true),
            AttnMask::All => sdpa(None, false),
            AttnMask::Bool(m) => sdpa(Some(m), false),
        }
    }

    /// The mask of the queries `rows` only (of the `t` new tokens after `past` cached ones),
    /// against every key.
    pub(crate) fn queries(&self, rows: &Range<i64>, past: i64, t: i64, device: Device) -> AttnMask {
        let len = rows.end - rows.start;
        match self {
            AttnMask::Causal => {
                // SDPA's `is_causal` aligns the mask top-left, which is wrong for a later run of
                // queries: spell it out.
                let s = past + t;
                let q_idx =
                    Tensor::arange_start(past + rows.start, past + rows.end, (Kind::Int64, device))
                        .view([len, 1]);
                let k_idx = Tensor::arange(s, (Kind::Int64, device)).view([1, s]);
                AttnMask::Bool(k_idx.le_tensor(&q_idx).view([1, 1, len, s]))
            }
            AttnMask::All => AttnMask::All,
            AttnMask::Bool(m) => AttnMask::Bool(m.narrow(2, rows.start, len)),
        }
    }
}

/// Checks the `rows` of a forward call against its `t` new tokens; `None` when they are all of
/// them (the plain forward).
fn query_rows(rows: Option<Range<i64>>, t: i64) -> Result<Option<Range<i64>>> {
    match rows {
        None => Ok(None),
        Some(r) if r.start < 0 || r.start >= r.end || r.end > t => Err(ModelError::Input(format!(
            "rows {}..{} must be a non-empty range within the {t} new tokens",
            r.start, r.end
        ))),
        Some(r) if r.start == 0 && r.end == t => Ok(None),
        Some(r) => Ok(Some(r)),
    }
}

/// What one forward call derives from its inputs: the number of cached tokens, the position
/// ids of the new tokens, the attention mask and the rows the call returns. Shared by every
/// architecture.
pub(crate) struct Step {
    /// Tokens already in the cache.
    pub(crate) past: i64,
    /// New tokens.
    t: i64,
    /// Position ids `[B or 1, T]` of the new tokens (`cumsum(mask) - 1` under padding).
    pub(crate) positions: Tensor,
    /// Who may attend to whom.
    pub(crate) mask: AttnMask,
    /// The new-token positions whose outputs are returned (`None`: all of them).
    rows: Option<Range<i64>>,
    device: Device,
}

impl Step {
    /// Checks shapes, the cache's room and `rows`; `n_positions` is the model's context.
    pub(crate) fn new(
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&KvCache>,
        n_positions: i64,
        rows: Option<Range<i64>>,
    ) -> Result<Step> {
        let (b, t) = input_ids.size2().map_err(|_| {
            ModelError::Input(format!(
                "input_ids must be [B, T], got {:?}",
                input_ids.size()
            ))
        })?;
        let past = cache.map_or(0, |c| c.len);
        if let Some(c) = cache {
            if past + t > c.capacity {
                return Err(ModelError::Input(format!(
                    "KV cache holds {} tokens; {} + {} do not fit",
                    c.capacity, past, t
                )));
            }
        }
        if past + t > n_positions {
            return Err(ModelError::Input(format!(
                "sequence of {} tokens is longer than the model's context of {n_positions} \
                 (n_positions / max_position_embeddings)",
                past + t,
            )));
        }
        let device = input_ids.device();
        let positions = match attention_mask {
            Some(m) => {
                if m.size() != [b, past + t] {
                    return Err(ModelError::Input(format!(
                        "attention_mask must be [{b}, {}], got {:?}",
                        past + t,
                        m.size()
                    )));
                }
                let pos = (m.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0);
                pos.narrow(1, past, t)
            }
            None => Tensor::arange_start(past, past + t, (Kind::Int64, device)).unsqueeze(0),
        };
        let mask = AttnMask::build(attention_mask, past, t, device);
        Ok(Step {
            past,
            t,
            positions,
            mask,
            rows: query_rows(rows, t)?,
            device,
        })
    }

    /// The query rows block `i` of `n_layer` computes and their mask (cut from `mask`, the
    /// block's mask for all of them): the rows asked for at the last block, `(None, None)`
    /// (every row, `mask`) elsewhere.
    pub(crate) fn block_queries(
        &self,
        i: usize,
        n_layer: usize,
        mask: &AttnMask,
    ) -> (Option<&Range<i64>>, Option<AttnMask>) {
        let keep = self.rows.as_ref().filter(|_| i + 1 == n_layer);
        let mask = keep.map(|r| mask.queries(r, self.past, self.t, self.device));
        (keep, mask)
    }

    /// The mask of a local (sliding-window) attention layer: [`Step::mask`] without the keys
    /// `window` or more positions before their query (Hugging Face's `kv_idx > q_idx -
    /// sliding_window`, on positions in the padded sequence as the cache holds them). `None`
    /// when the call's `past + t` tokens fit in the window: then no key is that far and
    /// [`Step::mask`] applies as it is.
    pub(crate) fn windowed(&self, window: i64) -> Option<AttnMask> {
        let (t, s) = (self.t, self.past + self.t);
        if s <= window {
            return None;
        }
        let q_idx = Tensor::arange_start(self.past, s, (Kind::Int64, self.device)).view([t, 1]);
        let k_idx = Tensor::arange(s, (Kind::Int64, self.device)).view([1, s]);
        let near = k_idx.gt_tensor(&(&q_idx - window)).view([1, 1, t, s]);
        Some(AttnMask::Bool(match &self.mask {
            AttnMask::Causal => k_idx
                .le_tensor(&q_idx)
                .view([1, 1, t, s])
                .logical_and(&near),
            AttnMask::All => near,
            AttnMask::Bool(m) => m.logical_and(&near),
        }))
    }

    /// The hidden states `x [B, T, E]` narrowed to the rows asked for: what a body without
    /// blocks returns (with blocks, the last one narrows its residual stream itself).
    pub(crate) fn without_blocks(&self, x: Tensor) -> Tensor {
        narrow_rows(x, self.rows.as_ref())
    }
}

/// `x [B, T, ..]` narrowed to `rows` along the time axis (`None`: unchanged).
pub(crate) fn narrow_rows(x: Tensor, rows: Option<&Range<i64>>) -> Tensor {
    match rows {
        Some(r) => x.narrow(1, r.start, r.end - r.start),
        None => x,
    }
}

#[derive(Debug)]
struct Attention {
    c_attn: Conv1D,
    c_proj: Conv1D,
    n_head: i64,
    head_dim: i64,
    attn_pdrop: f64,
    resid_pdrop: f64,
    scale: Option<f64>,
}

impl Attention {
    fn new(p: nn::Path, cfg: &Gpt2Config) -> Self {
        let e = cfg.n_embd;
        let std = cfg.initializer_range;
        let proj_std = std / (2.0 * cfg.n_layer as f64).sqrt();
        Attention {
            c_attn: Conv1D::new(&p / "c_attn", e, 3 * e, std),
            c_proj: Conv1D::new(&p / "c_proj", e, e, proj_std),
            n_head: cfg.n_head,
            head_dim: cfg.head_dim(),
            attn_pdrop: cfg.attn_pdrop,
            resid_pdrop: cfg.resid_pdrop,
            scale: if cfg.scale_attn_weights {
                None
            } else {
                Some(1.0)
            },
        }
    }

    /// Shapes: `x [B, T, E] -> [B, R, E]`, the outputs of the query positions `rows` (`R` of
    /// them; all `T` for `None`, and `mask` is then the queries' own). Keys and values (and the
    /// cache) cover all `T`.
    fn forward(
        &self,
        x: &Tensor,
        mask: &AttnMask,
        cache: Option<(&mut (Tensor, Tensor), i64)>,
        train: bool,
        autocast: Option<Kind>,
        rows: Option<&Range<i64>>,
    ) -> Tensor {
        let (b, t, e) = x.size3().expect("attention input is [B, T, E]");
        // Split (not permute + select): the backward of `split` is one `cat` of the three
        // gradients, where each `select` would scatter into its own zero-filled [3, B, H, T, D]
        // buffer and the three would then be summed (attention block fwd + bwd 0.85x).
        let heads = |y: &Tensor| {
            y.view([b, t, self.n_head, self.head_dim]).transpose(1, 2) // [B, H, T, D]
        };
        let qkv = self.c_attn.forward(x, train, autocast).split(e, -1);
        let q = match rows {
            None => heads(&qkv[0]),
            Some(r) => heads(&qkv[0]).narrow(2, r.start, r.end - r.start),
        };
        let keys = Keys::new(heads(&qkv[1]), heads(&qkv[2]), cache);
        let dropout = if train { self.attn_pdrop } else { 0.0 };
        let y = mask.attend(&q, &keys, dropout, self.scale, None);
        let r = q.size()[2];
        let y = y.transpose(1, 2).reshape([b, r, e]);
        self.c_proj
            .forward(&y, train, autocast)
            .dropout(self.resid_pdrop, train)
    }
}

#[derive(Debug)]
struct Mlp {
    c_fc: Conv1D,
    c_proj: Conv1D,
    act: Activation,
    resid_pdrop: f64,
}

impl Mlp {
    fn new(p: nn::Path, cfg: &Gpt2Config, act: Activation) -> Self {
        let std = cfg.initializer_range;
        let proj_std = std / (2.0 * cfg.n_layer as f64).sqrt();
        Mlp {
            c_fc: Conv1D::new(&p / "c_fc", cfg.n_embd, cfg.inner_dim(), std),
            c_proj: Conv1D::new(&p / "c_proj", cfg.inner_dim(), cfg.n_embd, proj_std),
            act,
            resid_pdrop: cfg.resid_pdrop,
        }
    }

    fn forward(&self, x: &Tensor, train: bool, autocast: Option<Kind>) -> Tensor {
        let h = self.c_fc.forward(x, train, autocast);
        let h = match self.act {
            Activation::GeluTanh => h.gelu("tanh"),
            Activation::Gelu => h.gelu("none"),
            Activation::Relu => h.relu(),
        };
        self.c_proj
            .forward(&h, train, autocast)
            .dropout(self.resid_pdrop, train)
    }
}

#[derive(Debug)]
struct Block {
    ln_1: nn::LayerNorm,
    attn: Attention,
    ln_2: nn::LayerNorm,
    mlp: Mlp,
}

fn layer_norm(p: nn::Path, cfg: &Gpt2Config) -> nn::LayerNorm {
    nn::layer_norm(
        p.set_group(NO_DECAY_GROUP),
        vec![cfg.n_embd],
        nn::LayerNormConfig {
            eps: cfg.layer_norm_epsilon,
            ..Default::default()
        },
    )
}

/// The GPT-2 transformer (Hugging Face's `GPT2Model`): embeddings, blocks, final LayerNorm.
#[derive(Debug)]
pub struct Gpt2 {
    pub(crate) wte: Tensor,
    wpe: Tensor,
    h: Vec<Block>,
    ln_f: nn::LayerNorm,
    cfg: Gpt2Config,
    autocast: Option<Kind>,
}

impl Gpt2 {
    /// Creates the variables under `p` (conventionally `root / "transformer"`), initialized as
    /// Hugging Face does (normal(0, initializer_range), residual projections scaled by
    /// 1/sqrt(2 n_layer), LayerNorm 1/0). Weight matrices are in optimizer group
    /// [`crate::train::DECAY_GROUP`], biases and LayerNorms in `NO_DECAY_GROUP`, the token and
    /// position embeddings in `EMBEDDING_GROUP`.
    pub fn new(p: &nn::Path, cfg: &Gpt2Config) -> Result<Self> {
        cfg.validate()?;
        let act = cfg.activation()?;
        let std = cfg.initializer_range;
        let emb = p.set_group(EMBEDDING_GROUP);
        let wte = normal_var(
            &(&emb / "wte"),
            "weight",
            &[cfg.vocab_size, cfg.n_embd],
            std,
        );
        let wpe = normal_var(
            &(&emb / "wpe"),
            "weight",
            &[cfg.n_positions, cfg.n_embd],
            std,
        );
        let h = (0..cfg.n_layer)
            .map(|i| {
                let b = p / "h" / i;
                Block {
                    ln_1: layer_norm(&b / "ln_1", cfg),
                    attn: Attention::new(&b / "attn", cfg),
                    ln_2: layer_norm(&b / "ln_2", cfg),
                    mlp: Mlp::new(&b / "mlp", cfg, act),
                }
            })
            .collect();
        let ln_f = layer_norm(p / "ln_f", cfg);
        Ok(Gpt2 {
            wte,
            wpe,
            h,
            ln_f,
            cfg: cfg.clone(),
            autocast: None,
        })
    }

    /// Mixed precision: with `Some(Kind::BFloat16)`, matmuls and attention run in bf16 from the
    /// f32 weights while LayerNorms and the residual stream stay f32 (what PyTorch's autocast
    /// does); gradients reach the f32 weights. `None` (the default) computes in the weights'
    /// dtype.
    pub fn set_autocast(&mut self, kind: Option<Kind>) {
        if kind == Some(Kind::BFloat16) {
            crate::cpu::ensure_usable_cpu_isa();
        }
        self.autocast = kind;
    }

    /// Sets the dropout probabilities used in training mode (e.g. the paper's residual dropout
    /// 0.2 for SFT). The config is updated too, so a saved checkpoint records them.
    pub fn set_dropout(&mut self, resid: f64, embd: f64, attn: f64) {
        self.cfg.resid_pdrop = resid;
        self.cfg.embd_pdrop = embd;
        self.cfg.attn_pdrop = attn;
        for b in &mut self.h {
            b.attn.resid_pdrop = resid;
            b.attn.attn_pdrop = attn;
            b.mlp.resid_pdrop = resid;
        }
    }

    /// The autocast precision, if any.
    pub fn autocast(&self) -> Option<Kind> {
        self.autocast
    }

    /// The dtype activations are computed in: the autocast kind, else the weights'.
    pub fn compute_kind(&self) -> Kind {
        self.autocast.unwrap_or(self.wte.kind())
    }

    /// The config this body was built with.
    pub fn config(&self) -> &Gpt2Config {
        &self.cfg
    }

    /// The projections by module path under the body (`h.{i}.attn.c_attn`, ...).
    pub(crate) fn projections(&mut self) -> Vec<(String, &mut dyn Projection)> {
        let mut out = Vec::new();
        for (i, b) in self.h.iter_mut().enumerate() {
            for (name, c) in [
                ("attn.c_attn", &mut b.attn.c_attn),
                ("attn.c_proj", &mut b.attn.c_proj),
                ("mlp.c_fc", &mut b.mlp.c_fc),
                ("mlp.c_proj", &mut b.mlp.c_proj),
            ] {
                out.push((format!("h.{i}.{name}"), c as &mut dyn Projection));
            }
        }
        out
    }

    /// The token embedding `[V, E]` (also the tied unembedding).
    pub fn token_embedding(&self) -> &Tensor {
        &self.wte
    }

    /// Runs the transformer.
    ///
    /// Shapes: `input_ids [B, T]` (int64) and `attention_mask [B, past + T]` (1 = real token,
    /// 0 = pad; `None` = no padding) -> hidden states `[B, T, E]` after the final LayerNorm.
    ///
    /// Position ids come from the attention mask (`cumsum(mask) - 1`), so left-padded rows start
    /// at position 0 like unpadded ones. With a cache, the `T` new tokens are appended to it.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Result<Tensor> {
        self.forward_rows(input_ids, attention_mask, cache, train, None)
    }

    /// [`Gpt2::forward`] returning only the hidden states of the new-token positions `rows`
    /// (`[B, R, E]`; `None` = all). The same values, with less work: the last block computes
    /// its attention output and MLP for those positions only (earlier blocks, and every key
    /// and value, still need all of them). With 4 blocks and half the positions asked for,
    /// that is about 10% of the body's FLOPs.
    pub fn forward_rows(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        train: bool,
        rows: Option<Range<i64>>,
    ) -> Result<Tensor> {
        let step = Step::new(
            input_ids,
            attention_mask,
            cache.as_deref(),
            self.cfg.n_positions,
            rows,
        )?;
        let past = step.past;
        let mut x = (Tensor::embedding(&self.wte, input_ids, -1, false, false)
            + Tensor::embedding(&self.wpe, &step.positions, -1, false, false))
        .dropout(self.cfg.embd_pdrop, train);
        let n_layer = self.h.len();
        for (i, block) in self.h.iter().enumerate() {
            let layer_cache = cache.as_mut().map(|c| (&mut c.layers[i], past));
            let (keep, keep_mask) = step.block_queries(i, n_layer, &step.mask);
            let a = block.attn.forward(
                &block.ln_1.forward(&x),
                keep_mask.as_ref().unwrap_or(&step.mask),
                layer_cache,
                train,
                self.autocast,
                keep,
            );
            // Out of place: LayerNorm's backward needs the residual input unchanged.
            x = narrow_rows(x, keep).g_add(&a);
            let m = block
                .mlp
                .forward(&block.ln_2.forward(&x), train, self.autocast);
            x = x.g_add(&m);
        }
        if n_layer == 0 {
            x = step.without_blocks(x);
        }
        if let Some(c) = cache {
            c.len = past + input_ids.size()[1];
        }
        Ok(self.ln_f.forward(&x))
    }
}

#[cfg(test)]
mod tests {
    use super::{AttnMask, Keys};
    use tch::{Device, Kind, Tensor};

    /// `attend`'s one-query path (views of a cache, grouped queries, padding) against
    /// PyTorch's fused attention over the repeated keys and values.
    #[test]
    fn one_query_attention_matches_the_fused_kernel() {
        tch::manual_seed(0);
        let (b, h, d, cap, s) = (3i64, 6i64, 8i64, 12i64, 9i64);
        // Grouped queries in f32 and bf16, and one key/value head per query head in bf16 (f32
        // without groups takes the fused kernel itself).
        for (kind, kv, tol) in [
            (Kind::Float, 2i64, 1e-5),
            (Kind::BFloat16, 2, 2e-2),
            (Kind::BFloat16, 6, 2e-2),
        ] {
            let q = Tensor::randn([b, h, 1, d], (Kind::Float, Device::Cpu)).to_kind(kind);
            let kc = Tensor::randn([b, kv, cap, d], (Kind::Float, Device::Cpu)).to_kind(kind);
            let vc = Tensor::randn([b, kv, cap, d], (Kind::Float, Device::Cpu)).to_kind(kind);
            // Views of the first `s` cache positions, as the sampler passes them.
            let (k, v) = (kc.narrow(2, 0, s), vc.narrow(2, 0, s));
            // Row 0 unpadded, row 1 left-padded by 3, row 2 by 7 (it still sees its last keys).
            let keys = Tensor::from_slice(&[0i64, 3, 7]).view([b, 1]);
            let real = Tensor::arange(s, (Kind::Int64, Device::Cpu))
                .view([1, s])
                .ge_tensor(&keys);
            let rep = |y: &Tensor| {
                y.unsqueeze(2)
                    .expand([b, kv, h / kv, s, d], false)
                    .reshape([b, h, s, d])
            };
            for (mask, fused_mask) in [
                (AttnMask::All, None),
                (
                    AttnMask::Bool(real.view([b, 1, 1, s])),
                    Some(real.view([b, 1, 1, s])),
                ),
            ] {
                for scale in [None, Some(1.0)] {
                    let keys = Keys {
                        k: kc.shallow_clone(),
                        v: vc.shallow_clone(),
                        len: s,
                    };
                    let got = tch::no_grad(|| mask.attend(&q, &keys, 0.0, scale, None));
                    let want = Tensor::scaled_dot_product_attention(
                        &q,
                        &rep(&k),
                        &rep(&v),
                        fused_mask.as_ref(),
                        0.0,
                        false,
                        scale,
                        false,
                    );
                    assert_eq!(got.size(), [b, h, 1, d]);
                    assert_eq!(got.kind(), kind);
                    let diff = (got.to_kind(Kind::Float) - want.to_kind(Kind::Float))
                        .abs()
                        .max()
                        .double_value(&[]);
                    assert!(
                        diff < tol,
                        "{kind:?} kv {kv} scale {scale:?}: max |diff| {diff}"
                    );
                }
            }
        }
    }
}
