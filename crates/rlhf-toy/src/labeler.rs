//! Simulated labelers: the gold score plus per-labeler noise, calibrated to the paper's
//! inter-labeler agreement.
//!
//! A labeler perceives each response's quality as `gold + T_j * G` with `G` standard Gumbel
//! noise, drawn independently per response, and ranks by perceived quality. So its ranking of K
//! responses follows a Plackett-Luce model and it prefers response `a` over `b` with
//! probability `sigmoid((gold_a - gold_b) / T_j)` — exactly the Bradley-Terry model the reward
//! model is trained with, so `gold / T` is a perfect reward model.
//!
//! Two labelers `i`, `j` agree on a pair with probability `p_i p_j + (1 - p_i)(1 - p_j)`.
//! [`LabelerPool::calibrated`] picks the base temperature so that, averaged over pairs of
//! labelers and over the comparisons of a reference distribution of candidate responses
//! ([`sample_candidates`]), two labelers agree on `target_agreement` of pairs (default 0.73;
//! the paper reports 72.6 ± 1.5% among training labelers). Agreement on other response
//! distributions differs, as it would with people.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::conduct::ToyPrompt;
use super::task::{sample_candidates, Style, TaskKind, ToyTask};
use rlhf_data::error::{Error, Result};

/// The paper's inter-labeler agreement among training labelers.
pub const PAPER_AGREEMENT: f64 = 0.726;

/// Options of the simulated labeler pool.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelerConfig {
    /// Number of labelers. Default: 8.
    pub num_labelers: usize,
    /// Pairwise agreement to calibrate to. Default: 0.73.
    pub target_agreement: f64,
    /// Labelers' noise scales spread evenly over `base * [1 - s, 1 + s]`. Default: 0.3.
    pub noise_spread: f64,
    /// Prompts in the calibration sample. Default: 400.
    pub calibration_prompts: usize,
    /// Smallest K in the calibration sample. Default: 4.
    pub min_k: usize,
    /// Largest K in the calibration sample. Default: 9.
    pub max_k: usize,
    /// Held-out labelers: a disjoint group that judges evaluations, never training data.
    /// Default: 8.
    pub heldout_labelers: usize,
    /// Pairwise agreement the held-out labelers are calibrated to. Default: 0.77 (the paper
    /// reports 77.3 ± 1.3% among its held-out labelers).
    pub heldout_target_agreement: f64,
}

impl Default for LabelerConfig {
    fn default() -> Self {
        LabelerConfig {
            num_labelers: 8,
            target_agreement: 0.73,
            noise_spread: 0.3,
            calibration_prompts: 400,
            min_k: 4,
            max_k: 9,
            heldout_labelers: 8,
            heldout_target_agreement: 0.77,
        }
    }
}

impl LabelerConfig {
    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        if self.num_labelers < 2 {
            return Err(Error::Config(format!(
                "num_labelers is {}: expected at least 2 (agreement needs two labelers)",
                self.num_labelers
            )));
        }
        for (name, v) in [
            ("target_agreement", self.target_agreement),
            ("heldout_target_agreement", self.heldout_target_agreement),
        ] {
            if !(v > 0.5 && v < 1.0) {
                return Err(Error::Config(format!(
                    "{name} is {v}: expected a value in (0.5, 1)"
                )));
            }
        }
        if self.heldout_labelers < 2 {
            return Err(Error::Config(format!(
                "heldout_labelers is {}: expected at least 2",
                self.heldout_labelers
            )));
        }
        if !(0.0..1.0).contains(&self.noise_spread) {
            return Err(Error::Config(format!(
                "noise_spread is {}: expected a value in [0, 1)",
                self.noise_spread
            )));
        }
        if self.min_k < 2 || self.max_k < self.min_k {
            return Err(Error::Config(format!(
                "K range is {}..={}: expected 2 <= min_k <= max_k",
                self.min_k, self.max_k
            )));
        }
        if self.calibration_prompts == 0 {
            return Err(Error::Config(
                "calibration_prompts is 0: expected at least 1".into(),
            ));
        }
        Ok(())
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn gumbel<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // Uniform in the open interval (0, 1).
    let u = ((rng.gen::<u64>() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(-u.ln()).ln()
}

/// One simulated labeler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Labeler {
    /// Index in the pool.
    pub id: usize,
    /// Scale of the Gumbel noise added to gold scores (higher = noisier).
    pub temperature: f64,
}

impl Labeler {
    /// Probability that this labeler prefers a response with gold score `gold_a` over one
    /// with `gold_b`.
    pub fn preference_probability(&self, gold_a: f64, gold_b: f64) -> f64 {
        sigmoid((gold_a - gold_b) / self.temperature)
    }

