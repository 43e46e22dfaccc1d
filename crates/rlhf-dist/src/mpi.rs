//! The MPI backend (cargo feature `mpi`), on rsmpi.

use ::mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use ::mpi::datatype::Equivalence;
use ::mpi::environment::Universe;
use ::mpi::topology::{Communicator, SimpleCommunicator};
use ::mpi::Threading;
use tch::{Kind, Tensor};

use crate::{check_root, flat, Collective, Error, Result};

/// The default largest message of one MPI call, in bytes (larger buffers go in several calls,
/// which also keeps element counts within MPI's `int`).
const DEFAULT_CHUNK_BYTES: usize = 64 << 20;

/// One process per rank, over `MPI_COMM_WORLD`.
///
/// It owns MPI: MPI is initialized by [`Mpi::init`] and finalized when the value is dropped, so
/// keep it alive until the end of `main` (MPI cannot be initialized again afterwards). MPI is
/// initialized with `MPI_THREAD_FUNNELED`: call it from the thread that created it (libtorch's
/// own threads never call MPI).
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    world_size: usize,
    local_rank: usize,
    chunk_bytes: usize,
    /// Dropped last: finalizes MPI.
    _universe: Universe,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("local_rank", &self.local_rank)
            .field("chunk_bytes", &self.chunk_bytes)
            .finish_non_exhaustive()
    }
}

impl Mpi {
    /// Initializes MPI (collective: every rank must call it). Errors with
    /// [`Error::AlreadyInitialized`] when MPI was initialized before in this process.
    ///
    /// Without a launcher this is an MPI singleton: world size 1.
    pub fn init() -> Result<Mpi> {
        let (universe, _provided) = ::mpi::initialize_with_threading(Threading::Funneled)
            .ok_or(Error::AlreadyInitialized)?;
        let world = universe.world();
        let rank = usize::try_from(world.rank()).unwrap_or(0);
        let world_size = usize::try_from(world.size()).unwrap_or(1);
        // The rank among the processes that share memory with this one, i.e. on this node.
        let local_rank = usize::try_from(world.split_shared(world.rank()).rank()).unwrap_or(0);
        Ok(Mpi {
            world,
            rank,
            world_size,
            local_rank,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            _universe: universe,
        })
    }

    /// Sets the largest message of one MPI call, in bytes (default 64 MiB, at least 8). Mostly
    /// for tests; every rank must use the same value.
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Mpi {
        self.chunk_bytes = bytes.max(8);
        self
    }

    /// All-reduces `data` in place, in chunks of at most `chunk_bytes`.
    fn all_reduce<T: Equivalence + Copy>(&self, data: &mut [T], op: SystemOperation) {
        let chunk = (self.chunk_bytes / std::mem::size_of::<T>()).max(1);
        let Some(&first) = data.first() else {
            return;
        };
        let mut recv = vec![first; chunk.min(data.len())];
        for part in data.chunks_mut(chunk) {
            let recv = &mut recv[..part.len()];
            self.world.all_reduce_into(&*part, recv, op);
            part.copy_from_slice(recv);
        }
    }

    /// Broadcasts `data` in place from `root`, in chunks of at most `chunk_bytes`.
    fn broadcast<T: Equivalence>(&self, data: &mut [T], root: usize) {
        let chunk = (self.chunk_bytes / std::mem::size_of::<T>()).max(1);
        let root = self.world.process_at_rank(root as i32);
        for part in data.chunks_mut(chunk) {
            root.broadcast_into(part);
        }
    }

    /// Sums the defined `tensors` as `T`, then divides by the world size.
    fn mean_as<T: tch::kind::Element + Equivalence + Copy>(
        &self,
        tensors: &[Tensor],
    ) -> Result<()> {
        let mut data: Vec<T> = flat::flatten(tensors)?;
        self.all_reduce(&mut data, SystemOperation::sum());
        flat::unflatten(tensors, &data, self.world_size as f64)
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn all_reduce_mean(&self, tensors: &[Tensor]) -> Result<()> {
        if cfg!(debug_assertions) {
            let layout = flat::layout(tensors)?;
            self.ensure_same(
                "list of tensor kinds and shapes in all_reduce_mean",
                &layout,
            )?;
        }
        match flat::mean_kind(tensors)? {
            None => Ok(()),
            Some(Kind::Double) => self.mean_as::<f64>(tensors),
            Some(_) => self.mean_as::<f32>(tensors),
        }
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.all_reduce(values, SystemOperation::sum());
        Ok(())
    }

    fn all_reduce_max_f64(&self, values: &mut [f64]) -> Result<()> {
        self.all_reduce(values, SystemOperation::max());
        Ok(())
    }

    fn broadcast_tensors(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        check_root(root, self.world_size)?;
        let layout = flat::layout(tensors)?;
        self.ensure_same(
            "list of tensor kinds and shapes in broadcast_tensors",
            &layout,
        )?;
        let mut bytes = if self.rank == root {
            flat::to_bytes(tensors)?
        } else {
            vec![0u8; flat::byte_len(tensors)?]
        };
        self.broadcast(&mut bytes, root);
        if self.rank != root {
            flat::from_bytes(tensors, &bytes)?;
        }
        Ok(())
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
        check_root(root, self.world_size)?;
        let mut len = [bytes.len() as u64];
        self.broadcast(&mut len, root);
        if self.rank != root {
            bytes.clear();
            bytes.resize(len[0] as usize, 0);
        }
        self.broadcast(bytes, root);
        Ok(())
    }

    /// Waits without spinning: MPI's own barrier busy-polls, so a rank waiting for work that
    /// rank 0 does alone (a pipeline's rankings or evaluation) would hold a core that rank 0
    /// could use. This one polls a non-blocking barrier, sleeping between polls (50 us, growing
    /// to 2 ms).
    fn barrier(&self) -> Result<()> {
        let mut request = self.world.immediate_barrier();
        let mut pause = std::time::Duration::from_micros(50);
        loop {
            match request.test() {
                Ok(_) => return Ok(()),
                Err(pending) => {
                    request = pending;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(2));
                }
            }
        }
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
