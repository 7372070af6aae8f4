//! The license knowledge base: for each license, what it says about each
//! [`Use`], with the clause the verdict rests on.
//!
//! The knowledge lives in data, one TOML document per license under
//! `catalog/licenses/`; this module gives it types and checks that it holds
//! together. Each verdict cites one or more passages ([`Citation`]) of the
//! license's documents. Where the repository carries a document's text
//! (`licenses/` at the root), a citation quotes it and a test finds every
//! quote in that text; where it cannot carry the text, the citation says so
//! with `text_checked = false`, so nothing passes as checked that was not.
//!
//! A license this base does not know gets [`VerdictKind::Unknown`] for every
//! use, never `Allowed`: see [`Licenses::check`](crate::Licenses::check).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer};

use crate::builtin::LICENSES;
use crate::entry::LicenseId;
use crate::error::{LicenseError, UseParseError};

/// Something one may want to do with a model, that licenses allow, restrict
/// or forbid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Use {
    /// Using the model in a commercial product or service.
    Commercial,
    /// Giving copies of the weights to others.
    RedistributeWeights,
    /// Modifying or fine-tuning the model.
    Modify,
    /// Using the model's outputs to train or improve another model
    /// (distillation, synthetic data).
    Distill,
    /// Serving products with more than 700 million monthly active users.
    #[serde(rename = "over-700m-mau")]
    Over700mMau,
    /// Using the model in a domain the license prohibits (its acceptable-use
    /// or prohibited-use policy).
    ProhibitedDomain,
}

impl Use {
    /// Every use, in the order tables show them.
    pub const ALL: [Use; 6] = [
        Use::Commercial,
        Use::RedistributeWeights,
        Use::Modify,
        Use::Distill,
        Use::Over700mMau,
        Use::ProhibitedDomain,
    ];

    /// The name used in data files, on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Use::Commercial => "commercial",
            Use::RedistributeWeights => "redistribute-weights",
            Use::Modify => "modify",
            Use::Distill => "distill",
            Use::Over700mMau => "over-700m-mau",
            Use::ProhibitedDomain => "prohibited-domain",
        }
    }

    /// A short description for help texts.
    pub fn description(self) -> &'static str {
        match self {
            Use::Commercial => "use in a commercial product or service",
            Use::RedistributeWeights => "give copies of the weights to others",
            Use::Modify => "modify or fine-tune the model",
            Use::Distill => "use its outputs to train or improve another model",
            Use::Over700mMau => "serve more than 700 million monthly active users",
            Use::ProhibitedDomain => "use it in a domain the license prohibits",
        }
    }

    /// Parses a comma-separated list such as `commercial,distill`. Spaces
    /// around names are ignored and repeated names count once.
    pub fn parse_list(list: &str) -> Result<Vec<Use>, UseParseError> {
        let mut uses = Vec::new();
        for name in list.split(',') {
            let u: Use = name.trim().parse()?;
            if !uses.contains(&u) {
                uses.push(u);
            }
        }
        Ok(uses)
    }
}

impl FromStr for Use {
    type Err = UseParseError;

    fn from_str(s: &str) -> Result<Use, UseParseError> {
        Use::ALL
            .into_iter()
            .find(|u| u.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UseParseError {
                input: s.to_owned(),
            })
    }
}

impl fmt::Display for Use {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a license says about a use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// Permitted without conditions beyond the license applying.
    Allowed,
    /// Permitted if the listed conditions are met.
    Conditional,
    /// Not permitted (at least not without a separate agreement).
    Forbidden,
    /// lucid does not know: an unknown license, or terms it has not recorded.
    Unknown,
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Allowed => "allowed",
            VerdictKind::Conditional => "conditional",
            VerdictKind::Forbidden => "forbidden",
            VerdictKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One document of a license: the agreement itself, or a policy it
/// incorporates (an acceptable-use policy).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseDocument {
    /// How citations name the document (`license`, `aup`).
    pub key: String,
    pub title: String,
    pub url: String,
    /// The text carried in the repository, relative to its root.
    #[serde(default)]
    pub file: Option<String>,
    /// Why the text is not carried, when it is not.
    #[serde(default)]
    pub not_carried: Option<String>,
}

/// A passage of a license document that a verdict rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Citation {
    /// The [`LicenseDocument::key`] of the document.
    pub document: String,
    /// The document's title.
    pub title: String,
    pub url: String,
    /// The carried text the quotes are found in, relative to the repository
    /// root; `None` when the text is not carried.
    pub file: Option<String>,
    /// Section, paragraph or heading, as the document numbers it.
    pub section: String,
    /// Phrases quoted from the document, found in `file` by a test (after
    /// collapsing whitespace and straightening typographic quotes).
    pub quotes: Vec<String>,
    /// Whether the quotes were checked against the text: `false` when the
    /// text is not carried and the citation rests on its URL alone.
    pub text_checked: bool,
}

