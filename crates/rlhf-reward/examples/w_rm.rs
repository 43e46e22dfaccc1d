//! W-RM of benches/WORKLOAD.md: K-wise (shared prompt, full rows) vs pairwise comparisons per second.
//!
//! `cargo run --release -p rlhf-reward --example w_rm -- [tiny|gpt2-small] [iters] [threads]`
//! (the `bench --workload rm` binary of rlhf-examples calls the same function).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    rlhf_model::cpu::ensure_usable_cpu_isa();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = std::env::args().skip(1);
    let size = args.next().unwrap_or_else(|| "tiny".into());
    let iters = args.next().map_or(Ok(5), |s| s.parse())?;
    let threads = args.next().map_or(Ok(cores as i32), |s| s.parse())?;
    tch::set_num_threads(threads);
    let device = rlhf_model::parse_device(&std::env::var("DEVICE").unwrap_or("cpu".into()))?;
    let mut out = rlhf_reward::bench_w_rm(&size, device, tch::Kind::Float, 1, iters)?;
    out["threads"] = tch::get_num_threads().into();
    println!("{out}");
    Ok(())
}
