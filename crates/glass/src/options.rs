//! What to record in a trace, and the bounds a caller puts on its size.
//!
//! A trace can be large: the attention of one head over 200 positions is
//! 40,000 numbers, the logit lens of a 30-layer model over 200 positions is
//! 6,200 unembeddings of the whole vocabulary. The options say exactly what
//! to keep, and [`Limits`] is how a server refuses what it cannot afford
//! before any work is done.

use lucid_engine::{ModelInfo, SamplingParams};

use crate::error::{GlassError, Result};

/// What to compute and keep for one explained run.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplainOptions {
    /// How many tokens to predict (steps); at least 1.
    pub max_tokens: usize,
    /// How many candidates each step lists.
    pub top_k: usize,
    /// How the next token is chosen; greedy unless told otherwise.
    pub sampling: SamplingParams,
    /// Stop after a token that ends generation.
    pub stop_at_end_of_generation: bool,
    /// Layers whose attention maps to keep (none: no maps).
    pub attention_layers: Vec<usize>,
    /// Heads of those layers to keep; `None`: every head.
    pub attention_heads: Option<Vec<usize>>,
    /// How many most-attended earlier positions each step lists (0: none).
    pub attended: usize,
    /// Compute the logit lens at every position read.
    pub lens: bool,
    /// How many tokens each lens cell lists.
    pub lens_top_k: usize,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        ExplainOptions {
            max_tokens: 1,
            top_k: 10,
            sampling: SamplingParams::greedy(),
            stop_at_end_of_generation: true,
            attention_layers: Vec::new(),
            attention_heads: None,
            attended: 5,
            lens: false,
            lens_top_k: 3,
        }
    }
}

/// What the semantic view of several texts computes besides their
/// similarities ([`crate::semantic()`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SemanticOptions {
    /// The pairs whose per-token contributions to the similarity to give.
    pub pairs: Pairs,
    /// Include each text's embedding (as the model returns it: pooled, and
    /// normalized when the model normalizes).
    pub vectors: bool,
}

/// Which pairs of texts get per-token contributions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Pairs {
    /// Each text with its nearest neighbour (each pair once).
    #[default]
    Nearest,
    /// Every pair of different texts.
    All,
    /// These pairs `(a, b)` of text indices, in this order.
    These(Vec<(usize, usize)>),
}

/// Upper bounds on a request, checked before running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_prompt_tokens: usize,
    pub max_tokens: usize,
    pub max_top_k: usize,
    pub max_lens_top_k: usize,
    pub max_attended: usize,
    /// Attention numbers kept: maps × positions².
    pub max_attention_values: usize,
    /// Lens cells: (layers + 1) × positions.
    pub max_lens_cells: usize,
    /// Lens logits computed: cells × vocabulary size. Each is a dot
    /// product of the model's width, so this bounds the lens's time on
    /// models with a large vocabulary, where cells alone would not.
    pub max_lens_logits: usize,
    /// Texts in one semantic view.
    pub max_texts: usize,
    /// Tokens of all a semantic view's texts together (each text is cut to
    /// the model's embedding length first). This also bounds the token
    /// contributions of every pair: at most (texts + 1) × this many.
    pub max_semantic_tokens: usize,
}

/// The server's bound on lens logits: about 10,900 cells of a 49k-token
/// vocabulary (SmolLM2's 31 rows over 350 positions, room for the web
/// page's 200-token lens), 2,000 of Gemma 3's 262k (20 rows over 100).
/// A lens over 1,000 SmolLM2 positions (1.5 billion logits) is refused.
const LENS_LOGITS_SERVER: usize = 1 << 29;

