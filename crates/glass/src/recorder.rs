//! The observer that listens to the forward pass: it asks only for the hook
//! points the options need, and keeps only the requested parts of them.
//!
//! With no attention maps, no attended positions and no lens requested, it
//! wants nothing, and the forward pass runs as it does without an observer.

use lucid_engine::{HookData, HookPoint, Observer};

/// Collects, over the forward passes of one run, the attention rows of the
/// selected heads, the last position's attention averaged over every head,
/// and the residual stream at each lens layer.
#[derive(Debug)]
pub struct Recorder {
    n_layers: usize,
    d_model: usize,
    /// Sorted, distinct.
    layers: Vec<usize>,
    /// Sorted, distinct.
    heads: Vec<usize>,
    attended: bool,
    lens: bool,
    /// Per (layer, head) of the selection, in order: one row per query
    /// position read so far, as many keys as the query could see.
    rows: Vec<Vec<Vec<f32>>>,
    /// The current pass's last query row, summed over layers and heads.
    last_row: Vec<f32>,
    /// How many heads were summed into `last_row`.
    last_row_heads: usize,
    /// The current pass's residual stream at each lens layer (`embed`, then
    /// each block's output): `[tokens, d_model]`.
    resid: Vec<Vec<f32>>,
}

impl Recorder {
    /// A recorder for a model of `n_layers` blocks of width `d_model`.
    /// `layers` and `heads` select the attention maps kept.
    pub fn new(
        n_layers: usize,
        d_model: usize,
        layers: &[usize],
        heads: &[usize],
        attended: bool,
        lens: bool,
    ) -> Recorder {
        let mut layers = layers.to_vec();
        layers.sort_unstable();
        layers.dedup();
        let mut heads = heads.to_vec();
        heads.sort_unstable();
        heads.dedup();
        let maps = if heads.is_empty() {
            0
        } else {
            layers.len() * heads.len()
        };
        Recorder {
            n_layers,
            d_model,
            rows: vec![Vec::new(); maps],
            layers,
            heads,
            attended,
            lens,
            last_row: Vec::new(),
            last_row_heads: 0,
            resid: if lens {
                vec![Vec::new(); n_layers + 1]
            } else {
                Vec::new()
            },
        }
    }

    /// Forgets what the previous pass left (not the attention rows, which
    /// grow over the whole run).
    pub fn begin_pass(&mut self) {
        self.last_row.clear();
        self.last_row_heads = 0;
        for r in &mut self.resid {
            r.clear();
        }
    }

    /// The selected (layer, head) pairs, in the order of [`Recorder::rows`].
    pub fn maps(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.layers
            .iter()
            .flat_map(|&l| self.heads.iter().map(move |&h| (l, h)))
    }

    /// The attention rows of each selected map (see [`Recorder::maps`]).
    pub fn rows(&self) -> &[Vec<Vec<f32>>] {
        &self.rows
    }

    /// The current pass's last query row averaged over every layer and head,
    /// if attention was observed.
    pub fn last_row_mean(&self) -> Option<Vec<f32>> {
        if self.last_row_heads == 0 {
            return None;
        }
        let n = self.last_row_heads as f32;
        Some(self.last_row.iter().map(|v| v / n).collect())
    }

    /// The current pass's residual stream at lens layer `i` (0: `embed`,
    /// `l + 1`: block `l`'s output), `[tokens, d_model]`.
    pub fn resid(&self, i: usize) -> &[f32] {
        self.resid.get(i).map_or(&[], Vec::as_slice)
    }

    /// The number of lens layers recorded (blocks + 1, or 0 without a lens).
    pub fn lens_layers(&self) -> usize {
        self.resid.len()
    }

    fn wants_pattern(&self, layer: usize) -> bool {
        self.attended || self.layers.binary_search(&layer).is_ok()
    }

