//! Normalization layers.

use lucid_tensor::{ThreadPool, ops};

use crate::error::Result;
use crate::weights::Loader;

/// A normalization applied to each row of the residual stream.
#[derive(Clone, Debug)]
pub enum Norm {
    /// `x / rms(x) * w`, or `* (1 + w)` with `unit_offset` (Gemma).
    Rms {
        weight: Vec<f32>,
        eps: f32,
        unit_offset: bool,
    },
    /// `(x - mean) / std * w + b`.
    Layer {
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        eps: f32,
    },
}

impl Norm {
    pub fn rms(loader: &Loader<'_>, name: &str, width: usize, eps: f32) -> Result<Norm> {
        Ok(Norm::Rms {
            weight: loader.vector(&format!("{name}.weight"), width)?,
            eps,
            unit_offset: false,
        })
    }

    pub fn layer(loader: &Loader<'_>, name: &str, width: usize, eps: f32) -> Result<Norm> {
        Ok(Norm::Layer {
            weight: loader.vector(&format!("{name}.weight"), width)?,
            bias: loader.opt_vector(&format!("{name}.bias"), width)?,
            eps,
        })
    }

    pub fn width(&self) -> usize {
        match self {
            Norm::Rms { weight, .. } | Norm::Layer { weight, .. } => weight.len(),
        }
    }

    /// Normalizes each row of `x` into the same row of `out`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        let n = self.width();
        for (x, out) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            self.row(x, out);
        }
    }

    /// [`Norm::forward`], rows in parallel on `pool` when there are many.
    pub fn forward_on(&self, pool: &ThreadPool, x: &[f32], out: &mut [f32]) {
        let n = self.width();
        let rows = x.len() / n;
        pool.rows_mut(&mut out[..rows * n], n, &|r, out| {
            self.row(&x[r * n..(r + 1) * n], out)
        });
    }

    /// Normalizes each row of `x` in place, rows in parallel on `pool` when
    /// there are many; `tmp` is scratch.
    pub fn forward_inplace(&self, pool: &ThreadPool, x: &mut [f32], tmp: &mut Vec<f32>) {
        tmp.clear();
        tmp.extend_from_slice(x);
        self.forward_on(pool, tmp, x);
    }

    fn row(&self, x: &[f32], out: &mut [f32]) {
        match self {
            Norm::Rms {
                weight,
                eps,
                unit_offset,
            } => ops::rms_norm(x, weight, *eps, *unit_offset, out),
            Norm::Layer { weight, bias, eps } => {
                ops::layer_norm(x, weight, bias.as_deref(), *eps, out)
            }
        }
    }
}
