//! Converting a model's matrices to another type: while loading
//! (`--quantize q8_0`), and into a GGUF file that llama.cpp can load
//! (`lucid quantize IN OUT.gguf --type q4_k`).
//!
//! What is converted follows llama.cpp's `llama-quantize`: the float matrices
//! (f32, f16, bf16), including the token embedding and the output head, but
//! not the norms and biases (vectors, which are written as f32, as
//! llama.cpp's converter writes them), not learned position embeddings, and
//! not weights that are already quantized. A matrix whose rows are not a whole number of the
//! target's blocks falls back as llama.cpp's does: the 256-value k-quants to
//! a 32-value type (Q4_K to Q5_0), and a 32-value type to F16.
//!
//! The values are those of lucid-tensor's reference quantizers, which follow
//! ggml's reference code, so a row quantized here is the row llama.cpp's
//! reference quantizer writes for it. (`llama-quantize` uses the importance-
//! aware search for k-quants, so its Q4_K files can differ slightly.)

use std::path::Path;

use lucid_gguf::{Bytes, GgufFile, GgufWriter, Value};
use lucid_tensor::DType;
use lucid_tensor::quant::{dequantize_row, quantize_row};

use crate::error::{EngineError, Result};
use crate::hf::{Converted, HfCheckpoint};
use crate::weights::{Weight, WeightSource};

/// The types lucid can convert matrices to.
pub const TARGETS: [DType; 9] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q4K,
];

/// Checks that lucid can convert matrices to `t`.
pub fn check_target(t: DType) -> Result<()> {
    if TARGETS.contains(&t) {
        Ok(())
    } else {
        Err(EngineError::QuantizeType { dtype: t })
    }
}

/// The target type a name such as `q8_0`, `Q4_K` or `f16` stands for.
pub fn parse_target(name: &str) -> Option<DType> {
    TARGETS
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
}

/// The type a matrix with rows of `row_len` values gets when converting to
/// `target`: `target` itself when its blocks divide the rows, else
/// llama.cpp's fallback.
pub fn matrix_type(target: DType, row_len: usize) -> DType {
    let fits = |t: DType| row_len.is_multiple_of(t.block_len());
    if fits(target) {
        return target;
    }
    let fallback = match target {
        DType::Q4K => DType::Q5_0,
        other => other,
    };
    if fits(fallback) { fallback } else { DType::F16 }
}

/// Whether a tensor of this GGUF name is converted: a float matrix that is
/// not a norm, a learned position embedding or a mixture's router.
pub fn converts(w: &Weight) -> bool {
    let is_float = matches!(w.dtype, DType::F32 | DType::F16 | DType::BF16);
    let is_matrix =
        w.shape.len() >= 2 && w.shape[0] > 0 && w.shape.iter().skip(1).product::<usize>() > 1;
    is_float && is_matrix && w.name.ends_with(".weight") && !kept_f32(w)
}

/// Tensors stored as f32 whatever the target, as llama.cpp's converter and
/// `llama-quantize` keep them: norms, learned positions, and a mixture's
/// router (`ffn_gate_inp`), whose rounding would change which experts run.
fn kept_f32(w: &Weight) -> bool {
    w.name.contains("_norm") || w.name == "position_embd.weight" || w.name.contains("ffn_gate_inp")
}

/// Whether a tensor is a vector the forward pass adds or multiplies
/// elementwise (a norm's weight, a bias), or another tensor kept in f32:
/// stored as f32, as llama.cpp's converter stores them, whatever the
/// checkpoint had.
fn is_vector(w: &Weight) -> bool {
    w.shape.iter().skip(1).product::<usize>() == 1 || kept_f32(w)
}

