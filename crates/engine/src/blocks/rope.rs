//! Rotary position embeddings.

use lucid_tensor::ThreadPool;

use crate::blocks::AttentionShape;

/// How the rotated dimensions are paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i + 1)`: ggml's "normal" mode, used by GGUF
    /// Llama files and by GPT-J.
    Normal,
    /// Pairs `(i, i + n/2)`: GPT-NeoX, Gemma, Hugging Face's `rotate_half`.
    NeoX,
}

/// How positions are stretched for contexts longer than training.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by a factor.
    Linear(f32),
    /// Per-frequency divisors (Llama 3's `rope_freqs`).
    FreqFactors(Vec<f32>),
}

/// Rotates the first `n_rot` dimensions of each head by its position.
#[derive(Clone, Debug)]
pub struct Rope {
    n_rot: usize,
    style: RopeStyle,
    /// Angle per position for each pair.
    inv_freq: Vec<f32>,
    /// Multiplies the rotated values (Phi 3's longrope `attn_factor`).
    factor: f32,
}

impl Rope {
    pub fn new(n_rot: usize, base: f32, style: RopeStyle, scaling: RopeScaling) -> Rope {
        let half = n_rot / 2;
        let mut inv_freq: Vec<f32> = (0..half)
            .map(|i| (base as f64).powf(-2.0 * i as f64 / n_rot as f64) as f32)
            .collect();
        match scaling {
            RopeScaling::None => {}
            RopeScaling::Linear(f) => inv_freq.iter_mut().for_each(|v| *v /= f),
            RopeScaling::FreqFactors(f) => {
                for (v, f) in inv_freq.iter_mut().zip(f) {
                    *v /= f;
                }
            }
        }
        Rope {
            n_rot,
            style,
            inv_freq,
            factor: 1.0,
        }
    }

    /// The same rotation with the rotated values multiplied by `factor`,
    /// as llama.cpp's `attn_factor` and transformers' `attention_scaling`
    /// multiply the cosines and sines.
    pub fn with_factor(mut self, factor: f32) -> Rope {
        self.factor = factor;
        self
    }

    pub fn n_rot(&self) -> usize {
        self.n_rot
    }

    /// Rotates every head of every row of `x` (rows of `n_heads * head_dim`),
    /// row `t` being at position `positions[t]`.
    pub fn apply(&self, x: &mut [f32], n_heads: usize, head_dim: usize, positions: &[usize]) {
        let width = n_heads * head_dim;
        for (row, &pos) in x.chunks_exact_mut(width).zip(positions) {
            self.rotate(row, head_dim, pos);
        }
    }

    /// Rotates a batch's query rows (`shape.n_heads` heads) and key rows
    /// (`shape.n_kv_heads` heads), row `t` at `positions[t]`, over `pool`.
    pub fn apply_qk_on(
        &self,
        pool: &ThreadPool,
        q: &mut [f32],
        k: &mut [f32],
        shape: AttentionShape,
        positions: &[usize],
    ) {
        self.apply_on(pool, q, shape.n_heads, shape.head_dim, positions);
        self.apply_on(pool, k, shape.n_kv_heads, shape.head_dim, positions);
    }

    /// [`Rope::apply`], rows in parallel on `pool` when there are many.
    pub fn apply_on(
        &self,
        pool: &ThreadPool,
        x: &mut [f32],
        n_heads: usize,
        head_dim: usize,
        positions: &[usize],
    ) {
        let width = n_heads * head_dim;
        let rows = (x.len() / width).min(positions.len());
        pool.rows_mut(&mut x[..rows * width], width, &|t, row| {
            self.rotate(row, head_dim, positions[t])
        });
    }

    /// Rotates every head of one row, at position `pos`.
    fn rotate(&self, row: &mut [f32], head_dim: usize, pos: usize) {
        let half = self.n_rot / 2;
        for i in 0..half {
            let (sin, cos) = (pos as f32 * self.inv_freq[i]).sin_cos();
            let (sin, cos) = (sin * self.factor, cos * self.factor);
            for head in row.chunks_exact_mut(head_dim) {
                let (a, b) = match self.style {
                    RopeStyle::Normal => (2 * i, 2 * i + 1),
                    RopeStyle::NeoX => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos - x1 * sin;
                head[b] = x0 * sin + x1 * cos;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity_and_rotation_keeps_norms() {
        let rope = Rope::new(8, 10000.0, RopeStyle::NeoX, RopeScaling::None);
        let orig: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.5).collect();
        let mut x = orig.clone();
        rope.apply(&mut x, 2, 8, &[0]);
        assert_eq!(x, orig);
        rope.apply(&mut x, 2, 8, &[7]);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&x) - norm(&orig)).abs() < 1e-4);
        assert_ne!(x, orig);
    }

    #[test]
    fn normal_and_neox_agree_after_permuting_dimensions() {
        let n = 8;
        let normal = Rope::new(n, 500.0, RopeStyle::Normal, RopeScaling::None);
        let neox = Rope::new(n, 500.0, RopeStyle::NeoX, RopeScaling::None);
        let x: Vec<f32> = (0..n).map(|i| (i as f32).sin()).collect();
        // Interleaved layout (a0 b0 a1 b1 ...) vs halves (a0 a1 ... b0 b1 ...).
        let halves: Vec<f32> = (0..n / 2)
            .map(|i| x[2 * i])
            .chain((0..n / 2).map(|i| x[2 * i + 1]))
            .collect();
        let (mut a, mut b) = (x.clone(), halves);
        normal.apply(&mut a, 1, n, &[5]);
        neox.apply(&mut b, 1, n, &[5]);
        for i in 0..n / 2 {
            assert!((a[2 * i] - b[i]).abs() < 1e-6);
            assert!((a[2 * i + 1] - b[i + n / 2]).abs() < 1e-6);
        }
    }
}
