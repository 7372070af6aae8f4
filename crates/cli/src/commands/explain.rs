//! `lucid explain`: show what the model does with a prompt: tokens, next-token probabilities, attention, logit lens.
//! Given an embedding model (or `--semantic`) and several texts, it shows
//! the semantic view instead: how similar the model finds the texts, each
//! one's nearest neighbours, and what each token adds to a pair's
//! similarity.
//!
//! The analyses are `lucid-glass`'s; this module only renders their trace
//! or semantic view for a terminal (or prints it as JSON with `--json`, the
//! glass box's one wire format). Colours are used only when stdout is a terminal and `NO_COLOR`
//! is not set; token texts are always shown escaped (`"\n"`), so a token can
//! neither break the layout nor send escape sequences to the terminal.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use anyhow::{Context, bail};
use lucid_engine::{LoadedModel, ModelRole, SamplingParams};
use lucid_glass::{
    AttentionMap, ExplainOptions, Lens, Limits, PairContributions, Pairs, Semantic,
    SemanticOptions, Step, Trace,
};
use serde::Serialize;

use crate::local;

#[derive(clap::Args)]
pub struct Args {
    /// A catalog name (`smollm2`, `gemma3`, `all-minilm`) or a path to a model file.
    model: String,
    /// The text to explain, read as it is (see `--chat`); for an embedding
    /// model (or with `--semantic`), two texts or more to compare.
    #[arg(required = true, value_name = "TEXT")]
    texts: Vec<String>,
    /// Compare the texts as the model embeds them (the semantic view), for
    /// a model that generates text; embedding models always do.
    #[arg(long)]
    semantic: bool,
    /// Semantic view: show what each token adds to the similarity of texts
    /// A and B (counted from 0, as `A,B`; repeatable) instead of the most
    /// similar pair.
    #[arg(long, value_name = "A,B")]
    pair: Vec<String>,
    /// Semantic view: token contributions of every pair of texts.
    #[arg(long, conflicts_with = "pair")]
    all_pairs: bool,
    /// Semantic view: include each text's vector in the JSON.
    #[arg(long)]
    vectors: bool,
    /// How many tokens to predict, one step each.
    #[arg(long, default_value_t = 1)]
    max_tokens: usize,
    /// How many candidates to show per step.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Show the attention of layer L, head H (both from 0), as `L.H`.
    #[arg(long, value_name = "L.H")]
    attention: Option<String>,
    /// Show the logit lens: what each layer would predict.
    #[arg(long)]
    lens: bool,
    /// Tokens per logit-lens cell in the JSON.
    #[arg(long, default_value_t = 3)]
    lens_top_k: usize,
    /// How many most-attended earlier tokens to list per step (0: none).
    #[arg(long, default_value_t = 5)]
    attended: usize,
    /// Print the whole trace as JSON.
    #[arg(long)]
    json: bool,
    /// Put the prompt in the model's chat template as a user message.
    #[arg(long)]
    chat: bool,
    /// Sample instead of choosing the most probable token (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Seed for reproducible sampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Threads for the forward pass (default: the cores available).
    #[arg(long)]
    threads: Option<usize>,
}

/// The JSON printed by `--json`: the trace, with the model's name and the
/// prompt as given.
#[derive(Serialize)]
struct JsonOutput<'a> {
    model_name: &'a str,
    prompt: &'a str,
    #[serde(flatten)]
    trace: &'a Trace,
}

