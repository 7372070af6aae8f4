//! `lucid quantize`: write a model as a GGUF file with its matrices
//! converted to another type.
//!
//! The input is a GGUF file, a Hugging Face checkpoint directory, or a name
//! the local store or the catalog knows. A checkpoint is written under the
//! names and metadata keys of llama.cpp's converter for its family, with its
//! tokenizer, so that llama.cpp can load the result where it knows the
//! family. The engine does the work (`lucid_engine::quantize`); this module
//! only parses arguments and reports.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lucid_engine::quantize::{TARGETS, parse_target, quantize_file};
use lucid_store::Store;

use crate::progress::Bar;

#[derive(clap::Args)]
pub struct Args {
    /// The model to convert: a GGUF file, a Hugging Face checkpoint
    /// directory, or a catalog name.
    input: String,
    /// The GGUF file to write.
    output: PathBuf,
    /// The type of the matrices: q8_0, q4_k, f16, bf16, f32, q5_0, q5_1,
    /// q4_0 or q4_1. Norms, biases and position embeddings stay as they are.
    #[arg(long = "type", short = 't', default_value = "q8_0")]
    target: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let target = parse_target(&args.target).with_context(|| {
        let known: Vec<String> = TARGETS.iter().map(|t| t.name().to_lowercase()).collect();
        format!(
            "unknown type '{}': choose one of {}",
            args.target,
            known.join(", ")
        )
    })?;
    let input = resolve(&args.input)?;
    let summary = quantize_file(&input, &args.output, target)
        .with_context(|| format!("cannot convert {}", input.display()))?;
    let types: Vec<String> = summary
        .types
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    eprintln!(
        "wrote {} ({}, {} tensors: {}, {:.1} MiB)",
        args.output.display(),
        summary.architecture,
        summary.n_tensors,
        types.join(", "),
        summary.output_bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// A path as given, or a model the store has or pulls from the catalog.
fn resolve(input: &str) -> anyhow::Result<PathBuf> {
    if Path::new(input).exists() {
        return Ok(PathBuf::from(input));
    }
    let store = Store::open_default()?;
    let bar = Bar::default();
    let resolved = store.ensure(input, &bar);
    bar.clear();
    Ok(resolved
        .with_context(|| format!("{input} is neither a file, a directory nor a known model"))?
        .path)
}
