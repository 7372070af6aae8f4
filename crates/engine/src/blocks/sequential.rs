//! The transformer block of GPT-2 and GPT-Neo: a norm, attention with its
//! own query, key, value and output projections, a residual add, a second
//! norm, a plain MLP and a second residual add, one after the other, with no
//! rotary embedding (their positions are learned and added to the input).

use lucid_tensor::ops;

use crate::batch::SeqInput;
use crate::blocks::{Attention, Linear, Mlp, Norm};
use crate::hooks::{HookPoint, Hooks};
use crate::model::{Buffers, ForwardCtx};

/// One block's weights and attention settings.
pub struct SequentialBlock {
    pub attn_norm: Norm,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    pub attn: Attention,
    pub ffn_norm: Norm,
    pub mlp: Mlp,
}

impl SequentialBlock {
    /// Runs block `l` on the residual stream `buf.x` (`d` values per row),
    /// reporting its hook points.
    pub fn forward(
        &self,
        l: usize,
        d: usize,
        ctx: &mut ForwardCtx,
        buf: &mut Buffers,
        seqs: &mut [SeqInput<'_>],
        hooks: &mut Hooks<'_>,
    ) {
        hooks.rows(HookPoint::ResidPre(l), &ctx.spans, d, &buf.x);
        self.attn_norm
            .forward_on(&ctx.compute.pool, &buf.x, &mut buf.h);
        buf.project_qkv(&mut ctx.compute, [&self.wq, &self.wk, &self.wv]);
        self.attn.attend(l, &self.wo, ctx, buf, seqs, hooks);
        hooks.rows(HookPoint::AttnOut(l), &ctx.spans, d, &buf.o);
        ops::add_assign(&mut buf.x, &buf.o);
        self.ffn_norm
            .forward_on(&ctx.compute.pool, &buf.x, &mut buf.h);
        self.mlp
            .forward(&mut ctx.compute, &buf.h, &mut buf.up, &mut buf.o);
        hooks.rows(HookPoint::MlpOut(l), &ctx.spans, d, &buf.o);
        ops::add_assign(&mut buf.x, &buf.o);
        hooks.rows(HookPoint::ResidPost(l), &ctx.spans, d, &buf.x);
    }
}
