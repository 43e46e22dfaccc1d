//! Data-parallel collectives for rlhf's trainers.
//!
//! Trainers take a `&dyn` [`Collective`] and call it at fixed points of a step: average the
//! gradients ([`Collective::all_reduce_mean`]), sum statistics ([`Collective::all_reduce_sum_f64`]),
//! agree on early stops ([`Collective::all_reduce_max_f64`]), and at start-up broadcast the
//! weights ([`Collective::broadcast_tensors`]) and check that every rank runs the same config
//! ([`Collective::ensure_same`]).
//!
//! Backends: [`Single`] (one process, nothing copied) and, with the cargo feature `mpi`,
//! `Mpi` (one process per rank, started by `mpirun`). [`init`] picks one from the environment.
//!
//! ```
//! let comm = rlhf_dist::init()?; // `Single` when not started by mpirun
//! let grads = [tch::Tensor::ones([2, 3], tch::kind::FLOAT_CPU)];
//! comm.all_reduce_mean(&grads)?; // before clipping
//! let mut loss_and_count = [4.5, 3.0];
//! comm.all_reduce_sum_f64(&mut loss_and_count)?;
//! assert_eq!(comm.world_size(), 1);
//! # Ok::<(), rlhf_dist::Error>(())
//! ```

#![warn(missing_docs)]

pub mod data_parallel;
mod env;
mod flat;
#[cfg(feature = "mpi")]
mod mpi;

#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;
#[cfg(feature = "nccl")]
mod nccl;
#[cfg(feature = "nccl")]
pub use self::nccl::Nccl;
pub use env::{launched_world_size, launched_world_size_with, Launch, LAUNCHER_VARS};

use tch::Tensor;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Started by `mpirun` with several ranks, but built without the `mpi` feature.
    #[error(
        "launched by mpirun with {world_size} ranks but this binary was built without the `mpi` \
         feature: rebuild with `--features mpi` (see README)"
    )]
    MpiFeatureMissing {
        /// The launcher's world size.
        world_size: usize,
    },
    /// Started by an MPI launcher that does not tell the world size, but built without `mpi`.
    #[error(
        "launched by an MPI launcher ({var} is set) but this binary was built without the `mpi` \
         feature: rebuild with `--features mpi` (see README)"
    )]
    MpiFeatureMissingUnknownSize {
        /// The launcher variable that was found (see [`LAUNCHER_VARS`]).
        var: &'static str,
    },
    /// MPI was initialized before (MPI can be initialized once per process).
    #[error(
        "MPI was already initialized in this process: initialize it once, with `rlhf_dist::init` \
         or `Mpi::init`, at the start of main"
    )]
    AlreadyInitialized,
    /// A root rank that is not in the world.
    #[error("root rank {root} is out of range: the world has {world_size} rank(s)")]
    InvalidRoot {
        /// The rank asked for.
        root: usize,
        /// The number of ranks.
        world_size: usize,
    },
    /// A tensor given to [`Collective::all_reduce_mean`] that is not floating-point.
    #[error(
        "tensor {index} has kind {kind:?}: all_reduce_mean averages floating-point tensors only"
    )]
    NotFloat {
        /// Its position in the list.
        index: usize,
        /// Its kind.
        kind: tch::Kind,
    },
    /// This rank's bytes differ from the root's (see [`Collective::ensure_same`]).
    #[error(
        "rank {rank}'s {what} differs from rank {root}'s: every rank must be started with the \
         same config"
    )]
    Differs {
        /// What was compared.
        what: String,
        /// This rank.
        rank: usize,
        /// The rank compared with.
        root: usize,
    },
    /// Other ranks' bytes differ from the root's (see [`Collective::ensure_same`]).
    #[error(
        "the {what} of rank(s) {ranks:?} differs from rank {root}'s: every rank must be started \
         with the same config"
    )]
    DiffersElsewhere {
        /// What was compared.
        what: String,
        /// The ranks whose bytes differ.
        ranks: Vec<usize>,
        /// The rank compared with.
        root: usize,
    },
    /// A libtorch error while copying tensors.
    #[error("tensor copy failed: {0}")]
    Torch(tch::TchError),
    /// NCCL could not be loaded or one of its calls failed (feature `nccl`).
    #[error("NCCL: {0}")]
    Nccl(String),
}

/// Not `#[from]`: that would also make the libtorch error the `source()`, and error reports
/// (`anyhow`'s) would print its message, often long, twice.
impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(e)
    }
}

