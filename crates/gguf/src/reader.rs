//! Opening a GGUF file: memory-map it, check every count, length, type and
//! offset in it, and hand out tensor data as zero-copy slices of the map.
//!
//! All checking happens in [`GgufFile::open`], so that a [`GgufFile`] in hand
//! is known to be consistent and the code that loads a model never has to
//! think about a hostile file again. Lengths and counts are compared with the
//! bytes left in the file *before* anything is allocated for them, so a length
//! of 2^60 is an error and not an attempt to allocate an exabyte.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use lucid_tensor::DType;
use memmap2::Mmap;

use crate::StringArray;
use crate::error::{FormatError, GgufError};
use crate::general::General;
use crate::metadata::Metadata;
use crate::tensor::TensorInfo;
use crate::value::{Array, Value, ValueType};
use crate::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};

/// The fewest bytes one metadata entry can take: an empty key's length, the
/// value type, and a one-byte value.
const MIN_ENTRY_BYTES: u64 = 8 + 4 + 1;
/// The fewest bytes one tensor info can take: an empty name's length, zero
/// dimensions, the type and the offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// A validated GGUF file, with its tensor data still in the memory map.
pub struct GgufFile {
    bytes: Bytes,
    path: Option<Arc<Path>>,
    version: u32,
    alignment: usize,
    data_offset: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

impl GgufFile {
    /// Memory-maps the file at `path` and validates all of it. Tensor data is
    /// not read, let alone copied: only the header, metadata and tensor infos
    /// at the start of the file are.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io_error = |action, error| GgufError::Io {
            path: Some(path.to_path_buf()),
            action,
            error,
        };
        let file = File::open(path).map_err(|e| io_error("open", e))?;
        // SAFETY: the map is only ever read. If another process truncates or
        // rewrites the file while it is mapped, reads may see the new bytes or
        // fault; like llama.cpp and every other mmap-based loader, lucid
        // accepts that model files are not modified while they are in use.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io_error("memory-map", e))?;
        GgufFile::parse(Bytes::from_owner(map), Some(Arc::from(path)))
    }

    /// Validates a GGUF file held in memory, exactly as [`GgufFile::open`]
    /// does. Tensor data is handed out as slices of `bytes`.
    pub fn from_bytes(bytes: Bytes) -> Result<GgufFile, GgufError> {
        GgufFile::parse(bytes, None)
    }

    fn parse(bytes: Bytes, path: Option<Arc<Path>>) -> Result<GgufFile, GgufError> {
        let layout = parse_layout(&bytes, path.clone())?;
        Ok(GgufFile {
            bytes,
            path,
            version: layout.version,
            alignment: layout.alignment,
            data_offset: layout.data_offset,
            metadata: layout.metadata,
            tensors: layout.tensors,
            by_name: layout.by_name,
        })
    }

    /// The path the file was opened from; `None` for [`GgufFile::from_bytes`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The GGUF format version, 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of tensor data in bytes: `general.alignment`, or 32.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    pub fn file_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Where the tensor data section starts, in bytes from the start of the
    /// file; tensor offsets in the file are relative to it.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The whole file.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The tensors, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let &i = self.by_name.get(name)?;
        self.tensors.get(i)
    }

    /// The data of tensor `t`, as a slice of the file that shares its memory
    /// map: nothing is copied, and the map stays alive while the slice does.
    ///
    /// The byte range of every tensor of this file was checked when the file
    /// was opened. A `TensorInfo` from elsewhere whose range does not lie in
    /// this file gets an empty slice.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Bytes {
        let range = usize::try_from(t.offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(t.n_bytes)?))
            .filter(|r| r.end <= self.bytes.len());
        match range {
            Some(r) => self.bytes.slice(r),
            None => Bytes::new(),
        }
    }

    /// The `general.*` keys, typed.
    pub fn general(&self) -> General<'_> {
        General::from_metadata(&self.metadata)
    }
}

