//! A checkpoint restated in GGUF's terms: metadata keys and tensors under
//! llama.cpp's names, transposed or reordered where the layouts differ.

use std::collections::HashMap;

use lucid_gguf::{Bytes, Metadata, Value};
use lucid_tensor::ops::Activation;

use super::checkpoint::element_bytes;
use super::config::activation_name;
use crate::error::{EngineError, Result};
use crate::weights::{Weight, WeightSource};

/// A model restated in GGUF's terms: metadata under GGUF's keys and tensors
/// under GGUF's names, some still in a checkpoint's memory map, some
/// converted. Families load it as they load a GGUF file; `lucid quantize`
/// writes it to one.
#[derive(Debug)]
pub struct Converted {
    source_name: String,
    arch: String,
    pub metadata: Metadata,
    tensors: Vec<Weight>,
    by_name: HashMap<String, usize>,
}

impl Converted {
    /// An empty model of GGUF architecture `arch` (`gpt2`).
    pub fn new(source_name: impl Into<String>, arch: &str) -> Converted {
        let mut metadata = Metadata::new();
        metadata.insert("general.architecture", Value::String(arch.to_string()));
        Converted {
            source_name: source_name.into(),
            arch: arch.to_string(),
            metadata,
            tensors: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Sets `{arch}.{key}`.
    pub fn set(&mut self, key: &str, value: Value) {
        self.metadata.insert(format!("{}.{key}", self.arch), value);
    }

    /// Sets `{arch}.{key}` to an integer, as llama.cpp writes them (u32).
    pub fn set_u32(&mut self, key: &str, value: usize) -> Result<()> {
        let v = u32::try_from(value).map_err(|_| EngineError::Config {
            source_name: self.source_name.clone(),
            message: format!("{key} = {value} does not fit in GGUF's u32"),
        })?;
        self.set(key, Value::U32(v));
        Ok(())
    }

    /// Records the MLP's activation when it is not the family's usual one
    /// (see [`Hparams::activation`](crate::arch::Hparams::activation)).
    pub fn set_activation(&mut self, act: Activation, family_default: Activation) {
        if act != family_default {
            self.set(
                crate::arch::ACTIVATION_KEY,
                Value::String(activation_name(act).to_string()),
            );
        }
    }

    /// Adds `w` under the GGUF name `name`, replacing a tensor of that name.
    pub fn push(&mut self, name: impl Into<String>, mut w: Weight) {
        w.name = name.into();
        match self.by_name.get(&w.name) {
            Some(&i) => self.tensors[i] = w,
            None => {
                self.by_name.insert(w.name.clone(), self.tensors.len());
                self.tensors.push(w);
            }
        }
    }

    /// Adds `w` under `name` when there is one.
    pub fn push_opt(&mut self, name: impl Into<String>, w: Option<Weight>) {
        if let Some(w) = w {
            self.push(name, w);
        }
    }

    pub fn tensors(&self) -> &[Weight] {
        &self.tensors
    }

    pub fn tensors_mut(&mut self) -> &mut [Weight] {
        &mut self.tensors
    }

    pub fn get(&self, name: &str) -> Option<&Weight> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }
}

impl WeightSource for Converted {
    fn source_name(&self) -> String {
        self.source_name.clone()
    }

    fn weight(&self, name: &str) -> Option<Weight> {
        self.get(name).cloned()
    }
}

/// The transpose of a float matrix: PyTorch's `Conv1D` layers (GPT-2) store
/// `[in, out]` where every other layer stores `[out, in]`.
pub fn transpose(w: &Weight) -> Result<Weight> {
    let &[cols, rows] = w.shape.as_slice() else {
        return Err(not_a_matrix(w));
    };
    if w.dtype.is_quantized() {
        return Err(not_a_matrix(w));
    }
    let e = element_bytes(w.dtype);
    let mut out = vec![0u8; w.data.len()];
    for r in 0..rows {
        for c in 0..cols {
            let src = (r * cols + c) * e;
            let dst = (c * rows + r) * e;
            out[dst..dst + e].copy_from_slice(&w.data[src..src + e]);
        }
    }
    Ok(Weight {
        name: w.name.clone(),
        dtype: w.dtype,
        shape: vec![rows, cols],
        data: Bytes::from(out),
    })
}

/// Reorders `w`'s data in chunks of `chunk` values: chunk `order[i]` of the
/// input becomes chunk `i` of the output. For a matrix a chunk is a whole
/// number of rows. Used to regroup fused projections that interleave heads
/// (GPT-NeoX's `query_key_value`, `[q, k, v]` per head) into llama.cpp's
/// layout (all queries, then all keys, then all values).
pub fn reorder_chunks(w: &Weight, chunk: usize, order: &[usize]) -> Result<Weight> {
    let e = element_bytes(w.dtype);
    let n = w.n_elements();
    if w.dtype.is_quantized() || chunk == 0 || chunk * order.len() != n {
        return Err(EngineError::Config {
            source_name: w.name.clone(),
            message: format!(
                "cannot regroup a {} tensor of shape {:?} into {} chunks of {chunk}",
                w.dtype,
                w.shape,
                order.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(w.data.len());
    for &i in order {
        let Some(src) = w.data.get(i * chunk * e..(i + 1) * chunk * e) else {
            return Err(not_a_matrix(w));
        };
        out.extend_from_slice(src);
    }
    Ok(Weight {
        name: w.name.clone(),
        dtype: w.dtype,
        shape: w.shape.clone(),
        data: Bytes::from(out),
    })
}

fn not_a_matrix(w: &Weight) -> EngineError {
    EngineError::Config {
        source_name: w.name.clone(),
        message: format!(
            "expected a float matrix, found {} of shape {:?}",
            w.dtype, w.shape
        ),
    }
}

/// Matrices of one shape and type stacked into one tensor of shape
/// `[cols, rows, n]`: llama.cpp's layout for a mixture's experts
/// (`ffn_gate_exps`), one matrix per expert.
pub fn stack(ws: &[Weight]) -> Result<Weight> {
    let Some(first) = ws.first() else {
        return Err(EngineError::Config {
            source_name: "<experts>".into(),
            message: "no matrices to stack".into(),
        });
    };
    let &[cols, rows] = first.shape.as_slice() else {
        return Err(not_a_matrix(first));
    };
    let mut out = Vec::with_capacity(first.data.len() * ws.len());
    for w in ws {
        if w.shape != first.shape || w.dtype != first.dtype {
            return Err(EngineError::Config {
                source_name: w.name.clone(),
                message: format!(
                    "cannot stack a {} tensor of shape {:?} with a {} one of shape {:?}",
                    w.dtype, w.shape, first.dtype, first.shape
                ),
            });
        }
        out.extend_from_slice(&w.data);
    }
    Ok(Weight {
        name: first.name.clone(),
        dtype: first.dtype,
        shape: vec![cols, rows, ws.len()],
        data: Bytes::from(out),
    })
}

/// A new f32 tensor of `values` (a vector), named `name`.
pub fn f32_vector(name: &str, values: &[f32]) -> Weight {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Weight {
        name: name.to_string(),
        dtype: lucid_tensor::DType::F32,
        shape: vec![values.len()],
        data: Bytes::from(data),
    }
}

/// `w` as f32 with `f` applied to every value (Gemma's norms, stored as
/// `w - 1` in checkpoints and as `w` in GGUF).
pub fn map_f32(w: &Weight, f: impl Fn(f32) -> f32) -> Weight {
    let values: Vec<f32> = w.to_f32().into_iter().map(f).collect();
    let mut out = f32_vector(&w.name, &values);
    out.shape = w.shape.clone();
    out
}
