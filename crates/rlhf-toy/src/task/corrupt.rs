//! Corruptions of a response, and a simulated policy's candidate responses.

use super::*;

/// Ways [`corrupt`] damages a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// Remove one token.
    Drop,
    /// Insert a random vocabulary token.
    Insert,
    /// Replace one token by a different random token.
    Substitute,
    /// Swap two adjacent, different tokens.
    Swap,
    /// Cut the response short.
    Truncate,
    /// Repeat one token.
    Repeat,
}

impl Corruption {
    /// All corruptions.
    pub const ALL: [Corruption; 6] = [
        Corruption::Drop,
        Corruption::Insert,
        Corruption::Substitute,
        Corruption::Swap,
        Corruption::Truncate,
        Corruption::Repeat,
    ];
}

pub(super) fn junk_token<R: Rng + ?Sized>(rng: &mut R) -> &'static str {
    match rng.gen_range(0..5) {
        0 => LETTERS.choose(rng).expect("non-empty"),
        1 => DIGITS.choose(rng).expect("non-empty"),
        2 => PUNCTUATION.choose(rng).expect("non-empty"),
        3 => VERBS.choose(rng).expect("non-empty"),
        _ => {
            let words = Pool::Words.items();
            words[rng.gen_range(0..words.len())]
        }
    }
}

/// Applies one corruption to a response (whitespace-separated tokens). The result differs
/// from the input unless the corruption cannot apply (e.g. `Swap` on equal tokens), in which
/// case a token is inserted instead.
pub fn corrupt<R: Rng + ?Sized>(response: &str, how: Corruption, rng: &mut R) -> String {
    let mut toks: Vec<String> = tokens(response).into_iter().map(String::from).collect();
    let original = toks.clone();
    match how {
        Corruption::Drop if !toks.is_empty() => {
            let i = rng.gen_range(0..toks.len());
            toks.remove(i);
        }
        Corruption::Substitute if !toks.is_empty() => {
            let i = rng.gen_range(0..toks.len());
            loop {
                let t = junk_token(rng);
                if t != toks[i] {
                    toks[i] = t.to_string();
                    break;
                }
            }
        }
        Corruption::Swap => {
            let swappable: Vec<usize> = (0..toks.len().saturating_sub(1))
                .filter(|&i| toks[i] != toks[i + 1])
                .collect();
            if let Some(&i) = swappable.choose(rng) {
                toks.swap(i, i + 1);
            }
        }
        Corruption::Truncate if !toks.is_empty() => {
            let keep = rng.gen_range(0..toks.len());
            toks.truncate(keep);
        }
        Corruption::Repeat if !toks.is_empty() => {
            let i = rng.gen_range(0..toks.len());
            let t = toks[i].clone();
            toks.insert(i, t);
        }
        _ => {}
    }
    if toks == original {
        let i = rng.gen_range(0..=toks.len());
        toks.insert(i, junk_token(rng).to_string());
    }
    toks.join(" ")
}

/// Applies `n` random corruptions.
pub fn corrupt_n<R: Rng + ?Sized>(response: &str, n: usize, rng: &mut R) -> String {
    let mut out = response.to_string();
    for _ in 0..n {
        let how = *Corruption::ALL.choose(rng).expect("non-empty");
        out = corrupt(&out, how, rng);
    }
    out
}

/// Samples `k` **distinct** candidate responses to a task, as a simulated policy of mixed
/// quality would: fully correct answers (about 30%), correct answers with 1-3 corruptions
/// (45%), well-formed answers to a different task (15%) and random tokens (10%).
///
/// This is the reference distribution the labelers are calibrated on.
pub fn sample_candidates<R: Rng + ?Sized>(task: &ToyTask, k: usize, rng: &mut R) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(k);
    let mut attempts = 0;
    while out.len() < k {
        attempts += 1;
        let cand = if attempts > 50 * k {
            // Fallback that always terminates: random token strings grow with attempts.
            let len = 1 + attempts / (50 * k);
            (0..len)
                .map(|_| junk_token(rng))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            let u: f64 = rng.gen();
            if u < 0.30 {
                task.reference_response(rng)
            } else if u < 0.75 {
                let n = rng.gen_range(1..=3);
                corrupt_n(&task.reference_response(rng), n, rng)
            } else if u < 0.90 {
                let other = ToyTask::random(*TaskKind::ALL.choose(rng).expect("non-empty"), rng, 6);
                other.reference_response(rng)
            } else {
                let len = rng.gen_range(1..=6);
                (0..len)
                    .map(|_| junk_token(rng))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        if seen.insert(cand.clone()) {
            out.push(cand);
        }
    }
    out
}
