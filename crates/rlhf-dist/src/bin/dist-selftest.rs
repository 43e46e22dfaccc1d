//! Self-test of the collectives, for `mpirun -np N dist-selftest` (or alone, world size 1).
//!
//! Every rank passes rank-dependent values to every `Collective` method and checks the exact
//! results; it prints `rank R/N: all K checks passed` or the mismatches, and exits non-zero on
//! any mismatch. `--chunk-bytes B` uses `Mpi::init()` (even alone) with B-byte messages, to
//! exercise chunking; `--nccl` (a build with the `nccl` feature, under an MPI launcher, one GPU
//! per rank) uses `rlhf_dist::init_for_devices(true)`, NCCL for the GPU tensors, as the stage
//! binaries do with `--device cuda`; otherwise the backend comes from `rlhf_dist::init()`.

use std::process::ExitCode;

use rlhf_dist::{Collective, Error, Mpi};
use tch::{Device, Kind, Tensor};

/// Collects the failed checks of this rank.
struct Checks {
    rank: usize,
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failed.push(what());
        }
    }

    /// Checks that `t` holds exactly `expected` (compared as f64), with its kind unchanged.
    fn tensor(&mut self, name: &str, t: &Tensor, kind: Kind, expected: &[f64]) {
        let got = Vec::<f64>::try_from(t.to_kind(Kind::Double).view([-1])).unwrap_or_default();
        self.check(t.kind() == kind && got == expected, || {
            format!(
                "{name}: got {:?} {got:?}, expected {kind:?} {expected:?}",
                t.kind()
            )
        });
    }

    /// Checks that `result` is an error whose message contains `needle`.
    fn error<T>(&mut self, name: &str, result: rlhf_dist::Result<T>, needle: &str) {
        let rank = self.rank;
        match result {
            Err(e) if e.to_string().contains(needle) => self.passed += 1,
            Err(e) => self
                .failed
                .push(format!("{name}: error {e:?} lacks {needle:?}")),
            Ok(_) => self.failed.push(format!(
                "{name}: rank {rank} expected an error with {needle:?}"
            )),
        }
    }
}

/// Aborts the job on an unexpected error (the other ranks may be waiting in a collective).
fn must<T>(comm: &dyn Collective, what: &str, result: rlhf_dist::Result<T>) -> T {
    result.unwrap_or_else(|e| {
        eprintln!("rank {}: {what} failed: {e}", comm.rank());
        comm.abort(2)
    })
}

