//! Prints one JSON line of the W-PPO workload (benches/WORKLOAD.md): seconds per iteration with its
//! generation / scoring / training split, FLOPs, the fraction of the measured matmul peak and
//! the peak resident memory.
//!
//! `cargo run --release -p rlhf-ppo --example w_ppo -- [tiny|gpt2-small] [ITERS] [cpu|cuda] [f32|bf16]`
//! (`RLHF_THREADS=N` sets libtorch's intra-op threads; default all cores).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Before the first matmul (bf16 on CPUs that report AMX but trap on it).
    rlhf_model::cpu::ensure_usable_cpu_isa();
    // Threads: RLHF_THREADS, else all cores.
    let cores = std::env::var("RLHF_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tch::set_num_threads(cores as i32);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size = args.first().map_or("tiny", String::as_str);
    let iters: usize = args.get(1).map_or(Ok(3), |s| s.parse())?;
    let device = rlhf_model::parse_device(args.get(2).map_or("cpu", String::as_str))?;
    let kind = rlhf_model::parse_kind(args.get(3).map_or("f32", String::as_str))?;
    let line = rlhf_ppo::bench_w_ppo(size, device, kind, iters)?;
    println!("{line}");
    Ok(())
}
