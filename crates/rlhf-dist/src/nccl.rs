//! The NCCL backend (cargo feature `nccl`, which implies `mpi`): gradients and weights that live
//! on a GPU are all-reduced and broadcast device to device by NCCL; everything else (statistics,
//! bytes, barriers, host tensors) goes over MPI, which also starts the job and carries NCCL's
//! unique id from rank 0 to the others.
//!
//! NCCL and the CUDA runtime are loaded at run time (`dlopen`), so building needs neither. The
//! library is `$RLHF_NCCL_LIBRARY` when set, else `libnccl.so.2` (the copy libtorch loaded, when
//! it did: PyTorch's wheels depend on `nvidia-nccl-cu13`, which ships `libnccl.so.2` only), else
//! `libnccl.so`, both as the dynamic loader finds them.
//!
//! Streams: tch 0.24 cannot tell which CUDA stream libtorch is using, and libtorch uses the
//! device's default (null) stream unless a program sets another; the collectives are enqueued
//! on that stream, so they run after the kernels that produced the gradients and before those
//! that read the result, without host synchronization.
//!
//! Status: built and checked without a GPU (loading, error paths); not yet run on GPUs.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::{check_root, Collective, Error, Mpi, Result};

/// `ncclUniqueId`: 128 opaque bytes, passed by value to `ncclCommInitRank`.
#[repr(C)]
#[derive(Clone, Copy)]
struct UniqueId {
    internal: [c_char; 128],
}

type NcclComm = *mut c_void;
type CudaStream = *mut c_void;

const NCCL_FLOAT32: c_int = 7;
const NCCL_FLOAT64: c_int = 8;
const NCCL_SUM: c_int = 0;

/// The NCCL and CUDA runtime entry points the backend uses.
struct Api {
    get_unique_id: unsafe extern "C" fn(*mut UniqueId) -> c_int,
    comm_init_rank: unsafe extern "C" fn(*mut NcclComm, c_int, UniqueId, c_int) -> c_int,
    all_reduce: unsafe extern "C" fn(
        *const c_void,
        *mut c_void,
        usize,
        c_int,
        c_int,
        NcclComm,
        CudaStream,
    ) -> c_int,
    broadcast: unsafe extern "C" fn(
        *const c_void,
        *mut c_void,
        usize,
        c_int,
        c_int,
        NcclComm,
        CudaStream,
    ) -> c_int,
    comm_destroy: unsafe extern "C" fn(NcclComm) -> c_int,
    error_string: unsafe extern "C" fn(c_int) -> *const c_char,
    get_version: unsafe extern "C" fn(*mut c_int) -> c_int,
    cuda_set_device: unsafe extern "C" fn(c_int) -> c_int,
    /// Kept loaded while the function pointers above are in use.
    _libs: (libloading::Library, libloading::Library),
}

fn open_first(names: &[String], what: &str) -> Result<libloading::Library> {
    let mut tried = Vec::new();
    for name in names {
        // SAFETY: loading a shared library runs its initializers; NCCL's and the CUDA
        // runtime's are the ones libtorch itself runs when it loads them.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => return Ok(lib),
            Err(e) => tried.push(format!("{name}: {e}")),
        }
    }
    Err(Error::Nccl(format!(
        "cannot load {what} (tried {}); install it (PyPI nvidia-nccl-cu13 ships libnccl.so.2) or \
         set RLHF_NCCL_LIBRARY to its path",
        tried.join("; ")
    )))
}

impl Api {
    fn load() -> Result<Api> {
        let mut nccl_names: Vec<String> = std::env::var("RLHF_NCCL_LIBRARY").into_iter().collect();
        nccl_names.extend(["libnccl.so.2".to_string(), "libnccl.so".to_string()]);
        let nccl = open_first(&nccl_names, "the NCCL library")?;
        let cudart_names: Vec<String> = ["libcudart.so.13", "libcudart.so.12", "libcudart.so"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cudart = open_first(&cudart_names, "the CUDA runtime (libcudart)")?;
        macro_rules! sym {
            ($lib:expr, $name:literal) => {{
                // SAFETY: the symbol has the C signature of the field it is stored in (nccl.h,
                // cuda_runtime_api.h), and the library outlives the pointer (kept in `_libs`).
                let s = unsafe { $lib.get($name) }.map_err(|e| {
                    Error::Nccl(format!(
                        "{} is missing from the loaded library: {e}",
                        String::from_utf8_lossy(&$name[..$name.len() - 1])
                    ))
                })?;
                *s
            }};
        }
        Ok(Api {
            get_unique_id: sym!(nccl, b"ncclGetUniqueId\0"),
            comm_init_rank: sym!(nccl, b"ncclCommInitRank\0"),
            all_reduce: sym!(nccl, b"ncclAllReduce\0"),
            broadcast: sym!(nccl, b"ncclBroadcast\0"),
            comm_destroy: sym!(nccl, b"ncclCommDestroy\0"),
            error_string: sym!(nccl, b"ncclGetErrorString\0"),
            get_version: sym!(nccl, b"ncclGetVersion\0"),
            cuda_set_device: sym!(cudart, b"cudaSetDevice\0"),
            _libs: (nccl, cudart),
        })
    }

    /// `Ok` for `ncclSuccess`, else the library's message for `code`.
    fn check(&self, code: c_int, call: &str) -> Result<()> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: ncclGetErrorString returns a static NUL-terminated string for any code.
        let msg = unsafe { CStr::from_ptr((self.error_string)(code)) }
            .to_string_lossy()
            .into_owned();
        Err(Error::Nccl(format!("{call} failed: {msg} (code {code})")))
    }
}