impl Limits {
    /// Bounds for a shared server: about 16 MB of attention, a lens grid
    /// for a 30-layer model over 1,000 positions.
    pub fn server() -> Limits {
        Limits {
            max_prompt_tokens: 1024,
            max_tokens: 64,
            max_top_k: 100,
            max_lens_top_k: 10,
            max_attended: 50,
            max_attention_values: 4 << 20,
            max_lens_cells: 32_000,
            max_lens_logits: LENS_LOGITS_SERVER,
            max_texts: 32,
            // 32 texts of 512 tokens (BERT's context); all their pairs'
            // contributions are then at most 31 × 16,384 numbers (33 ×
            // with every text paired with itself too).
            max_semantic_tokens: 16_384,
        }
    }

    /// No bounds beyond what the model allows (a local command line).
    pub fn none() -> Limits {
        Limits {
            max_prompt_tokens: usize::MAX,
            max_tokens: usize::MAX,
            max_top_k: usize::MAX,
            max_lens_top_k: usize::MAX,
            max_attended: usize::MAX,
            max_attention_values: usize::MAX,
            max_lens_cells: usize::MAX,
            max_lens_logits: usize::MAX,
            max_texts: usize::MAX,
            max_semantic_tokens: usize::MAX,
        }
    }
}

impl ExplainOptions {
    /// The heads kept for each layer in [`ExplainOptions::attention_layers`].
    pub fn heads(&self, n_heads: usize) -> Vec<usize> {
        match &self.attention_heads {
            Some(h) => h.clone(),
            None => (0..n_heads).collect(),
        }
    }

    /// Checks the options against the model and `limits` for a prompt of
    /// `prompt_len` tokens.
    pub fn check(&self, info: &ModelInfo, prompt_len: usize, limits: &Limits) -> Result<()> {
        if prompt_len == 0 {
            return Err(GlassError::EmptyPrompt);
        }
        for (what, value) in [
            ("max_tokens", self.max_tokens),
            ("top_k", self.top_k),
            ("lens_top_k", self.lens_top_k),
        ] {
            if value == 0 {
                return Err(GlassError::Zero { what });
            }
        }
        let bound = |what: &'static str, requested: usize, limit: usize| {
            if requested > limit {
                Err(GlassError::TooLarge {
                    what,
                    requested,
                    limit,
                })
            } else {
                Ok(())
            }
        };
        bound(
            "the prompt's token count",
            prompt_len,
            limits.max_prompt_tokens,
        )?;
        bound("max_tokens", self.max_tokens, limits.max_tokens)?;
        bound("top_k", self.top_k, limits.max_top_k)?;
        bound("lens_top_k", self.lens_top_k, limits.max_lens_top_k)?;
        bound("attended", self.attended, limits.max_attended)?;
        if prompt_len.saturating_add(self.max_tokens) > info.context_length {
            return Err(GlassError::ContextTooSmall {
                prompt: prompt_len,
                steps: self.max_tokens,
                context: info.context_length,
            });
        }
        for &layer in &self.attention_layers {
            if layer >= info.n_layers {
                return Err(GlassError::LayerOutOfRange {
                    layer,
                    n_layers: info.n_layers,
                });
            }
        }
        let heads = self.heads(info.n_heads);
        for &head in &heads {
            if head >= info.n_heads {
                return Err(GlassError::HeadOutOfRange {
                    head,
                    n_heads: info.n_heads,
                });
            }
        }
        // Positions read: the prompt and every chosen token but the last.
        let positions = prompt_len + self.max_tokens - 1;
        let maps = self.attention_layers.len().saturating_mul(heads.len());
        bound(
            "the attention values requested (maps × positions²)",
            maps.saturating_mul(positions).saturating_mul(positions),
            limits.max_attention_values,
        )?;
        if self.lens {
            let cells = (info.n_layers + 1).saturating_mul(positions);
            bound(
                "the logit-lens cells requested ((layers + 1) × positions)",
                cells,
                limits.max_lens_cells,
            )?;
            bound(
                "the logit-lens logits requested ((layers + 1) × positions × vocabulary)",
                cells.saturating_mul(info.vocab_size),
                limits.max_lens_logits,
            )?;
        }
        Ok(())
    }
}
