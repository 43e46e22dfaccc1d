//! The gold score of a response: correctness with partial credit.

use super::*;

/// How many leading tokens follow the sentence grammar, and whether the whole input is one
/// complete sentence.
pub(super) fn grammar_prefix(toks: &[&str]) -> (usize, bool) {
    let is_adj = |w: &str| adjectives().any(|a| a == w);
    let is_noun = |w: &str| nouns().any(|n| n == w);
    let is_verb = |w: &str| VERBS.contains(&w);
    let mut state = 0;
    for (i, &w) in toks.iter().enumerate() {
        let next = match state {
            0 | 4 if w == "the" => state + 1,
            1 | 5 if is_adj(w) => state + 1,
            1 | 2 if is_noun(w) => 3,
            5 | 6 if is_noun(w) => 7,
            3 if is_verb(w) => 4,
            7 if w == "." => 8,
            _ => return (i, false),
        };
        state = next;
    }
    (toks.len(), state == 8)
}

pub(super) fn levenshtein<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(x != y);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Score for a single-token answer: exact 1.0; right first token followed by extra tokens
/// 0.7; a plausible wrong first token `partial(token)`; 0.1 less per extra token, floored at 0.
pub(super) fn single_token_score(
    resp: &[&str],
    ok: impl Fn(&str) -> bool,
    partial: impl Fn(&str) -> f64,
) -> f64 {
    match resp.split_first() {
        None => 0.0,
        Some((first, rest)) => {
            let extra = rest.len() as f64;
            if ok(first) {
                if rest.is_empty() {
                    1.0
                } else {
                    (0.7 - 0.1 * extra).max(0.0)
                }
            } else {
                (partial(first) - 0.1 * extra).max(0.0)
            }
        }
    }
}

/// The programmatic "true" quality of a response, in `[0, 1]`.
///
/// * A fully correct response scores exactly 1.0 and every other response scores less
///   (at most 0.95).
/// * Closed list tasks (reverse, sort, replace, summarize, continue, extract) give partial
///   credit `0.85 * (1 - edit_distance / max_len)` over tokens, so a near miss beats a far miss.
/// * Single-token answers (count, pick, classify, name_one) give partial credit for a plausible
///   but wrong answer (a near count, an item of the list, another label) and lose 0.1 per
///   extra token.
/// * `list` credits each distinct valid word and loses points for duplicates, invalid and
///   surplus words; `sentence` credits the grammatical prefix and the topic word.
/// * Every imperfect, non-empty response also gets a format bonus of up to 0.1: up to 0.05 for
///   a length close to the expected one and up to 0.05 for using the task's vocabulary (the
///   listed items, digits for counts, the kind's words, ...). It orders otherwise equally
///   wrong answers, so RL and the reward model have a gradient to climb everywhere.
///
/// Whitespace is normalized (the response is split on whitespace). Never panics.
pub fn gold_score(task: &ToyTask, response: &str) -> f64 {
    let resp = tokens(response);
    let main = main_score(task, &resp);
    if main >= 1.0 {
        1.0
    } else {
        (main + format_bonus(task, &resp)).min(0.95)
    }
}

/// Expected length range of a correct answer, in tokens.
pub(super) fn expected_len(task: &ToyTask) -> (usize, usize) {
    match task {
        ToyTask::NameOne { .. } => (1, 1),
        ToyTask::List { n, .. } => (*n, *n),
        ToyTask::Sentence { .. } => (5, 9),
        _ => {
            let n = task.ideal_tokens().map_or(1, |t| t.len());
            (n, n)
        }
    }
}

pub(super) fn relevant_token(task: &ToyTask, w: &str) -> bool {
    match task {
        ToyTask::Reverse { items }
        | ToyTask::Sort { items }
        | ToyTask::Summarize { items }
        | ToyTask::Extract { items, .. }
        | ToyTask::Pick { items, .. } => items.iter().any(|i| i == w),
        ToyTask::Replace { items, to, .. } => w == to || items.iter().any(|i| i == w),
        ToyTask::Continue { items } => match (
            items.first().and_then(|i| Pool::ordinal(i)),
            Pool::ordinal(w),
        ) {
            (Some((p, _)), Some((q, _))) => p == q,
            _ => false,
        },
        ToyTask::Count { .. } => DIGITS.contains(&w),
        ToyTask::Classify { .. } => WordKind::from_singular(w).is_some(),
        ToyTask::NameOne { word_kind, .. } | ToyTask::List { word_kind, .. } => {
            word_kind.words().contains(&w)
        }
        ToyTask::Sentence { .. } => {
            w == "the"
                || w == "."
                || VERBS.contains(&w)
                || adjectives().any(|a| a == w)
                || nouns().any(|n| n == w)
        }
    }
}