/// The clause a verdict rests on: where it is and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The license the clause belongs to.
    pub license: LicenseId,
    /// The section of the main citation (`1.b.v`, `3.2`).
    pub section: String,
    /// A short paraphrase of what the clause means for the use.
    pub summary: String,
    /// The passages cited, the main one first.
    pub citations: Vec<Citation>,
}

impl Clause {
    /// The title of the document of the main citation.
    pub fn document(&self) -> &str {
        self.citations.first().map_or("", |c| c.title.as_str())
    }

    /// Whether every citation was checked against a carried text.
    pub fn text_checked(&self) -> bool {
        self.citations.iter().all(|c| c.text_checked)
    }
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} §{}: {}", self.document(), self.section, self.summary)
    }
}

/// What one license says about one use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub verdict: VerdictKind,
    pub clause: Clause,
    /// Obligations that come with the use: notices, attribution, naming rules,
    /// use restrictions to pass on.
    pub conditions: Vec<String>,
}

/// A license and what it says about every [`Use`].
#[derive(Debug, Clone)]
pub struct License {
    pub id: LicenseId,
    pub name: String,
    /// The SPDX identifier, for licenses on the SPDX list.
    pub spdx: Option<String>,
    /// Other spellings of the id, as model cards and GGUF files write it.
    pub aliases: Vec<String>,
    pub url: String,
    pub documents: Vec<LicenseDocument>,
    terms: BTreeMap<Use, Term>,
}

impl License {
    /// What the license says about `use_`. Every use is defined for every
    /// license in the base (the loader checks it).
    pub fn term(&self, use_: Use) -> Option<&Term> {
        self.terms.get(&use_)
    }

    /// Every use with its term, in [`Use::ALL`] order.
    pub fn terms(&self) -> impl Iterator<Item = (Use, &Term)> {
        self.terms.iter().map(|(u, t)| (*u, t))
    }

    /// Whether `name` is this license's id or one of its aliases, ignoring
    /// ASCII case and surrounding spaces.
    pub fn answers_to(&self, name: &str) -> bool {
        let name = name.trim();
        self.id.as_str().eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// The set of known licenses.
#[derive(Debug, Clone)]
pub struct Licenses {
    licenses: Vec<License>,
}

impl Licenses {
    /// The knowledge base compiled into this binary.
    pub fn builtin() -> &'static Licenses {
        static BUILTIN: OnceLock<Licenses> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // The documents are part of the source tree and this crate's tests
            // load every one, so a failure here is a bug in the build.
            Licenses::from_documents(LICENSES.iter().copied())
                .unwrap_or_else(|e| panic!("the built-in license knowledge base is invalid: {e}"))
        })
    }

    /// Parses and validates license documents given as `(origin, toml)`
    /// pairs, one license per document.
    pub fn from_documents<'a>(
        documents: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Licenses, LicenseError> {
        let mut licenses = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for (origin, text) in documents {
            let doc: LicenseDoc = toml::from_str(text).map_err(|e| LicenseError::Parse {
                origin: origin.to_owned(),
                source: Box::new(e),
            })?;
            let license = doc
                .into_license()
                .map_err(|problem| LicenseError::Invalid {
                    origin: origin.to_owned(),
                    problem,
                })?;
            let names = std::iter::once(license.id.as_str())
                .chain(license.aliases.iter().map(String::as_str));
            for name in names {
                let first = seen.insert(name.to_ascii_lowercase(), license.id.to_string());
                if let Some(first) = first.filter(|f| f != license.id.as_str()) {
                    return Err(LicenseError::DuplicateName {
                        name: name.to_owned(),
                        first,
                        second: license.id.to_string(),
                    });
                }
            }
            licenses.push(license);
        }
        Ok(Licenses { licenses })
    }

    /// The license whose id or alias is `id`, ignoring ASCII case.
    pub fn license(&self, id: &str) -> Option<&License> {
        self.licenses.iter().find(|l| l.answers_to(id))
    }

    /// Every license, in knowledge-base order.
    pub fn iter(&self) -> impl Iterator<Item = &License> {
        self.licenses.iter()
    }
}