/// The JSON printed by `--json` for the semantic view: the view, with the
/// model's name.
#[derive(Serialize)]
struct SemanticJson<'a> {
    model_name: &'a str,
    #[serde(flatten)]
    semantic: &'a Semantic,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let attention = args
        .attention
        .as_deref()
        .map(parse_layer_head)
        .transpose()?;
    let pairs = args
        .pair
        .iter()
        .map(|p| parse_pair(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let model = local::load(&args.model)?;
    let threads = args.threads.unwrap_or_else(local::default_threads);
    if args.semantic || model.model.role() == ModelRole::Encoder {
        for (flag, given) in [
            ("--lens", args.lens),
            ("--attention", args.attention.is_some()),
            ("--chat", args.chat),
        ] {
            if given {
                bail!("{flag} does not apply to the semantic view of several texts");
            }
        }
        let pairs = if args.all_pairs {
            Pairs::All
        } else if pairs.is_empty() {
            Pairs::Nearest
        } else {
            Pairs::These(pairs)
        };
        return run_semantic(&args, &model, pairs, threads);
    }
    if args.texts.len() > 1 {
        bail!(
            "explain reads one prompt, and {} generates text: to compare {} texts as it \
             embeds them, add --semantic",
            args.model,
            args.texts.len()
        );
    }
    for (flag, given) in [
        ("--pair", !pairs.is_empty()),
        ("--all-pairs", args.all_pairs),
        ("--vectors", args.vectors),
    ] {
        if given {
            bail!("{flag} belongs to the semantic view: add --semantic and give two texts or more");
        }
    }
    let text = args.texts.first().map_or("", String::as_str);
    let prompt = lucid_glass::prompt_tokens(&model, text, args.chat)?;
    let options = ExplainOptions {
        max_tokens: args.max_tokens,
        top_k: args.top_k,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: args.seed,
            ..SamplingParams::default()
        },
        attention_layers: attention.map(|(l, _)| vec![l]).unwrap_or_default(),
        attention_heads: attention.map(|(_, h)| vec![h]),
        attended: args.attended,
        lens: args.lens,
        lens_top_k: args.lens_top_k,
        ..ExplainOptions::default()
    };
    let trace = lucid_glass::explain(&model, &prompt, &options, &Limits::none(), threads)
        .with_context(|| format!("cannot explain the prompt with {}", args.model))?;
    let mut out = std::io::stdout().lock();
    let result = if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &JsonOutput {
                model_name: &args.model,
                prompt: text,
                trace: &trace,
            },
        )
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
    } else {
        let style = Style::detect();
        out.write_all(render(&args.model, &model, &trace, style, terminal_width()).as_bytes())
    };
    finish(result)
}

fn finish(result: std::io::Result<()>) -> anyhow::Result<()> {
    match result {
        // A reader that went away (`lucid explain … | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// The semantic view of `args.texts`, printed.
fn run_semantic(
    args: &Args,
    model: &LoadedModel,
    pairs: Pairs,
    threads: usize,
) -> anyhow::Result<()> {
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let options = SemanticOptions {
        pairs,
        vectors: args.vectors,
    };
    let view = lucid_glass::semantic(model, &texts, &options, &Limits::none(), threads)
        .with_context(|| format!("cannot compare the texts with {}", args.model))?;
    let mut out = std::io::stdout().lock();
    let result = if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &SemanticJson {
                model_name: &args.model,
                semantic: &view,
            },
        )
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
    } else {
        // Every pair when they were asked for, else the most similar.
        let all = args.all_pairs || !args.pair.is_empty();
        let text = render_semantic(&args.model, &view, all, Style::detect(), terminal_width());
        out.write_all(text.as_bytes())
    };
    finish(result)
}

/// `0,2` → texts 0 and 2.
fn parse_pair(s: &str) -> anyhow::Result<(usize, usize)> {
    let parsed = s
        .split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    match parsed {
        Some(ab) => Ok(ab),
        None => bail!("--pair takes A,B, two texts counted from 0 (like 0,2), not {s:?}"),
    }
}

/// `3.5` → layer 3, head 5.
fn parse_layer_head(s: &str) -> anyhow::Result<(usize, usize)> {
    let parsed = s
        .split_once('.')
        .and_then(|(l, h)| Some((l.trim().parse().ok()?, h.trim().parse().ok()?)));
    match parsed {
        Some(lh) => Ok(lh),
        None => bail!("--attention takes LAYER.HEAD, both counted from 0 (like 3.5), not {s:?}"),
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&w: &usize| w >= 40)
        .unwrap_or(100)
}

/// ANSI colours, or none.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Style {
    color: bool,
}

