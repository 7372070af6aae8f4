//! Learned absolute position embeddings (GPT-2, GPT-Neo): a table with one
//! row per position, added to the token embeddings.

use lucid_tensor::ops;

use crate::error::{EngineError, Result};
use crate::weights::{Loader, Weight};

/// A table of `n_positions` rows of `width` values.
#[derive(Clone, Debug)]
pub struct LearnedPositions {
    pub table: Weight,
}

impl LearnedPositions {
    /// Loads `{name}.weight` (`n_positions` rows of `width`).
    pub fn load(
        loader: &Loader<'_>,
        name: &str,
        n_positions: usize,
        width: usize,
    ) -> Result<LearnedPositions> {
        Ok(LearnedPositions {
            table: loader.matrix(&format!("{name}.weight"), n_positions, width)?,
        })
    }

    pub fn n_positions(&self) -> usize {
        self.table.matrix().rows
    }

    /// Refuses positions past the table, which a cache made with a larger
    /// limit than the model's context could ask for. Call it before touching
    /// any state, so that an error leaves everything as it was.
    pub fn check(&self, positions: &[usize]) -> Result<()> {
        let n = self.n_positions();
        match positions.iter().find(|&&p| p >= n) {
            Some(&p) => Err(EngineError::ContextFull {
                used: p,
                adding: 1,
                limit: n,
            }),
            None => Ok(()),
        }
    }

    /// Adds the embedding of `positions[t]` to row `t` of `x`, using `row` as
    /// scratch.
    pub fn add(&self, positions: &[usize], x: &mut [f32], row: &mut Vec<f32>) -> Result<()> {
        self.check(positions)?;
        let width = self.table.matrix().cols;
        row.resize(width, 0.0);
        for (xr, &p) in x.chunks_exact_mut(width).zip(positions) {
            self.table.row_to_f32(p, row);
            ops::add_assign(xr, row);
        }
        Ok(())
    }
}