    fn record_pattern(&mut self, layer: usize, data: HookData<'_>) {
        let &[n_heads, queries, keys] = data.shape else {
            return;
        };
        // Each query sees the keys up to its own position.
        if data.data.len() != n_heads * queries * keys
            || queries == 0
            || keys < data.first_pos + queries
        {
            return;
        }
        let at = |h: usize, t: usize| &data.data[(h * queries + t) * keys..][..keys];
        if let Ok(li) = self.layers.binary_search(&layer) {
            for (hi, &head) in self.heads.iter().enumerate() {
                if head >= n_heads {
                    continue;
                }
                let rows = &mut self.rows[li * self.heads.len() + hi];
                for t in 0..queries {
                    let pos = data.first_pos + t;
                    // A pass only ever appends positions; anything else
                    // would be a second run through the same recorder.
                    if rows.len() == pos {
                        rows.push(at(head, t)[..pos + 1].to_vec());
                    }
                }
            }
        }
        if self.attended {
            if self.last_row.len() != keys {
                self.last_row.clear();
                self.last_row.resize(keys, 0.0);
                self.last_row_heads = 0;
            }
            for h in 0..n_heads {
                for (acc, v) in self.last_row.iter_mut().zip(at(h, queries - 1)) {
                    *acc += v;
                }
            }
            self.last_row_heads += n_heads;
        }
    }
}

impl Observer for Recorder {
    fn wants(&self, point: HookPoint) -> bool {
        match point {
            HookPoint::AttnPattern(l) => self.wants_pattern(l),
            HookPoint::Embed => self.lens,
            HookPoint::ResidPost(l) => self.lens && l < self.n_layers,
            _ => false,
        }
    }

    fn observe(&mut self, point: HookPoint, data: HookData<'_>) {
        // One sequence per run: anything else is not ours.
        if data.seq != 0 {
            return;
        }
        match point {
            HookPoint::AttnPattern(l) => self.record_pattern(l, data),
            HookPoint::Embed | HookPoint::ResidPost(_) => {
                let i = match point {
                    HookPoint::ResidPost(l) => l + 1,
                    _ => 0,
                };
                if data.shape.get(1) == Some(&self.d_model)
                    && let Some(r) = self.resid.get_mut(i)
                {
                    r.clear();
                    r.extend_from_slice(data.data);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants_only_what_was_asked() {
        let quiet = Recorder::new(4, 8, &[], &[], false, false);
        for p in [
            HookPoint::Embed,
            HookPoint::ResidPre(0),
            HookPoint::AttnPattern(1),
            HookPoint::AttnOut(1),
            HookPoint::MlpOut(1),
            HookPoint::ResidPost(3),
            HookPoint::FinalNorm,
            HookPoint::Logits,
        ] {
            assert!(!quiet.wants(p), "{p}");
        }
        let maps = Recorder::new(4, 8, &[2], &[0, 1], false, false);
        assert!(maps.wants(HookPoint::AttnPattern(2)));
        assert!(!maps.wants(HookPoint::AttnPattern(1)));
        assert!(!maps.wants(HookPoint::Embed));
        let lens = Recorder::new(4, 8, &[], &[], false, true);
        assert!(lens.wants(HookPoint::Embed));
        assert!(lens.wants(HookPoint::ResidPost(3)));
        assert!(!lens.wants(HookPoint::ResidPre(3)));
        assert!(!lens.wants(HookPoint::AttnPattern(0)));
        let attended = Recorder::new(4, 8, &[], &[], true, false);
        assert!((0..4).all(|l| attended.wants(HookPoint::AttnPattern(l))));
    }

    #[test]
    fn keeps_selected_heads_and_averages_the_last_row() {
        let mut r = Recorder::new(2, 4, &[1], &[1], true, false);
        // Two heads, two queries at positions 0 and 1, two keys.
        let pattern = [1.0, 0.0, 0.5, 0.5, 1.0, 0.0, 0.25, 0.75];
        for layer in 0..2 {
            r.observe(
                HookPoint::AttnPattern(layer),
                HookData {
                    seq: 0,
                    first_pos: 0,
                    shape: &[2, 2, 2],
                    data: &pattern,
                },
            );
        }
        assert_eq!(r.maps().collect::<Vec<_>>(), vec![(1, 1)]);
        assert_eq!(r.rows()[0], vec![vec![1.0], vec![0.25, 0.75]]);
        assert_eq!(r.last_row_mean(), Some(vec![0.375, 0.625]));
    }
}
