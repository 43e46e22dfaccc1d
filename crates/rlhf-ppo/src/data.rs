//! Prompt batches for iterations: a seeded order reshuffled every pass over the prompts, a
//! pure function of the iteration number (so a resumed run sees the prompts an uninterrupted
//! one would), and left padding.

use crate::error::{input_err, Result};
use tch::Tensor;

/// Indices (into `n` prompts) of the `batch` prompts of iteration `it` (0-based).
pub fn prompt_indices(n: usize, batch: usize, it: u64, seed: u64) -> Vec<usize> {
    let mut out = Vec::with_capacity(batch);
    let mut pass_cache: Option<(u64, Vec<usize>)> = None;
    for k in 0..batch as u64 {
        let global = it * batch as u64 + k;
        let pass = global / n as u64;
        if pass_cache.as_ref().is_none_or(|(p, _)| *p != pass) {
            let order =
                rlhf_data::seed::shuffled(n, seed ^ pass.wrapping_mul(0xA24B_AED4_963E_E407));
            pass_cache = Some((pass, order));
        }
        let order = &pass_cache.as_ref().expect("set above").1;
        out.push(order[(global % n as u64) as usize]);
    }
    out
}

/// Left-pads token rows with `pad`. Returns ids `[B, P]` and mask `[B, P]` (int64) where `P`
/// is the longest row. Errors on an empty batch or an empty row.
pub fn left_pad(rows: &[&[i64]], pad: i64) -> Result<(Tensor, Tensor)> {
    if rows.is_empty() {
        return Err(input_err("no prompts to pad"));
    }
    if let Some(i) = rows.iter().position(|r| r.is_empty()) {
        return Err(input_err(format!("prompt {i} has no tokens")));
    }
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut mask = Vec::with_capacity(rows.len() * width);
    for r in rows {
        let n = width - r.len();
        ids.extend(std::iter::repeat_n(pad, n).chain(r.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, n).chain(std::iter::repeat_n(1, r.len())));
    }
    let shape = [rows.len() as i64, width as i64];
    Ok((
        Tensor::from_slice(&ids).view(shape),
        Tensor::from_slice(&mask).view(shape),
    ))
}
