//! The semantic view: several texts through an embedding model, how similar
//! it finds them, and which tokens made two of them similar.
//!
//! The texts are tokenized and run as [`lucid_engine::LoadedModel::embed`]
//! runs them (the model's own pooling, length and special tokens, many
//! texts per pass), but the final hidden states are kept rather than only
//! their pooled vectors: a pair's similarity is then split exactly over the
//! tokens that made it ([`contributions`]). Everything after the forward
//! pass is in f64, so the contributions of a text sum to the similarity
//! that is reported for the pair to within the f32 it is written in.

use std::time::Instant;

use lucid_engine::{ForwardCtx, LoadedModel, Pooling};

use crate::error::{GlassError, Result};
use crate::explain::token_text;
use crate::options::{Limits, Pairs, SemanticOptions};
use crate::trace::{
    EmbeddingSummary, ModelSummary, Neighbour, PairContributions, Semantic, SemanticTimings,
    TextEmbedding, Token,
};

/// Runs `model` over `texts` on `threads` threads and compares them, after
/// checking the request against `limits`.
pub fn semantic(
    model: &LoadedModel,
    texts: &[&str],
    options: &SemanticOptions,
    limits: &Limits,
    threads: usize,
) -> Result<Semantic> {
    let start = Instant::now();
    check_texts(texts.len(), options, limits)?;
    let config = &model.embedding;
    // Into glass's error (which boxes the engine's) text by text.
    let tokenized = texts
        .iter()
        .map(|t| {
            lucid_engine::embed::tokenize(&model.tokenizer, model.model.as_ref(), config, t)
                .map_err(GlassError::from)
        })
        .collect::<Result<Vec<_>>>()?;
    let total: usize = tokenized.iter().map(|t| t.ids.len()).sum();
    if total > limits.max_semantic_tokens {
        return Err(GlassError::TooLarge {
            what: "the texts' token count",
            requested: total,
            limit: limits.max_semantic_tokens,
        });
    }
    let ids: Vec<&[u32]> = tokenized.iter().map(|t| t.ids.as_slice()).collect();
    let mut ctx = ForwardCtx::new(threads.max(1));
    let mut rows: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
    lucid_engine::embed::hidden_states(model.model.as_ref(), &mut ctx, &ids, &[], |_, r, _| {
        rows.push(r.to_vec());
    })?;
    let d = model.model.info().d_model;
    for (index, (r, ids)) in rows.iter().zip(&ids).enumerate() {
        if r.len() != ids.len() * d {
            return Err(GlassError::HiddenStates {
                index,
                got: r.len(),
                expected: ids.len() * d,
            });
        }
    }
    if rows.len() != texts.len() {
        return Err(GlassError::HiddenStates {
            index: rows.len(),
            got: 0,
            expected: ids.get(rows.len()).map_or(0, |i| i.len() * d),
        });
    }
    let forward_ms = ms(start);

    let t = Instant::now();
    let views: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
    let a = Analysis::new(&views, d, config.pooling);
    let texts_out = texts
        .iter()
        .zip(&tokenized)
        .zip(&rows)
        .enumerate()
        .map(|(i, ((text, tok), r))| TextEmbedding {
            text: (*text).to_string(),
            tokens: tok
                .ids
                .iter()
                .map(|&id| Token {
                    id,
                    text: token_text(model, id),
                })
                .collect(),
            truncated: tok.truncated,
            norm: a.norms[i] as f32,
            vector: options
                .vectors
                .then(|| lucid_engine::embed::pool(r, d, config.pooling, config.normalize)),
            neighbours: a
                .neighbours(i)
                .into_iter()
                .map(|j| Neighbour {
                    index: j,
                    similarity: a.similarity[i][j] as f32,
                })
                .collect(),
        })
        .collect();
    let pairs = a
        .pairs(&options.pairs)
        .into_iter()
        .map(|(i, j)| PairContributions {
            a: i,
            b: j,
            similarity: a.similarity[i][j] as f32,
            a_contributions: to_f32(&a.contributions(i, j)),
            b_contributions: to_f32(&a.contributions(j, i)),
        })
        .collect();
    let analysis_ms = ms(t);
    Ok(Semantic {
        model: ModelSummary::of(model.model.as_ref()),
        embedding: EmbeddingSummary::of(model),
        texts: texts_out,
        similarity: a.similarity.iter().map(|row| to_f32(row)).collect(),
        pairs,
        timings: SemanticTimings {
            forward_ms,
            analysis_ms,
            total_ms: ms(start),
        },
    })
}

