//! Bring your own policy: any network that implements [`Policy`] (`logits` and `var_store`)
//! gets sampling and token log-probs from the trait, so PPO, evaluation and generation code can
//! use it as a policy or as the frozen reference.
//!
//! `cargo run --release -p rlhf-examples --example custom_policy` (under a second on a CPU).
//!
//! README.md quotes the part between the `[readme:...]` markers; a test checks that the two
//! are the same, so edit both together.

// [readme:custom_policy]
use rlhf_model::train::{AdamW, AdamWConfig};
use rlhf_model::{GenerateConfig, Policy};
use tch::{nn, Device, Kind, Tensor};

/// A bigram language model: the next token's logits depend on the current token only.
struct Bigram {
    vs: nn::VarStore,
    table: Tensor, // [V, V]
}

impl Bigram {
    fn new(vocab: i64, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let table = vs.root().zeros("table", &[vocab, vocab]); // trainable
        Bigram { vs, table }
    }
}

impl Policy for Bigram {
    /// `[B, T]` ids and mask (1 = real token) -> `[B, T, V]`; `logits[:, t]` predicts token
    /// `t + 1`.
    fn logits(&self, ids: &Tensor, _mask: &Tensor, _train: bool) -> rlhf_model::Result<Tensor> {
        let (b, t) = ids.size2()?;
        let rows = self.table.index_select(0, &ids.reshape([-1])); // [B * T, V]
        Ok(rows.reshape([b, t, -1]))
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lm = Bigram::new(64, Device::Cpu);
    // Fit one sequence with the trait's token log-probs and the library's AdamW.
    let text = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6, 7, 8]).unsqueeze(0);
    let mask = text.ones_like();
    let opt_cfg = AdamWConfig {
        lr: 0.1,
        ..Default::default()
    };
    let mut opt = AdamW::new(lm.var_store(), &opt_cfg)?;
    for _ in 0..100 {
        let log_probs = lm.token_log_probs(&text, &mask, 1.0, true)?; // [1, T - 1]
        let loss = -log_probs.mean(Kind::Float);
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
    // Generation comes with the trait (uncached; override `generate` for a KV cache).
    let prompt = Tensor::from_slice(&[1i64, 2]).unsqueeze(0);
    let out = lm.generate(&prompt, &prompt.ones_like(), &GenerateConfig::greedy(6))?;
    let tokens = Vec::<i64>::try_from(out.tokens.get(0))?;
    println!("1 2 -> {tokens:?}");
    assert_eq!(tokens, [3, 4, 5, 6, 7, 8]);
    Ok(())
}
// [/readme:custom_policy]

#[cfg(test)]
mod tests {
    /// The README quotes this example verbatim.
    #[test]
    fn readme_quotes_this_example() {
        let this = include_str!("custom_policy.rs");
        let readme = include_str!("../../../README.md");
        let (start, end) = ("// [readme:custom_policy]\n", "// [/readme:custom_policy]");
        let a = this.find(start).expect("start marker") + start.len();
        let b = this.find(end).expect("end marker");
        assert!(
            readme.contains(&this[a..b]),
            "README.md no longer quotes examples/custom_policy.rs: update one or the other"
        );
    }
}