/// The TOML shape of a license document.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LicenseDoc {
    id: LicenseId,
    name: String,
    #[serde(default)]
    spdx: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    url: String,
    documents: Vec<LicenseDocument>,
    uses: BTreeMap<Use, UseDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UseDoc {
    verdict: VerdictKind,
    section: String,
    summary: String,
    #[serde(default)]
    document: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    quote: Vec<String>,
    #[serde(default)]
    text_checked: Option<bool>,
    #[serde(default)]
    conditions: Vec<String>,
    #[serde(default)]
    also: Vec<CitationDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CitationDoc {
    #[serde(default)]
    document: Option<String>,
    section: String,
    #[serde(default, deserialize_with = "one_or_many")]
    quote: Vec<String>,
    #[serde(default)]
    text_checked: Option<bool>,
}

/// A `quote` may be one string or a list of them.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl LicenseDoc {
    fn into_license(self) -> Result<License, String> {
        if self.name.trim().is_empty() || self.url.trim().is_empty() {
            return Err("name and url must not be empty".to_owned());
        }
        if self.documents.is_empty() {
            return Err("a license needs at least one document".to_owned());
        }
        for (i, doc) in self.documents.iter().enumerate() {
            if self.documents[..i].iter().any(|d| d.key == doc.key) {
                return Err(format!("document `{}` is listed twice", doc.key));
            }
            match (&doc.file, &doc.not_carried) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(format!(
                        "document `{}` needs exactly one of `file` (the carried text) and `not_carried` (why not)",
                        doc.key
                    ));
                }
            }
        }
        if let Some(missing) = Use::ALL.iter().find(|u| !self.uses.contains_key(u)) {
            return Err(format!("use `{missing}` has no verdict"));
        }
        let mut terms = BTreeMap::new();
        for (use_, doc) in self.uses {
            let main = CitationDoc {
                document: doc.document,
                section: doc.section.clone(),
                quote: doc.quote,
                text_checked: doc.text_checked,
            };
            let citations = std::iter::once(main)
                .chain(doc.also)
                .map(|c| citation(&self.documents, c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("use `{use_}`: {e}"))?;
            if doc.summary.trim().is_empty() {
                return Err(format!("use `{use_}` has an empty summary"));
            }
            if doc.verdict == VerdictKind::Conditional && doc.conditions.is_empty() {
                return Err(format!(
                    "use `{use_}` is conditional but lists no conditions"
                ));
            }
            let clause = Clause {
                license: self.id.clone(),
                section: doc.section,
                summary: doc.summary,
                citations,
            };
            terms.insert(
                use_,
                Term {
                    verdict: doc.verdict,
                    clause,
                    conditions: doc.conditions,
                },
            );
        }
        Ok(License {
            id: self.id,
            name: self.name,
            spdx: self.spdx,
            aliases: self.aliases,
            url: self.url,
            documents: self.documents,
            terms,
        })
    }
}

/// Resolves a citation's document and checks that it is quoted when its text
/// is carried, and marked unchecked when it is not.
fn citation(documents: &[LicenseDocument], c: CitationDoc) -> Result<Citation, String> {
    let doc = match &c.document {
        Some(key) => documents
            .iter()
            .find(|d| &d.key == key)
            .ok_or_else(|| format!("cites unknown document `{key}`"))?,
        // A license has at least one document (checked before).
        None => documents.first().ok_or("no documents")?,
    };
    let text_checked = match (&doc.file, c.text_checked) {
        (Some(_), Some(false)) => {
            return Err(format!(
                "the text of `{}` is carried, so its citations must quote it rather than be unchecked",
                doc.key
            ));
        }
        (Some(_), _) if c.quote.is_empty() => {
            return Err(format!(
                "cites `{}` §{} without a quote from its carried text",
                doc.key, c.section
            ));
        }
        (Some(_), _) => true,
        (None, Some(false)) if c.quote.is_empty() => false,
        (None, Some(false)) => {
            return Err(format!(
                "quotes `{}`, whose text is not carried, so the quote cannot be checked",
                doc.key
            ));
        }
        (None, _) => {
            return Err(format!(
                "cites `{}`, whose text is not carried: say `text_checked = false`",
                doc.key
            ));
        }
    };
    if c.quote.iter().any(|q| q.trim().is_empty()) {
        return Err("has an empty quote".to_owned());
    }
    Ok(Citation {
        document: doc.key.clone(),
        title: doc.title.clone(),
        url: doc.url.clone(),
        file: doc.file.clone(),
        section: c.section,
        quotes: c.quote,
        text_checked,
    })
}

/// Collapses whitespace and straightens typographic quotes, so that a quote
/// written on one line is found in a text that wraps it, and a quote typed
/// with ASCII quotes matches a text that uses curly ones.
pub fn normalize_text(text: &str) -> String {
    let straightened = text.chars().map(|c| match c {
        '\u{2018}' | '\u{2019}' => '\'',
        '\u{201c}' | '\u{201d}' => '"',
        c => c,
    });
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in straightened {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}