impl std::fmt::Debug for dyn Collective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Collective(rank {} of {})",
            self.rank(),
            self.world_size()
        )
    }
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Collective operations over the ranks of a data-parallel job.
///
/// Every method is collective: every rank must call the same methods in the same order, with
/// lists of the same length, kinds and shapes, or the job hangs or fails. Errors that depend only
/// on arguments that every rank shares (a bad root, a non-float tensor, a mismatch found by
/// [`Collective::ensure_same`]) are returned on every rank alike. A local failure (e.g. out of
/// memory) is returned on one rank only while the others wait: treat it as fatal and call
/// [`Collective::abort`] rather than returning from `main`, since a normal exit finalizes MPI,
/// which waits for the stuck ranks.
///
/// The trait is object-safe; trainers take `&dyn Collective`.
pub trait Collective {
    /// This process's rank, in `0..world_size()`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn world_size(&self) -> usize;

    /// Whether this is rank 0 (the one that logs and writes checkpoints).
    fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// The rank among the ranks on this node (to pick a GPU: `Device::Cuda(local_rank)`).
    fn local_rank(&self) -> usize;

    /// Averages `tensors` (typically gradients) in place across ranks.
    ///
    /// Every tensor must be floating-point (any float kind, any device); the defined ones are
    /// flattened into one host buffer (`f64` when one of them is `Double`, else `f32`), summed
    /// across ranks by one all-reduce, divided by the world size and copied back in place,
    /// without recording autograd history. Undefined tensors (parameters without a gradient)
    /// are skipped, so every rank must pass the same list with the same tensors undefined
    /// (debug builds check this, at the cost of one more small exchange).
    ///
    /// Call it after the backward pass and **before gradient clipping**, so that every rank
    /// clips the same global norm and the ranks' weights stay identical.
    fn all_reduce_mean(&self, tensors: &[Tensor]) -> Result<()>;

    /// Sums `values` across ranks, in place (loss sums, token counts, ...).
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;

    /// Takes the maximum of `values` across ranks, in place (e.g. "some rank wants to stop
    /// early": 1.0 for yes, 0.0 for no).
    fn all_reduce_max_f64(&self, values: &mut [f64]) -> Result<()>;

    /// Overwrites `tensors` on every rank with those of rank `root`, in place (the initial
    /// weights). Any kind and device; undefined tensors are skipped. Every rank must pass the
    /// same list of kinds and shapes: this is checked first, with [`Collective::ensure_same`].
    fn broadcast_tensors(&self, tensors: &[Tensor], root: usize) -> Result<()>;

    /// Overwrites `bytes` on every rank with those of rank `root` (length and content).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()>;

    /// Waits until every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// Ends the whole job at once with exit status `code` (MPI_Abort for MPI). Use it on a
    /// fatal error that other ranks may not have seen.
    fn abort(&self, code: i32) -> !;

    /// Checks that `bytes` (e.g. a serialized config) are the same on every rank as on rank 0.
    ///
    /// Rank 0's bytes are broadcast and compared, then the verdicts are shared, so that every
    /// rank returns an error when any rank differs: [`Error::Differs`] ("rank 1's config differs
    /// from rank 0's: every rank must be started with the same config") on the ranks that differ,
    /// [`Error::DiffersElsewhere`] on the others. `what` names the bytes in the message.
    fn ensure_same(&self, what: &str, bytes: &[u8]) -> Result<()> {
        let world_size = self.world_size();
        if world_size == 1 {
            return Ok(());
        }
        let mut root_bytes = if self.is_root() {
            bytes.to_vec()
        } else {
            Vec::new()
        };
        self.broadcast_bytes(&mut root_bytes, 0)?;
        let mut differs = vec![0.0; world_size];
        if root_bytes != bytes {
            differs[self.rank()] = 1.0;
        }
        self.all_reduce_sum_f64(&mut differs)?;
        let ranks: Vec<usize> = (0..world_size).filter(|&r| differs[r] != 0.0).collect();
        let what = what.to_string();
        if ranks.is_empty() {
            Ok(())
        } else if ranks.contains(&self.rank()) {
            Err(Error::Differs {
                what,
                rank: self.rank(),
                root: 0,
            })
        } else {
            Err(Error::DiffersElsewhere {
                what,
                ranks,
                root: 0,
            })
        }
    }
}

/// Errors with [`Error::InvalidRoot`] unless `root < world_size`.
fn check_root(root: usize, world_size: usize) -> Result<()> {
    if root < world_size {
        Ok(())
    } else {
        Err(Error::InvalidRoot { root, world_size })
    }
}

