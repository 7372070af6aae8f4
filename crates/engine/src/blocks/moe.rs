//! Mixture of experts: a router picks a few of many gated MLPs for each
//! token and mixes their outputs (Mixtral, Qwen 3 MoE, OLMoE): a softmax
//! over every expert's router logit, the top `k`, their weights
//! renormalized or not as the family says.

use lucid_tensor::ops::{self, Activation};

use crate::blocks::linear::{Compute, Linear};
use crate::blocks::mlp::GatedMlp;
use crate::error::Result;
use crate::weights::Loader;

/// The sizes and rules of a mixture-of-experts MLP.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoeConfig {
    pub n_experts: usize,
    /// Experts each token is sent to.
    pub n_used: usize,
    /// Hidden width of one expert.
    pub d_ff: usize,
    /// Whether the chosen experts' weights are divided by their sum.
    pub normalize: bool,
}

/// The router, and every expert as a gated MLP over slices of the stacked
/// expert tensors (`ffn_{gate,up,down}_exps`, one matrix per expert).
#[derive(Clone, Debug)]
pub struct Moe {
    pub router: Linear,
    pub experts: Vec<GatedMlp>,
    pub config: MoeConfig,
}

/// Scratch for [`Moe::forward`], kept between passes.
#[derive(Debug, Default)]
pub struct MoeBuffers {
    /// Router logits, `[tokens, experts]`.
    pub logits: Vec<f32>,
    /// Per token, the chosen experts and their weights.
    picks: Vec<(usize, f32)>,
    scores: Vec<f32>,
    rows: Vec<usize>,
    x: Vec<f32>,
    y: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

impl Moe {
    /// Loads `{prefix}.ffn_gate_inp` (the router) and the stacked experts
    /// `{prefix}.ffn_{gate,up,down}_exps`.
    pub fn load(
        loader: &Loader<'_>,
        prefix: &str,
        d_model: usize,
        config: MoeConfig,
        act: Activation,
    ) -> Result<Moe> {
        let n = config.n_experts;
        let router = Linear::load(loader, &format!("{prefix}.ffn_gate_inp"), d_model, n)?;
        let gate = loader.experts(
            &format!("{prefix}.ffn_gate_exps.weight"),
            n,
            config.d_ff,
            d_model,
        )?;
        let up = loader.experts(
            &format!("{prefix}.ffn_up_exps.weight"),
            n,
            config.d_ff,
            d_model,
        )?;
        let down = loader.experts(
            &format!("{prefix}.ffn_down_exps.weight"),
            n,
            d_model,
            config.d_ff,
        )?;
        let experts = gate
            .into_iter()
            .zip(up)
            .zip(down)
            .map(|((gate, up), down)| GatedMlp {
                gate: Linear {
                    weight: gate,
                    bias: None,
                },
                up: Linear {
                    weight: up,
                    bias: None,
                },
                down: Linear {
                    weight: down,
                    bias: None,
                },
                act,
            })
            .collect();
        Ok(Moe {
            router,
            experts,
            config,
        })
    }

    /// Appends the chosen experts of one token, from its router logits, to
    /// `out`, best first: `(expert, weight)`. Equal scores go to the lower
    /// expert id.
    /// `scores` is scratch.
    pub fn route(&self, logits: &[f32], scores: &mut Vec<f32>, out: &mut Vec<(usize, f32)>) {
        let c = &self.config;
        scores.clear();
        scores.extend_from_slice(logits);
        ops::softmax(scores);
        let first = out.len();
        for _ in 0..c.n_used.min(scores.len()) {
            let mut best: Option<usize> = None;
            for (e, &s) in scores.iter().enumerate() {
                if out[first..].iter().any(|&(p, _)| p == e) {
                    continue;
                }
                if best.is_none_or(|b| s > scores[b]) {
                    best = Some(e);
                }
            }
            if let Some(e) = best {
                out.push((e, scores[e]));
            }
        }
        if c.normalize {
            let sum: f32 = out[first..].iter().map(|&(_, w)| w).sum();
            if sum > 0.0 {
                out[first..].iter_mut().for_each(|(_, w)| *w /= sum);
            }
        }
    }

    /// Runs the block on rows `x` (`[tokens, d_model]`), writing `out`; the
    /// router logits stay in `buf.logits`.
    pub fn forward(&self, c: &mut Compute, x: &[f32], buf: &mut MoeBuffers, out: &mut [f32]) {
        let d = self.router.in_features();
        let n_tokens = x.len() / d.max(1);
        let n_exp = self.config.n_experts;
        buf.logits.resize(n_tokens * n_exp, 0.0);
        c.linear(x, &self.router, &mut buf.logits);
        buf.picks.clear();
        for t in 0..n_tokens {
            self.route(
                &buf.logits[t * n_exp..(t + 1) * n_exp],
                &mut buf.scores,
                &mut buf.picks,
            );
        }
        out.fill(0.0);
        let per_token = self.config.n_used.min(n_exp);
        for (e, expert) in self.experts.iter().enumerate() {
            buf.rows.clear();
            buf.x.clear();
            for t in 0..n_tokens {
                if buf.picks[t * per_token..(t + 1) * per_token]
                    .iter()
                    .any(|&(p, _)| p == e)
                {
                    buf.rows.push(t);
                    buf.x.extend_from_slice(&x[t * d..(t + 1) * d]);
                }
            }
            if buf.rows.is_empty() {
                continue;
            }
            buf.y.resize(buf.rows.len() * d, 0.0);
            expert.forward(c, &buf.x, &mut buf.gate, &mut buf.up, &mut buf.y);
            for (i, &t) in buf.rows.iter().enumerate() {
                let w = buf.picks[t * per_token..(t + 1) * per_token]
                    .iter()
                    .find(|&&(p, _)| p == e)
                    .map_or(0.0, |&(_, w)| w);
                ops::axpy(w, &buf.y[i * d..(i + 1) * d], &mut out[t * d..(t + 1) * d]);
            }
        }
    }
}
