//! Feed-forward blocks.

use lucid_tensor::ops::Activation;

use crate::blocks::linear::{Compute, Linear};

/// `down(act(gate(x)) * up(x))`: SwiGLU (Llama) and GeGLU (Gemma).
#[derive(Clone, Debug)]
pub struct GatedMlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    pub act: Activation,
}

impl GatedMlp {
    /// Runs the block on rows `x`, using `gate` and `up` as scratch for the
    /// hidden rows, writing `out`.
    pub fn forward(
        &self,
        c: &mut Compute,
        x: &[f32],
        gate: &mut Vec<f32>,
        up: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let n_tokens = x.len() / self.gate.in_features();
        let hidden = self.gate.out_features();
        gate.resize(n_tokens * hidden, 0.0);
        up.resize(n_tokens * hidden, 0.0);
        c.linears(x, &mut [(&self.gate, gate), (&self.up, up)]);
        let act = self.act;
        c.pool.rows_mut(gate, hidden, &|t, g| {
            act.glu(g, &up[t * hidden..(t + 1) * hidden])
        });
        c.linear(gate, &self.down, out);
    }
}

/// `down(act(up(x)))`: GPT-2 and its descendants.
#[derive(Clone, Debug)]
pub struct Mlp {
    pub up: Linear,
    pub down: Linear,
    pub act: Activation,
}

impl Mlp {
    pub fn forward(&self, c: &mut Compute, x: &[f32], hidden: &mut Vec<f32>, out: &mut [f32]) {
        let n_tokens = x.len() / self.up.in_features();
        hidden.resize(n_tokens * self.up.out_features(), 0.0);
        c.linear(x, &self.up, hidden);
        let (act, width) = (self.act, self.up.out_features());
        c.pool.rows_mut(hidden, width, &|_, h| act.apply_all(h));
        c.linear(hidden, &self.down, out);
    }
}
