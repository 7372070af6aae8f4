//! Hook points: where an observer can look inside the forward pass.
//!
//! Every family's forward pass reports the same points, named as
//! TransformerLens names them (`blocks.3.attn.pattern`), so analyses such as
//! the logit lens work for any model. With no observer, a forward pass pays
//! one untaken branch per point.

use std::fmt;

/// A place in the forward pass whose values can be observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookPoint {
    /// The token embeddings (after any scaling or position embeddings):
    /// the residual stream entering block 0. `[tokens, d_model]`.
    Embed,
    /// The residual stream entering a block. `[tokens, d_model]`.
    ResidPre(usize),
    /// Attention probabilities after masking and softmax, per head:
    /// `[heads, queries, keys]` for one sequence.
    AttnPattern(usize),
    /// The attention output after its output projection. `[tokens, d_model]`.
    AttnOut(usize),
    /// The MLP output. `[tokens, d_model]`.
    MlpOut(usize),
    /// A mixture-of-experts router's logits, before gating.
    /// `[tokens, experts]`.
    RouterLogits(usize),
    /// The residual stream leaving a block. `[tokens, d_model]`.
    ResidPost(usize),
    /// The residual stream after the final norm. `[tokens, d_model]`.
    FinalNorm,
    /// The output logits. `[tokens, vocab]`.
    Logits,
}

impl HookPoint {
    /// The block this point belongs to, if any.
    pub fn layer(self) -> Option<usize> {
        match self {
            HookPoint::ResidPre(l)
            | HookPoint::AttnPattern(l)
            | HookPoint::AttnOut(l)
            | HookPoint::MlpOut(l)
            | HookPoint::RouterLogits(l)
            | HookPoint::ResidPost(l) => Some(l),
            HookPoint::Embed | HookPoint::FinalNorm | HookPoint::Logits => None,
        }
    }

    /// Parses a stable name such as `blocks.3.attn.pattern`.
    pub fn parse(name: &str) -> Option<HookPoint> {
        match name {
            "embed" => return Some(HookPoint::Embed),
            "ln_final" => return Some(HookPoint::FinalNorm),
            "logits" => return Some(HookPoint::Logits),
            _ => {}
        }
        let rest = name.strip_prefix("blocks.")?;
        let (layer, what) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        Some(match what {
            "resid_pre" => HookPoint::ResidPre(layer),
            "attn.pattern" => HookPoint::AttnPattern(layer),
            "attn_out" => HookPoint::AttnOut(layer),
            "mlp_out" => HookPoint::MlpOut(layer),
            "mlp.router_logits" => HookPoint::RouterLogits(layer),
            "resid_post" => HookPoint::ResidPost(layer),
            _ => return None,
        })
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookPoint::Embed => write!(f, "embed"),
            HookPoint::ResidPre(l) => write!(f, "blocks.{l}.resid_pre"),
            HookPoint::AttnPattern(l) => write!(f, "blocks.{l}.attn.pattern"),
            HookPoint::AttnOut(l) => write!(f, "blocks.{l}.attn_out"),
            HookPoint::MlpOut(l) => write!(f, "blocks.{l}.mlp_out"),
            HookPoint::RouterLogits(l) => write!(f, "blocks.{l}.mlp.router_logits"),
            HookPoint::ResidPost(l) => write!(f, "blocks.{l}.resid_post"),
            HookPoint::FinalNorm => write!(f, "ln_final"),
            HookPoint::Logits => write!(f, "logits"),
        }
    }
}

/// Values at a hook point, row-major with the given shape.
#[derive(Clone, Copy, Debug)]
pub struct HookData<'a> {
    /// Which sequence of the batch the values belong to.
    pub seq: usize,
    /// Position in the sequence of the first row (tokens) or query (patterns).
    pub first_pos: usize,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

/// Something that looks at values during a forward pass.
pub trait Observer {
    /// Whether to report `point`; asked before the values are gathered.
    fn wants(&self, point: HookPoint) -> bool;
    fn observe(&mut self, point: HookPoint, data: HookData<'_>);
}

/// The observer of one forward pass, if any.
pub struct Hooks<'a> {
    observer: Option<&'a mut dyn Observer>,
}

impl<'a> Hooks<'a> {
    pub fn none() -> Hooks<'static> {
        Hooks { observer: None }
    }

    pub fn new(observer: &'a mut dyn Observer) -> Hooks<'a> {
        Hooks {
            observer: Some(observer),
        }
    }

    /// Whether anybody listens at `point`.
    #[inline]
    pub fn wants(&self, point: HookPoint) -> bool {
        if cfg!(feature = "no-hooks") {
            return false;
        }
        match &self.observer {
            None => false,
            Some(o) => o.wants(point),
        }
    }

    /// Reports rows of a `[tokens, width]` tensor for each sequence of a batch.
    #[inline]
    pub fn rows(
        &mut self,
        point: HookPoint,
        seqs: &[crate::batch::SeqSpan],
        width: usize,
        data: &[f32],
    ) {
        if cfg!(feature = "no-hooks") {
            return;
        }
        if let Some(o) = self.observer.as_deref_mut()
            && o.wants(point)
        {
            for (i, s) in seqs.iter().enumerate() {
                let rows = &data[s.offset * width..(s.offset + s.len) * width];
                o.observe(
                    point,
                    HookData {
                        seq: i,
                        first_pos: s.start_pos,
                        shape: &[s.len, width],
                        data: rows,
                    },
                );
            }
        }
    }

    /// Reports a tensor of any shape.
    #[inline]
    pub fn tensor(&mut self, point: HookPoint, data: HookData<'_>) {
        if cfg!(feature = "no-hooks") {
            return;
        }
        if let Some(o) = self.observer.as_deref_mut()
            && o.wants(point)
        {
            o.observe(point, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let points = [
            HookPoint::Embed,
            HookPoint::ResidPre(0),
            HookPoint::AttnPattern(3),
            HookPoint::AttnOut(12),
            HookPoint::MlpOut(1),
            HookPoint::RouterLogits(2),
            HookPoint::ResidPost(29),
            HookPoint::FinalNorm,
            HookPoint::Logits,
        ];
        for p in points {
            assert_eq!(HookPoint::parse(&p.to_string()), Some(p), "{p}");
        }
        assert_eq!(
            HookPoint::AttnPattern(3).to_string(),
            "blocks.3.attn.pattern"
        );
        assert_eq!(HookPoint::parse("blocks.x.attn.pattern"), None);
    }
}
