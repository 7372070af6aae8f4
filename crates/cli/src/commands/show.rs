//! `lucid show`: describe a model in plain words — its architecture and
//! sizes, the tensor types its file uses, and its license.

use lucid_engine::LoadedModel;
use lucid_engine::memory::human;

use crate::local;

#[derive(clap::Args)]
pub struct Args {
    /// A catalog name or a path to a model file.
    model: String,
    /// The context length to size the memory for (default: the model's).
    #[arg(long)]
    ctx_size: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let local = local::load_local(&args.model)?;
    print!("{}", describe(&local.model, args.ctx_size));
    // A user model (`lucid create`): what it is made from, its settings
    // and its license notes.
    for (name, user) in &local.made_from {
        println!("{:<22}{}", format!("{name} made from"), user.from);
        if let Some(system) = &user.system {
            println!("{:<22}{system}", "  system message");
        }
        if let Some(t) = user.parameters.temperature {
            println!("{:<22}{t}", "  temperature");
        }
        if let Some(p) = user.parameters.top_p {
            println!("{:<22}{p}", "  top_p");
        }
        if user.template.is_some() {
            println!("{:<22}its own", "  chat template");
        }
        if let Some(note) = &user.license_note {
            println!("{:<22}{note}", "  license note");
        }
    }
    Ok(())
}

/// The description `lucid show` prints.
pub fn describe(model: &LoadedModel, ctx_size: Option<usize>) -> String {
    let i = model.model.info();
    let m = &model.meta;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22}{v}\n"));
    line("model", m.name.clone());
    line(
        "file",
        format!("{} ({})", m.path.display(), human(m.file_size)),
    );
    line(
        "architecture",
        format!("{} (decoder-only transformer)", i.architecture),
    );
    line(
        "parameters",
        format!("{} ({:.0}M)", m.n_params, m.n_params as f64 / 1e6),
    );
    line("layers", i.n_layers.to_string());
    line("hidden size", i.d_model.to_string());
    line("feed-forward size", i.d_ff.to_string());
    let grouping = if i.n_kv_heads == i.n_heads {
        "multi-head attention".to_string()
    } else if i.n_kv_heads == 1 {
        "multi-query attention".to_string()
    } else {
        format!(
            "grouped-query attention, {} query heads per key/value head",
            i.n_heads / i.n_kv_heads
        )
    };
    line(
        "attention heads",
        format!(
            "{} query, {} key/value ({grouping})",
            i.n_heads, i.n_kv_heads
        ),
    );
    line("head size", i.head_dim.to_string());
    line("context length", format!("{} tokens", i.context_length));
    line("vocabulary", format!("{} tokens", i.vocab_size));
    // One sequence's cache at the context asked for (the model's own by
    // default).
    let cache = model.model.new_cache(ctx_size);
    line(
        "KV cache",
        format!(
            "{} per token ({:?})",
            human(cache.bytes_per_position() as u64),
            cache.precision()
        ),
    );
    // What running it takes: the mapped file and that cache.
    let kv = (cache.bytes_per_position() * cache.limit()) as u64;
    let available = lucid_engine::memory::available()
        .ok()
        .flatten()
        .map_or_else(String::new, |a| format!("; {} available", human(a)));
    line(
        "memory",
        format!(
            "{} ({} weights + {} KV cache for {} tokens){available}",
            human(m.file_size + kv),
            human(m.file_size),
            human(kv),
            cache.limit()
        ),
    );
    let types = m
        .tensor_types
        .iter()
        .map(|(t, n, b)| format!("{t} × {n} ({})", human(*b)))
        .collect::<Vec<_>>()
        .join(", ");
    line("tensor types", types);
    line(
        "license",
        m.license
            .clone()
            .unwrap_or_else(|| "not stated in the file".into()),
    );
    line(
        "chat template",
        if model.template.is_fallback {
            format!(
                "none in the file ({} is used)",
                model.template.fallback_name
            )
        } else {
            "from the file".into()
        },
    );
    out
}
