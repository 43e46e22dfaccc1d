//! Batched sampling: greedy, temperature, top-k, top-p; EOS stop with padding after it; seeded.

use crate::error::{ModelError, Result};
use crate::traits::Policy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// The sampler's random source: uniforms drawn on the host from a seeded ChaCha generator
/// (B numbers per step), so sampling never depends on libtorch's global generator state.
#[derive(Debug, Clone)]
pub struct SamplerRng(ChaCha8Rng);

impl SamplerRng {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        SamplerRng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// From `cfg.seed`, or a seed drawn from libtorch's global generator.
    pub fn from_config(cfg: &GenerateConfig) -> Self {
        let seed = cfg.seed.unwrap_or_else(|| {
            Tensor::randint(i64::MAX, [1], (Kind::Int64, tch::Device::Cpu)).int64_value(&[0]) as u64
        });
        Self::new(seed)
    }

    /// Samples one index per row of `probs [B, V]` (rows need not be normalized) by inverting
    /// the cumulative distribution at a uniform draw. Returns `[B]` int64.
    pub fn sample(&mut self, probs: &Tensor) -> Tensor {
        let (b, v) = probs.size2().expect("probs are [B, V]");
        let u: Vec<f32> = (0..b).map(|_| self.0.gen::<f32>()).collect();
        let cdf = probs.to_kind(Kind::Float).cumsum(-1, Kind::Float);
        let total = cdf.narrow(1, v - 1, 1);
        let u = Tensor::from_slice(&u)
            .to_device(probs.device())
            .unsqueeze(1)
            * total;
        // right=true: the first index whose cumulative mass exceeds u, so tokens of zero
        // probability (flat steps of the CDF) are never picked.
        u.searchsorted(&cdf, false, true, "right", None::<Tensor>)
            .squeeze_dim(1)
            .clamp_max(v - 1)
    }
}

/// How to sample. `Default` is plain sampling at temperature 1 for 32 tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    /// Number of tokens to generate (at most; fewer when every row has hit EOS). Default 32.
    pub max_new_tokens: i64,
    /// Sample (true) or take the argmax (false, greedy). Default true.
    pub do_sample: bool,
    /// Logits are divided by this before sampling and before computing the returned log-probs.
    /// Default 1.0.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens when sampling. Default None.
    pub top_k: Option<i64>,
    /// Keep the smallest set of most likely tokens whose mass reaches `p` (nucleus). Default None.
    pub top_p: Option<f64>,
    /// Stop a row at this token; later positions hold `pad_token_id`. Default None (never stop).
    pub eos_token_id: Option<i64>,
    /// More tokens that stop a row as `eos_token_id` does: the other end-of-sequence ids of a
    /// model whose config lists several (Llama 3 Instruct: `<|end_of_text|>`, `<|eom_id|>`,
    /// `<|eot_id|>`; [`crate::ModelConfig::eos_token_ids`]). Default empty.
    pub stop_token_ids: Vec<i64>,
    /// Written after EOS. Default 0.
    pub pad_token_id: i64,
    /// Seed of the sampler's own random generator: the same seed gives the same samples whatever
    /// else the process does. `None` draws a seed from libtorch's global generator (so
    /// `tch::manual_seed` still makes a run reproducible). Default None.
    pub seed: Option<u64>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_new_tokens: 32,
            do_sample: true,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            eos_token_id: None,
            stop_token_ids: vec![],
            pad_token_id: 0,
            seed: None,
        }
    }
}

impl GenerateConfig {
    /// Greedy decoding of `max_new_tokens`.
    pub fn greedy(max_new_tokens: i64) -> Self {
        GenerateConfig {
            max_new_tokens,
            do_sample: false,
            ..Default::default()
        }
    }

    /// Checks the settings, naming the one to change.
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens < 1 {
            return Err(ModelError::Input(format!(
                "max_new_tokens must be at least 1, got {}",
                self.max_new_tokens
            )));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(ModelError::Input(format!(
                "temperature must be positive, got {} (use greedy decoding for temperature 0)",
                self.temperature
            )));
        }
        if let Some(k) = self.top_k {
            if k < 1 {
                return Err(ModelError::Input(format!(
                    "top_k must be at least 1, got {k}"
                )));
            }
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ModelError::Input(format!(
                    "top_p must be in (0, 1], got {p}"
                )));
            }
        }
        Ok(())
    }
}

/// What [`Policy::generate`] returns. `N <= max_new_tokens` columns.
#[derive(Debug)]
pub struct Generation {
    /// Sampled tokens `[B, N]` (int64); after a row's EOS, `pad_token_id`.
    pub tokens: Tensor,
    /// Log-prob of each sampled token under `softmax(logits / temperature)` (before top-k/top-p
    /// filtering, as training recomputes it) `[B, N]` (f32); 0 after EOS.
    pub log_probs: Tensor,
    /// 1.0 for real response tokens (EOS included), 0.0 for the padding after it, `[B, N]` (f32).
    pub mask: Tensor,
}

/// Masks logits outside the `k` largest to -inf. Shapes: `[B, V] -> [B, V]`.
pub fn filter_top_k(logits: &Tensor, k: i64) -> Tensor {
    let v = logits.size()[logits.dim() - 1];
    if k >= v {
        return logits.shallow_clone();
    }
    let (top, _) = logits.topk(k, -1, true, true);
    let kth = top.narrow(-1, k - 1, 1);
    logits.masked_fill(&logits.lt_tensor(&kth), f64::NEG_INFINITY)
}

