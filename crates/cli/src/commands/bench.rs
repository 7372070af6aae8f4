//! `lucid bench`: measure how fast a model runs here.
//!
//! Like llama-bench: prompt processing of `-p` random tokens from an empty
//! cache, and generation of `-n` tokens one at a time from an empty cache,
//! each repeated after a warm-up run. Reports mean and spread in tokens per
//! second, plus load time, time to first token and peak memory. With
//! `--json` the numbers are printed for `scripts/bench/compare.py`, which
//! runs llama.cpp on the same model beside it.

use std::time::{Duration, Instant};

use anyhow::Context;
use lucid_engine::{ForwardCtx, Hooks, LoadedModel, LogitsFor, SeqInput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::local;

#[derive(clap::Args)]
pub struct Args {
    /// A catalog name or a path to a model file.
    model: String,
    /// Prompt lengths to measure, comma-separated.
    #[arg(short = 'p', long, value_delimiter = ',', default_value = "64,512")]
    prompt: Vec<usize>,
    /// Tokens to generate one at a time.
    #[arg(short = 'n', long = "gen", default_value_t = 128)]
    n_gen: usize,
    /// Repetitions of each test (after one warm-up run).
    #[arg(short = 'r', long, default_value_t = 3)]
    reps: usize,
    /// Threads for the forward pass (default: the cores available).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also measure the machine: memory read bandwidth and the kernels'
    /// arithmetic peak, and the floors they set for this model.
    #[arg(long)]
    floors: bool,
}

#[derive(Serialize)]
struct Report {
    model: String,
    threads: usize,
    isa: &'static str,
    load_ms: f64,
    tests: Vec<TestResult>,
    /// Time from a 64-token prompt to the first sampled token.
    ttft_ms: Option<f64>,
    peak_rss_bytes: Option<u64>,
    floors: Option<Floors>,
}

/// What the machine allows, whatever the engine.
#[derive(Serialize)]
struct Floors {
    /// Bytes per second read from memory by `threads` threads.
    memory_read_bytes_per_s: f64,
    /// Bytes of weights a decode step reads (every matrix once).
    weight_bytes: u64,
    /// The fastest decode possible: reading every weight once per token.
    decode_tokens_per_s_ceiling: f64,
    /// Multiply-adds per second of lucid's Q8_0 kernel on cache-resident data.
    kernel_macs_per_s: f64,
    /// The fastest prompt processing possible at that rate: one
    /// multiply-add per parameter per token.
    prefill_tokens_per_s_ceiling: f64,
}

#[derive(Serialize)]
struct TestResult {
    /// `pp64`, `tg128`, … as llama-bench names them.
    name: String,
    tokens: usize,
    tokens_per_s_mean: f64,
    tokens_per_s_stddev: f64,
    samples: Vec<f64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let threads = args.threads.unwrap_or_else(local::default_threads);
    // Load time is the model's alone, as llama.cpp reports it: finding (or
    // pulling) the file in the store comes first.
    let (path, entry) = local::resolve(&args.model)?;
    let start = Instant::now();
    let mut model = local::load_path(&args.model, &path)?;
    let load = start.elapsed();
    local::name_from_catalog(&mut model, entry);
    let mut ctx = ForwardCtx::new(threads);
    let mut rng = StdRng::seed_from_u64(0);
    let vocab = model.model.info().vocab_size as u32;
    let mut tests = Vec::new();
    for &p in args.prompt.iter().filter(|&&p| p > 0) {
        let samples = measure(args.reps, || {
            let tokens: Vec<u32> = (0..p).map(|_| rng.random_range(0..vocab)).collect();
            let t = Instant::now();
            forward(&model, &mut ctx, &tokens, p)?;
            Ok(t.elapsed())
        })?;
        tests.push(result(format!("pp{p}"), p, &samples));
    }
    if args.n_gen > 0 {
        let n = args.n_gen;
        let samples = measure(args.reps, || {
            let mut cache = model.model.new_cache(Some(n + 1));
            let mut token = model.tokenizer.bos().unwrap_or(0);
            let t = Instant::now();
            for _ in 0..n {
                let mut seqs = [SeqInput {
                    tokens: &[token],
                    cache: &mut cache,
                    logits: LogitsFor::Last,
                }];
                model
                    .model
                    .forward(&mut ctx, &mut seqs, &mut Hooks::none())?;
                token = lucid_engine::sampler::argmax(ctx.last_logits(0).unwrap_or(&[]));
            }
            Ok(t.elapsed())
        })?;
        tests.push(result(format!("tg{n}"), n, &samples));
    }
    let ttft = {
        let tokens: Vec<u32> = (0..64).map(|_| rng.random_range(0..vocab)).collect();
        let t = Instant::now();
        forward(&model, &mut ctx, &tokens, 64)?;
        let _ = lucid_engine::sampler::argmax(ctx.last_logits(0).unwrap_or(&[]));
        t.elapsed()
    };
    let report = Report {
        model: args.model.clone(),
        threads,
        isa: lucid_tensor::Isa::current().name(),
        load_ms: ms(load),
        tests,
        ttft_ms: Some(ms(ttft)),
        peak_rss_bytes: peak_rss(),
        floors: args.floors.then(|| floors(&model, threads)),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report, &model);
    }
    Ok(())
}

/// Runs `tokens` through a fresh cache of `limit` positions.
fn forward(
    model: &LoadedModel,
    ctx: &mut ForwardCtx,
    tokens: &[u32],
    limit: usize,
) -> anyhow::Result<()> {
    let mut cache = model.model.new_cache(Some(limit));
    let mut seqs = [SeqInput {
        tokens,
        cache: &mut cache,
        logits: LogitsFor::Last,
    }];
    model
        .model
        .forward(ctx, &mut seqs, &mut Hooks::none())
        .context("forward pass")
}