impl fmt::Debug for GgufFile {
    /// A summary: the metadata and tensor list of a real model run to
    /// megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("file_size", &self.file_size())
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

/// Everything [`GgufFile`] knows apart from the bytes themselves.
struct Layout {
    version: u32,
    alignment: usize,
    data_offset: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

fn parse_layout(data: &[u8], path: Option<Arc<Path>>) -> Result<Layout, GgufError> {
    let error_path: Option<PathBuf> = path.as_deref().map(Path::to_path_buf);
    let fail = |context: String, bad: Bad| GgufError::Format {
        path: error_path.clone(),
        offset: bad.offset as u64,
        context,
        problem: bad.problem,
    };
    let mut p = Parser { data, pos: 0 };

    let header = p.header().map_err(|b| fail("header".to_owned(), b))?;

    let mut metadata = Metadata::with_capacity(header.n_kv, path);
    let mut alignment_at = 0;
    for i in 0..header.n_kv {
        let key_at = p.pos;
        let key = p
            .string("metadata key")
            .map_err(|b| fail(format!("metadata entry {i}"), b))?;
        let context = || format!("metadata key `{key}`");
        if metadata.contains_key(key) {
            let key = key.to_owned();
            return Err(fail(
                context(),
                Bad::at(key_at, FormatError::DuplicateKey { key }),
            ));
        }
        if key == ALIGNMENT_KEY {
            alignment_at = p.pos;
        }
        let value = p.typed_value().map_err(|b| fail(context(), b))?;
        metadata.insert(key, value);
    }
    let alignment = alignment(&metadata).map_err(|problem| {
        fail(
            format!("metadata key `{ALIGNMENT_KEY}`"),
            Bad::at(alignment_at, problem),
        )
    })?;

    let mut tensors = Vec::with_capacity(header.n_tensors);
    let mut by_name = HashMap::with_capacity(header.n_tensors);
    // Where each tensor's offset field is, and what it holds: offsets are
    // checked once the start of the data section is known.
    let mut offsets = Vec::with_capacity(header.n_tensors);
    for i in 0..header.n_tensors {
        let name_at = p.pos;
        let name = p
            .string("tensor name")
            .map_err(|b| fail(format!("tensor info {i}"), b))?;
        let context = || format!("tensor `{name}`");
        if by_name.contains_key(name) {
            let name = name.to_owned();
            return Err(fail(
                context(),
                Bad::at(name_at, FormatError::DuplicateTensor { name }),
            ));
        }
        let (shape, dtype, n_bytes) = p.tensor_layout().map_err(|b| fail(context(), b))?;
        let offset_at = p.pos;
        let relative = p
            .u64("tensor data offset")
            .map_err(|b| fail(context(), b))?;
        offsets.push((offset_at, relative));
        by_name.insert(name.to_owned(), tensors.len());
        tensors.push(TensorInfo {
            name: name.to_owned(),
            shape,
            dtype,
            offset: 0,
            n_bytes,
        });
    }

    // The data section starts at the first aligned offset after the tensor
    // infos. A file without tensors may end before that padding.
    let padding = (alignment - p.pos % alignment) % alignment;
    let data_offset = p.pos as u64 + padding as u64;
    if !tensors.is_empty() && padding > p.left() {
        let problem = FormatError::Truncated {
            what: "padding before the tensor data",
            needed: padding as u64,
            available: p.left() as u64,
        };
        return Err(fail("data section".to_owned(), Bad::at(p.pos, problem)));
    }
    // llama.cpp also requires tensors to lie back to back in info order;
    // like gguf-py, lucid only asks that each one be aligned and inside the
    // file. Overlapping data is harmless: nothing writes through the slices.
    let file_size = data.len() as u64;
    for (t, (offset_at, relative)) in tensors.iter_mut().zip(offsets) {
        let bad = |problem| fail(format!("tensor `{}`", t.name), Bad::at(offset_at, problem));
        if relative % alignment as u64 != 0 {
            return Err(bad(FormatError::MisalignedOffset {
                offset: relative,
                alignment,
            }));
        }
        // u128 cannot overflow here: both terms are below 2^64.
        let start = u128::from(data_offset) + u128::from(relative);
        let end = start + t.n_bytes as u128;
        if end > u128::from(file_size) {
            return Err(bad(FormatError::DataOutOfBounds {
                start,
                end,
                file_size,
            }));
        }
        t.offset = data_offset + relative;
    }

    Ok(Layout {
        version: header.version,
        alignment,
        data_offset,
        metadata,
        tensors,
        by_name,
    })
}

/// The alignment the metadata asks for: any integer value that is a power of
/// two and fits in u32, as the spec stores it as u32.
fn alignment(metadata: &Metadata) -> Result<usize, FormatError> {
    let Some(value) = metadata.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let Some(n) = value.as_integer() else {
        return Err(FormatError::AlignmentType {
            found: value.type_name(),
        });
    };
    match u32::try_from(n) {
        Ok(a) if a.is_power_of_two() => Ok(a as usize),
        _ => Err(FormatError::BadAlignment { value: n }),
    }
}

/// A format error before it is told which file and which part of it.
struct Bad {
    offset: usize,
    problem: FormatError,
}

impl Bad {
    fn at(offset: usize, problem: FormatError) -> Bad {
        Bad { offset, problem }
    }
}

struct Header {
    version: u32,
    n_kv: usize,
    n_tensors: usize,
}

/// A cursor over the file that never reads past its end.
struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn left(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes, or a `Truncated` error naming `what` when the file
    /// has fewer left.
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], Bad> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let split = usize::try_from(n)
            .ok()
            .and_then(|n| rest.split_at_checked(n));
        match split {
            Some((head, _)) => {
                self.pos += head.len();
                Ok(head)
            }
            None => Err(Bad::at(
                self.pos,
                FormatError::Truncated {
                    what,
                    needed: n,
                    available: rest.len() as u64,
                },
            )),
        }
    }

    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Bad> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Bad> {
        self.fixed(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Bad> {
        self.fixed(what).map(u64::from_le_bytes)
    }

    /// A length-prefixed UTF-8 string, borrowed from the file.
    fn string(&mut self, what: &'static str) -> Result<&'a str, Bad> {
        let len = self.u64(what)?;
        let start = self.pos;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map_err(|e| Bad::at(start + e.valid_up_to(), FormatError::InvalidUtf8 { what }))
    }

    /// `n` strings, as one buffer: UTF-8 is checked once over all of them.
    fn strings(&mut self, n: usize) -> Result<StringArray, Bad> {
        const WHAT: &str = "string in array";
        let first = self.pos;
        // The lengths first, so the text is copied once into a buffer of
        // its size (the file bounds the sum).
        let mut total = 0usize;
        for _ in 0..n {
            let len = self.u64(WHAT)?;
            total += self.take(len, WHAT)?.len();
        }
        self.pos = first;
        let mut bytes = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(n);
        for _ in 0..n {
            let len = self.u64(WHAT)?;
            bytes.extend_from_slice(self.take(len, WHAT)?);
            ends.push(bytes.len());
        }
        StringArray::from_parts(bytes, ends).map_err(|bad| {
            // Find string `bad` again for the offset of its first bad byte.
            let mut again = Parser {
                data: self.data,
                pos: first,
            };
            let mut err = None;
            for _ in 0..=bad {
                if let Err(e) = again.string(WHAT) {
                    err = Some(e);
                    break;
                }
            }
            err.unwrap_or_else(|| Bad::at(first, FormatError::InvalidUtf8 { what: WHAT }))
        })
    }

    /// Checks that `count` items of at least `min_bytes` each can fit in the
    /// rest of the file, so that allocating room for them is safe.
    fn count(
        &self,
        count: u64,
        min_bytes: u64,
        what: &'static str,
        at: usize,
    ) -> Result<usize, Bad> {
        let available = self.left() as u64;
        let fits = count.checked_mul(min_bytes).is_some_and(|n| n <= available);
        match usize::try_from(count) {
            Ok(n) if fits => Ok(n),
            _ => Err(Bad::at(
                at,
                FormatError::TooMany {
                    what,
                    count,
                    min_bytes,
                    available,
                },
            )),
        }
    }

    fn header(&mut self) -> Result<Header, Bad> {
        let magic: [u8; 4] = self.fixed("magic")?;
        if magic != MAGIC {
            return Err(Bad::at(0, FormatError::BadMagic { found: magic }));
        }
        let version_at = self.pos;
        let version = self.u32("version")?;
        // A big-endian v2 or v3 file has its version in the high half.
        if version & 0xffff == 0 && version != 0 {
            return Err(Bad::at(version_at, FormatError::BigEndian { version }));
        }
        if !(2..=3).contains(&version) {
            return Err(Bad::at(
                version_at,
                FormatError::UnsupportedVersion { version },
            ));
        }
        let tensors_at = self.pos;
        let n_tensors = self.u64("tensor count")?;
        let kv_at = self.pos;
        let n_kv = self.u64("metadata entry count")?;
        let n_kv = self.count(n_kv, MIN_ENTRY_BYTES, "metadata entries", kv_at)?;
        // The tensor infos come after the metadata, so they must fit in what
        // the metadata leaves at the very least.
        let after_kv = Parser {
            data: self.data,
            pos: self.pos + n_kv * MIN_ENTRY_BYTES as usize,
        };
        let n_tensors =
            after_kv.count(n_tensors, MIN_TENSOR_INFO_BYTES, "tensor infos", tensors_at)?;
        Ok(Header {
            version,
            n_kv,
            n_tensors,
        })
    }

    /// A value type tag followed by a value of that type.
    fn typed_value(&mut self) -> Result<Value, Bad> {
        let at = self.pos;
        let id = self.u32("value type")?;
        let ty = ValueType::from_id(id)
            .ok_or_else(|| Bad::at(at, FormatError::UnknownValueType { id }))?;
        self.value(ty)
    }

    fn value(&mut self, ty: ValueType) -> Result<Value, Bad> {
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.fixed("u8 value")?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.fixed("i8 value")?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.fixed("u16 value")?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.fixed("i16 value")?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.fixed("u32 value")?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.fixed("i32 value")?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.fixed("u64 value")?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.fixed("i64 value")?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.fixed("f32 value")?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.fixed("f64 value")?)),
            ValueType::Bool => {
                let at = self.pos;
                let [byte] = self.fixed("bool value")?;
                Value::Bool(
                    to_bool(byte).ok_or_else(|| Bad::at(at, FormatError::InvalidBool { byte }))?,
                )
            }
            ValueType::String => Value::String(self.string("string value")?.to_owned()),
            ValueType::Array => Value::Array(self.array(1)?),
        })
    }

    /// An array at nesting level `depth` (1 for an array that is a value).
    fn array(&mut self, depth: usize) -> Result<Array, Bad> {
        let type_at = self.pos;
        if depth > MAX_ARRAY_DEPTH {
            return Err(Bad::at(
                type_at,
                FormatError::NestedTooDeep {
                    limit: MAX_ARRAY_DEPTH,
                },
            ));
        }
        let id = self.u32("array element type")?;
        let count_at = self.pos;
        let count = self.u64("array length")?;
        let ty = ValueType::from_id(id)
            .ok_or_else(|| Bad::at(type_at, FormatError::UnknownValueType { id }))?;
        let n = self.count(count, ty.min_bytes(), "array elements", count_at)?;
        Ok(match ty {
            ValueType::U8 => Array::U8(self.elements(n, "array of u8", u8::from_le_bytes)?),
            ValueType::I8 => Array::I8(self.elements(n, "array of i8", i8::from_le_bytes)?),
            ValueType::U16 => Array::U16(self.elements(n, "array of u16", u16::from_le_bytes)?),
            ValueType::I16 => Array::I16(self.elements(n, "array of i16", i16::from_le_bytes)?),
            ValueType::U32 => Array::U32(self.elements(n, "array of u32", u32::from_le_bytes)?),
            ValueType::I32 => Array::I32(self.elements(n, "array of i32", i32::from_le_bytes)?),
            ValueType::U64 => Array::U64(self.elements(n, "array of u64", u64::from_le_bytes)?),
            ValueType::I64 => Array::I64(self.elements(n, "array of i64", i64::from_le_bytes)?),
            ValueType::F32 => Array::F32(self.elements(n, "array of f32", f32::from_le_bytes)?),
            ValueType::F64 => Array::F64(self.elements(n, "array of f64", f64::from_le_bytes)?),
            ValueType::Bool => {
                let at = self.pos;
                let bytes = self.take(n as u64, "array of bool")?;
                let mut out = Vec::with_capacity(n);
                for (i, &byte) in bytes.iter().enumerate() {
                    let b = to_bool(byte)
                        .ok_or_else(|| Bad::at(at + i, FormatError::InvalidBool { byte }))?;
                    out.push(b);
                }
                Array::Bool(out)
            }
            ValueType::String => Array::String(self.strings(n)?),
            ValueType::Array => {
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(self.array(depth + 1)?);
                }
                Array::Array(out)
            }
        })
    }

    /// `n` fixed-size little-endian elements, decoded with `decode`.
    fn elements<const N: usize, T>(
        &mut self,
        n: usize,
        what: &'static str,
        decode: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, Bad> {
        // `count` has checked that n * N bytes are in the file.
        let bytes = self.take(n as u64 * N as u64, what)?;
        let (chunks, _) = bytes.as_chunks::<N>();
        Ok(chunks.iter().map(|&c| decode(c)).collect())
    }

    /// A tensor's dimensions and type, checked against each other, with the
    /// size of its data.
    fn tensor_layout(&mut self) -> Result<(Vec<usize>, DType, usize), Bad> {
        let dims_at = self.pos;
        let n_dims = self.u32("dimension count")?;
        if n_dims as usize > MAX_DIMS {
            return Err(Bad::at(dims_at, FormatError::TooManyDims { n_dims }));
        }
        let mut ne = Vec::with_capacity(MAX_DIMS);
        for _ in 0..n_dims {
            ne.push(self.u64("dimension")?);
        }
        let type_at = self.pos;
        let id = self.u32("tensor type")?;

        // ggml counts elements in i64. Zero-sized dimensions count as one
        // here so that products of any subset of the dimensions (the number
        // of rows, say) cannot overflow either.
        let product = ne
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d.max(1)))
            .filter(|&n| n <= i64::MAX as u64);
        let shape: Option<Vec<usize>> =
            product.and_then(|_| ne.iter().map(|&d| usize::try_from(d).ok()).collect());
        let Some(shape) = shape else {
            return Err(Bad::at(
                dims_at,
                FormatError::ElementCountOverflow { shape: ne },
            ));
        };

        let dtype = DType::from_ggml_id(id)
            .ok_or_else(|| Bad::at(type_at, FormatError::UnknownTensorType { id }))?;
        let row_len = shape.first().copied().unwrap_or(1);
        if row_len % dtype.block_len() != 0 {
            return Err(Bad::at(
                dims_at,
                FormatError::PartialBlock {
                    dtype,
                    row_len: row_len as u64,
                    block_len: dtype.block_len(),
                },
            ));
        }
        let n_rows = shape
            .iter()
            .skip(1)
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let n_bytes = dtype
            .row_bytes(row_len)
            .zip(n_rows)
            .and_then(|(row, rows)| row.checked_mul(rows))
            .ok_or_else(|| Bad::at(dims_at, FormatError::SizeOverflow { dtype, shape: ne }))?;
        Ok((shape, dtype, n_bytes))
    }
}

fn to_bool(byte: u8) -> Option<bool> {
    match byte {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}
