//! The PPO update: `ppo_epochs` passes of shuffled minibatches over a rollout, each the sum of
//! its micro-batches' clipped losses (and the PPO-ptx term), with the statistics summed on the
//! device and read once.

use super::*;

impl<P, R, M, V> PpoTrainer<P, R, M, V>
where
    P: Policy,
    R: Policy,
    M: RewardModel,
    V: ValueFunction,
{
    /// The PPO update on one rollout: `ppo_epochs` x minibatches (x micro-batches).
    /// `ptx` must be given when `ptx_coef > 0`.
    pub fn update(
        &mut self,
        rollout: &Rollout,
        adv: &Advantages,
        mut ptx: Option<&mut dyn PtxSource>,
    ) -> Result<UpdateStats> {
        let cfg = self.config.clone();
        if cfg.ptx_coef > 0.0 && ptx.is_none() {
            return Err(config_err(format!(
                "ptx_coef is {} but no pretraining data was given: pass a PtxSource (the ppo \
                 binary's --pretrain) or set ptx_coef = 0 for plain PPO",
                cfg.ptx_coef
            )));
        }
        let use_ptx = cfg.ptx_coef > 0.0;
        let device = self.models.policy.device();
        let ids = rollout.input_ids();
        let mask = rollout.attention_mask();
        let b = rollout.batch_size() as usize;
        let (mb, micro) = (cfg.minibatch_size, cfg.micro_batch());
        if b == 0 || b % mb != 0 {
            return Err(input_err(format!(
                "the rollout has {b} episodes, not a positive multiple of minibatch_size {mb}"
            )));
        }
        let n_micro = mb / micro;
        // Data parallel: micro-batch j of every minibatch is rank j % N's; each rank's loss is
        // scaled by N so that the averaged gradient is the sum over all micro-batches, as in
        // one process.
        let (rank, world) = (self.comm.rank(), self.comm.world_size());
        let scale = 1.0 / n_micro as f64;
        let loss_scale = scale * world as f64;
        // With fewer micro-batches than ranks (or a remainder), every micro-batch is split
        // across the ranks by rows instead, so that no rank waits.
        let split = world > 1 && n_micro % world != 0;
        // During the critic-only warm-up the policy forward runs without a graph (its
        // statistics are still logged) and no pretraining batch is drawn: no gradient is
        // computed only to be thrown away.
        let train_policy = self.iteration >= cfg.value_warmup_iterations;
        let use_ptx = use_ptx && train_policy;
        let (policy_lr, value_lr) = cfg.lr_now(self.iteration);
        self.policy_opt.set_lr(policy_lr);
        self.value_opt.set_lr(value_lr);

        // Sums of per-micro-batch statistics stay on the device (no sync per micro-batch).
        let mut sums = StatSums::new(device);
        let mut st = UpdateStats::default();
        let (mut n_steps, mut n_ent, mut n_ptx) = (0.0f64, 0.0f64, 0.0f64);
        'epochs: for epoch in 0..cfg.ppo_epochs {
            let order: Vec<i64> = rlhf_data::seed::shuffled(
                b,
                mix(cfg.seed, mix(2 * self.iteration + 2, epoch as u64)),
            )
            .into_iter()
            .map(|i| i as i64)
            .collect();
            for chunk in order.chunks(mb) {
                self.policy_opt.zero_grad();
                self.value_opt.zero_grad();
                let mut step_kl = Tensor::zeros([], (Kind::Float, device));
                for (j, micro_idx) in chunk.chunks(micro).enumerate() {
                    let log_entropy = (cfg.entropy_coef > 0.0 && train_policy) || epoch == 0;
                    if log_entropy {
                        n_ent += 1.0;
                    }
                    // Data parallel: whole micro-batches in turn, or this rank's rows of each
                    // (with its share `w` of the micro-batch's tokens) when they do not divide.
                    let (rows, w) = if split {
                        rank_rows(micro_idx, rank, world, |ix| {
                            let ix = Tensor::from_slice(ix).to_device(device);
                            rollout.response_mask.index_select(0, &ix).sum(Kind::Float)
                        })
                    } else if j % world == rank {
                        (micro_idx, 1.0)
                    } else {
                        if use_ptx {
                            // Keep the pretraining stream where one process would be.
                            let src = ptx.as_deref_mut().expect("checked above");
                            src.next_batch()?;
                            n_ptx += 1.0;
                        }
                        continue;
                    };
                    let idx = Tensor::from_slice(rows).to_device(device);
                    let parts = self.micro_batch_loss(
                        rollout,
                        adv,
                        (&ids, &mask),
                        &idx,
                        train_policy,
                        log_entropy,
                    )?;
                    (&parts.loss * (loss_scale * w)).backward();
                    tch::no_grad(|| {
                        step_kl += &parts.approx_kl * (scale * w);
                        sums.add(&parts, scale * w, w);
                    });
                    if use_ptx {
                        let src = ptx.as_deref_mut().expect("checked above");
                        let batch = src.next_batch()?.to_device(device);
                        let (batch, w) = if split {
                            let n = batch.input_ids.size()[0] as usize;
                            let all: Vec<i64> = (0..n as i64).collect();
                            let (rows, w) = rank_rows(&all, rank, world, |ix| {
                                let t = batch.loss_mask.size()[1];
                                let ix = Tensor::from_slice(ix).to_device(device);
                                batch
                                    .loss_mask
                                    .narrow(1, 1, t - 1)
                                    .index_select(0, &ix)
                                    .sum(Kind::Float)
                            });
                            (batch.narrow_rows(rows[0], rows.len() as i64), w)
                        } else {
                            (batch, 1.0)
                        };
                        let l = ptx_loss(&self.models.policy, &batch, cfg.ptx_coef)?;
                        (&l * (loss_scale * w)).backward();
                        tch::no_grad(|| sums.ptx_loss += l.detach() * w / cfg.ptx_coef);
                        n_ptx += 1.0;
                    }
                }
                if world > 1 {
                    let comm = &*self.comm;
                    if train_policy {
                        data_parallel::average_gradients(comm, self.models.policy.var_store())?;
                    }
                    data_parallel::average_gradients(comm, self.models.value.var_store())?;
                }
                // The global norms before clipping (clip_grad_norm returns them).
                st.policy_grad_norm += match cfg.max_grad_norm {
                    Some(max) => self.policy_opt.clip_grad_norm(max),
                    None => global_grad_norm(self.models.policy.var_store()),
                };
                st.value_grad_norm += match cfg.max_grad_norm {
                    Some(max) => self.value_opt.clip_grad_norm(max),
                    None => global_grad_norm(self.models.value.var_store()),
                };
                if train_policy {
                    self.policy_opt.step();
                    st.optimizer_steps += 1;
                }
                self.value_opt.step();
                n_steps += 1.0;
                if let Some(t) = cfg.target_kl {
                    // The minibatch's approx-KL over every rank's micro-batches: the same
                    // decision everywhere.
                    let mut kl = [step_kl.double_value(&[])];
                    self.comm.all_reduce_sum_f64(&mut kl)?;
                    if kl[0] > t {
                        st.early_stopped = true;
                        break 'epochs;
                    }
                }
            }
        }
        self.policy_opt.zero_grad();
        self.value_opt.zero_grad();
        sums.all_reduce_sum(&*self.comm)?;
        let steps: f64 = n_steps.max(1.0);
        let mean = |t: &Tensor, n: f64| t.double_value(&[]) / n;
        st.approx_kl = mean(&sums.approx_kl, steps);
        st.clipfrac = mean(&sums.clipfrac, steps);
        st.policy_loss = mean(&sums.policy_loss, steps);
        st.value_loss = mean(&sums.value_loss, steps);
        st.value_clipfrac = mean(&sums.value_clipfrac, steps);
        st.policy_entropy = mean(&sums.entropy, n_ent.max(1.0));
        st.ptx_loss = mean(&sums.ptx_loss, n_ptx.max(1.0));
        st.policy_grad_norm /= steps;
        st.value_grad_norm /= steps;
        Ok(st)
    }

    /// The PPO loss of the episodes `idx` of a rollout (whose `[prompt | response]` ids and
    /// mask are given) and its parts: the clipped surrogate
    /// on the policy's log-probabilities (with a graph only when `train_policy`), the clipped
    /// value loss, and the entropy (in the loss when `entropy_coef > 0`, else computed without
    /// a graph when `log_entropy`, for the metrics).
    fn micro_batch_loss(
        &self,
        rollout: &Rollout,
        adv: &Advantages,
        (ids, mask): (&Tensor, &Tensor),
        idx: &Tensor,
        train_policy: bool,
        log_entropy: bool,
    ) -> Result<LossParts> {
        let cfg = &self.config;
        let device = self.models.policy.device();
        let (p, n_resp) = (rollout.prompt_len(), rollout.response_len());
        let pick = |t: &Tensor| t.index_select(0, idx);
        let (ids_m, mask_m) = (pick(ids), pick(mask));
        let resp_mask = pick(&rollout.response_mask);
        // Logits at the response positions only: the prompt's are never used.
        let logits = {
            let _frozen = (!train_policy).then(tch::no_grad_guard);
            self.models
                .policy
                .logits_for_last(&ids_m, &mask_m, n_resp, false)?
        };
        let logp = log_probs_of(&logits, &ids_m.narrow(1, p, n_resp), cfg.temperature);
        let want_entropy = cfg.entropy_coef > 0.0 && train_policy;
        let entropy = if want_entropy {
            Some(masked_entropy(&logits, &resp_mask, cfg.temperature))
        } else if log_entropy {
            Some(tch::no_grad(|| {
                masked_entropy(&logits.detach(), &resp_mask, cfg.temperature)
            }))
        } else {
            None
        };
        drop(logits);
        let vdev = self.models.value.device();
        let vpred = self
            .models
            .value
            .values_for_last(
                &ids_m.to_device(vdev),
                &mask_m.to_device(vdev),
                n_resp,
                false,
            )?
            .to_kind(Kind::Float)
            .to_device(device);
        let pg = clipped_surrogate(
            &logp,
            &pick(&rollout.logprobs),
            &pick(&adv.advantages),
            &resp_mask,
            cfg.clip_range,
        );
        let vf = clipped_value_loss(
            &vpred,
            &pick(&rollout.values),
            &pick(&adv.returns),
            &resp_mask,
            cfg.value_clip_range,
        );
        let zero = Tensor::zeros([], (Kind::Float, device));
        let loss = ppo_loss(
            &pg.loss,
            &vf.loss,
            entropy.as_ref().unwrap_or(&zero),
            cfg.vf_coef,
            cfg.entropy_coef,
        );
        Ok(LossParts {
            loss,
            approx_kl: pg.approx_kl,
            clipfrac: pg.clipfrac,
            policy_loss: pg.loss,
            value_loss: vf.loss,
            value_clipfrac: vf.clipfrac,
            entropy,
        })
    }
}