/// One warm-up run, then `reps` timed runs.
fn measure(
    reps: usize,
    mut run: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Vec<Duration>> {
    run()?;
    (0..reps.max(1)).map(|_| run()).collect()
}

fn result(name: String, tokens: usize, samples: &[Duration]) -> TestResult {
    let rates: Vec<f64> = samples
        .iter()
        .map(|d| tokens as f64 / d.as_secs_f64())
        .collect();
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let var =
        rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (rates.len().max(2) - 1) as f64;
    TestResult {
        name,
        tokens,
        tokens_per_s_mean: mean,
        tokens_per_s_stddev: var.sqrt(),
        samples: rates,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn floors(model: &LoadedModel, threads: usize) -> Floors {
    let bandwidth = memory_read_bandwidth(threads);
    let weight_bytes: u64 = model.meta.tensor_types.iter().map(|(_, _, b)| *b).sum();
    let macs = kernel_macs_per_s(threads);
    Floors {
        memory_read_bytes_per_s: bandwidth,
        weight_bytes,
        decode_tokens_per_s_ceiling: bandwidth / weight_bytes as f64,
        kernel_macs_per_s: macs,
        prefill_tokens_per_s_ceiling: macs / prefill_macs_per_token(model) as f64,
    }
}

/// Multiply-adds of the weight products per prompt token: every parameter
/// but the token embedding's, which is a lookup. The output projection runs
/// for the last token only; where it is a separate matrix (untied) it is
/// still counted, so the ceiling is then a little low.
fn prefill_macs_per_token(model: &LoadedModel) -> u64 {
    let info = model.model.info();
    let embedding = (info.vocab_size * info.d_model) as u64;
    model.meta.n_params.saturating_sub(embedding).max(1)
}

/// Best of a few passes reading 1 GiB with `threads` threads.
fn memory_read_bandwidth(threads: usize) -> f64 {
    let words = (1usize << 30) / 8;
    let data: Vec<u64> = (0..words as u64).collect();
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let chunk = words.div_ceil(threads.max(1));
            let handles: Vec<_> = data
                .chunks(chunk)
                .map(|c| s.spawn(move || c.iter().fold(0u64, |a, &x| a.wrapping_add(x))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0, u64::wrapping_add)
        });
        std::hint::black_box(total);
        best = best.max((words * 8) as f64 / t.elapsed().as_secs_f64());
    }
    best
}

/// Multiply-adds per second of the Q8_0 kernel on a matrix that fits in
/// cache, with 64 activation rows: the arithmetic peak of prompt processing.
/// Rows as long as a feed-forward layer's (2,048 values), so that each
/// tile's fixed costs (sums across lanes, stores) weigh as they do there.
fn kernel_macs_per_s(threads: usize) -> f64 {
    use lucid_tensor::{Activations, DType, Isa, ThreadPool, WeightMatrix};
    let (rows, cols, tokens) = (256, 2048, 64);
    let dtype = DType::Q8_0;
    let row_bytes = dtype.row_bytes(cols).unwrap_or(0);
    let mut data = vec![0u8; rows * row_bytes];
    let x: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    for (r, out) in data.chunks_exact_mut(row_bytes).enumerate() {
        lucid_tensor::quant::quantize_row(dtype, &x[r * cols..(r + 1) * cols], out);
    }
    let w = WeightMatrix {
        dtype,
        rows,
        cols,
        data: &data,
    };
    let pool = ThreadPool::new(threads);
    let isa = Isa::current();
    let mut acts = Activations::new();
    acts.prepare(isa, dtype, &x[..tokens * cols], cols);
    let mut y = vec![0f32; tokens * rows];
    let mut best = 0f64;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..20 {
            lucid_tensor::matmul(&pool, isa, w, &acts, &mut y);
        }
        best = best.max((20 * rows * cols * tokens) as f64 / t.elapsed().as_secs_f64());
    }
    best
}

/// The process's peak resident set size, from `/proc/self/status` (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn print_table(r: &Report, model: &LoadedModel) {
    println!(
        "{} ({} parameters, {:.1} MiB), {} threads, {} kernels, loaded in {:.0} ms",
        model.meta.name,
        model.meta.n_params,
        model.meta.file_size as f64 / (1 << 20) as f64,
        r.threads,
        r.isa,
        r.load_ms
    );
    println!("{:>8}  {:>14}", "test", "tokens/s");
    for t in &r.tests {
        println!(
            "{:>8}  {:>8.2} ± {:<6.2}",
            t.name, t.tokens_per_s_mean, t.tokens_per_s_stddev
        );
    }
    if let Some(t) = r.ttft_ms {
        println!("time to first token (64-token prompt): {t:.1} ms");
    }
    if let Some(b) = r.peak_rss_bytes {
        println!("peak RSS: {:.1} MiB", b as f64 / (1 << 20) as f64);
    }
    if let Some(f) = &r.floors {
        println!(
            "memory read bandwidth {:.1} GB/s: decode can be at most {:.0} tokens/s ({:.1} MiB of weights per token)",
            f.memory_read_bytes_per_s / 1e9,
            f.decode_tokens_per_s_ceiling,
            f.weight_bytes as f64 / (1 << 20) as f64
        );
        println!(
            "Q8_0 kernel peak {:.1} G multiply-adds/s: prompt processing can be at most {:.0} tokens/s",
            f.kernel_macs_per_s / 1e9,
            f.prefill_tokens_per_s_ceiling
        );
    }
}
