//! Matrix products of stored weights with a batch of activation rows.
//!
//! `y[t][r] = dot(w[r], x[t])`: each weight row is an output feature, each
//! activation row a token. Work is split over chunks of weight rows, claimed
//! dynamically so that a thread slowed down by another process does not hold
//! the others back. Several products that read the same activations (the
//! query, key and value projections) run in one parallel region.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::dtype::DType;
use crate::kernels::{self, ActRows, Isa};
use crate::pool::{SharedMut, ThreadPool};

/// A matrix as stored in a model file: `rows` rows of `cols` values each.
#[derive(Clone, Copy, Debug)]
pub struct WeightMatrix<'a> {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> WeightMatrix<'a> {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.cols).unwrap_or(0)
    }

    /// Row `r` as stored.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }
}

/// Activations converted for multiplication with one weight type; reused
/// across calls so that the decode loop does not allocate.
#[derive(Debug, Default)]
pub struct Activations {
    dtype: Option<DType>,
    n: usize,
    rows: usize,
    f32s: Vec<f32>,
    bytes: Vec<u8>,
    /// The same rows split for the AVX-512 tile kernels, when they run.
    #[cfg(x86_kernels)]
    split: kernels::TileActs,
}

impl Activations {
    pub fn new() -> Activations {
        Activations::default()
    }

    /// Converts `x` (rows of `n` values) for weights of type `wtype`.
    pub fn prepare(&mut self, isa: Isa, wtype: DType, x: &[f32], n: usize) {
        self.prepare_on(None, isa, wtype, x, n)
    }

    /// [`Activations::prepare`], quantizing rows in parallel on `pool` when
    /// there are many.
    pub fn prepare_on(
        &mut self,
        pool: Option<&ThreadPool>,
        isa: Isa,
        wtype: DType,
        x: &[f32],
        n: usize,
    ) {
        let isa = isa.usable();
        let dtype = kernels::dot_type(wtype);
        self.dtype = Some(dtype);
        self.n = n;
        self.rows = x.len() / n.max(1);
        if dtype == DType::F32 {
            self.f32s.clear();
            self.f32s.extend_from_slice(x);
        } else {
            let row_bytes = dtype.row_bytes(n).unwrap_or(0);
            self.bytes.resize(row_bytes * self.rows, 0);
            match pool {
                Some(pool) if row_bytes > 0 => {
                    pool.rows_mut(&mut self.bytes, row_bytes, &|r, out| {
                        kernels::quantize_rows_usable(isa, dtype, &x[r * n..(r + 1) * n], n, out)
                    })
                }
                _ => kernels::quantize_rows_usable(isa, dtype, x, n, &mut self.bytes),
            }
            #[cfg(x86_kernels)]
            if isa == Isa::Avx512 {
                match dtype {
                    DType::Q8_0 | DType::Q8_1 => {
                        self.split.blocks.fill(&self.bytes, n, dtype == DType::Q8_1)
                    }
                    DType::Q8K => self.split.k.fill(&self.bytes, n),
                    _ => {}
                }
            }
        }
    }

    /// The format the activations are in, once prepared.
    pub fn dtype(&self) -> Option<DType> {
        self.dtype
    }

    pub fn n_rows(&self) -> usize {
        self.rows
    }

    pub fn rows(&self) -> ActRows<'_> {
        match self.dtype {
            Some(DType::F32) | None => ActRows::F32 {
                data: &self.f32s,
                n: self.n.max(1),
            },
            Some(dtype) => ActRows::Blocks {
                dtype,
                data: &self.bytes,
                row_bytes: dtype.row_bytes(self.n).unwrap_or(0).max(1),
            },
        }
    }
}

/// One matrix product: `out` is `x.n_rows()` rows of `w.rows` values, plus
/// `bias` (`w.rows` values) when there is one.
#[derive(Debug)]
pub struct MatmulJob<'a> {
    pub w: WeightMatrix<'a>,
    pub x: &'a Activations,
    pub out: &'a mut [f32],
    pub bias: Option<&'a [f32]>,
}