/// One micro-batch's PPO loss and its parts ([`PpoTrainer::update`]).
struct LossParts {
    /// `policy + vf_coef * value - entropy_coef * entropy`: what is backpropagated.
    loss: Tensor,
    approx_kl: Tensor,
    clipfrac: Tensor,
    policy_loss: Tensor,
    value_loss: Tensor,
    value_clipfrac: Tensor,
    /// The mean entropy, when computed.
    entropy: Option<Tensor>,
}

/// Sums of the micro-batches' statistics over an update, on the device (read once at the end,
/// no host sync per micro-batch). The loss parts are weighted by 1 / micro-batches per step;
/// entropy and the ptx loss are plain sums.
struct StatSums {
    approx_kl: Tensor,
    clipfrac: Tensor,
    policy_loss: Tensor,
    value_loss: Tensor,
    value_clipfrac: Tensor,
    entropy: Tensor,
    ptx_loss: Tensor,
}

impl StatSums {
    fn new(device: tch::Device) -> Self {
        let z = || Tensor::zeros([], (Kind::Float, device));
        StatSums {
            approx_kl: z(),
            clipfrac: z(),
            policy_loss: z(),
            value_loss: z(),
            value_clipfrac: z(),
            entropy: z(),
            ptx_loss: z(),
        }
    }