    /// Ranks items with the given gold scores: returns indices, best first.
    pub fn rank_scores<R: Rng + ?Sized>(&self, gold: &[f64], rng: &mut R) -> Vec<usize> {
        let perceived: Vec<f64> = gold
            .iter()
            .map(|g| g + self.temperature * gumbel(rng))
            .collect();
        let mut idx: Vec<usize> = (0..gold.len()).collect();
        idx.sort_by(|&a, &b| perceived[b].total_cmp(&perceived[a]));
        idx
    }

    /// Ranks responses to a prompt: returns indices into `responses`, best first.
    pub fn rank<R: Rng + ?Sized, S: AsRef<str>>(
        &self,
        prompt: &ToyPrompt,
        responses: &[S],
        rng: &mut R,
    ) -> Vec<usize> {
        let gold: Vec<f64> = responses.iter().map(|r| prompt.gold(r.as_ref())).collect();
        self.rank_scores(&gold, rng)
    }

    /// A pairwise judgement: true if the labeler prefers `a` over `b` (as in the paper's win
    /// rates).
    pub fn prefers<R: Rng + ?Sized>(
        &self,
        prompt: &ToyPrompt,
        a: &str,
        b: &str,
        rng: &mut R,
    ) -> bool {
        let p = self.preference_probability(prompt.gold(a), prompt.gold(b));
        rng.gen::<f64>() < p
    }
}

/// Gold scores of every unordered pair of responses: `(gold_i, gold_j)` for `i < j`.
pub fn gold_pairs<S: AsRef<str>>(prompt: &ToyPrompt, responses: &[S]) -> Vec<(f64, f64)> {
    let gold: Vec<f64> = responses.iter().map(|r| prompt.gold(r.as_ref())).collect();
    let mut out = Vec::with_capacity(gold.len() * gold.len().saturating_sub(1) / 2);
    for i in 0..gold.len() {
        for j in i + 1..gold.len() {
            out.push((gold[i], gold[j]));
        }
    }
    out
}

/// Expected fraction of pairs on which two different labelers of `labelers` agree, averaged
/// over all pairs of labelers and over the comparisons `gold_pairs` (pairs with equal gold
/// scores count 0.5).
pub fn expected_agreement(labelers: &[Labeler], gold_pairs: &[(f64, f64)]) -> f64 {
    if labelers.len() < 2 || gold_pairs.is_empty() {
        return f64::NAN;
    }
    let mut total = 0.0;
    let mut count = 0usize;
    for (i, a) in labelers.iter().enumerate() {
        for b in &labelers[i + 1..] {
            let mut s = 0.0;
            for &(x, y) in gold_pairs {
                let pa = a.preference_probability(x, y);
                let pb = b.preference_probability(x, y);
                s += pa * pb + (1.0 - pa) * (1.0 - pb);
            }
            total += s / gold_pairs.len() as f64;
            count += 1;
        }
    }
    total / count as f64
}

/// The reward-model accuracy ceiling: the expected accuracy of the gold score (the best
/// possible predictor) against one labeler's pairwise choices, averaged over labelers. Pairs
/// with equal gold scores count 0.5.
pub fn noise_ceiling(labelers: &[Labeler], gold_pairs: &[(f64, f64)]) -> f64 {
    if labelers.is_empty() || gold_pairs.is_empty() {
        return f64::NAN;
    }
    let mut total = 0.0;
    for l in labelers {
        let s: f64 = gold_pairs
            .iter()
            .map(|&(x, y)| {
                if x == y {
                    0.5
                } else {
                    l.preference_probability(x.max(y), x.min(y))
                }
            })
            .sum();
        total += s / gold_pairs.len() as f64;
    }
    total / labelers.len() as f64
}

/// A measured agreement: how many comparisons two labelers made on the same candidates and
/// how many they agreed on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgreementMeasurement {
    /// Comparisons made (C(K, 2) per sample).
    pub pairs: usize,
    /// Comparisons on which the two labelers agreed.
    pub agreed: usize,
}