pub(super) fn format_bonus(task: &ToyTask, resp: &[&str]) -> f64 {
    if resp.is_empty() {
        return 0.0;
    }
    let (lo, hi) = expected_len(task);
    let len = resp.len();
    let gap = if len < lo {
        lo - len
    } else {
        len.saturating_sub(hi)
    };
    let length = 1.0 - gap as f64 / len.max(lo).max(1) as f64;
    let vocab = resp.iter().filter(|w| relevant_token(task, w)).count() as f64 / len as f64;
    0.05 * length + 0.05 * vocab
}

/// The main part of [`gold_score`] (1.0 exactly when fully correct).
pub(super) fn main_score(task: &ToyTask, resp: &[&str]) -> f64 {
    if let Some(ideal) = task.ideal_tokens() {
        match task {
            ToyTask::Count { .. } => {
                let target: i64 = ideal[0].parse().unwrap_or(0);
                return single_token_score(
                    resp,
                    |w| w == ideal[0],
                    |w| match w.parse::<i64>() {
                        Ok(d) if DIGITS.contains(&w) => {
                            0.5 * 0.5f64.powi(((d - target).abs() - 1).max(0) as i32)
                        }
                        _ => 0.0,
                    },
                );
            }
            ToyTask::Pick { items, .. } => {
                if ideal.is_empty() {
                    return 0.0;
                }
                return single_token_score(
                    resp,
                    |w| w == ideal[0],
                    |w| {
                        if items.iter().any(|i| i == w) {
                            0.3
                        } else {
                            0.0
                        }
                    },
                );
            }
            ToyTask::Classify { .. } => {
                if ideal.is_empty() {
                    return 0.0;
                }
                return single_token_score(
                    resp,
                    |w| w == ideal[0],
                    |w| {
                        if WordKind::from_singular(w).is_some() {
                            0.2
                        } else {
                            0.0
                        }
                    },
                );
            }
            _ => {}
        }
        if resp.len() == ideal.len() && resp.iter().zip(&ideal).all(|(a, b)| *a == b) {
            return 1.0;
        }
        if resp.is_empty() || ideal.is_empty() {
            return 0.0;
        }
        let ideal_refs: Vec<&str> = ideal.iter().map(String::as_str).collect();
        let d = levenshtein(resp, &ideal_refs) as f64;
        let m = resp.len().max(ideal.len()) as f64;
        return 0.85 * (1.0 - d / m);
    }
    match task {
        ToyTask::NameOne { word_kind, exclude } => single_token_score(
            resp,
            |w| w != exclude && word_kind.words().contains(&w),
            |w| {
                if w == exclude {
                    0.35
                } else if WordKind::of_word(w).is_some() {
                    0.15
                } else {
                    0.0
                }
            },
        ),
        ToyTask::List { word_kind, n } => {
            let mut seen = HashSet::new();
            let mut valid = 0usize;
            for w in resp {
                if word_kind.words().contains(w) && seen.insert(*w) {
                    valid += 1;
                }
            }
            let bad = resp.len() - valid;
            let surplus = valid.saturating_sub(*n);
            if valid == *n && bad == 0 {
                return 1.0;
            }
            let n = (*n).max(1) as f64;
            (0.85 * (valid.min(n as usize) as f64) / n - 0.1 * (bad + surplus) as f64)
                .clamp(0.0, 0.85)
        }
        ToyTask::Sentence { topic } => {
            let (prefix, complete) = grammar_prefix(resp);
            let has_topic = resp.iter().any(|w| w == topic);
            match (complete, has_topic) {
                (true, true) => 1.0,
                (true, false) => 0.55,
                _ => {
                    let denom = resp.len().max(5) as f64;
                    0.4 * prefix as f64 / denom + if has_topic { 0.3 } else { 0.0 }
                }
            }
        }
        _ => unreachable!("closed tasks are scored above"),
    }
}