/// Checks the number of texts and the pairs named against `limits`, before
/// any work.
pub fn check_texts(n: usize, options: &SemanticOptions, limits: &Limits) -> Result<()> {
    if n < 2 {
        return Err(GlassError::TooFewTexts { given: n });
    }
    if n > limits.max_texts {
        return Err(GlassError::TooLarge {
            what: "texts",
            requested: n,
            limit: limits.max_texts,
        });
    }
    if let Pairs::These(pairs) = &options.pairs {
        if let Some(&(a, b)) = pairs.iter().find(|&&(a, b)| a >= n || b >= n) {
            return Err(GlassError::PairOutOfRange { a, b, texts: n });
        }
        // Each pair costs its two texts' tokens: at most every pair once,
        // a text with itself included.
        let most = n * (n + 1) / 2;
        if pairs.len() > most {
            return Err(GlassError::TooLarge {
                what: "pairs",
                requested: pairs.len(),
                limit: most,
            });
        }
    }
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The numbers of a semantic view, in f64, from the texts' final hidden
/// states: each text's pooled vector (before normalization), its length,
/// its direction, and the cosine of every pair.
#[derive(Clone, Debug)]
pub struct Analysis<'a> {
    /// Each text's rows, `[tokens, d]`.
    rows: Vec<&'a [f32]>,
    d: usize,
    pooling: Pooling,
    /// The length of each pooled vector.
    pub norms: Vec<f64>,
    /// Each pooled vector scaled to length 1 (zero stays zero).
    pub units: Vec<Vec<f64>>,
    /// `similarity[i][j]`: the cosine of texts `i` and `j`.
    pub similarity: Vec<Vec<f64>>,
}

