//! `lucid license`: show a model's license, or check it against intended uses.
//!
//! `lucid license show MODEL` prints the license with a verdict, clause and
//! conditions for every use; `lucid license check MODEL --use a,b` prints only
//! the uses asked about, as text or (`--json`) as
//! `{"model", "license", "verdicts": [{"use", "verdict", "clause", "conditions"}]}`.
//!
//! MODEL is a catalog name or alias, a path to a model file or directory
//! (described from its own metadata), or a license id (`apache-2.0`).
//!
//! Exit status of `check`: 0 when no use is forbidden (allowed, conditional
//! and unknown uses all exit 0; unknown ones get a warning on stderr), 3 when
//! at least one use is forbidden, 1 on errors (an unknown model), 2 for bad
//! arguments (an unknown use). A distinct code lets scripts tell "forbidden"
//! from "could not check".

use std::io::Write;
use std::path::Path;

use anyhow::bail;
use lucid_catalog::{
    Catalog, Licenses, LocalDescription, ModelEntry, Use, Verdict, VerdictKind, describe_local,
};
use serde::Serialize;

/// The exit status of `lucid license check` when a use is forbidden.
pub const FORBIDDEN_EXIT: i32 = 3;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Show a model's license: its documents and a verdict for every use.
    Show {
        /// A catalog name or alias, a path to a model file or directory, or a license id.
        model: String,
    },
    /// Check a model's license against intended uses; exits 3 if one is forbidden.
    Check {
        /// A catalog name or alias, a path to a model file or directory, or a license id.
        model: String,
        /// Comma-separated uses: commercial, redistribute-weights, modify,
        /// distill, over-700m-mau, prohibited-domain.
        #[arg(long = "use", value_name = "USES", required = true, value_parser = parse_uses)]
        uses: Vec<Vec<Use>>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_uses(s: &str) -> Result<Vec<Use>, String> {
    Use::parse_list(s).map_err(|e| e.to_string())
}

/// What a MODEL argument turned out to be.
pub(crate) enum Target {
    /// A catalog model.
    Entry(&'static ModelEntry),
    /// A file or directory on disk.
    Local(Box<LocalDescription>),
    /// A license id given directly.
    License(String),
}

impl Target {
    /// The name to show for the model.
    pub(crate) fn name(&self, arg: &str) -> String {
        match self {
            Target::Entry(entry) => entry.name.clone(),
            Target::Local(_) | Target::License(_) => arg.to_owned(),
        }
    }

    /// The license id the model is under, if any is known.
    pub(crate) fn license_id(&self) -> Option<String> {
        match self {
            Target::Entry(entry) => Some(entry.license.to_string()),
            Target::Local(local) => local.license_id(),
            Target::License(id) => Some(id.clone()),
        }
    }
}

/// Resolves a MODEL argument: an existing path first, then a catalog name,
/// then a license id.
pub(crate) fn resolve(model: &str) -> anyhow::Result<Target> {
    if !model.is_empty() && Path::new(model).exists() {
        return Ok(Target::Local(Box::new(describe_local(model)?)));
    }
    let catalog = Catalog::builtin();
    if let Some(entry) = catalog.find(model) {
        return Ok(Target::Entry(entry));
    }
    if let Some(license) = Licenses::builtin().license(model) {
        return Ok(Target::License(license.id.to_string()));
    }
    let suggestions = catalog.suggest(model);
    match suggestions.as_slice() {
        [] => bail!("unknown model `{model}`: not a catalog name, a path or a license id"),
        [one] => bail!("unknown model `{model}`; did you mean `{one}`?"),
        many => bail!(
            "unknown model `{model}`; did you mean one of {}?",
            many.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Show { model } => show(&model),
        Command::Check { model, uses, json } => {
            let mut all: Vec<Use> = Vec::new();
            for u in uses.into_iter().flatten() {
                if !all.contains(&u) {
                    all.push(u);
                }
            }
            let forbidden = check(&model, &all, json)?;
            if forbidden {
                std::process::exit(FORBIDDEN_EXIT);
            }
            Ok(())
        }
    }
}

/// The `--json` shape of `lucid license check`.
#[derive(Serialize)]
struct CheckJson {
    model: String,
    license: Option<String>,
    verdicts: Vec<VerdictJson>,
}

#[derive(Serialize)]
struct VerdictJson {
    #[serde(rename = "use")]
    use_: &'static str,
    verdict: &'static str,
    clause: Option<String>,
    conditions: Vec<String>,
}

/// Prints the verdicts and says whether any use is forbidden.
fn check(model: &str, uses: &[Use], json: bool) -> anyhow::Result<bool> {
    let target = resolve(model)?;
    let license_id = target.license_id();
    let verdicts = match &license_id {
        Some(id) => lucid_catalog::check(id.as_str(), uses),
        // No license at all: every use is unknown.
        None => lucid_catalog::check("", uses),
    };
    let forbidden = verdicts.iter().any(|v| v.verdict == VerdictKind::Forbidden);
    warn_unknown(license_id.as_deref(), &verdicts);
    let mut out = std::io::stdout().lock();
    if json {
        let doc = CheckJson {
            model: target.name(model),
            license: license_id,
            verdicts: verdicts
                .iter()
                .map(|v| VerdictJson {
                    use_: v.use_.as_str(),
                    verdict: v.verdict.as_str(),
                    clause: v.clause.as_ref().map(ToString::to_string),
                    conditions: v.conditions.clone(),
                })
                .collect(),
        };
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(forbidden);
    }
    writeln!(out, "{}", heading(&target, model, license_id.as_deref()))?;
    for v in &verdicts {
        write_verdict(&mut out, v)?;
    }
    Ok(forbidden)
}

fn show(model: &str) -> anyhow::Result<()> {
    let target = resolve(model)?;
    let license_id = target.license_id();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", heading(&target, model, license_id.as_deref()))?;
    if let Some(license) = license_id
        .as_deref()
        .and_then(|id| Licenses::builtin().license(id))
    {
        writeln!(out, "  {}", license.url)?;
        for doc in &license.documents {
            let carried = match (&doc.file, &doc.not_carried) {
                (Some(file), _) => format!("text in {file}"),
                (None, Some(why)) => format!("not carried: {why}"),
                (None, None) => String::new(),
            };
            writeln!(out, "  - {} <{}> ({carried})", doc.title, doc.url)?;
        }
    }
    writeln!(out)?;
    let verdicts = match &license_id {
        Some(id) => lucid_catalog::check(id.as_str(), &Use::ALL),
        None => lucid_catalog::check("", &Use::ALL),
    };
    writeln!(out, "{:<22}{:<13}CLAUSE", "USE", "VERDICT")?;
    for v in &verdicts {
        write_verdict(&mut out, v)?;
    }
    warn_unknown(license_id.as_deref(), &verdicts);
    Ok(())
}

/// `gemma3: Gemma Terms of Use (gemma)`, or what is known of a local file.
fn heading(target: &Target, arg: &str, license_id: Option<&str>) -> String {
    let name = target.name(arg);
    let license = match license_id {
        None => "no license in its metadata".to_owned(),
        Some(id) => match Licenses::builtin().license(id) {
            Some(l) => format!("{} ({})", l.name, l.id),
            None => format!("`{id}` (not in lucid's license knowledge base)"),
        },
    };
    match target {
        Target::Local(local) => {
            let matched = local
                .entry
                .map(|e| format!(", the catalog model `{}`", e.name))
                .unwrap_or_default();
            let source = local
                .license_source
                .map(|s| format!(" [from {s}]"))
                .unwrap_or_default();
            format!("{name}{matched}: {license}{source}")
        }
        Target::Entry(_) | Target::License(_) => format!("{name}: {license}"),
    }
}

fn write_verdict(out: &mut impl Write, v: &Verdict) -> std::io::Result<()> {
    let clause = v.clause.as_ref().map_or_else(
        || "no clause: the license is unknown".to_owned(),
        |c| {
            let checked = if c.text_checked() {
                ""
            } else {
                " [cited by URL, text not checked]"
            };
            format!("{} §{}{checked}", c.document(), c.section)
        },
    );
    writeln!(
        out,
        "{:<22}{:<13}{clause}",
        v.use_.as_str(),
        v.verdict.as_str()
    )?;
    if let Some(c) = &v.clause {
        writeln!(out, "{:35}{}", "", c.summary)?;
    }
    for condition in &v.conditions {
        writeln!(out, "{:35}- {condition}", "")?;
    }
    Ok(())
}

fn warn_unknown(license_id: Option<&str>, verdicts: &[Verdict]) {
    if verdicts.iter().any(|v| v.verdict == VerdictKind::Unknown) {
        let which =
            license_id.map_or_else(|| "this model's license".to_owned(), |id| format!("`{id}`"));
        eprintln!(
            "warning: lucid does not know what {which} says about some of these uses; read the license before relying on them"
        );
    }
}