/// `w` converted to `target` (or its fallback), when [`converts`] says so;
/// f16 and bf16 vectors become f32; anything else is `w` itself, sharing
/// its bytes.
pub fn convert_weight(w: &Weight, target: DType) -> Weight {
    let cols = w.shape.first().copied().unwrap_or(1);
    let to = if converts(w) {
        matrix_type(target, cols)
    } else if matches!(w.dtype, DType::F16 | DType::BF16) && is_vector(w) {
        DType::F32
    } else {
        w.dtype
    };
    if to == w.dtype || cols == 0 {
        return w.clone();
    }
    let rows: usize = w.shape.iter().skip(1).product();
    let (Some(in_row), Some(out_row)) = (w.dtype.row_bytes(cols), to.row_bytes(cols)) else {
        return w.clone();
    };
    let mut out = vec![0u8; rows * out_row];
    // Rows are independent: split them over the machine's cores.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(rows.div_ceil(64))
        .max(1);
    let per_thread = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (t, chunk) in out.chunks_mut(per_thread * out_row).enumerate() {
            let src = &w.data[t * per_thread * in_row..];
            s.spawn(move || {
                let mut tmp = vec![0f32; cols];
                for (r, dst) in chunk.chunks_exact_mut(out_row).enumerate() {
                    dequantize_row(w.dtype, &src[r * in_row..(r + 1) * in_row], &mut tmp);
                    quantize_row(to, &tmp, dst);
                }
            });
        }
    });
    Weight {
        name: w.name.clone(),
        dtype: to,
        shape: w.shape.clone(),
        data: Bytes::from(out),
    }
}

/// A restated checkpoint with its matrices converted to `target`, if any
/// (`--quantize` at load).
pub fn quantized(mut c: Converted, target: Option<DType>) -> Result<Converted> {
    if let Some(t) = target {
        quantize_converted(&mut c, t)?;
    }
    Ok(c)
}

/// Converts the matrices of a restated checkpoint in place.
pub fn quantize_converted(c: &mut Converted, target: DType) -> Result<()> {
    check_target(target)?;
    for w in c.tensors_mut() {
        *w = convert_weight(w, target);
    }
    set_file_type(&mut c.metadata, target);
    Ok(())
}

/// A GGUF file with its matrices converted to `target`, held in memory: the
/// same metadata, the other tensors unchanged. This is how `--quantize`
/// works for GGUF files, for every family.
pub fn quantize_gguf(file: &GgufFile, target: DType) -> Result<GgufFile> {
    let w = gguf_writer(file, target)?;
    let mut bytes = Vec::new();
    w.write_to(&mut bytes)?;
    Ok(GgufFile::from_bytes(Bytes::from(bytes))?)
}

fn gguf_writer(file: &GgufFile, target: DType) -> Result<GgufWriter> {
    check_target(target)?;
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata().iter() {
        w.set(k, v.clone());
    }
    let mut meta = w.metadata().clone();
    set_file_type(&mut meta, target);
    for (k, v) in meta.iter() {
        w.set(k, v.clone());
    }
    for info in file.tensors() {
        let Some(t) = file.weight(&info.name) else {
            continue;
        };
        let t = convert_weight(&t, target);
        w.add_tensor(&t.name, t.dtype, &t.shape, &t.data)?;
    }
    Ok(w)
}

/// llama.cpp's `general.file_type` for a file whose matrices are `target`
/// (`LLAMA_FTYPE_*`; Q4_K without a mix is closest to Q4_K_S).
fn set_file_type(meta: &mut lucid_gguf::Metadata, target: DType) {
    let ftype = match target {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Q4_0 => 2,
        DType::Q4_1 => 3,
        DType::Q8_0 => 7,
        DType::Q5_0 => 8,
        DType::Q5_1 => 9,
        DType::Q4K => 14,
        DType::BF16 => 32,
        _ => return,
    };
    meta.insert("general.file_type", Value::U32(ftype));
    meta.insert("general.quantization_version", Value::U32(2));
}

/// What [`quantize_file`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeSummary {
    /// `general.architecture` of the output.
    pub architecture: String,
    pub n_tensors: usize,
    /// Tensors per type in the output, most first.
    pub types: Vec<(DType, usize)>,
    pub output_bytes: u64,
}

