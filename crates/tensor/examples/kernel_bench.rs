//! Matrix-vector and matrix-matrix throughput of each kernel path on a
//! matrix larger than the caches (a development tool).
//!
//!   cargo run --release -p lucid-tensor --example kernel_bench -- [TYPE] [THREADS] [TOKENS] [ROWS] [COLS]
//!
//! COLS defaults to 1536. ROWS (default 98304) small enough for the matrix to stay in cache
//! measures the kernel's arithmetic instead of the memory.

use std::time::Instant;

use lucid_tensor::{Activations, DType, Isa, ThreadPool, WeightMatrix, matmul, quant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dtype = match args.get(1).map(String::as_str).unwrap_or("q4_1") {
        "q4_0" => DType::Q4_0,
        "q5_0" => DType::Q5_0,
        "q8_0" => DType::Q8_0,
        "q4_k" => DType::Q4K,
        "q6_k" => DType::Q6K,
        "iq4_nl" => DType::IQ4NL,
        "iq4_xs" => DType::IQ4XS,
        "f32" => DType::F32,
        _ => DType::Q4_1,
    };
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let tokens: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let rows: usize = args
        .get(4)
        .and_then(|s| s.parse().ok())
        .unwrap_or(64 * 1536);
    let cols: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(1536);
    let row_bytes = dtype.row_bytes(cols).unwrap_or(0);
    let mut data = vec![0u8; rows * row_bytes];
    let src: Vec<f32> = (0..cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut one = vec![0u8; row_bytes];
    if quant::can_quantize(dtype) {
        quant::quantize_row(dtype, &src, &mut one);
    } else {
        for (i, b) in one.iter_mut().enumerate() {
            *b = (i * 31 % 251) as u8;
        }
    }
    for r in data.chunks_exact_mut(row_bytes) {
        r.copy_from_slice(&one);
    }
    let w = WeightMatrix {
        dtype,
        rows,
        cols,
        data: &data,
    };
    let pool = ThreadPool::new(threads);
    let x: Vec<f32> = (0..tokens * cols)
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let mut y = vec![0f32; tokens * rows];
    for isa in Isa::available().into_iter().filter(|i| *i != Isa::Scalar) {
        let mut acts = Activations::new();
        acts.prepare(isa, dtype, &x, cols);
        matmul(&pool, isa, w, &acts, &mut y);
        let mut best = f64::MAX;
        let reps = (64 * 1536 / rows).clamp(5, 2000);
        for _ in 0..reps {
            let t = Instant::now();
            matmul(&pool, isa, w, &acts, &mut y);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{dtype} {} threads={threads} tokens={tokens}: {:.2} GB/s of weights, {:.1} G MAC/s",
            isa.name(),
            data.len() as f64 / best / 1e9,
            (rows * cols * tokens) as f64 / best / 1e9
        );
    }
}