impl AgreementMeasurement {
    /// `agreed / pairs`.
    pub fn rate(&self) -> f64 {
        self.agreed as f64 / self.pairs as f64
    }
}

/// A reference sample for calibration: `n` random tasks (kinds uniform, plain style, no
/// constraint) with `k` candidates each, `k` uniform in `min_k..=max_k`, from
/// [`sample_candidates`].
pub fn reference_samples(
    n: usize,
    min_k: usize,
    max_k: usize,
    seed: u64,
) -> Vec<(ToyPrompt, Vec<String>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let kind = TaskKind::ALL[i % TaskKind::ALL.len()];
            let task = ToyTask::random(kind, &mut rng, 6);
            let k = rng.gen_range(min_k..=max_k);
            let cands = sample_candidates(&task, k, &mut rng);
            (ToyPrompt::plain(task, Style::Plain), cands)
        })
        .collect()
}

/// A pool of simulated labelers with calibrated noise.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelerPool {
    /// The labelers.
    pub labelers: Vec<Labeler>,
    /// The base noise scale; labeler temperatures spread around it.
    pub base_temperature: f64,
}

fn spread(base: f64, n: usize, s: f64) -> Vec<Labeler> {
    (0..n)
        .map(|j| {
            let m = if n == 1 {
                1.0
            } else {
                1.0 - s + 2.0 * s * j as f64 / (n - 1) as f64
            };
            Labeler {
                id: j,
                temperature: base * m,
            }
        })
        .collect()
}

impl LabelerPool {
    /// A pool with a given base temperature (no calibration).
    pub fn with_temperature(
        base_temperature: f64,
        num_labelers: usize,
        noise_spread: f64,
    ) -> Result<Self> {
        if !(base_temperature.is_finite() && base_temperature > 0.0) {
            return Err(Error::Config(format!(
                "base_temperature is {base_temperature}: expected a finite value > 0"
            )));
        }
        if num_labelers == 0 {
            return Err(Error::Config(
                "num_labelers is 0: expected at least 1".into(),
            ));
        }
        Ok(LabelerPool {
            labelers: spread(base_temperature, num_labelers, noise_spread),
            base_temperature,
        })
    }

    /// Calibrates on the reference distribution ([`reference_samples`] with the config's size
    /// and K range, seeded by `seed`).
    pub fn calibrated(cfg: &LabelerConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let samples = reference_samples(cfg.calibration_prompts, cfg.min_k, cfg.max_k, seed);
        let pairs: Vec<(f64, f64)> = samples.iter().flat_map(|(t, c)| gold_pairs(t, c)).collect();
        Self::calibrated_on(&pairs, cfg)
    }

