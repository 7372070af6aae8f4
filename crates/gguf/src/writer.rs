//! Writing GGUF v3 files: for tests that need a small model, and for tools
//! that convert or quantize models.
//!
//! The layout is the one llama.cpp writes: header, metadata, tensor infos,
//! padding to the alignment, then each tensor's data padded to the alignment.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use lucid_tensor::DType;

use crate::error::GgufError;
use crate::metadata::Metadata;
use crate::value::{Array, Value};
use crate::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};

/// Collects metadata and tensors, then writes them as one GGUF v3 file.
#[derive(Debug, Default)]
pub struct GgufWriter {
    metadata: Metadata,
    tensors: Vec<PendingTensor>,
    names: HashSet<String>,
}

struct PendingTensor {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl fmt::Debug for PendingTensor {
    /// Without the data, which can be megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingTensor")
            .field("name", &self.name)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("n_bytes", &self.data.len())
            .finish()
    }
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Sets a metadata key. Setting a key again replaces its value and keeps
    /// its place. `general.alignment` sets the alignment of tensor data.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        self.metadata.insert(key, value);
    }

    /// The metadata set so far.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Adds a tensor. `shape` is in ggml order (`shape[0]` is the row
    /// length), and `data` must be exactly the bytes that `dtype` needs for
    /// that shape.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: &[usize],
        data: &[u8],
    ) -> Result<(), GgufError> {
        let name = name.into();
        let invalid = |reason: String| GgufError::InvalidTensor {
            name: name.clone(),
            reason,
        };
        if self.names.contains(&name) {
            return Err(invalid(
                "a tensor of this name was already added".to_owned(),
            ));
        }
        if shape.len() > MAX_DIMS {
            return Err(invalid(format!(
                "shape {shape:?} has {} dimensions, GGUF allows at most {MAX_DIMS}",
                shape.len()
            )));
        }
        // The same limit as the reader: ggml counts elements in i64.
        let product = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul((d as u64).max(1)));
        if product.is_none_or(|n| n > i64::MAX as u64) {
            return Err(invalid(format!(
                "shape {shape:?} has more elements than ggml can index"
            )));
        }
        let row_len = shape.first().copied().unwrap_or(1);
        let n_rows: usize = shape.iter().skip(1).product();
        let Some(row_bytes) = dtype.row_bytes(row_len) else {
            return Err(invalid(format!(
                "a row of {row_len} {dtype} values is not a whole number of {}-value blocks",
                dtype.block_len()
            )));
        };
        let n_bytes = row_bytes.checked_mul(n_rows);
        if n_bytes != Some(data.len()) {
            return Err(invalid(format!(
                "shape {shape:?} of {dtype} takes {} bytes, but {} were given",
                n_bytes.map_or_else(|| "too many".to_owned(), |n| n.to_string()),
                data.len()
            )));
        }
        self.names.insert(name.clone());
        self.tensors.push(PendingTensor {
            name,
            dtype,
            shape: shape.to_vec(),
            data: data.to_vec(),
        });
        Ok(())
    }

    /// Writes the file to `w`, through a buffer.
    pub fn write_to(&self, w: impl Write) -> Result<(), GgufError> {
        let alignment = self.alignment()?;
        for (key, value) in self.metadata.iter() {
            if let Value::Array(a) = value
                && a.depth() > MAX_ARRAY_DEPTH
            {
                return Err(GgufError::InvalidMetadata {
                    key: key.to_owned(),
                    reason: format!("arrays nest more than {MAX_ARRAY_DEPTH} deep"),
                });
            }
        }
        let mut out = Out {
            w: BufWriter::new(w),
            written: 0,
        };
        self.write_all(&mut out, alignment)
            .and_then(|()| out.w.flush())
            .map_err(|error| GgufError::Io {
                path: None,
                action: "write GGUF data",
                error,
            })
    }

    /// Writes the file to `path` atomically: into a temporary file in the
    /// same folder, which then replaces `path`. Readers of `path` see either
    /// the old file or the whole new one, never a part.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        let io_error = |action, error| GgufError::Io {
            path: Some(path.to_path_buf()),
            action,
            error,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".lucid-gguf-").suffix(".tmp");
        // Temporary files are private (0600) by default; the model file it
        // becomes should get the permissions any new file gets (0666 less
        // the umask).
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let mut tmp = builder
            .tempfile_in(dir)
            .map_err(|e| io_error("create a temporary file next to", e))?;
        match self.write_to(&mut tmp) {
            Err(GgufError::Io { error, .. }) => return Err(io_error("write", error)),
            other => other?,
        }
        tmp.as_file().sync_all().map_err(|e| io_error("sync", e))?;
        tmp.persist(path)
            .map_err(|e| io_error("rename the temporary file to", e.error))?;
        Ok(())
    }

    /// The alignment `general.alignment` asks for, checked as the reader
    /// checks it.
    fn alignment(&self) -> Result<usize, GgufError> {
        let Some(value) = self.metadata.get(ALIGNMENT_KEY) else {
            return Ok(DEFAULT_ALIGNMENT);
        };
        match value.as_integer().map(u32::try_from) {
            Some(Ok(a)) if a.is_power_of_two() => Ok(a as usize),
            _ => Err(GgufError::InvalidMetadata {
                key: ALIGNMENT_KEY.to_owned(),
                reason: format!("{value:?} is not a non-zero power of two that fits in u32"),
            }),
        }
    }

    fn write_all<W: Write>(&self, out: &mut Out<W>, alignment: usize) -> io::Result<()> {
        out.bytes(&MAGIC)?;
        out.u32(3)?;
        out.u64(self.tensors.len() as u64)?;
        out.u64(self.metadata.len() as u64)?;
        for (key, value) in self.metadata.iter() {
            out.string(key)?;
            out.u32(value.value_type().id())?;
            out.value(value)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            out.string(&t.name)?;
            out.u32(t.shape.len() as u32)?;
            for &d in &t.shape {
                out.u64(d as u64)?;
            }
            out.u32(t.dtype.ggml_id())?;
            out.u64(offset)?;
            offset += padded(t.data.len(), alignment) as u64;
        }
        out.pad(alignment)?;
        for t in &self.tensors {
            out.bytes(&t.data)?;
            out.pad(alignment)?;
        }
        Ok(())
    }
}

