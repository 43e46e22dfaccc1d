//! PPO-ptx: the pretraining term `gamma_ptx * LM loss` that joins every update, and where its
//! batches come from.

use crate::error::{input_err, Result};
use rlhf_data::collate::{PackedBlocks, SftBatch};
use rlhf_model::array::tensor_from;
use rlhf_model::Policy;
use tch::{Device, Kind, Tensor};

/// A language-modeling batch: `input_ids [B, T]` (int64), `attention_mask [B, T]` (int64),
/// `loss_mask [B, T]` (f32, 1 where the token is trained).
#[derive(Debug)]
pub struct LmBatch {
    /// Token ids.
    pub input_ids: Tensor,
    /// 1 for real tokens.
    pub attention_mask: Tensor,
    /// 1 where the token is predicted and scored.
    pub loss_mask: Tensor,
}

impl LmBatch {
    /// From a collated batch (SFT demonstrations or packed text).
    pub fn from_sft(b: &SftBatch) -> Self {
        let cpu = tch::Device::Cpu;
        LmBatch {
            input_ids: tensor_from(b.input_ids_2d(), cpu),
            attention_mask: tensor_from(b.attention_mask_2d(), cpu),
            loss_mask: tensor_from(b.loss_mask_2d(), cpu),
        }
    }

    /// Rows `start..start + len` of the batch (a data-parallel rank's share).
    pub fn narrow_rows(&self, start: i64, len: i64) -> Self {
        LmBatch {
            input_ids: self.input_ids.narrow(0, start, len),
            attention_mask: self.attention_mask.narrow(0, start, len),
            loss_mask: self.loss_mask.narrow(0, start, len),
        }
    }

    /// The same batch on `device`.
    pub fn to_device(&self, device: Device) -> Self {
        LmBatch {
            input_ids: self.input_ids.to_device(device),
            attention_mask: self.attention_mask.to_device(device),
            loss_mask: self.loss_mask.to_device(device),
        }
    }
}

/// The ptx term: `gamma_ptx * masked_lm_loss` (mean cross-entropy over the loss-mask tokens,
/// [`rlhf_sft::masked_lm_loss`]), with grad through the policy. Dropout off.
///
/// Shapes: an [`LmBatch`] of `[B, T]` -> scalar.
pub fn ptx_loss<P: Policy + ?Sized>(policy: &P, batch: &LmBatch, gamma_ptx: f64) -> Result<Tensor> {
    let lm = rlhf_sft::masked_lm_loss(
        policy,
        &batch.input_ids,
        &batch.attention_mask,
        &batch.loss_mask,
        false,
    )?;
    Ok(lm * gamma_ptx)
}

/// Where pretraining batches come from. The trainer draws one batch per micro-batch of every
/// update when `ptx_coef > 0`.
pub trait PtxSource {
    /// The next batch.
    fn next_batch(&mut self) -> Result<LmBatch>;
}

/// Cycles through packed pretraining blocks in a seeded order that is reshuffled every pass.
/// The order depends only on the seed and the number of batches drawn ([`PackedPtx::position`]),
/// so a resumed run draws the same batches as an uninterrupted one.
#[derive(Debug, Clone)]
pub struct PackedPtx {
    blocks: PackedBlocks,
    batch_size: usize,
    seed: u64,
    position: u64,
    order: Vec<usize>,
    order_pass: Option<u64>,
}

impl PackedPtx {
    /// Batches of `batch_size` blocks (every real token is trained, as in pretraining).
    pub fn new(blocks: PackedBlocks, batch_size: usize, seed: u64) -> Result<Self> {
        if blocks.num_blocks == 0 {
            return Err(input_err(
                "the pretraining data packed into 0 blocks: give at least one non-empty document",
            ));
        }
        if batch_size == 0 {
            return Err(input_err("ptx batch size must be at least 1"));
        }
        Ok(PackedPtx {
            blocks,
            batch_size,
            seed,
            position: 0,
            order: Vec::new(),
            order_pass: None,
        })
    }

    /// Batches drawn so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Continues as if `position` batches had been drawn.
    pub fn set_position(&mut self, position: u64) {
        self.position = position;
    }

    /// The packed blocks.
    pub fn blocks(&self) -> &PackedBlocks {
        &self.blocks
    }

    fn block_at(&mut self, global: u64) -> usize {
        let n = self.blocks.num_blocks as u64;
        let pass = global / n;
        if self.order_pass != Some(pass) {
            self.order = rlhf_data::seed::shuffled(
                self.blocks.num_blocks,
                self.seed ^ pass.wrapping_mul(0x9E37_79B9),
            );
            self.order_pass = Some(pass);
        }
        self.order[(global % n) as usize]
    }
}

impl PtxSource for PackedPtx {
    fn next_batch(&mut self) -> Result<LmBatch> {
        let l = self.blocks.block_len;
        let start = self.position * self.batch_size as u64;
        let mut ids = Vec::with_capacity(self.batch_size * l);
        let mut mask = Vec::with_capacity(self.batch_size * l);
        let mut loss = Vec::with_capacity(self.batch_size * l);
        for i in 0..self.batch_size as u64 {
            let b = self.block_at(start + i);
            ids.extend_from_slice(&self.blocks.input_ids[b * l..(b + 1) * l]);
            let m = &self.blocks.attention_mask[b * l..(b + 1) * l];
            mask.extend_from_slice(m);
            loss.extend(m.iter().map(|&x| x as f32));
        }
        self.position += 1;
        let shape = [self.batch_size as i64, l as i64];
        Ok(LmBatch {
            input_ids: Tensor::from_slice(&ids).view(shape),
            attention_mask: Tensor::from_slice(&mask).view(shape),
            loss_mask: Tensor::from_slice(&loss).view(shape).to_kind(Kind::Float),
        })
    }
}