/// Runs every check on `comm`.
fn run(comm: &dyn Collective, device: Device, c: &mut Checks) {
    let (r, n) = (comm.rank(), comm.world_size());
    let (rf, nf) = (r as f64, n as f64);
    let opts = |kind| (kind, device);

    // Identity.
    c.check(r < n && comm.is_root() == (r == 0), || {
        format!("rank {r} of {n}")
    });
    let launched = rlhf_dist::launched_world_size().unwrap_or(1);
    c.check(n == launched, || {
        format!("world size {n}, launcher says {launched}")
    });
    let env_local = std::env::var("OMPI_COMM_WORLD_LOCAL_RANK").ok();
    let env_local = env_local.and_then(|s| s.parse().ok()).unwrap_or(0);
    c.check(comm.local_rank() == env_local, || {
        format!("local rank {}, expected {env_local}", comm.local_rank())
    });

    // all_reduce_mean: element i of rank r is i + r + 1, so the mean is i + (n + 1) / 2.
    let shift = (nf + 1.0) / 2.0;
    let ramp =
        |numel: i64, kind| (Tensor::arange(numel, opts(Kind::Float)) + (rf + 1.0)).to_kind(kind);
    let expect = |numel: usize| (0..numel).map(|i| i as f64 + shift).collect::<Vec<_>>();
    let f32_2d = ramp(12, Kind::Float).view([3, 4]);
    // 2^-40 is lost in f32: checks that f64 tensors are averaged in f64.
    let tiny = 2f64.powi(-40);
    let f64_1d = ramp(5, Kind::Double) + (rf + 1.0) * tiny;
    let bf16 = ramp(12, Kind::BFloat16).view([2, 3, 2]);
    let f16 = ramp(7, Kind::Half);
    let scalar = Tensor::from(rf + 1.0)
        .to_kind(Kind::Float)
        .to_device(device);
    let param = ramp(4, Kind::Float).set_requires_grad(true);
    let base = ramp(6, Kind::Float).view([2, 3]);
    let transposed = base.tr(); // non-contiguous, written through to `base`
    let empty = Tensor::zeros([0], opts(Kind::Float));
    let list = [
        f32_2d.shallow_clone(),
        Tensor::new(),
        f64_1d.shallow_clone(),
        bf16.shallow_clone(),
        f16.shallow_clone(),
        scalar.shallow_clone(),
        param.shallow_clone(),
        transposed,
        empty,
    ];
    must(comm, "all_reduce_mean", comm.all_reduce_mean(&list));
    c.tensor("mean f32", &f32_2d, Kind::Float, &expect(12));
    let want: Vec<f64> = expect(5).iter().map(|x| x + shift * tiny).collect();
    c.tensor("mean f64", &f64_1d, Kind::Double, &want);
    c.tensor("mean bf16", &bf16, Kind::BFloat16, &expect(12));
    c.tensor("mean f16", &f16, Kind::Half, &expect(7));
    c.tensor("mean scalar", &scalar, Kind::Float, &[shift]);
    c.tensor("mean param", &param.detach(), Kind::Float, &expect(4));
    c.tensor("mean transposed", &base, Kind::Float, &expect(6));
    c.check(param.requires_grad(), || "param lost requires_grad".into());
    must(
        comm,
        "all_reduce_mean(empty list)",
        comm.all_reduce_mean(&[]),
    );
    let ints = [
        Tensor::zeros([2], opts(Kind::Float)),
        Tensor::zeros([2], opts(Kind::Int64)),
    ];
    c.error(
        "mean of ints",
        comm.all_reduce_mean(&ints),
        "tensor 1 has kind Int64",
    );
    if cfg!(debug_assertions) && n > 1 {
        let shape = if r == 1 { [3] } else { [2] };
        let bad = [Tensor::zeros(shape, opts(Kind::Float))];
        c.error(
            "mean, different shapes",
            comm.all_reduce_mean(&bad),
            "differs from rank 0's",
        );
    }

    // all_reduce_sum_f64 and all_reduce_max_f64.
    let mut sums = [rf + 1.0, 1.0, rf * rf, 0.5];
    must(
        comm,
        "all_reduce_sum_f64",
        comm.all_reduce_sum_f64(&mut sums),
    );
    let sq: f64 = (0..n).map(|k| (k * k) as f64).sum();
    let want = [nf * (nf + 1.0) / 2.0, nf, sq, 0.5 * nf];
    c.check(sums == want, || format!("sums {sums:?}, expected {want:?}"));
    let mut maxes = [rf, -rf, if r == n - 1 { 7.0 } else { 0.0 }];
    must(
        comm,
        "all_reduce_max_f64",
        comm.all_reduce_max_f64(&mut maxes),
    );
    let want = [nf - 1.0, 0.0, 7.0];
    c.check(maxes == want, || {
        format!("maxes {maxes:?}, expected {want:?}")
    });
    must(
        comm,
        "all_reduce_sum_f64(empty)",
        comm.all_reduce_sum_f64(&mut []),
    );

    // broadcast_tensors, from rank 0 and from the last rank: every kind, bit for bit.
    for root in [0, n - 1] {
        let make = |who: usize| {
            let w = who as f64;
            vec![
                Tensor::arange(6, opts(Kind::Float)).view([2, 3]) * 0.1 + w,
                Tensor::new(),
                Tensor::arange(5, opts(Kind::Int64)) * 1_000_000_007 + who as i64,
                (Tensor::arange(4, opts(Kind::Float)) + w).to_kind(Kind::BFloat16),
                Tensor::arange(3, opts(Kind::Int64))
                    .fmod(2)
                    .eq(who as i64 % 2),
                (Tensor::arange(3, opts(Kind::Double)) / 3.0 + w).set_requires_grad(true),
            ]
        };
        let mine = make(r);
        must(
            comm,
            "broadcast_tensors",
            comm.broadcast_tensors(&mine, root),
        );
        let want = make(root);
        for (i, (got, want)) in mine.iter().zip(&want).enumerate() {
            let same = got.defined() == want.defined()
                && (!got.defined() || got.detach().equal(&want.detach()));
            c.check(same, || {
                format!("broadcast from {root}: tensor {i} is {got:?}, expected {want:?}")
            });
        }
    }
    let bad = [Tensor::zeros(
        if r == n - 1 && n > 1 { [4] } else { [2] },
        opts(Kind::Float),
    )];
    if n > 1 {
        let res = comm.broadcast_tensors(&bad, 0);
        c.error("broadcast, different shapes", res, "differs from rank 0's");
    }
    c.error(
        "broadcast, bad root",
        comm.broadcast_tensors(&bad, n),
        "out of range",
    );

    // broadcast_bytes: the root's length and content replace everyone's.
    for root in [0, n - 1] {
        let message =
            |who: usize| format!("hello from rank {who}{}", "!".repeat(who * 37)).into_bytes();
        let mut bytes = message(r);
        must(
            comm,
            "broadcast_bytes",
            comm.broadcast_bytes(&mut bytes, root),
        );
        c.check(bytes == message(root), || {
            format!("bytes from {root}: {bytes:?}")
        });
        let mut bytes = if r == root {
            Vec::new()
        } else {
            vec![r as u8; 100]
        };
        must(
            comm,
            "broadcast_bytes(empty)",
            comm.broadcast_bytes(&mut bytes, root),
        );
        c.check(bytes.is_empty(), || {
            format!("empty bytes from {root}: {bytes:?}")
        });
    }
    c.error(
        "bytes, bad root",
        comm.broadcast_bytes(&mut vec![], n + 1),
        "out of range",
    );

    // ensure_same: equal bytes pass; when rank 1 differs, every rank gets an error.
    must(
        comm,
        "ensure_same",
        comm.ensure_same("config", b"lr = 1e-5\nseed = 1\n"),
    );
    let config = if r == 1 {
        &b"lr = 2e-5\n"[..]
    } else {
        &b"lr = 1e-5\n"[..]
    };
    let res = comm.ensure_same("config", config);
    match (n, r) {
        (1, _) => c.check(res.is_ok(), || format!("ensure_same alone: {res:?}")),
        (_, 1) => c.error(
            "ensure_same on rank 1",
            res,
            "rank 1's config differs from rank 0's: every rank must be started with the same config",
        ),
        _ => c.check(
            matches!(&res, Err(Error::DiffersElsewhere { ranks, .. }) if ranks == &[1]),
            || format!("ensure_same on rank {r}: {res:?}"),
        ),
    }

    must(comm, "barrier", comm.barrier());
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let comm: Box<dyn Collective> = match args.as_slice() {
        [] => rlhf_dist::init().unwrap_or_else(|e| {
            eprintln!("init failed: {e}");
            std::process::exit(2)
        }),
        [flag] if flag == "--nccl" => {
            if !cfg!(feature = "nccl") {
                eprintln!("--nccl: this binary was built without the `nccl` feature");
                return ExitCode::from(2);
            }
            if !tch::Cuda::is_available() {
                eprintln!("--nccl: libtorch sees no CUDA device");
                return ExitCode::from(2);
            }
            if !matches!(rlhf_dist::Launch::detect(), rlhf_dist::Launch::Mpi { .. }) {
                eprintln!("--nccl needs an MPI launcher: mpirun -np N dist-selftest --nccl");
                return ExitCode::from(2);
            }
            rlhf_dist::init_for_devices(true).unwrap_or_else(|e| {
                eprintln!("init_for_devices failed: {e}");
                std::process::exit(2)
            })
        }
        [flag, bytes] if flag == "--chunk-bytes" => {
            let Ok(bytes) = bytes.parse() else {
                eprintln!("--chunk-bytes needs a number, got {bytes:?}");
                return ExitCode::from(2);
            };
            match Mpi::init() {
                Ok(mpi) => Box::new(mpi.with_chunk_bytes(bytes)),
                Err(e) => {
                    eprintln!("Mpi::init failed: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => {
            eprintln!("usage: dist-selftest [--chunk-bytes BYTES | --nccl]");
            return ExitCode::from(2);
        }
    };
    // A second initialization must fail cleanly, whatever the backend.
    let second = Mpi::init();
    let (r, n) = (comm.rank(), comm.world_size());
    let mut checks = Checks {
        rank: r,
        passed: 0,
        failed: Vec::new(),
    };
    if n > 1 || !args.is_empty() {
        checks.error("second Mpi::init", second, "already initialized");
    } else {
        // `init()` made `Single` and never touched MPI, so `second` owns MPI: drop it last.
        checks.check(second.is_ok(), || {
            format!("Mpi::init after Single: {second:?}")
        });
    }
    run(comm.as_ref(), Device::Cpu, &mut checks);
    if tch::Cuda::is_available() {
        let gpu = Device::Cuda(comm.local_rank() % tch::Cuda::device_count().max(1) as usize);
        run(comm.as_ref(), gpu, &mut checks);
    } else if comm.is_root() {
        println!("no CUDA device: CUDA tensors not tested");
    }
    if checks.failed.is_empty() {
        println!("rank {r}/{n}: all {} checks passed", checks.passed);
        ExitCode::SUCCESS
    } else {
        for f in &checks.failed {
            eprintln!("rank {r}/{n}: FAILED {f}");
        }
        ExitCode::FAILURE
    }
}