fn padded(n: usize, alignment: usize) -> usize {
    n.div_ceil(alignment) * alignment
}

/// A writer that counts what went through it, for the padding.
struct Out<W: Write> {
    w: W,
    written: usize,
}

impl<W: Write> Out<W> {
    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.w.write_all(b)?;
        self.written += b.len();
        Ok(())
    }

    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }

    fn string(&mut self, s: &str) -> io::Result<()> {
        self.u64(s.len() as u64)?;
        self.bytes(s.as_bytes())
    }

    fn pad(&mut self, alignment: usize) -> io::Result<()> {
        const ZEROS: [u8; 64] = [0; 64];
        let mut n = padded(self.written, alignment) - self.written;
        while n > 0 {
            let chunk = n.min(ZEROS.len());
            self.bytes(&ZEROS[..chunk])?;
            n -= chunk;
        }
        Ok(())
    }

    fn value(&mut self, value: &Value) -> io::Result<()> {
        match value {
            Value::U8(v) => self.bytes(&v.to_le_bytes()),
            Value::I8(v) => self.bytes(&v.to_le_bytes()),
            Value::U16(v) => self.bytes(&v.to_le_bytes()),
            Value::I16(v) => self.bytes(&v.to_le_bytes()),
            Value::U32(v) => self.bytes(&v.to_le_bytes()),
            Value::I32(v) => self.bytes(&v.to_le_bytes()),
            Value::U64(v) => self.bytes(&v.to_le_bytes()),
            Value::I64(v) => self.bytes(&v.to_le_bytes()),
            Value::F32(v) => self.bytes(&v.to_le_bytes()),
            Value::F64(v) => self.bytes(&v.to_le_bytes()),
            Value::Bool(v) => self.bytes(&[u8::from(*v)]),
            Value::String(s) => self.string(s),
            Value::Array(a) => self.array(a),
        }
    }

    fn array(&mut self, a: &Array) -> io::Result<()> {
        self.u32(a.element_type().id())?;
        self.u64(a.len() as u64)?;
        match a {
            Array::U8(v) => self.bytes(v),
            Array::I8(v) => v.iter().try_for_each(|x| self.bytes(&x.to_le_bytes())),
            Array::U16(v) => v.iter().try_for_each(|x| self.bytes(&x.to_le_bytes())),
            Array::I16(v) => v.iter().try_for_each(|x| self.bytes(&x.to_le_bytes())),
            Array::U32(v) => v.iter().try_for_each(|x| self.bytes(&x.to_le_bytes())),
            Array::I32(v) => v.iter().try_for_each(|x| self.bytes(&x.to_le_bytes())),
            Array::U64(v) => v.iter().try_for_each(|x| self.bytes(&x.to_le_bytes())),
            Array::I64(v) => v.iter().try_for_each(|x| self.bytes(&x.to_le_bytes())),
            Array::F32(v) => v.iter().try_for_each(|x| self.bytes(&x.to_le_bytes())),
            Array::F64(v) => v.iter().try_for_each(|x| self.bytes(&x.to_le_bytes())),
            Array::Bool(v) => v.iter().try_for_each(|&x| self.bytes(&[u8::from(x)])),
            Array::String(v) => v.iter().try_for_each(|s| self.string(s)),
            Array::Array(v) => v.iter().try_for_each(|a| self.array(a)),
        }
    }
}
