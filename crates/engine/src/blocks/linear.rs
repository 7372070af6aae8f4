//! Linear layers: a stored weight matrix and an optional bias.

use lucid_tensor::{Activations, DType, Isa, MatmulJob, ThreadPool, kernels, matmuls_iter};

use crate::error::Result;
use crate::weights::{Loader, Weight};

/// `y = x · Wᵀ + b`, with `W` as the file stores it.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    /// Loads `{name}.weight` (`out_features` rows of `in_features`) and an
    /// optional `{name}.bias`.
    pub fn load(
        loader: &Loader<'_>,
        name: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Linear> {
        Ok(Linear {
            weight: loader.matrix(&format!("{name}.weight"), out_features, in_features)?,
            bias: loader.opt_vector(&format!("{name}.bias"), out_features)?,
        })
    }

    /// Like [`Linear::load`], for a layer a file may leave out.
    pub fn opt_load(
        loader: &Loader<'_>,
        name: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Option<Linear>> {
        if !loader.has(&format!("{name}.weight")) {
            return Ok(None);
        }
        Linear::load(loader, name, in_features, out_features).map(Some)
    }

    /// Loads a fused projection (`{name}.weight` with the rows of every
    /// part, GPT-2's and GPT-NeoX's query-key-value matrix) as one layer per
    /// part of `outs[i]` rows, in order. The parts share the fused weight's
    /// bytes: nothing is copied.
    pub fn load_fused<const N: usize>(
        loader: &Loader<'_>,
        name: &str,
        in_features: usize,
        outs: [usize; N],
    ) -> Result<[Linear; N]> {
        let fused = Linear::load(loader, name, in_features, outs.iter().sum())?;
        // The loader checked the shape, so every row range is in bounds.
        let row_bytes = fused.weight.data.len() / fused.out_features().max(1);
        let mut first = 0;
        Ok(outs.map(|rows| {
            let part = Linear {
                weight: Weight {
                    name: fused.weight.name.clone(),
                    dtype: fused.weight.dtype,
                    shape: vec![in_features, rows],
                    data: fused
                        .weight
                        .data
                        .slice(first * row_bytes..(first + rows) * row_bytes),
                },
                bias: fused.bias.as_ref().map(|b| b[first..first + rows].to_vec()),
            };
            first += rows;
            part
        }))
    }

    pub fn in_features(&self) -> usize {
        self.weight.matrix().cols
    }

    pub fn out_features(&self) -> usize {
        self.weight.matrix().rows
    }
}

/// The pool, the kernels' instruction set, and the activation buffers that
/// matrix products convert their inputs into.
pub struct Compute {
    pub pool: ThreadPool,
    pub isa: Isa,
    acts: Vec<Activations>,
}

impl std::fmt::Debug for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compute")
            .field("threads", &self.pool.n_threads())
            .field("isa", &self.isa)
            .finish()
    }
}

impl Compute {
    pub fn new(n_threads: usize) -> Compute {
        Compute {
            pool: ThreadPool::new(n_threads),
            isa: Isa::current(),
            acts: Vec::new(),
        }
    }

    /// Runs every `(layer, out)` of `jobs` on the same input rows `x`, in one
    /// parallel region: `out = x · Wᵀ + b`.
    pub fn linears(&mut self, x: &[f32], jobs: &mut [(&Linear, &mut [f32])]) {
        let Some((first, _)) = jobs.first() else {
            return;
        };
        let n_in = first.in_features();
        // One conversion of the input per activation format the weights need.
        let mut types: [Option<DType>; 4] = [None; 4];
        let mut n_types = 0;
        for (l, _) in jobs.iter() {
            let t = kernels::dot_type(l.weight.dtype);
            if !types[..n_types].contains(&Some(t)) && n_types < types.len() {
                types[n_types] = Some(t);
                n_types += 1;
            }
        }
        while self.acts.len() < n_types {
            self.acts.push(Activations::new());
        }
        for (slot, t) in types[..n_types].iter().enumerate() {
            if let Some(t) = t {
                // Any weight type whose dot type is `t` prepares the same way.
                let wtype = jobs
                    .iter()
                    .map(|(l, _)| l.weight.dtype)
                    .find(|w| kernels::dot_type(*w) == *t);
                if let Some(wtype) = wtype {
                    self.acts[slot].prepare_on(Some(&self.pool), self.isa, wtype, x, n_in);
                }
            }
        }
        let acts = &self.acts;
        let mm = jobs.iter_mut().map(|(l, out)| {
            let t = kernels::dot_type(l.weight.dtype);
            let slot = types[..n_types]
                .iter()
                .position(|x| *x == Some(t))
                .unwrap_or(0);
            MatmulJob {
                w: l.weight.matrix(),
                x: &acts[slot],
                out,
                bias: l.bias.as_deref(),
            }
        });
        matmuls_iter(&self.pool, self.isa, mm);
    }

    /// `out = x · Wᵀ + b` for one layer.
    pub fn linear(&mut self, x: &[f32], layer: &Linear, out: &mut [f32]) {
        self.linears(x, &mut [(layer, out)]);
    }
}