/// Writes `input` (a GGUF file or a Hugging Face checkpoint directory) to
/// `output` as a GGUF file with its matrices converted to `target`.
///
/// A checkpoint is written under the tensor names and metadata keys of
/// llama.cpp's converter for its family, with its tokenizer embedded, so
/// that llama.cpp can load the file where it knows the family.
pub fn quantize_file(input: &Path, output: &Path, target: DType) -> Result<QuantizeSummary> {
    check_target(target)?;
    let writer = match HfCheckpoint::dir_of(input) {
        Some(dir) => {
            let ckpt = HfCheckpoint::open(&dir)?;
            let mut c = crate::arch::for_hf(&ckpt)?.convert_hf(&ckpt)?;
            quantize_converted(&mut c, target)?;
            converted_writer(&ckpt, &c)?
        }
        None => gguf_writer(&GgufFile::open(input)?, target)?,
    };
    writer.write(output)?;
    let out = GgufFile::open(output)?;
    let mut types: Vec<(DType, usize)> = Vec::new();
    for t in out.tensors() {
        match types.iter_mut().find(|(d, _)| *d == t.dtype) {
            Some(e) => e.1 += 1,
            None => types.push((t.dtype, 1)),
        }
    }
    types.sort_by_key(|t| std::cmp::Reverse(t.1));
    Ok(QuantizeSummary {
        architecture: out.metadata().str("general.architecture")?.to_string(),
        n_tensors: out.tensors().len(),
        types,
        output_bytes: out.file_size(),
    })
}

/// The GGUF file for a restated checkpoint: its metadata, a name, the
/// tokenizer, and the tensors.
pub fn converted_writer(ckpt: &HfCheckpoint, c: &Converted) -> Result<GgufWriter> {
    let mut w = GgufWriter::new();
    for (k, v) in c.metadata.iter() {
        w.set(k, v.clone());
    }
    let name = ckpt.meta().name;
    if !name.is_empty() {
        w.set("general.name", Value::String(name));
    }
    let n_vocab = c
        .get("token_embd.weight")
        .and_then(|t| t.shape.get(1).copied())
        .ok_or_else(|| EngineError::MissingTensor {
            source_name: c.source_name().to_string(),
            name: "token_embd.weight".into(),
        })?;
    for (k, v) in ckpt.tokenizer_metadata(Some(n_vocab))?.iter() {
        w.set(k, v.clone());
    }
    for t in c.tensors() {
        w.add_tensor(&t.name, t.dtype, &t.shape, &t.data)?;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallbacks_follow_llama_cpp() {
        assert_eq!(matrix_type(DType::Q4K, 256), DType::Q4K);
        assert_eq!(matrix_type(DType::Q4K, 64), DType::Q5_0);
        assert_eq!(matrix_type(DType::Q4K, 48), DType::F16);
        assert_eq!(matrix_type(DType::Q8_0, 64), DType::Q8_0);
        assert_eq!(matrix_type(DType::Q8_0, 48), DType::F16);
        assert_eq!(matrix_type(DType::F16, 7), DType::F16);
    }

    #[test]
    fn names_parse_and_unknown_targets_are_refused() {
        assert_eq!(parse_target("q4_k"), Some(DType::Q4K));
        assert_eq!(parse_target("Q8_0"), Some(DType::Q8_0));
        assert_eq!(parse_target("f16"), Some(DType::F16));
        assert_eq!(parse_target("q6_k"), None);
        assert!(check_target(DType::Q6K).is_err());
    }

    #[test]
    fn norms_vectors_and_position_embeddings_are_kept() {
        let w = |name: &str, shape: &[usize]| Weight {
            name: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
            data: Bytes::from(vec![0u8; shape.iter().product::<usize>() * 4]),
        };
        assert!(converts(&w("blk.0.attn_qkv.weight", &[64, 192])));
        assert!(converts(&w("token_embd.weight", &[64, 384])));
        assert!(!converts(&w("blk.0.attn_norm.weight", &[64])));
        assert!(!converts(&w("blk.0.attn_qkv.bias", &[192])));
        assert!(!converts(&w("position_embd.weight", &[64, 64])));
        let q = convert_weight(&w("output.weight", &[64, 3]), DType::Q8_0);
        assert_eq!((q.dtype, q.data.len()), (DType::Q8_0, 3 * 68));
    }
}