    /// Adds a micro-batch's parts (no grad).
    /// `weight` is this rank's share of the micro-batch's tokens (1 when it has all of it): the
    /// entropy, a plain sum over micro-batches, is weighted by it alone.
    fn add(&mut self, parts: &LossParts, scale: f64, weight: f64) {
        self.approx_kl += parts.approx_kl.detach() * scale;
        self.clipfrac += parts.clipfrac.detach() * scale;
        self.policy_loss += parts.policy_loss.detach() * scale;
        self.value_loss += parts.value_loss.detach() * scale;
        self.value_clipfrac += parts.value_clipfrac.detach() * scale;
        if let Some(e) = &parts.entropy {
            self.entropy += e.detach() * weight;
        }
    }

    /// Sums every statistic over the ranks of a data-parallel update (in place; a no-op for
    /// one process).
    fn all_reduce_sum(&mut self, comm: &dyn rlhf_dist::Collective) -> Result<()> {
        let world = comm.world_size();
        if world == 1 {
            return Ok(());
        }
        let all = [
            &self.approx_kl,
            &self.clipfrac,
            &self.policy_loss,
            &self.value_loss,
            &self.value_clipfrac,
            &self.entropy,
            &self.ptx_loss,
        ];
        let mut v: Vec<f64> = all.iter().map(|t| t.double_value(&[])).collect();
        comm.all_reduce_sum_f64(&mut v)?;
        for (t, x) in [
            &mut self.approx_kl,
            &mut self.clipfrac,
            &mut self.policy_loss,
            &mut self.value_loss,
            &mut self.value_clipfrac,
            &mut self.entropy,
            &mut self.ptx_loss,
        ]
        .into_iter()
        .zip(v)
        {
            *t = t.full_like(x);
        }
        Ok(())
    }
}

/// This rank's rows of a micro-batch split across `world` ranks ([`data_parallel::shard`]) and
/// their share of its tokens (`tokens` counts the tokens of some rows), which weights the
/// rank's token-mean losses so that the ranks' sum is the micro-batch's mean. A rank without
/// rows gets the first one with weight 0, so its gradients exist for the all-reduce.
fn rank_rows(
    rows: &[i64],
    rank: usize,
    world: usize,
    tokens: impl Fn(&[i64]) -> Tensor,
) -> (&[i64], f64) {
    let share = data_parallel::shard(rows.len(), rank, world);
    if share.is_empty() {
        return (&rows[..1], 0.0);
    }
    let all = tokens(rows).double_value(&[]);
    let mine = tokens(&rows[share.clone()]).double_value(&[]);
    (&rows[share], if all > 0.0 { mine / all } else { 0.0 })
}