impl Style {
    fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: !no_color && std::io::stdout().is_terminal(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// Alternating backgrounds, so token boundaries show.
    fn token(&self, i: usize, text: &str) -> String {
        const BACKGROUNDS: [&str; 4] = ["48;5;24", "48;5;58", "48;5;53", "48;5;22"];
        if self.color {
            self.paint(&format!("97;{}", BACKGROUNDS[i % BACKGROUNDS.len()]), text)
        } else {
            format!("[{text}]")
        }
    }

    /// A signed share as a colour: green for more of the similarity, red
    /// for less (a token pointing away from the other text), brighter the
    /// larger `share` (the value over the largest magnitude shown).
    fn signed(&self, share: f32, text: &str) -> String {
        const GREEN: [u8; 5] = [242, 108, 71, 41, 46];
        const RED: [u8; 5] = [242, 131, 167, 203, 196];
        let ramp = if share < 0.0 { RED } else { GREEN };
        let i = (share.abs().clamp(0.0, 1.0) * (ramp.len() - 1) as f32).round() as usize;
        self.paint(&format!("38;5;{}", ramp[i]), text)
    }

    /// A probability as a colour from dim grey to bright green.
    fn heat(&self, p: f32, text: &str) -> String {
        const RAMP: [u8; 6] = [240, 244, 107, 112, 118, 46];
        let i = ((p.clamp(0.0, 1.0) * (RAMP.len() - 1) as f32).round()) as usize;
        self.paint(&format!("38;5;{}", RAMP[i]), text)
    }
}

/// A token's text made safe and visible on one line: escaped like a Rust
/// string, without the quotes.
fn visible(text: &str) -> String {
    let quoted = format!("{text:?}");
    quoted[1..quoted.len() - 1].to_string()
}

/// Like [`visible`], with spaces as `·`, for cells where a leading space
/// would read as padding.
fn compact(text: &str) -> String {
    visible(text).replace(' ', "·")
}

/// `text` cut or padded to `width` characters.
fn fit(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        format!("{text}{}", " ".repeat(width - n))
    } else {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// A bar of `width` cells for a fraction, in eighths of a cell.
fn bar(fraction: f32, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (fraction.clamp(0.0, 1.0) * (width * 8) as f32).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        s.push(PARTS[eighths % 8]);
    }
    let n = s.chars().count();
    s.push_str(&" ".repeat(width.saturating_sub(n)));
    s
}

/// The whole terminal view of a trace.
fn render(name: &str, model: &LoadedModel, trace: &Trace, style: Style, width: usize) -> String {
    let mut out = String::new();
    let m = &trace.model;
    let _ = writeln!(
        out,
        "{} {}",
        style.bold(name),
        style.dim(&format!(
            "({}, {} layers, {} heads, d_model {}, vocabulary {})",
            m.architecture, m.n_layers, m.n_heads, m.d_model, m.vocab_size
        ))
    );
    render_tokens(&mut out, trace, style);
    for (i, step) in trace.steps.iter().enumerate() {
        render_step(&mut out, trace, i, step, style);
    }
    if trace.steps.len() > 1 {
        let _ = writeln!(
            out,
            "\n{} {:?}",
            style.bold("Completion:"),
            trace.completion
        );
    }
    for map in &trace.attention {
        render_attention(&mut out, trace, map, style);
    }
    if let Some(lens) = &trace.lens {
        render_lens(&mut out, trace, lens, style, width);
    }
    let _ = writeln!(
        out,
        "\n{}",
        style.dim(&format!(
            "{:.0} ms ({:.0} ms forward, {:.0} ms lens) · stop: {:?} · {}",
            trace.timings.total_ms,
            trace.timings.forward_ms,
            trace.timings.lens_ms,
            trace.stop,
            model.meta.name
        ))
    );
    out
}

fn render_tokens(out: &mut String, trace: &Trace, style: Style) {
    let _ = writeln!(out, "\n{} ({})", style.bold("Tokens"), trace.tokens.len());
    let mut text = String::new();
    for (i, t) in trace.tokens.iter().enumerate() {
        text.push_str(&style.token(i, &visible(&t.text)));
    }
    let _ = writeln!(out, "  {text}");
    let mut line = String::from("  ");
    let mut len = 2;
    for (i, t) in trace.tokens.iter().enumerate() {
        let cell = format!("{i}:{} ", t.id);
        if len + cell.len() > 100 {
            let _ = writeln!(out, "{}", style.dim(line.trim_end()));
            line = String::from("  ");
            len = 2;
        }
        len += cell.len();
        line.push_str(&cell);
    }
    let _ = writeln!(out, "{}", style.dim(line.trim_end()));
}

/// The text of the token read at `position` (prompt or chosen earlier).
fn token_at(trace: &Trace, position: usize) -> String {
    match trace.tokens.get(position) {
        Some(t) => t.text.clone(),
        None => trace
            .steps
            .get(position - trace.tokens.len())
            .map(|s| s.chosen.text.clone())
            .unwrap_or_default(),
    }
}

fn render_step(out: &mut String, trace: &Trace, i: usize, step: &Step, style: Style) {
    let c = &step.chosen;
    let _ = writeln!(
        out,
        "\n{} after {:?} (position {}): chose {} {}",
        style.bold(&format!("Step {}", i + 1)),
        token_at(trace, step.position),
        step.position,
        style.bold(&format!("{:?}", c.text)),
        style.dim(&format!(
            "p={:.3} rank {} · entropy {:.2} nats",
            c.prob, c.rank, step.entropy
        )),
    );
    let max = step.top.first().map_or(1.0, |t| t.prob).max(1e-9);
    for (r, t) in step.top.iter().enumerate() {
        let mark = if t.id == c.id { "▶" } else { " " };
        let _ = writeln!(
            out,
            "  {mark}{:>3}  {}  {:>7}  {:>6.2}%  {}",
            r + 1,
            fit(&format!("{:?}", t.text), 18),
            t.id,
            t.prob * 100.0,
            style.heat(t.prob, &bar(t.prob / max, 30)),
        );
    }
    if !step.attended.is_empty() {
        let list: Vec<String> = step
            .attended
            .iter()
            .map(|a| format!("{:?}@{} {:.2}", a.text, a.position, a.weight))
            .collect();
        let _ = writeln!(out, "  {} {}", style.dim("attended most:"), list.join(", "));
    }
}

fn render_attention(out: &mut String, trace: &Trace, map: &AttentionMap, style: Style) {
    let n = map.queries;
    let Some(last) = n.checked_sub(1).and_then(|q| map.row(q)) else {
        return;
    };
    let _ = writeln!(
        out,
        "\n{} {}",
        style.bold(&format!("Attention, layer {} head {}", map.layer, map.head)),
        style.dim(&format!(
            "— what position {} ({:?}) attends to",
            n - 1,
            token_at(trace, n - 1)
        ))
    );
    let max = last.iter().copied().fold(0f32, f32::max).max(1e-9);
    for (k, &w) in last.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>4}  {}  {:>6.3}  {}",
            k,
            fit(&format!("{:?}", token_at(trace, k)), 18),
            w,
            style.heat(w, &bar(w / max, 30)),
        );
    }
    // A small heatmap of the whole map, when it fits: rows are queries,
    // columns keys, darker means more attention.
    if n <= 48 {
        const SHADES: [char; 5] = [' ', '░', '▒', '▓', '█'];
        let _ = writeln!(out, "  {}", style.dim("heatmap (rows attend to columns):"));
        for q in 0..n {
            let row = map.row(q).unwrap_or(&[]);
            let cells: String = row
                .iter()
                .map(|&w| SHADES[((w.clamp(0.0, 1.0) * 4.0).round()) as usize])
                .flat_map(|c| [c, c])
                .collect();
            let _ = writeln!(
                out,
                "  {} {:>4} │{cells}│",
                fit(&compact(&token_at(trace, q)), 12),
                q
            );
        }
    }
}