    /// Calibrates on given gold-score pairs: bisection on the base temperature so that
    /// [`expected_agreement`] equals `cfg.target_agreement`.
    pub fn calibrated_on(gold_pairs: &[(f64, f64)], cfg: &LabelerConfig) -> Result<Self> {
        cfg.validate()?;
        if gold_pairs.is_empty() {
            return Err(Error::Config(
                "no comparisons to calibrate on: expected at least one gold-score pair".into(),
            ));
        }
        let agreement =
            |t: f64| expected_agreement(&spread(t, cfg.num_labelers, cfg.noise_spread), gold_pairs);
        let (mut lo, mut hi) = (1e-4f64.ln(), 1e2f64.ln());
        let best = agreement(lo.exp());
        if best < cfg.target_agreement {
            return Err(Error::Config(format!(
                "target_agreement {} is unreachable on these comparisons (at most {best:.3}: \
                 too many ties in gold score); expected a lower target",
                cfg.target_agreement
            )));
        }
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if agreement(mid.exp()) > cfg.target_agreement {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Self::with_temperature((0.5 * (lo + hi)).exp(), cfg.num_labelers, cfg.noise_spread)
    }

    /// The held-out labelers of `cfg` (`heldout_labelers` of them, calibrated to
    /// `heldout_target_agreement` on `gold_pairs`), with ids after the training pool's so the
    /// two groups are disjoint.
    pub fn heldout_on(gold_pairs: &[(f64, f64)], cfg: &LabelerConfig) -> Result<Self> {
        let mut pool = Self::calibrated_on(
            gold_pairs,
            &LabelerConfig {
                num_labelers: cfg.heldout_labelers,
                target_agreement: cfg.heldout_target_agreement,
                ..cfg.clone()
            },
        )?;
        for l in &mut pool.labelers {
            l.id += cfg.num_labelers;
        }
        Ok(pool)
    }

    /// The number of labelers.
    pub fn len(&self) -> usize {
        self.labelers.len()
    }

    /// True if the pool has no labeler.
    pub fn is_empty(&self) -> bool {
        self.labelers.is_empty()
    }

    /// A uniformly random labeler.
    pub fn choose<R: Rng + ?Sized>(&self, rng: &mut R) -> &Labeler {
        &self.labelers[rng.gen_range(0..self.labelers.len())]
    }

    /// [`expected_agreement`] of this pool.
    pub fn expected_agreement(&self, gold_pairs: &[(f64, f64)]) -> f64 {
        expected_agreement(&self.labelers, gold_pairs)
    }

    /// [`noise_ceiling`] of this pool.
    pub fn noise_ceiling(&self, gold_pairs: &[(f64, f64)]) -> f64 {
        noise_ceiling(&self.labelers, gold_pairs)
    }

    /// Simulates the agreement measurement: for each sample, two different random labelers
    /// rank the candidates and every pair of candidates is checked for agreement.
    pub fn measure_agreement<R: Rng + ?Sized>(
        &self,
        samples: &[(ToyPrompt, Vec<String>)],
        rng: &mut R,
    ) -> AgreementMeasurement {
        let mut m = AgreementMeasurement {
            pairs: 0,
            agreed: 0,
        };
        if self.labelers.len() < 2 {
            return m;
        }
        for (task, cands) in samples {
            let a = rng.gen_range(0..self.labelers.len());
            let b = (a + rng.gen_range(1..self.labelers.len())) % self.labelers.len();
            let ra = self.labelers[a].rank(task, cands, rng);
            let rb = self.labelers[b].rank(task, cands, rng);
            let mut pos_a = vec![0; cands.len()];
            let mut pos_b = vec![0; cands.len()];
            for (p, &i) in ra.iter().enumerate() {
                pos_a[i] = p;
            }
            for (p, &i) in rb.iter().enumerate() {
                pos_b[i] = p;
            }
            for i in 0..cands.len() {
                for j in i + 1..cands.len() {
                    m.pairs += 1;
                    if (pos_a[i] < pos_a[j]) == (pos_b[i] < pos_b[j]) {
                        m.agreed += 1;
                    }
                }
            }
        }
        m
    }
}
