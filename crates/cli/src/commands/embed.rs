//! `lucid embed`: turn texts into vectors with an embedding model (or any
//! local model), pooled and normalized as the model's files say.
//!
//! Texts come from the arguments, or one per line from `--file` (`-` for
//! stdin). The default output is one line per text: its vector as
//! space-separated numbers. `--json` prints one object with every vector,
//! the pooling used and each text's token count and whether it was cut.

use std::io::{BufRead, Write};

use anyhow::Context;
use lucid_engine::ForwardCtx;
use lucid_engine::embed::ConfigSource;
use serde::Serialize;

use crate::local;

#[derive(clap::Args)]
pub struct Args {
    /// A catalog name (`all-minilm`) or a path to a model file or checkpoint.
    model: String,
    /// The texts to embed.
    texts: Vec<String>,
    /// Read the texts from a file, one per line (`-`: standard input).
    #[arg(long, short)]
    file: Option<String>,
    /// Print one JSON object with the vectors, the pooling and token counts.
    #[arg(long)]
    json: bool,
    /// Keep only the first N dimensions (and normalize again when the model
    /// normalizes), for models trained with Matryoshka loss.
    #[arg(long)]
    dimensions: Option<usize>,
    /// Threads for the forward pass (default: the cores available).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Serialize)]
struct Output<'a> {
    model: &'a str,
    pooling: &'static str,
    normalized: bool,
    /// Where the pooling settings came from.
    config: &'static str,
    dimensions: usize,
    embeddings: Vec<Item>,
    prompt_tokens: usize,
    seconds: f64,
}

#[derive(Serialize)]
struct Item {
    embedding: Vec<f32>,
    tokens: usize,
    truncated: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut texts = args.texts.clone();
    if let Some(path) = &args.file {
        texts.extend(read_lines(path)?);
    }
    anyhow::ensure!(
        !texts.is_empty(),
        "no text to embed: give texts as arguments or --file"
    );
    let model = local::load(&args.model)?;
    let threads = args.threads.unwrap_or_else(local::default_threads);
    let mut ctx = ForwardCtx::new(threads);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let mut embeddings = model
        .embed(&mut ctx, &refs)
        .with_context(|| format!("cannot embed with {}", args.model))?;
    let seconds = started.elapsed().as_secs_f64();
    let width = model.model.info().d_model;
    if let Some(dims) = args.dimensions {
        anyhow::ensure!(
            (1..=width).contains(&dims),
            "--dimensions {dims}: the model's vectors have {width}"
        );
        for e in &mut embeddings {
            lucid_engine::embed::truncate_dimensions(
                &mut e.vector,
                dims,
                model.embedding.normalize,
            );
        }
    }
    for (i, e) in embeddings.iter().enumerate() {
        if e.truncated {
            eprintln!(
                "note: text {} was cut to {} tokens, the model's limit",
                i + 1,
                e.n_tokens
            );
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let cfg = &model.embedding;
        let output = Output {
            model: &args.model,
            pooling: cfg.pooling.name(),
            normalized: cfg.normalize,
            config: match cfg.source {
                ConfigSource::SentenceTransformers => "sentence-transformers",
                ConfigSource::Gguf => "gguf",
                ConfigSource::Default => "default",
            },
            dimensions: args.dimensions.unwrap_or(width),
            prompt_tokens: embeddings.iter().map(|e| e.n_tokens).sum(),
            embeddings: embeddings
                .into_iter()
                .map(|e| Item {
                    tokens: e.n_tokens,
                    truncated: e.truncated,
                    embedding: e.vector,
                })
                .collect(),
            seconds,
        };
        serde_json::to_writer(&mut out, &output)?;
        writeln!(out)?;
    } else {
        for e in &embeddings {
            let line: Vec<String> = e.vector.iter().map(f32::to_string).collect();
            writeln!(out, "{}", line.join(" "))?;
        }
    }
    Ok(())
}

/// The lines of `path` (`-`: standard input), without their line endings.
fn read_lines(path: &str) -> anyhow::Result<Vec<String>> {
    let reader: Box<dyn BufRead> = if path == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
        Box::new(std::io::BufReader::new(file))
    };
    reader
        .lines()
        .map(|l| l.with_context(|| format!("cannot read {path}")))
        .collect()
}
