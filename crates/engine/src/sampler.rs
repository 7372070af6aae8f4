//! Turning a row of logits into the next token.
//!
//! The steps run in llama.cpp's order: repetition, presence and frequency
//! penalties on the raw logits; then top-k, top-p and min-p cut the
//! candidates; then temperature; then a seeded draw. Temperature 0 is greedy
//! decoding and ignores the cuts and the seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{EngineError, Result};

/// How to choose the next token.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 picks the most likely token; higher flattens the distribution.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities sum to at least p (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0: none).
    pub min_p: f32,
    /// Divides positive logits (multiplies negative ones) of tokens seen in
    /// the last `penalty_last_n` tokens (1: off).
    pub repeat_penalty: f32,
    /// Subtracted once from the logit of every token seen (OpenAI's presence penalty).
    pub presence_penalty: f32,
    /// Subtracted per occurrence of a token seen (OpenAI's frequency penalty).
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at (0: all).
    pub penalty_last_n: usize,
    /// Makes the draws reproducible; `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        }
    }

    /// Checks the values are in range, naming the first that is not.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::Sampling(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature must be a number >= 0, not {}",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad(format!("top_p must be between 0 and 1, not {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be between 0 and 1, not {}", self.min_p));
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return bad(format!(
                "repeat_penalty must be a number > 0, not {}",
                self.repeat_penalty
            ));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} must be between -2 and 2, not {v}"));
            }
        }
        Ok(())
    }
}

/// A candidate token and its (adjusted) logit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
}

/// Chooses tokens according to [`SamplingParams`], reproducibly when seeded.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    candidates: Vec<Candidate>,
    logits: Vec<f32>,
    probs: Vec<f32>,
    counts: std::collections::HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Sampler> {
        params.validate()?;
        let rng = match params.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Ok(Sampler {
            params,
            rng,
            candidates: Vec::new(),
            logits: Vec::new(),
            probs: Vec::new(),
            counts: Default::default(),
        })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits`, given the tokens so far (for the
    /// penalties).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let p = &self.params;
        let penalized =
            p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
        let logits: &[f32] = if penalized {
            self.logits.clear();
            self.logits.extend_from_slice(logits);
            let recent = match p.penalty_last_n {
                0 => history,
                n => &history[history.len().saturating_sub(n)..],
            };
            self.counts.clear();
            for &t in recent {
                *self.counts.entry(t).or_default() += 1;
            }
            for (&t, &c) in &self.counts {
                if let Some(l) = self.logits.get_mut(t as usize) {
                    if *l > 0.0 {
                        *l /= p.repeat_penalty;
                    } else {
                        *l *= p.repeat_penalty;
                    }
                    *l -= p.presence_penalty + p.frequency_penalty * c as f32;
                }
            }
            &self.logits
        } else {
            logits
        };
        if p.temperature == 0.0 {
            return argmax(logits);
        }
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &l)| Candidate {
                id: i as u32,
                logit: l,
            }));
        let c = &mut self.candidates;
        // Top-k: partial sort so the k best come first, then sort those.
        let k = if p.top_k == 0 {
            c.len()
        } else {
            p.top_k.min(c.len())
        };
        if k < c.len() {
            c.select_nth_unstable_by(k, |a, b| b.logit.total_cmp(&a.logit));
            c.truncate(k);
        }
        c.sort_unstable_by(|a, b| b.logit.total_cmp(&a.logit));
        // Probabilities of what is left, for top-p and min-p.
        let max = c.first().map_or(0.0, |x| x.logit);
        let probs = &mut self.probs;
        probs.clear();
        probs.extend(c.iter().map(|x| (x.logit - max).exp()));
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= sum);
        let mut keep = c.len();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, q) in probs.iter().enumerate() {
                acc += q;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = p.min_p * probs.first().copied().unwrap_or(0.0);
            keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count().max(1));
        }
        c.truncate(keep.max(1));
        // Temperature, then draw.
        probs.clear();
        probs.extend(c.iter().map(|x| ((x.logit - max) / p.temperature).exp()));
        let weights = &*probs;
        let total: f32 = weights.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (x, w) in c.iter().zip(weights) {
            if r < *w {
                return x.id;
            }
            r -= w;
        }
        c.last().map_or(0, |x| x.id)
    }
}

/// The index of the largest value (the first one on ties).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, 2.9]
    }

    #[test]
    fn greedy_picks_the_largest_logit() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(s.sample(&logits(), &[]), 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens() {
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(42),
            ..Default::default()
        };
        let draw = |params: &SamplingParams| {
            let mut s = Sampler::new(params.clone()).unwrap();
            (0..50)
                .map(|_| s.sample(&logits(), &[]))
                .collect::<Vec<_>>()
        };
        let a = draw(&params);
        assert_eq!(a, draw(&params));
        assert_ne!(
            a,
            draw(&SamplingParams {
                seed: Some(43),
                ..params.clone()
            })
        );
        // With all tokens allowed, the draws cover more than one token.
        assert!(a.iter().any(|&t| t != a[0]));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let params = SamplingParams {
            temperature: 5.0,
            top_k: 1,
            seed: Some(1),
            ..Default::default()
        };
        let mut s = Sampler::new(params).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&logits(), &[]), 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_unlikely_tokens() {
        // Token 1 alone has most of the mass at this temperature.
        let big = vec![0.0, 10.0, 0.0, 0.0, 9.0];
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            min_p: 0.0,
            seed: Some(3),
            ..Default::default()
        };
        let mut s = Sampler::new(params).unwrap();
        assert!((0..50).all(|_| s.sample(&big, &[]) == 1));
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.3,
            seed: Some(3),
            ..Default::default()
        };
        let mut s = Sampler::new(params).unwrap();
        let seen: std::collections::HashSet<u32> = (0..200).map(|_| s.sample(&big, &[])).collect();
        assert_eq!(seen, [1, 4].into_iter().collect());
    }

    #[test]
    fn penalties_push_seen_tokens_down() {
        let params = SamplingParams {
            temperature: 0.0,
            repeat_penalty: 2.0,
            ..Default::default()
        };
        let mut s = Sampler::new(params).unwrap();
        // 3.0 / 2 = 1.5 < 2.9.
        assert_eq!(s.sample(&logits(), &[1]), 4);
        let params = SamplingParams {
            temperature: 0.0,
            frequency_penalty: 0.1,
            ..Default::default()
        };
        let mut s = Sampler::new(params).unwrap();
        assert_eq!(s.sample(&logits(), &[1, 1]), 4);
    }

    #[test]
    fn bad_parameters_are_named() {
        let err = Sampler::new(SamplingParams {
            top_p: 1.5,
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("top_p"), "{err}");
        let err = Sampler::new(SamplingParams {
            temperature: f32::NAN,
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("temperature"), "{err}");
    }
}
