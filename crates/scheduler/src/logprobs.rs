//! Log-probabilities of a logits row: the chosen token's and the top k, from
//! one log-softmax pass.

use crate::request::TokenLogprobs;

/// The log-probability of `chosen` and the `top` most likely tokens under
/// `logits` (the model's distribution, before sampling's cuts and any
/// constraint).
pub(crate) fn logprobs(logits: &[f32], chosen: u32, top: usize) -> TokenLogprobs {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let lse = max + sum.ln() as f32;
    let lp = |l: f32| (l - lse).max(-9999.0);
    let chosen_lp = logits.get(chosen as usize).map_or(-9999.0, |&l| lp(l));
    // A small sorted list beats sorting the whole vocabulary for k <= 20.
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() == top && best.last().is_some_and(|b| l <= b.1) {
                continue;
            }
            let at = best.partition_point(|b| b.1 >= l);
            best.insert(at, (i as u32, l));
            best.truncate(top);
        }
    }
    TokenLogprobs {
        logprob: chosen_lp,
        top: best.into_iter().map(|(i, l)| (i, lp(l))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_sorted_and_normalized() {
        let logits = [0.0, 2.0, 1.0, 2.0_f32.ln() + 2.0];
        let lp = logprobs(&logits, 1, 3);
        assert_eq!(
            lp.top.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![3, 1, 2]
        );
        // exp of the log-probabilities of all tokens sums to one.
        let lse = logits[3] - lp.top[0].1;
        let total: f32 = logits.iter().map(|&l| (l - lse).exp()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!((lp.top[0].1 - lp.top[1].1 - 2.0_f32.ln()).abs() < 1e-5);
        assert_eq!(lp.logprob, lp.top[1].1);
    }
}