impl<'a> Analysis<'a> {
    /// Pools and compares texts whose rows of width `d` are `rows`.
    pub fn new(rows: &[&'a [f32]], d: usize, pooling: Pooling) -> Analysis<'a> {
        let pooled: Vec<Vec<f64>> = rows.iter().map(|r| pooled(r, d, pooling)).collect();
        let norms: Vec<f64> = pooled.iter().map(|v| dot(v, v).sqrt()).collect();
        let units: Vec<Vec<f64>> = pooled
            .iter()
            .zip(&norms)
            .map(|(v, &n)| {
                if n > 0.0 {
                    v.iter().map(|x| x / n).collect()
                } else {
                    vec![0.0; v.len()]
                }
            })
            .collect();
        let n = rows.len();
        let mut similarity = vec![vec![0.0; n]; n];
        for i in 0..n {
            for j in i..n {
                let s = dot(&units[i], &units[j]);
                similarity[i][j] = s;
                similarity[j][i] = s;
            }
        }
        Analysis {
            rows: rows.to_vec(),
            d,
            pooling,
            norms,
            units,
            similarity,
        }
    }

    /// The other texts, most similar to text `i` first (lower index first
    /// on ties).
    pub fn neighbours(&self, i: usize) -> Vec<usize> {
        let row = &self.similarity[i];
        let mut others: Vec<usize> = (0..row.len()).filter(|&j| j != i).collect();
        others.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
        others
    }

    /// The pairs `which` names: for [`Pairs::Nearest`] and [`Pairs::All`]
    /// each pair once as `(lower, higher)`, most similar first.
    pub fn pairs(&self, which: &Pairs) -> Vec<(usize, usize)> {
        let n = self.similarity.len();
        let mut pairs: Vec<(usize, usize)> = match which {
            Pairs::These(given) => return given.clone(),
            Pairs::All => (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .collect(),
            Pairs::Nearest => (0..n)
                .filter_map(|i| {
                    let j = *self.neighbours(i).first()?;
                    Some((i.min(j), i.max(j)))
                })
                .collect(),
        };
        pairs.sort_by(|&(a, b), &(c, d)| {
            self.similarity[c][d]
                .total_cmp(&self.similarity[a][b])
                .then((a, b).cmp(&(c, d)))
        });
        pairs.dedup();
        pairs
    }

    /// What each token of text `a` adds to the cosine of `a` and `b`; they
    /// sum to it ([`contributions`]).
    pub fn contributions(&self, a: usize, b: usize) -> Vec<f64> {
        contributions(
            self.rows[a],
            self.d,
            self.pooling,
            self.norms[a],
            &self.units[b],
        )
    }
}

/// A text's rows `[tokens, d]` pooled into one vector, in f64, before any
/// normalization.
pub fn pooled(rows: &[f32], d: usize, pooling: Pooling) -> Vec<f64> {
    let n = rows.len() / d.max(1);
    let mut v = vec![0.0f64; d];
    if n == 0 {
        return v;
    }
    match pooling {
        Pooling::Mean => {
            for row in rows.chunks_exact(d) {
                for (a, &x) in v.iter_mut().zip(row) {
                    *a += f64::from(x);
                }
            }
            v.iter_mut().for_each(|a| *a /= n as f64);
        }
        Pooling::Cls => add(&mut v, &rows[..d]),
        Pooling::LastToken => add(&mut v, &rows[(n - 1) * d..n * d]),
    }
    v
}

fn add(v: &mut [f64], row: &[f32]) {
    for (a, &x) in v.iter_mut().zip(row) {
        *a += f64::from(x);
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// What each token of a text adds to its cosine with another text.
///
/// `rows` are the text's hidden states `[tokens, d]`, `norm` the length of
/// its pooled vector `A` ([`pooled`]) and `other` the other text's pooled
/// vector scaled to length 1 (`B̂`). The cosine is `A · B̂ / |A|`, and `A` is
/// a weighted sum of rows, `Σ_i w_i h_i` (`w_i = 1/n` for the mean, 1 for
/// the pooled token of CLS or last-token pooling and 0 for the others), so
/// token `i` contributes `w_i (h_i · B̂) / |A|` and the contributions sum to
/// the cosine. Normalizing the vectors would not change it. A text whose
/// pooled vector is zero contributes nothing.
pub fn contributions(
    rows: &[f32],
    d: usize,
    pooling: Pooling,
    norm: f64,
    other: &[f64],
) -> Vec<f64> {
    let n = rows.len() / d.max(1);
    let mut out = vec![0.0f64; n];
    if n == 0 || norm <= 0.0 {
        return out;
    }
    let row_dot = |i: usize| -> f64 {
        rows[i * d..(i + 1) * d]
            .iter()
            .zip(other)
            .map(|(&h, &b)| f64::from(h) * b)
            .sum()
    };
    match pooling {
        Pooling::Mean => {
            let scale = 1.0 / (n as f64 * norm);
            for (i, c) in out.iter_mut().enumerate() {
                *c = row_dot(i) * scale;
            }
        }
        Pooling::Cls => out[0] = row_dot(0) / norm,
        Pooling::LastToken => out[n - 1] = row_dot(n - 1) / norm,
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random rows in [-1, 1).
    fn rows(seed: u32, n: usize, d: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n * d)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The cosine of two f32 vectors, the textbook way in f64.
    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let a: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
        let b: Vec<f64> = b.iter().map(|&x| f64::from(x)).collect();
        dot(&a, &b) / (dot(&a, &a).sqrt() * dot(&b, &b).sqrt())
    }

    fn texts(d: usize) -> Vec<Vec<f32>> {
        // Texts of different lengths, one token long among them.
        [(1, 7), (2, 3), (3, 1), (4, 12)]
            .iter()
            .map(|&(seed, n)| rows(seed, n, d))
            .collect()
    }

    fn check_pooling(pooling: Pooling) {
        let d = 16;
        let texts = texts(d);
        let views: Vec<&[f32]> = texts.iter().map(Vec::as_slice).collect();
        let a = Analysis::new(&views, d, pooling);
        for i in 0..texts.len() {
            for j in 0..texts.len() {
                let s = a.similarity[i][j];
                // Symmetric, and the cosine of the engine's own pooling.
                assert_eq!(s, a.similarity[j][i]);
                let (pi, pj) = (
                    lucid_engine::embed::pool(&texts[i], d, pooling, false),
                    lucid_engine::embed::pool(&texts[j], d, pooling, false),
                );
                assert!((s - cosine(&pi, &pj)).abs() < 1e-6, "{pooling:?} {i} {j}");
                // Both texts' contributions sum to the cosine.
                for (x, y) in [(i, j), (j, i)] {
                    let c = a.contributions(x, y);
                    assert_eq!(c.len(), texts[x].len() / d);
                    let sum: f64 = c.iter().sum();
                    assert!((sum - s).abs() < 1e-5, "{pooling:?} {x}→{y}: {sum} vs {s}");
                    // CLS and last-token pooling: one token holds it all.
                    let n = c.len();
                    match pooling {
                        Pooling::Mean => {}
                        Pooling::Cls => assert!(c[1..].iter().all(|&v| v == 0.0)),
                        Pooling::LastToken => assert!(c[..n - 1].iter().all(|&v| v == 0.0)),
                    }
                }
            }
            assert!((a.similarity[i][i] - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn mean_pooling_contributions_sum_to_the_cosine() {
        check_pooling(Pooling::Mean);
    }

    #[test]
    fn cls_pooling_gives_everything_to_the_first_token() {
        check_pooling(Pooling::Cls);
    }

    #[test]
    fn last_token_pooling_gives_everything_to_the_last_token() {
        check_pooling(Pooling::LastToken);
    }

    #[test]
    fn normalizing_changes_no_cosine() {
        let d = 8;
        let (x, y) = (rows(7, 5, d), rows(8, 4, d));
        let raw = cosine(
            &lucid_engine::embed::pool(&x, d, Pooling::Mean, false),
            &lucid_engine::embed::pool(&y, d, Pooling::Mean, false),
        );
        let unit_x = lucid_engine::embed::pool(&x, d, Pooling::Mean, true);
        let unit_y = lucid_engine::embed::pool(&y, d, Pooling::Mean, true);
        // For normalized vectors the cosine is the dot product.
        let dot: f64 = unit_x
            .iter()
            .zip(&unit_y)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        let a = Analysis::new(&[&x, &y], d, Pooling::Mean);
        assert!((a.similarity[0][1] - raw).abs() < 1e-9);
        assert!((a.similarity[0][1] - dot).abs() < 1e-6);
    }

    #[test]
    fn a_hand_computed_mean_pooling_example() {
        // a = rows (1, 0) and (1, 2): A = (1, 1), |A| = √2.
        // b = one row (0, 3): B̂ = (0, 1). cos = 1/√2.
        // Token 0 of a: (1,0)·(0,1) / (2 √2) = 0; token 1: 2 / (2 √2) = 1/√2.
        let a_rows = [1.0f32, 0.0, 1.0, 2.0];
        let b_rows = [0.0f32, 3.0];
        let an = Analysis::new(&[&a_rows, &b_rows], 2, Pooling::Mean);
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!((an.similarity[0][1] - h).abs() < 1e-12);
        let c = an.contributions(0, 1);
        assert!(c[0].abs() < 1e-12 && (c[1] - h).abs() < 1e-12, "{c:?}");
        assert!((an.norms[0] - 2f64.sqrt()).abs() < 1e-12);
        assert!((an.contributions(1, 0)[0] - h).abs() < 1e-12);
    }

    #[test]
    fn neighbours_are_sorted_and_pairs_are_each_nearest_once() {
        // Three directions: 0 and 1 close, 2 far from both, nearer to 1.
        let r0 = [1.0f32, 0.0];
        let r1 = [1.0f32, 0.2];
        let r2 = [0.0f32, 1.0];
        let a = Analysis::new(&[&r0, &r1, &r2], 2, Pooling::Mean);
        assert_eq!(a.neighbours(0), vec![1, 2]);
        assert_eq!(a.neighbours(2), vec![1, 0]);
        // 0↔1 (nearest of both) once, then 1↔2 (2's nearest).
        assert_eq!(a.pairs(&Pairs::Nearest), vec![(0, 1), (1, 2)]);
        assert_eq!(a.pairs(&Pairs::All), vec![(0, 1), (1, 2), (0, 2)]);
        assert_eq!(a.pairs(&Pairs::These(vec![(2, 0)])), vec![(2, 0)]);
    }

    #[test]
    fn a_zero_vector_is_similar_to_nothing() {
        let zero = [0.0f32, 0.0];
        let one = [1.0f32, 0.0];
        let a = Analysis::new(&[&zero, &one], 2, Pooling::Mean);
        assert_eq!(a.similarity[0][1], 0.0);
        assert_eq!(a.similarity[0][0], 0.0);
        assert_eq!(a.contributions(0, 1), vec![0.0]);
        assert_eq!(a.contributions(1, 0), vec![0.0]);
    }

    #[test]
    fn requests_are_bounded_before_running() {
        let limits = Limits::server();
        let all = SemanticOptions::default();
        assert!(matches!(
            check_texts(1, &all, &limits),
            Err(GlassError::TooFewTexts { given: 1 })
        ));
        assert!(matches!(
            check_texts(33, &all, &limits),
            Err(GlassError::TooLarge { what: "texts", .. })
        ));
        let out_of_range = SemanticOptions {
            pairs: Pairs::These(vec![(0, 3)]),
            vectors: false,
        };
        assert!(matches!(
            check_texts(3, &out_of_range, &limits),
            Err(GlassError::PairOutOfRange {
                a: 0,
                b: 3,
                texts: 3
            })
        ));
        assert!(check_texts(3, &all, &limits).is_ok());
    }
}
