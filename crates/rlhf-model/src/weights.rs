//! The weights of a checkpoint directory, memory-mapped: `model.safetensors`, or the shards that
//! `model.safetensors.index.json` names (what `transformers`' `save_pretrained` writes above its
//! `max_shard_size`, as for most hub checkpoints of a few billion parameters).
//!
//! Only the headers are read up front; a tensor's bytes are read from its file, straight into
//! the tensor's memory, only when it is asked for ([`Weights::read`]), and a loader copies each
//! into its variable before taking the next, so loading a model needs its variables' memory plus
//! one tensor, never a copy of the files.

use crate::error::{ModelError, Result};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The weights of an unsharded checkpoint.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint: `{"weight_map": {tensor name: shard file name}}`.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// Where one tensor lies: which file, its dtype and shape, and where its bytes start.
struct Entry {
    file: usize,
    kind: Kind,
    shape: Vec<i64>,
    offset: u64,
    len: usize,
}

/// Safetensors files, open, and the tensors they hold, by name.
pub(crate) struct Weights {
    files: Vec<(PathBuf, File)>,
    entries: BTreeMap<String, Entry>,
}

impl Weights {
    /// The weights of checkpoint directory `dir`: its `model.safetensors` when it has one (as
    /// `transformers` prefers it too), else the shards of its `model.safetensors.index.json`.
    pub(crate) fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join(WEIGHTS_FILE);
        if single.exists() {
            return Self::open_files(&[single]);
        }
        let index = dir.join(WEIGHTS_INDEX_FILE);
        if index.exists() {
            return Self::open_index(dir, &index);
        }
        let mut msg = format!(
            "no {WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE} (only safetensors weights are read)"
        );
        if dir.join("pytorch_model.bin").exists()
            || dir.join("pytorch_model.bin.index.json").exists()
        {
            msg.push_str(
                "; this checkpoint has PyTorch pickle weights (pytorch_model.bin): convert them \
                 with transformers, `AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(OUT)`",
            );
        }
        Err(ModelError::ckpt(dir, msg))
    }

    /// One safetensors file (LoRA adapters, tests).
    pub(crate) fn open_file(path: &Path) -> Result<Self> {
        Self::open_files(&[path.to_path_buf()])
    }

    fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut weights = Weights {
            files: Vec::with_capacity(paths.len()),
            entries: BTreeMap::new(),
        };
        for path in paths {
            weights.add_file(path)?;
        }
        Ok(weights)
    }

    fn add_file(&mut self, path: &Path) -> Result<()> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // The header is parsed from a map of the file (only its pages are touched); the map is
        // dropped before any tensor is read.
        // SAFETY: a read-only map, read only here; as with every memory-mapped loader
        // (safetensors' own, candle's), a file truncated meanwhile by another process is
        // outside what we can guard against.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let bad = |e: safetensors::SafeTensorError| {
            ModelError::ckpt(path, format!("not a valid safetensors file: {e}"))
        };
        // `deserialize` checks the header against the file (offsets in bounds, no overlap).
        safetensors::SafeTensors::deserialize(&map).map_err(bad)?;
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&map).map_err(bad)?;
        drop(map);
        let data_start = 8 + header_len as u64;
        let index = self.files.len();
        for (name, info) in metadata.tensors() {
            let kind = dtype_to_kind(info.dtype).ok_or_else(|| {
                ModelError::ckpt(
                    path,
                    format!("tensor {name} has unsupported dtype {:?}", info.dtype),
                )
            })?;
            let (start, end) = info.data_offsets;
            let entry = Entry {
                file: index,
                kind,
                shape: info.shape.iter().map(|&d| d as i64).collect(),
                offset: data_start + start as u64,
                len: end - start,
            };
            if let Some(old) = self.entries.insert(name.clone(), entry) {
                return Err(ModelError::ckpt(
                    path,
                    format!(
                        "tensor {name} is also in {}: a tensor must be in one shard only",
                        self.files[old.file].0.display()
                    ),
                ));
            }
        }
        self.files.push((path.to_path_buf(), file));
        Ok(())
    }

    fn open_index(dir: &Path, index: &Path) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let text = std::fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
        let parsed: Index = serde_json::from_str(&text).map_err(|e| ModelError::Json {
            path: index.to_path_buf(),
            msg: e.to_string(),
        })?;
        // The shards in the index's order of first mention, each once.
        let mut shards: Vec<&str> = vec![];
        for shard in parsed.weight_map.values() {
            if !shards.contains(&shard.as_str()) {
                shards.push(shard);
            }
        }
        if shards.is_empty() {
            return Err(ModelError::ckpt(
                index,
                "weight_map is empty: no tensor to load",
            ));
        }
        let mut paths = Vec::with_capacity(shards.len());
        for shard in &shards {
            let mut parts = Path::new(shard).components();
            if !matches!(
                (parts.next(), parts.next()),
                (Some(Component::Normal(_)), None)
            ) {
                return Err(ModelError::ckpt(
                    index,
                    format!("shard {shard:?} is not a file name in the checkpoint's folder"),
                ));
            }
            let path = dir.join(shard);
            if !path.exists() {
                let n = parsed.weight_map.values().filter(|s| s == shard).count();
                return Err(ModelError::ckpt(
                    index,
                    format!(
                        "names shard {shard} (for {n} tensors), which is not in {}: the \
                         checkpoint is incomplete",
                        dir.display()
                    ),
                ));
            }
            paths.push(path);
        }
        let weights = Self::open_files(&paths)?;
        for (name, shard) in &parsed.weight_map {
            let found = weights
                .entries
                .get(name)
                .map(|e| weights.files[e.file].0.file_name() == Some(shard.as_ref()));
            if found != Some(true) {
                return Err(ModelError::ckpt(
                    index,
                    format!("puts tensor {name} in {shard}, which does not hold it"),
                ));
            }
        }
        Ok(weights)
    }

    /// Whether a tensor of this name is in the files.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Every tensor, by name in sorted order, each read from its file only when the iterator
    /// reaches it.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Result<(String, Tensor)>> + '_ {
        self.entries
            .keys()
            .map(|name| Ok((name.clone(), self.read(name)?.expect("a listed name"))))
    }

    /// Tensor `name` read from its file (on the CPU, in the file's dtype); `None` if no file
    /// holds it.
    pub(crate) fn read(&self, name: &str) -> Result<Option<Tensor>> {
        let Some(entry) = self.entries.get(name) else {
            return Ok(None);
        };
        let (path, file) = &self.files[entry.file];
        let t = Tensor::f_empty(entry.shape.as_slice(), (entry.kind, Device::Cpu))?;
        // `deserialize` checked the header's offsets against dtype and shape; checked again
        // here because the read below relies on it.
        if t.numel() * entry.kind.elt_size_in_bytes() != entry.len {
            return Err(ModelError::ckpt(
                path,
                format!("tensor {name}: its bytes do not match its dtype and shape"),
            ));
        }
        if entry.len > 0 {
            // SAFETY: `t` is a fresh contiguous CPU tensor of exactly `len` bytes, owned here;
            // safetensors stores little-endian values, as the CPUs libtorch runs on.
            let bytes =
                unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, entry.len) };
            read_exact_at(file, bytes, entry.offset).map_err(|e| ModelError::io(path, e))?;
        }
        Ok(Some(t))
    }

    /// Every tensor, read, by name.
    pub(crate) fn read_all(&self) -> Result<BTreeMap<String, Tensor>> {
        self.iter().collect()
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

pub(crate) fn dtype_to_kind(dtype: safetensors::Dtype) -> Option<Kind> {
    use safetensors::Dtype;
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}
