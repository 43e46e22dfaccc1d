//! An experimental reward model that keeps its language-model head: the scalar head at the last
//! token plus a learned gain times the response's log-likelihood under the RM's own (trained)
//! unembedding. Shared by `rm_diagnose` (`--pool lik`) and `lik_rm_ppo`.

use rlhf_data::collate::TokenizedPair;
use rlhf_model::{CausalLm, Policy};
use rlhf_reward::TrainableRewardModel;
use tch::{Kind, Tensor};

/// See the module doc.
pub struct LikRm {
    pub lm: CausalLm,
    pub head: Tensor,
    pub gain: Tensor,
    /// Normalization (`raw * norm.0 + norm.1`), set by [`LikRm::normalize_on`].
    pub norm: (f64, f64),
}

impl LikRm {
    pub fn new(lm: CausalLm, gain: f64) -> Self {
        let mut lm = lm;
        let e = lm.config().hidden_size();
        let root = lm.var_store_mut().root();
        let head = (&root / "score").var(
            "weight",
            &[1, e],
            tch::nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0 / ((e + 1) as f64).sqrt(),
            },
        );
        let gain = root.var("lik_gain", &[1], tch::nn::Init::Const(gain));
        LikRm {
            lm,
            head,
            gain,
            norm: (1.0, 0.0),
        }
    }

    /// Raw scores: head at the last real token + gain x the log-likelihood of the real tokens
    /// from column `from` on (at least 1).
    pub fn raw(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        from: i64,
        train: bool,
    ) -> rlhf_model::Result<Tensor> {
        let left_padded = !bool::try_from(attention_mask.select(1, 0).to_kind(Kind::Bool).all())?;
        let pm = left_padded.then_some(attention_mask);
        let hidden = self.lm.body().forward(input_ids, pm, None, train)?;
        let (b, t, e) = hidden.size3()?;
        let last = rlhf_model::ops::last_token_index(attention_mask)
            .view([b, 1, 1])
            .expand([b, 1, e], false);
        let h_last = hidden.gather(1, &last, false).squeeze_dim(1);
        let head = h_last.matmul(&self.head.tr()).squeeze_dim(-1);
        let from = from.max(1);
        let n = t - from;
        let logp = self
            .lm
            .lm_logits(&hidden.narrow(1, from - 1, n))
            .log_softmax(-1, Kind::Float);
        let next = input_ids.narrow(1, from, n).unsqueeze(-1);
        let tok = logp.gather(2, &next, false).squeeze_dim(-1);
        let m = attention_mask.narrow(1, from, n).to_kind(Kind::Float);
        let lik = (tok * m).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        Ok(head.to_kind(Kind::Float) + &self.gain * lik)
    }

    /// [`LikRm::raw`] with the normalization applied: what PPO reads.
    fn scored(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        from: i64,
        train: bool,
    ) -> rlhf_model::Result<Tensor> {
        Ok(self.raw(input_ids, attention_mask, from, train)? * self.norm.0 + self.norm.1)
    }

    /// Sets the normalization so the demonstrations' response-only scores have mean 0, std 1.
    pub fn normalize_on(
        &mut self,
        demos: &[TokenizedPair],
        eos: i64,
    ) -> anyhow::Result<(f64, f64)> {
        let _g = tch::no_grad_guard();
        let mut raw = Vec::new();
        for chunk in demos.chunks(64) {
            let (ids, mask, start) = ppo_layout(chunk, eos);
            raw.extend(Vec::<f64>::try_from(
                self.raw(&ids, &mask, start, false)?.to_kind(Kind::Double),
            )?);
        }
        let n = raw.len() as f64;
        let mean = raw.iter().sum::<f64>() / n;
        let std = (raw.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n).sqrt();
        self.norm = (1.0 / std, -mean / std);
        Ok((mean, std))
    }
}

/// Rows as PPO lays them out: left-padded prompt, response + EOS, right padding.
pub fn ppo_layout(pairs: &[TokenizedPair], eos: i64) -> (Tensor, Tensor, i64) {
    let p = pairs.iter().map(|x| x.prompt.len()).max().unwrap_or(0);
    let r = pairs
        .iter()
        .map(|x| x.response.len() + 1)
        .max()
        .unwrap_or(0);
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for x in pairs {
        let lp = p - x.prompt.len();
        ids.extend(std::iter::repeat_n(eos, lp));
        mask.extend(std::iter::repeat_n(0i64, lp));
        ids.extend(x.prompt.iter().map(|&v| v as i64));
        mask.extend(std::iter::repeat_n(1i64, x.prompt.len()));
        ids.extend(x.response.iter().map(|&v| v as i64));
        ids.push(eos);
        mask.extend(std::iter::repeat_n(1i64, x.response.len() + 1));
        let rp = r - x.response.len() - 1;
        ids.extend(std::iter::repeat_n(eos, rp));
        mask.extend(std::iter::repeat_n(0i64, rp));
    }
    let shape = [pairs.len() as i64, (p + r) as i64];
    (
        Tensor::from_slice(&ids).view(shape),
        Tensor::from_slice(&mask).view(shape),
        p as i64,
    )
}

impl rlhf_model::SaveDir for LikRm {
    fn save_dir(&self, dir: &std::path::Path) -> rlhf_model::Result<()> {
        self.lm.save(dir)
    }
}

impl rlhf_model::Checkpointable for LikRm {
    fn meta(&self) -> &rlhf_model::CheckpointMeta {
        self.lm.meta()
    }
    fn meta_mut(&mut self) -> &mut rlhf_model::CheckpointMeta {
        self.lm.meta_mut()
    }
    fn save_with_extras(
        &self,
        dir: &std::path::Path,
        extras: Vec<(&str, Vec<u8>)>,
    ) -> rlhf_model::Result<()> {
        self.lm.save_with(dir, extras)
    }
    fn restore_from(&mut self, _dir: &std::path::Path) -> rlhf_model::Result<()> {
        Err(rlhf_model::ModelError::Input("not resumable".into()))
    }
}

impl TrainableRewardModel for LikRm {
    fn forward_scores(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> rlhf_reward::Result<Tensor> {
        Ok(self.raw(input_ids, attention_mask, 1, train)?)
    }
    fn var_store(&self) -> &tch::nn::VarStore {
        Policy::var_store(&self.lm)
    }
}

impl rlhf_model::RewardModel for LikRm {
    fn score(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> rlhf_model::Result<Tensor> {
        self.scored(input_ids, attention_mask, 1, train)
    }
    fn score_responses(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        response_start: i64,
        train: bool,
    ) -> rlhf_model::Result<Tensor> {
        self.scored(input_ids, attention_mask, response_start, train)
    }
}
