//! The building blocks that model families are written from: linear layers,
//! norms, rotary position embeddings, attention and MLPs.
//!
//! A family's file composes these; differences between families are typed
//! fields of the blocks (`RopeStyle::NeoX`, `Norm::Rms`, `Activation::GeluTanh`),
//! not branches on the family's name.

pub mod attention;
pub mod linear;
pub mod mlp;
pub mod moe;
pub mod norm;
pub mod position;
pub mod rope;
pub mod sequential;

pub use attention::{Attention, AttentionShape};
pub use linear::Linear;
pub use mlp::{GatedMlp, Mlp};
pub use moe::{Moe, MoeBuffers, MoeConfig};
pub use norm::Norm;
pub use position::LearnedPositions;
pub use rope::{Rope, RopeScaling, RopeStyle};
pub use sequential::SequentialBlock;