/// Masks logits outside the nucleus (smallest most-likely set with mass >= p) to -inf; the most
/// likely token is always kept. Shapes: `[B, V] -> [B, V]`.
pub fn filter_top_p(logits: &Tensor, p: f64) -> Tensor {
    if p >= 1.0 {
        return logits.shallow_clone();
    }
    let (sorted, idx) = logits.sort(-1, true);
    let probs = sorted.softmax(-1, Kind::Float);
    let mass_before = probs.cumsum(-1, Kind::Float) - &probs;
    let remove_sorted = mass_before.ge(p);
    let remove = remove_sorted.scatter(-1, &idx, &remove_sorted);
    logits.masked_fill(&remove, f64::NEG_INFINITY)
}

/// Picks the next token of each row from its logits `[B, V]`; returns the tokens `[B]` (int64)
/// and their log-probs `[B]` (f32) under `softmax(logits / temperature)`.
pub fn sample_next(
    logits: &Tensor,
    cfg: &GenerateConfig,
    rng: &mut SamplerRng,
) -> (Tensor, Tensor) {
    let logits = logits.to_kind(Kind::Float);
    let scaled = if cfg.temperature == 1.0 {
        logits
    } else {
        logits / cfg.temperature
    };
    let logp = scaled.log_softmax(-1, Kind::Float);
    let tokens = if !cfg.do_sample {
        scaled.argmax(-1, false)
    } else if cfg.top_k.is_none() && cfg.top_p.is_none() {
        rng.sample(&logp.exp())
    } else {
        let mut f = scaled.shallow_clone();
        if let Some(k) = cfg.top_k {
            f = filter_top_k(&f, k);
        }
        if let Some(p) = cfg.top_p {
            f = filter_top_p(&f, p);
        }
        rng.sample(&f.softmax(-1, Kind::Float))
    };
    let lp = logp
        .gather(-1, &tokens.unsqueeze(-1), false)
        .squeeze_dim(-1);
    (tokens, lp)
}

/// The decoding loop shared by the cached and uncached samplers.
///
/// `next_logits(ids, mask, n_new)` gets the whole sequence so far (`[B, L]` ids and mask) and
/// how many of its last tokens are new since the previous call, and returns the logits `[B, V]`
/// for the token after position `L - 1`.
pub fn generate_with<F>(
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    cfg: &GenerateConfig,
    mut next_logits: F,
) -> Result<Generation>
where
    F: FnMut(&Tensor, &Tensor, i64) -> Result<Tensor>,
{
    cfg.validate()?;
    let (b, p) = prompt_ids.size2().map_err(|_| {
        ModelError::Input(format!(
            "prompt ids must be [B, P], got {:?}",
            prompt_ids.size()
        ))
    })?;
    if prompt_mask.size() != [b, p] {
        return Err(ModelError::Input(format!(
            "prompt mask must be [{b}, {p}] like the ids, got {:?}",
            prompt_mask.size()
        )));
    }
    if p == 0 {
        return Err(ModelError::Input(
            "prompts must have at least one token".into(),
        ));
    }
    let _guard = tch::no_grad_guard();
    let device = prompt_ids.device();
    let mut rng = SamplerRng::from_config(cfg);
    let n = cfg.max_new_tokens;
    let ids = Tensor::full([b, p + n], cfg.pad_token_id, (Kind::Int64, device));
    ids.narrow(1, 0, p).copy_(prompt_ids);
    let mask = Tensor::ones([b, p + n], (Kind::Int64, device));
    mask.narrow(1, 0, p).copy_(prompt_mask);
    let pad = Tensor::full([b], cfg.pad_token_id, (Kind::Int64, device));
    let mut finished = Tensor::zeros([b], (Kind::Bool, device));
    let stops: Vec<i64> = cfg
        .eos_token_id
        .iter()
        .chain(&cfg.stop_token_ids)
        .copied()
        .collect();
    let (mut toks, mut lps, mut alive_masks) = (vec![], vec![], vec![]);
    let mut n_new = p;
    for i in 0..n {
        let len = p + i;
        let logits = next_logits(&ids.narrow(1, 0, len), &mask.narrow(1, 0, len), n_new)?;
        n_new = 1;
        let (tok, lp) = sample_next(&logits, cfg, &mut rng);
        let alive = finished.logical_not();
        let (tok, lp) = if !stops.is_empty() {
            (
                tok.where_self(&alive, &pad),
                lp * alive.to_kind(Kind::Float),
            )
        } else {
            (tok, lp)
        };
        ids.narrow(1, len, 1).copy_(&tok.unsqueeze(1));
        alive_masks.push(alive.to_kind(Kind::Float));
        for &stop in &stops {
            finished = finished.logical_or(&tok.eq(stop));
        }
        toks.push(tok);
        lps.push(lp);
        // One host sync every 8 tokens, not per token.
        if !stops.is_empty() && i % 8 == 7 && bool::try_from(finished.all())? {
            break;
        }
    }
    Ok(Generation {
        tokens: Tensor::stack(&toks, 1),
        log_probs: Tensor::stack(&lps, 1),
        mask: Tensor::stack(&alive_masks, 1),
    })
}

/// Generation for any [`Policy`] by recomputing the whole sequence at every step (no KV cache).
/// The reference that cached decoding is tested against, and the default of
/// [`Policy::generate`].
pub fn generate_uncached<P: Policy + ?Sized>(
    policy: &P,
    prompt_ids: &Tensor,
    prompt_mask: &Tensor,
    cfg: &GenerateConfig,
) -> Result<Generation> {
    generate_with(prompt_ids, prompt_mask, cfg, |ids, mask, _| {
        let logits = policy.logits(ids, mask, false)?;
        let t = logits.size()[1];
        Ok(logits.narrow(1, t - 1, 1).squeeze_dim(1))
    })
}