/// One process, world size 1: every reduction and broadcast leaves its arguments as they are
/// (nothing is copied; only the arguments are checked, with the same errors as other backends).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn local_rank(&self) -> usize {
        0
    }

    /// Leaves `tensors` as they are; only checks their kinds, as every backend does.
    fn all_reduce_mean(&self, tensors: &[Tensor]) -> Result<()> {
        flat::mean_kind(tensors).map(drop)
    }

    fn all_reduce_sum_f64(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn all_reduce_max_f64(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn broadcast_tensors(&self, _tensors: &[Tensor], root: usize) -> Result<()> {
        check_root(root, 1)
    }

    fn broadcast_bytes(&self, _bytes: &mut Vec<u8>, root: usize) -> Result<()> {
        check_root(root, 1)
    }

    fn barrier(&self) -> Result<()> {
        Ok(())
    }

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Picks the backend from the environment (see [`Launch`]).
///
/// * Not started by an MPI launcher: [`Single`].
/// * Started by one, built with the `mpi` feature: `Mpi::init()` (even for one rank).
/// * Started by one with one rank, built without `mpi`: [`Single`].
/// * Started by one with several (or an unknown number of) ranks, built without `mpi`:
///   [`Error::MpiFeatureMissing`], rather than silently running independent copies.
///
/// With MPI the returned value owns MPI: keep it until the end of `main`.
pub fn init() -> Result<Box<dyn Collective>> {
    init_for(Launch::detect())
}

/// [`init`] for ranks that compute on GPUs when `cuda` is true: built with the `nccl` feature
/// and started by an MPI launcher, tensors on the rank's GPU (`cuda:<local rank>`) are
/// all-reduced and broadcast by NCCL (`Nccl`), the rest over MPI. `RLHF_DIST_BACKEND=mpi`
/// keeps everything on MPI (through host memory). Otherwise the same as [`init`].
pub fn init_for_devices(cuda: bool) -> Result<Box<dyn Collective>> {
    #[cfg(feature = "nccl")]
    {
        let forced_mpi = std::env::var("RLHF_DIST_BACKEND").is_ok_and(|b| b == "mpi");
        if cuda && !forced_mpi && matches!(Launch::detect(), Launch::Mpi { .. }) {
            let mpi = Mpi::init()?;
            let device = mpi.local_rank();
            return Ok(Box::new(Nccl::init(mpi, device)?));
        }
    }
    let _ = cuda;
    init()
}

/// [`init`] for a given launch.
fn init_for(launch: Launch) -> Result<Box<dyn Collective>> {
    match launch {
        Launch::Standalone => Ok(Box::new(Single)),
        #[cfg(feature = "mpi")]
        Launch::Mpi { .. } => Ok(Box::new(Mpi::init()?)),
        #[cfg(not(feature = "mpi"))]
        Launch::Mpi {
            world_size: Some(1),
            ..
        } => Ok(Box::new(Single)),
        #[cfg(not(feature = "mpi"))]
        Launch::Mpi {
            world_size: Some(world_size),
            ..
        } => Err(Error::MpiFeatureMissing { world_size }),
        #[cfg(not(feature = "mpi"))]
        Launch::Mpi {
            var,
            world_size: None,
        } => Err(Error::MpiFeatureMissingUnknownSize { var }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn single_is_the_identity() {
        let comm: &dyn Collective = &Single;
        assert_eq!(
            (comm.rank(), comm.world_size(), comm.local_rank()),
            (0, 1, 0)
        );
        assert!(comm.is_root());

        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let list = [t.shallow_clone(), Tensor::new()];
        comm.all_reduce_mean(&list).unwrap();
        comm.broadcast_tensors(&list, 0).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [1.0, 2.0, 3.0]);
        let ints = [
            t.shallow_clone(),
            Tensor::zeros([2], (Kind::Int, Device::Cpu)),
        ];
        let err = comm.all_reduce_mean(&ints).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotFloat {
                    index: 1,
                    kind: Kind::Int
                }
            ),
            "{err}"
        );

        let mut v = [1.5, -2.0];
        comm.all_reduce_sum_f64(&mut v).unwrap();
        comm.all_reduce_max_f64(&mut v).unwrap();
        assert_eq!(v, [1.5, -2.0]);

        let mut bytes = b"config".to_vec();
        comm.broadcast_bytes(&mut bytes, 0).unwrap();
        assert_eq!(bytes, b"config");
        comm.barrier().unwrap();
        comm.ensure_same("config", b"anything").unwrap();
    }

    #[test]
    fn single_rejects_roots_other_than_zero() {
        let t = [Tensor::zeros([1], (Kind::Float, Device::Cpu))];
        for result in [
            Single.broadcast_tensors(&t, 1),
            Single.broadcast_bytes(&mut vec![1], 3),
        ] {
            let err = result.unwrap_err();
            assert!(matches!(err, Error::InvalidRoot { world_size: 1, .. }));
            assert!(err.to_string().contains("out of range"), "{err}");
        }
    }

    #[test]
    fn init_picks_single_when_not_launched() {
        let comm = init_for(Launch::Standalone).unwrap();
        assert_eq!(comm.world_size(), 1);
    }

    #[cfg(not(feature = "mpi"))]
    #[test]
    fn init_without_the_mpi_feature() {
        let launched = |world_size| Launch::Mpi {
            var: "OMPI_COMM_WORLD_SIZE",
            world_size,
        };
        assert_eq!(init_for(launched(Some(1))).unwrap().world_size(), 1);
        let err = init_for(launched(Some(4))).err().unwrap();
        assert_eq!(
            err.to_string(),
            "launched by mpirun with 4 ranks but this binary was built without the `mpi` \
             feature: rebuild with `--features mpi` (see README)"
        );
        let err = init_for(Launch::Mpi {
            var: "PMIX_RANK",
            world_size: None,
        })
        .err()
        .unwrap();
        assert!(
            matches!(
                err,
                Error::MpiFeatureMissingUnknownSize { var: "PMIX_RANK" }
            ),
            "{err}"
        );
    }

    /// One of two ranks, simulated: rank 0 holds `root_bytes`, `other_differs` is the other
    /// rank's verdict.
    struct FakeRank {
        rank: usize,
        root_bytes: Vec<u8>,
        other_differs: bool,
    }

    impl Collective for FakeRank {
        fn rank(&self) -> usize {
            self.rank
        }
        fn world_size(&self) -> usize {
            2
        }
        fn local_rank(&self) -> usize {
            self.rank
        }
        fn all_reduce_mean(&self, _: &[Tensor]) -> Result<()> {
            unimplemented!()
        }
        fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
            if self.other_differs {
                values[1 - self.rank] += 1.0;
            }
            Ok(())
        }
        fn all_reduce_max_f64(&self, _: &mut [f64]) -> Result<()> {
            unimplemented!()
        }
        fn broadcast_tensors(&self, _: &[Tensor], _: usize) -> Result<()> {
            unimplemented!()
        }
        fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
            assert_eq!(root, 0);
            if self.rank == 0 {
                assert_eq!(*bytes, self.root_bytes, "rank 0 must send its own bytes");
            }
            bytes.clone_from(&self.root_bytes);
            Ok(())
        }
        fn barrier(&self) -> Result<()> {
            Ok(())
        }
        fn abort(&self, code: i32) -> ! {
            panic!("abort({code})")
        }
    }

    #[test]
    fn ensure_same_errors_on_every_rank_when_one_differs() {
        let fake = |rank, other_differs| FakeRank {
            rank,
            root_bytes: b"lr=1e-5".to_vec(),
            other_differs,
        };
        fake(0, false).ensure_same("config", b"lr=1e-5").unwrap();
        fake(1, false).ensure_same("config", b"lr=1e-5").unwrap();
        // Rank 1 differs: its own error names it; rank 0 learns it from the shared verdicts.
        let err = fake(1, false)
            .ensure_same("config", b"lr=2e-5")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "rank 1's config differs from rank 0's: every rank must be started with the same config"
        );
        let err = fake(0, true).ensure_same("config", b"lr=1e-5").unwrap_err();
        assert!(
            matches!(&err, Error::DiffersElsewhere { ranks, .. } if ranks == &[1]),
            "{err}"
        );
        // A prefix is not equal.
        assert!(fake(1, false).ensure_same("config", b"lr=1e-").is_err());
    }

    #[test]
    fn mismatch_messages() {
        let err = Error::Differs {
            what: "config".into(),
            rank: 1,
            root: 0,
        };
        assert_eq!(
            err.to_string(),
            "rank 1's config differs from rank 0's: every rank must be started with the same config"
        );
        let err = Error::DiffersElsewhere {
            what: "config".into(),
            ranks: vec![1, 3],
            root: 0,
        };
        assert!(err.to_string().contains("rank(s) [1, 3]"), "{err}");
    }
}