fn render_lens(out: &mut String, trace: &Trace, lens: &Lens, style: Style, width: usize) {
    const CELL: usize = 16;
    const LABEL: usize = 8;
    let _ = writeln!(
        out,
        "\n{} {}",
        style.bold("Logit lens"),
        style.dim("— each layer's residual stream through the final norm and unembedding: top token and probability")
    );
    // As many of the last positions as fit the terminal.
    let fit_n = ((width.saturating_sub(LABEL + 2)) / CELL).max(1);
    let cols = &lens.positions[lens.positions.len().saturating_sub(fit_n)..];
    if cols.len() < lens.positions.len() {
        let _ = writeln!(
            out,
            "  {}",
            style.dim(&format!(
                "(the last {} of {} positions; --json has them all)",
                cols.len(),
                lens.positions.len()
            ))
        );
    }
    let mut header = format!("  {}", " ".repeat(LABEL));
    for c in cols {
        header.push_str(&fit(
            &format!("{}:{}", c.position, compact(&token_at(trace, c.position))),
            CELL,
        ));
    }
    let _ = writeln!(out, "{}", style.bold(header.trim_end()));
    for (li, name) in lens.layers.iter().enumerate().rev() {
        let label = match name.strip_prefix("blocks.").and_then(|r| r.split_once('.')) {
            Some((l, _)) => format!("L{l}"),
            None => name.clone(),
        };
        let mut line = format!("  {}", fit(&label, LABEL));
        for c in cols {
            match c.layers.get(li).and_then(|cell| cell.first()) {
                Some(t) => {
                    let text = fit(&format!("{} {:.2}", compact(&t.text), t.prob), CELL);
                    line.push_str(&style.heat(t.prob, &text));
                }
                None => line.push_str(&" ".repeat(CELL)),
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// The terminal view of a semantic analysis: the texts, the similarity
/// matrix, each text's nearest neighbours, and what each token adds to the
/// most similar pair's similarity (every computed pair with `all_pairs`).
fn render_semantic(
    name: &str,
    view: &Semantic,
    all_pairs: bool,
    style: Style,
    width: usize,
) -> String {
    let mut out = String::new();
    let m = &view.model;
    let e = &view.embedding;
    let _ = writeln!(
        out,
        "{} {}",
        style.bold(name),
        style.dim(&format!(
            "({}, {} pooling{}, at most {} tokens a text, {} layers, d_model {})",
            m.architecture,
            e.pooling.name(),
            if e.normalized { ", normalized" } else { "" },
            e.max_tokens,
            m.n_layers,
            m.d_model
        ))
    );
    let _ = writeln!(out, "\n{}", style.bold("Texts"));
    let snippet = width.saturating_sub(36).max(20);
    for (i, t) in view.texts.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>3}  {}  {}",
            label(i),
            fit(&format!("{:?}", t.text), snippet),
            style.dim(&format!(
                "{} tokens{} · norm {:.4}",
                t.tokens.len(),
                if t.truncated { " (cut)" } else { "" },
                t.norm
            ))
        );
    }
    render_matrix(&mut out, view, style, width);
    let _ = writeln!(
        out,
        "\n{} {}",
        style.bold("Nearest neighbours"),
        style.dim("— most similar first")
    );
    for (i, t) in view.texts.iter().enumerate() {
        let list: Vec<String> = t
            .neighbours
            .iter()
            .take(3)
            .map(|n| format!("{} {:.4}", label(n.index), n.similarity))
            .collect();
        let _ = writeln!(out, "  {:>3} → {}", label(i), list.join(", "));
    }
    let shown: &[PairContributions] = if all_pairs {
        &view.pairs
    } else {
        view.pairs.get(..1).unwrap_or(&[])
    };
    for p in shown {
        render_pair(&mut out, view, p, style, width);
    }
    if !all_pairs && view.pairs.len() > 1 {
        let _ = writeln!(
            out,
            "  {}",
            style
                .dim("(--pair A,B or --all-pairs for other pairs; --json has every pair computed)")
        );
    }
    let _ = writeln!(
        out,
        "\n{}",
        style.dim(&format!(
            "{:.0} ms ({:.0} ms forward, {:.1} ms analysis)",
            view.timings.total_ms, view.timings.forward_ms, view.timings.analysis_ms
        ))
    );
    out
}

/// A text's short label: `#0`, `#1`, …
fn label(i: usize) -> String {
    format!("#{i}")
}

/// The similarity matrix as a table, in blocks of as many columns as fit.
fn render_matrix(out: &mut String, view: &Semantic, style: Style, width: usize) {
    const CELL: usize = 8;
    let n = view.similarity.len();
    let _ = writeln!(
        out,
        "\n{} {}",
        style.bold("Similarity"),
        style.dim("— cosine of the texts' vectors (1: same direction)")
    );
    let per_block = (width.saturating_sub(8) / CELL).max(1);
    let mut first = 0;
    while first < n {
        let cols = first..(first + per_block).min(n);
        let mut header = " ".repeat(7);
        for j in cols.clone() {
            header.push_str(&format!("{:>CELL$}", label(j)));
        }
        let _ = writeln!(out, "{}", style.bold(&header));
        for (i, row) in view.similarity.iter().enumerate() {
            let mut line = format!("  {:>4} ", label(i));
            for j in cols.clone() {
                let v = row.get(j).copied().unwrap_or(0.0);
                let cell = format!("{v:>CELL$.4}");
                line.push_str(&if i == j {
                    style.dim(&cell)
                } else {
                    style.heat(v, &cell)
                });
            }
            let _ = writeln!(out, "{line}");
        }
        first = cols.end;
    }
}

/// Why two texts are similar: each one's tokens with what they add.
fn render_pair(
    out: &mut String,
    view: &Semantic,
    p: &PairContributions,
    style: Style,
    width: usize,
) {
    let _ = writeln!(
        out,
        "\n{} {}",
        style.bold(&format!(
            "Why {} and {} are similar ({:.4})",
            label(p.a),
            label(p.b),
            p.similarity
        )),
        style.dim("— what each token adds; each text's tokens sum to the similarity")
    );
    let max = p
        .a_contributions
        .iter()
        .chain(&p.b_contributions)
        .fold(0f32, |m, c| m.max(c.abs()))
        .max(1e-12);
    for (index, contributions) in [(p.a, &p.a_contributions), (p.b, &p.b_contributions)] {
        let Some(text) = view.texts.get(index) else {
            continue;
        };
        let sum: f64 = contributions.iter().map(|&c| f64::from(c)).sum();
        let _ = writeln!(
            out,
            "  {} {}",
            style.bold(&label(index)),
            style.dim(&format!("(sum {sum:.4})"))
        );
        let mut line = String::from("    ");
        let mut len = 4;
        for (t, &c) in text.tokens.iter().zip(contributions.iter()) {
            let word = compact(&t.text);
            let number = format!("{c:+.4}");
            let cell_len = word.chars().count() + 1 + number.len() + 2;
            if len + cell_len > width && len > 4 {
                let _ = writeln!(out, "{}", line.trim_end());
                line = String::from("    ");
                len = 4;
            }
            len += cell_len;
            line.push_str(&style.signed(c / max, &word));
            line.push(' ');
            line.push_str(&style.dim(&number));
            line.push_str("  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_head_parses() {
        assert_eq!(parse_layer_head("3.5").ok(), Some((3, 5)));
        assert!(parse_layer_head("3").is_err());
        assert!(parse_layer_head("a.b").is_err());
    }

    #[test]
    fn pairs_parse() {
        assert_eq!(parse_pair("0,2").ok(), Some((0, 2)));
        assert_eq!(parse_pair(" 1 , 3 ").ok(), Some((1, 3)));
        assert!(parse_pair("1").is_err());
        assert!(parse_pair("a,b").is_err());
    }

    #[test]
    fn bars_and_fits() {
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.0, 4), "    ");
        assert_eq!(bar(0.5, 3).chars().count(), 3);
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("ab", 4), "ab  ");
        assert_eq!(visible(" a\n\u{1b}"), " a\\n\\u{1b}");
    }
}