/// Runs `y = x · wᵀ` on the pool.
pub fn matmul(pool: &ThreadPool, isa: Isa, w: WeightMatrix<'_>, x: &Activations, out: &mut [f32]) {
    matmuls(
        pool,
        isa,
        &mut [MatmulJob {
            w,
            x,
            out,
            bias: None,
        }],
    );
}

#[cfg(x86_kernels)]
thread_local! {
    /// Each thread's weight rows unpacked for the AVX-512 tiles.
    static PREPARED: std::cell::RefCell<kernels::PreparedRows> =
        std::cell::RefCell::new(kernels::PreparedRows::default());
}

thread_local! {
    /// Each thread's f32 weight rows packed into panels.
    static PANELS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Tokens whose activations one chunk of weight rows works through before
/// the next: a multiple of four (the kernels' token group), and small enough
/// that a block of the widest activation rows stays in the L2 cache.
const TOKEN_BLOCK: usize = 64;

/// Matrix products run together in one parallel region, at most.
const MAX_PARTS: usize = 8;
/// Contiguous ranges of chunks handed to the participants of a region.
const MAX_REGIONS: usize = 16;

/// Runs several matrix products in one parallel region (several regions if
/// there are more than eight).
///
/// The chunks of rows are split into one contiguous range per participant:
/// each works through its own range from the front, so that its reads are
/// one stream the kernels' prefetching can run ahead on, then helps with the
/// others' ranges. A participant that never joins costs nothing but its
/// help.
pub fn matmuls(pool: &ThreadPool, isa: Isa, jobs: &mut [MatmulJob<'_>]) {
    matmuls_iter(
        pool,
        isa,
        jobs.iter_mut().map(|j| MatmulJob {
            w: j.w,
            x: j.x,
            out: &mut *j.out,
            bias: j.bias,
        }),
    );
}

/// [`matmuls`] over jobs made on the fly, so that a caller needs no vector
/// (the decode loop allocates nothing).
pub fn matmuls_iter<'a>(pool: &ThreadPool, isa: Isa, jobs: impl Iterator<Item = MatmulJob<'a>>) {
    let mut jobs = jobs.peekable();
    while jobs.peek().is_some() {
        let mut group: [Option<MatmulJob<'a>>; MAX_PARTS] = std::array::from_fn(|_| None);
        for slot in group.iter_mut() {
            *slot = jobs.next();
            if slot.is_none() {
                break;
            }
        }
        matmul_group(pool, isa, &mut group);
    }
}

fn matmul_group(pool: &ThreadPool, isa: Isa, jobs: &mut [Option<MatmulJob<'_>>]) {
    let isa = isa.usable();
    struct Part<'a> {
        w: WeightMatrix<'a>,
        x: ActRows<'a>,
        n_tokens: usize,
        out: SharedMut<f32>,
        bias: Option<&'a [f32]>,
        chunk: usize,
        first_chunk: usize,
        /// How f32 weights are packed, where they are.
        panels: Option<kernels::F32Panels>,
        /// The activations split for the AVX-512 tiles, when they apply.
        #[cfg(x86_kernels)]
        split: Option<&'a kernels::TileActs>,
    }
    let n_threads = pool.n_threads();
    let mut parts: [Option<Part<'_>>; MAX_PARTS] = std::array::from_fn(|_| None);
    let mut total_chunks = 0;
    let mut n_parts = 0;
    for (slot, job) in parts.iter_mut().zip(jobs.iter_mut().flatten()) {
        n_parts += 1;
        let n_tokens = job.x.n_rows();
        assert_eq!(
            job.w.cols, job.x.n,
            "matmul: weight columns and activation length differ"
        );
        assert!(
            job.out.len() >= n_tokens * job.w.rows,
            "matmul: output too small"
        );
        assert!(
            job.bias.is_none_or(|b| b.len() == job.w.rows),
            "matmul: bias of the wrong length"
        );
        // Aim for several chunks per thread so that claiming can balance.
        let tiles = kernels::has_tiles(isa, job.w.dtype, n_tokens);
        let chunk = (job.w.rows / (n_threads * 8))
            .clamp(1, 64)
            .max(if n_tokens > 1 || tiles { 4 } else { 1 });
        let panels = kernels::f32_panels(isa, job.w.dtype);
        // Tiles take four rows at a time, panels whole panels.
        let chunk = match panels {
            Some(panels) => (job.w.rows / (n_threads * 4))
                .next_multiple_of(panels.rows)
                .clamp(panels.rows, 4 * panels.rows),
            None if tiles => chunk.next_multiple_of(4),
            None => chunk,
        };
        let n_chunks = job.w.rows.div_ceil(chunk);
        *slot = Some(Part {
            w: job.w,
            x: job.x.rows(),
            n_tokens,
            out: SharedMut::new(job.out),
            bias: job.bias,
            chunk,
            first_chunk: total_chunks,
            panels,
            #[cfg(x86_kernels)]
            split: tiles.then_some(&job.x.split),
        });
        total_chunks += n_chunks;
    }
    let parts = &parts[..n_parts];
    let regions = n_threads.clamp(1, MAX_REGIONS).min(total_chunks.max(1));
    let bound = |k: usize| k * total_chunks / regions;
    let fronts: [AtomicUsize; MAX_REGIONS] = std::array::from_fn(|k| AtomicUsize::new(bound(k)));
    // The value written at row `r`: the product plus the row's bias, added
    // as the chunk writes it.
    let biased = |p: &Part<'_>, r: usize, v: f32| match p.bias {
        Some(b) => v + b[r],
        None => v,
    };
    let run_chunk = |c: usize| {
        let Some(p) = parts.iter().rev().flatten().find(|p| p.first_chunk <= c) else {
            return;
        };
        let r0 = (c - p.first_chunk) * p.chunk;
        let r1 = (r0 + p.chunk).min(p.w.rows);
        #[cfg(x86_kernels)]
        if let Some(split) = p.split {
            // With more than one tile of tokens, rows are unpacked once.
            let prepare = p.n_tokens > 4 && kernels::PreparedRows::supports(p.w.dtype);
            let mut tile = [[0f32; 4]; 4];
            let mut r = r0;
            while r < r1 {
                let nr = if r + 4 <= r1 { 4 } else { 1 };
                let rows: [&[u8]; 4] = std::array::from_fn(|k| p.w.row((r + k).min(r1 - 1)));
                if prepare {
                    PREPARED.with_borrow_mut(|prep| prep.prepare(p.w.dtype, &rows[..nr]));
                }
                let mut t = 0;
                while t < p.n_tokens {
                    let nt = (p.n_tokens - t).min(4);
                    if prepare {
                        PREPARED.with_borrow(|prep| prep.tile(split, t, nt, &mut tile));
                    } else {
                        kernels::tile(p.w.dtype, &rows[..nr], split, t, nt, &mut tile);
                    }
                    for (k, row) in tile[..nr].iter().enumerate() {
                        for (j, v) in row[..nt].iter().enumerate() {
                            // SAFETY: (t + j, r + k) is written by this chunk alone.
                            unsafe {
                                p.out.slice((t + j) * p.w.rows + r + k, 1)[0] = biased(p, r + k, *v)
                            };
                        }
                    }
                    t += nt;
                }
                r += nr;
            }
            return;
        }
        if let Some(panels) = p.panels {
            PANELS.with_borrow_mut(|buf| {
                let k_len = p.w.cols;
                let rows_at = |r: usize| -> [&[u8]; kernels::F32_PANEL_MAX_ROWS] {
                    std::array::from_fn(|j| p.w.row((r + j).min(r1 - 1)))
                };
                // Tokens `t0..t1` through the panel of rows `r..`.
                let run_panel = |panel: &[f32], r: usize, t0: usize, t1: usize| {
                    let nr = (r1 - r).min(panels.rows);
                    let mut tile =
                        [0f32; kernels::F32_PANEL_MAX_ROWS * kernels::F32_PANEL_MAX_TOKENS];
                    let mut t = t0;
                    while t < t1 {
                        let nt = (t1 - t).min(panels.tokens);
                        kernels::gemm_f32(isa, panels, panel, k_len, p.x, t, nt, &mut tile);
                        for (j, row) in tile.chunks_exact(panels.rows).take(nt).enumerate() {
                            // SAFETY: (t + j, r..r + nr) is written by this chunk alone.
                            let out = unsafe { p.out.slice((t + j) * p.w.rows + r, nr) };
                            match p.bias {
                                Some(b) => {
                                    for ((o, v), b) in out.iter_mut().zip(row).zip(&b[r..]) {
                                        *o = v + b;
                                    }
                                }
                                None => out.copy_from_slice(&row[..nr]),
                            }
                        }
                        t += nt;
                    }
                };
                let panel_len = panels.rows * k_len;
                if p.n_tokens <= TOKEN_BLOCK {
                    // Few tokens: each panel packed and used while it is in
                    // the nearest cache.
                    if buf.len() < panel_len {
                        buf.resize(panel_len, 0.0);
                    }
                    for r in (r0..r1).step_by(panels.rows) {
                        let nr = (r1 - r).min(panels.rows);
                        kernels::pack_f32_panel(isa, panels, &rows_at(r)[..nr], k_len, buf);
                        run_panel(&buf[..panel_len], r, 0, p.n_tokens);
                    }
                    return;
                }
                // Many: the chunk's rows packed once, then each block of
                // tokens through every panel while the block is in cache.
                let n_panels = (r1 - r0).div_ceil(panels.rows);
                if buf.len() < n_panels * panel_len {
                    buf.resize(n_panels * panel_len, 0.0);
                }
                for (i, r) in (r0..r1).step_by(panels.rows).enumerate() {
                    let nr = (r1 - r).min(panels.rows);
                    let panel = &mut buf[i * panel_len..(i + 1) * panel_len];
                    kernels::pack_f32_panel(isa, panels, &rows_at(r)[..nr], k_len, panel);
                }
                for block in (0..p.n_tokens).step_by(TOKEN_BLOCK) {
                    let block_end = (block + TOKEN_BLOCK).min(p.n_tokens);
                    for (i, panel) in buf.chunks_exact(panel_len).take(n_panels).enumerate() {
                        run_panel(panel, r0 + i * panels.rows, block, block_end);
                    }
                }
            });
            return;
        }
        let mut tmp = [0f32; 4];
        // Tokens in blocks, so that a block's activations stay in cache
        // while the chunk's rows pass over them, however many tokens there
        // are. Blocks are whole groups of four, so every output is the same
        // kernel call on the same rows as without blocks.
        let mut block = 0;
        while block < p.n_tokens {
            let block_end = (block + TOKEN_BLOCK).min(p.n_tokens);
            for r in r0..r1 {
                let w_row = p.w.row(r);
                if block == 0 {
                    for line in (0..w_row.len()).step_by(64) {
                        kernels::prefetch_ahead(w_row.as_ptr().wrapping_add(line));
                    }
                }
                let mut t = block;
                while t < block_end {
                    let nt = (block_end - t).min(4);
                    kernels::dot_rows_usable(
                        isa,
                        p.w.dtype,
                        p.w.cols,
                        w_row,
                        p.x,
                        t,
                        &mut tmp[..nt],
                    );
                    for (k, v) in tmp[..nt].iter().enumerate() {
                        // SAFETY: (t + k, r) is written by this chunk alone.
                        unsafe { p.out.slice((t + k) * p.w.rows + r, 1)[0] = biased(p, r, *v) };
                    }
                    t += nt;
                }
            }
            block = block_end;
        }
    };
    pool.run(&|index| {
        // Own range first, then the others' from their fronts.
        for step in 0..regions {
            let k = (index + step) % regions;
            let end = bound(k + 1);
            loop {
                let c = fronts[k].fetch_add(1, Ordering::Relaxed);
                if c >= end {
                    break;
                }
                run_chunk(c);
            }
        }
    });
}