/// MPI for the job, NCCL for tensors on this rank's GPU. See the module documentation.
pub struct Nccl {
    mpi: Mpi,
    api: Arc<Api>,
    comm: NcclComm,
    device: usize,
}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nccl")
            .field("mpi", &self.mpi)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Nccl {
    /// Loads NCCL, makes `cuda:<device>` this process's current device (conventionally the
    /// rank's local rank: one rank per GPU) and creates the NCCL communicator of every rank of
    /// `mpi` (collective: every rank must call it). The unique id goes from rank 0 over MPI.
    pub fn init(mpi: Mpi, device: usize) -> Result<Nccl> {
        // Every rank learns whether every rank could load the library, so none is left
        // waiting in the broadcast below.
        let api = Api::load();
        let mut failed = [f64::from(u8::from(api.is_err()))];
        mpi.all_reduce_sum_f64(&mut failed)?;
        let api = match api {
            Ok(api) => Arc::new(api),
            Err(e) => return Err(e),
        };
        if failed[0] > 0.0 {
            return Err(Error::Nccl(format!(
                "{} rank(s) could not load NCCL",
                failed[0]
            )));
        }
        let mut version: c_int = 0;
        // SAFETY: a valid out-pointer.
        api.check(unsafe { (api.get_version)(&mut version) }, "ncclGetVersion")?;
        let dev = c_int::try_from(device)
            .map_err(|_| Error::Nccl(format!("device index {device} is out of range")))?;
        // SAFETY: cudaSetDevice takes any int and reports a bad one as an error code.
        let set = unsafe { (api.cuda_set_device)(dev) };
        if set != 0 {
            return Err(Error::Nccl(format!(
                "cudaSetDevice({device}) failed with CUDA error {set}: is there a GPU {device} on \
                 this machine (one rank per GPU)?"
            )));
        }
        let mut id = UniqueId { internal: [0; 128] };
        if mpi.is_root() {
            // SAFETY: a valid out-pointer to a 128-byte ncclUniqueId.
            api.check(unsafe { (api.get_unique_id)(&mut id) }, "ncclGetUniqueId")?;
        }
        let mut bytes: Vec<u8> = id.internal.iter().map(|&c| c as u8).collect();
        mpi.broadcast_bytes(&mut bytes, 0)?;
        for (dst, src) in id.internal.iter_mut().zip(&bytes) {
            *dst = *src as c_char;
        }
        let mut comm: NcclComm = std::ptr::null_mut();
        let (rank, size) = (mpi.rank() as c_int, mpi.world_size() as c_int);
        // SAFETY: a valid out-pointer; the id came from rank 0's ncclGetUniqueId.
        api.check(
            unsafe { (api.comm_init_rank)(&mut comm, size, id, rank) },
            "ncclCommInitRank",
        )?;
        Ok(Nccl {
            mpi,
            api,
            comm,
            device,
        })
    }

    /// NCCL's version number (e.g. 22703 for 2.27.3).
    pub fn version(&self) -> i32 {
        let mut v: c_int = 0;
        // SAFETY: a valid out-pointer.
        unsafe { (self.api.get_version)(&mut v) };
        v
    }

    /// Whether every defined tensor of `tensors` is on this rank's GPU (NCCL's case).
    fn on_gpu(&self, tensors: &[Tensor]) -> bool {
        let mut any = false;
        for t in tensors.iter().filter(|t| t.defined()) {
            if t.device() != Device::Cuda(self.device) {
                return false;
            }
            any = true;
        }
        any
    }

    /// Whether every rank holds its `tensors` on its GPU, so that every rank takes NCCL's path
    /// (else every rank takes MPI's).
    fn everyone_on_gpu(&self, tensors: &[Tensor]) -> Result<bool> {
        let mut gpu = [f64::from(u8::from(self.on_gpu(tensors)))];
        self.mpi.all_reduce_sum_f64(&mut gpu)?;
        Ok(gpu[0] as usize == self.world_size())
    }

    /// Flattens the defined `tensors` into one GPU buffer (f64 if one of them is, else f32) and
    /// runs the in-place collective `op(buffer, element count, NCCL data type)` on it; returns
    /// the buffer. The buffer is contiguous and lives until its result has been copied out by
    /// kernels on the same (default) stream, after NCCL's.
    fn in_place(
        &self,
        tensors: &[Tensor],
        call: &str,
        op: impl FnOnce(*mut c_void, usize, c_int) -> c_int,
    ) -> Result<Tensor> {
        let kind = crate::flat::mean_kind(tensors)?.unwrap_or(Kind::Float);
        let flat = Self::flatten(tensors, kind);
        self.api
            .check(op(flat.data_ptr(), flat.numel(), Self::dtype(kind)), call)?;
        Ok(flat)
    }

    /// The defined tensors of `tensors` as one flat GPU buffer of `kind`.
    fn flatten(tensors: &[Tensor], kind: Kind) -> Tensor {
        let parts: Vec<Tensor> = tensors
            .iter()
            .filter(|t| t.defined())
            .map(|t| t.detach().reshape([-1]).to_kind(kind))
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// Copies `flat` back into the defined tensors of `tensors`, in order.
    fn unflatten(tensors: &[Tensor], flat: &Tensor) {
        let _guard = tch::no_grad_guard();
        let mut offset = 0;
        for t in tensors.iter().filter(|t| t.defined()) {
            let n = t.numel() as i64;
            let mut dst = t.shallow_clone();
            dst.copy_(&flat.narrow(0, offset, n).view(t.size().as_slice()));
            offset += n;
        }
    }

    fn dtype(kind: Kind) -> c_int {
        if kind == Kind::Double {
            NCCL_FLOAT64
        } else {
            NCCL_FLOAT32
        }
    }
}

impl Drop for Nccl {
    fn drop(&mut self) {
        // SAFETY: the communicator was created by ncclCommInitRank and is destroyed once.
        unsafe { (self.api.comm_destroy)(self.comm) };
    }
}

impl Collective for Nccl {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }

    fn world_size(&self) -> usize {
        self.mpi.world_size()
    }

    fn local_rank(&self) -> usize {
        self.mpi.local_rank()
    }

    fn all_reduce_mean(&self, tensors: &[Tensor]) -> Result<()> {
        if !self.everyone_on_gpu(tensors)? {
            return self.mpi.all_reduce_mean(tensors);
        }
        let flat = self.in_place(tensors, "ncclAllReduce", |ptr, count, dtype| {
            // SAFETY: see `in_place`.
            unsafe {
                (self.api.all_reduce)(
                    ptr,
                    ptr,
                    count,
                    dtype,
                    NCCL_SUM,
                    self.comm,
                    std::ptr::null_mut(),
                )
            }
        })?;
        let flat = flat / self.world_size() as f64;
        Self::unflatten(tensors, &flat);
        Ok(())
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.mpi.all_reduce_sum_f64(values)
    }

    fn all_reduce_max_f64(&self, values: &mut [f64]) -> Result<()> {
        self.mpi.all_reduce_max_f64(values)
    }

    fn broadcast_tensors(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        check_root(root, self.world_size())?;
        if !self.everyone_on_gpu(tensors)? {
            return self.mpi.broadcast_tensors(tensors, root);
        }
        // One buffer per kind would keep integer tensors exact; weights are floating-point, and
        // a list with any other kind goes over MPI.
        if tensors
            .iter()
            .filter(|t| t.defined())
            .any(|t| !t.is_floating_point())
        {
            return self.mpi.broadcast_tensors(tensors, root);
        }
        let flat = self.in_place(tensors, "ncclBroadcast", |ptr, count, dtype| {
            // SAFETY: see `in_place`.
            unsafe {
                (self.api.broadcast)(
                    ptr,
                    ptr,
                    count,
                    dtype,
                    root as c_int,
                    self.comm,
                    std::ptr::null_mut(),
                )
            }
        })?;
        Self::unflatten(tensors, &flat);
        Ok(())
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
        self.mpi.broadcast_bytes(bytes, root)
    }

    fn barrier(&self) -> Result<()> {
        self.mpi.barrier()
    }

    fn abort(&self, code: i32) -> ! {
        self.mpi.abort(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_named_in_the_error() {
        let Err(err) = open_first(&["libdoes-not-exist-rlhf.so.9".into()], "the NCCL library")
        else {
            panic!("loaded a library that does not exist");
        };
        let msg = err.to_string();
        assert!(
            msg.contains("libdoes-not-exist-rlhf.so.9") && msg.contains("RLHF_NCCL_LIBRARY"),
            "{msg}"
        );
    }
}
