//! What one row of logits says: the most probable tokens, a token's
//! probability and rank, and the entropy of the distribution.
//!
//! Everything is computed from the raw logits at temperature 1, with the
//! normalizer in f64 so that a 262,144-token vocabulary loses no precision.

/// The softmax of one row of logits, summarized: its maximum and the log of
/// its normalizer, from which any token's probability follows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Distribution {
    max: f32,
    /// `log(sum(exp(logit - max)))`.
    log_z: f64,
}

impl Distribution {
    /// Summarizes `logits` (at least one value).
    pub fn new(logits: &[f32]) -> Distribution {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
        Distribution {
            max,
            log_z: sum.ln(),
        }
    }

    /// The probability of a token with logit `logit`.
    pub fn prob(&self, logit: f32) -> f32 {
        (((logit - self.max) as f64) - self.log_z).exp() as f32
    }

    /// `-sum(p log p)` in nats.
    pub fn entropy(&self, logits: &[f32]) -> f32 {
        let mut h = 0.0f64;
        for &l in logits {
            let log_p = (l - self.max) as f64 - self.log_z;
            let p = log_p.exp();
            if p > 0.0 {
                h -= p * log_p;
            }
        }
        h as f32
    }
}

/// The ids of the `k` largest logits, largest first (lower id first on
/// ties). One pass over the row, with a short sorted list of the best so far.
pub fn top_k(logits: &[f32], k: usize) -> Vec<u32> {
    let k = k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    // (logit, id), kept sorted best first.
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        // `l <= kth`, written so that NaN is skipped too.
        if best.len() == k && l.partial_cmp(&best[k - 1].0) != Some(std::cmp::Ordering::Greater) {
            continue;
        }
        // First position whose logit is smaller: equal logits keep the
        // earlier (lower) id ahead.
        let at = best.partition_point(|&(b, _)| b >= l);
        best.insert(at, (l, i as u32));
        best.truncate(k);
    }
    best.into_iter().map(|(_, id)| id).collect()
}

/// The rank of token `id`: 1 plus the number of tokens with a larger logit.
pub fn rank(logits: &[f32], id: u32) -> usize {
    let Some(&l) = logits.get(id as usize) else {
        return logits.len() + 1;
    };
    1 + logits.iter().filter(|&&x| x > l).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A softmax written out the textbook way, in f64.
    fn reference_softmax(x: &[f32]) -> Vec<f64> {
        let e: Vec<f64> = x.iter().map(|&v| (v as f64).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn probabilities_and_entropy_match_a_textbook_softmax() {
        let logits = [1.0f32, -2.0, 3.5, 0.25, 3.5, -7.0];
        let d = Distribution::new(&logits);
        let p = reference_softmax(&logits);
        for (l, p) in logits.iter().zip(&p) {
            assert!((d.prob(*l) as f64 - p).abs() < 1e-7);
        }
        let h: f64 = -p.iter().map(|p| p * p.ln()).sum::<f64>();
        assert!((d.entropy(&logits) as f64 - h).abs() < 1e-6);
    }

    #[test]
    fn uniform_entropy_is_log_n() {
        let logits = vec![0.5f32; 1000];
        let d = Distribution::new(&logits);
        assert!((d.entropy(&logits) - 1000f32.ln()).abs() < 1e-4);
    }

    #[test]
    fn top_k_is_sorted_with_ties_by_id() {
        let logits = [1.0f32, 5.0, 3.0, 5.0, -1.0, 4.0];
        assert_eq!(top_k(&logits, 3), vec![1, 3, 5]);
        assert_eq!(top_k(&logits, 10), vec![1, 3, 5, 2, 0, 4]);
        assert_eq!(top_k(&logits, 0), Vec::<u32>::new());
        assert_eq!(top_k(&[], 3), Vec::<u32>::new());
    }

    #[test]
    fn top_k_agrees_with_a_full_sort() {
        // A deterministic pseudo-random row.
        let mut x = 12345u32;
        let logits: Vec<f32> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 8) as f32 / (1u32 << 24) as f32 * 20.0 - 10.0
            })
            .collect();
        let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
        ids.sort_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        assert_eq!(top_k(&logits, 40), ids[..40].to_vec());
    }

    #[test]
    fn rank_counts_better_tokens() {
        let logits = [1.0f32, 5.0, 3.0, 5.0];
        assert_eq!(rank(&logits, 1), 1);
        assert_eq!(rank(&logits, 3), 1);
        assert_eq!(rank(&logits, 2), 3);
        assert_eq!(rank(&logits, 0), 4);
        assert_eq!(rank(&logits, 9), 5);
    }
}
