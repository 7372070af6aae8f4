//! Checking a model or a license against intended uses.
//!
//! A model is checked through its license id. An id the knowledge base does
//! not know (a custom license, `other`, nothing at all) gives
//! [`VerdictKind::Unknown`] for every use, with no clause: lucid never says
//! "allowed" for terms it has not read.

use crate::entry::ModelEntry;
use crate::license::{Clause, License, Licenses, Use, VerdictKind};

/// What to check: a catalog entry (through its license) or a license id.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Entry(&'a ModelEntry),
    License(&'a str),
}

impl Subject<'_> {
    /// The license id the subject is checked under.
    pub fn license_id(&self) -> &str {
        match self {
            Subject::Entry(entry) => entry.license.as_str(),
            Subject::License(id) => id,
        }
    }
}

impl<'a> From<&'a ModelEntry> for Subject<'a> {
    fn from(entry: &'a ModelEntry) -> Self {
        Subject::Entry(entry)
    }
}

impl<'a> From<&'a str> for Subject<'a> {
    fn from(id: &'a str) -> Self {
        Subject::License(id)
    }
}

/// The answer for one use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub use_: Use,
    pub verdict: VerdictKind,
    /// The clause the verdict rests on; `None` only for an unknown license.
    pub clause: Option<Clause>,
    /// What must be done for a conditional use (and, for some allowed or
    /// forbidden ones, the exceptions).
    pub conditions: Vec<String>,
}

impl Licenses {
    /// The license a subject is under, if the knowledge base knows it.
    pub fn resolve<'s>(&'s self, subject: Subject<'_>) -> Option<&'s License> {
        self.license(subject.license_id())
    }

    /// One verdict per use, in the order given.
    pub fn check<'a>(&self, subject: impl Into<Subject<'a>>, uses: &[Use]) -> Vec<Verdict> {
        let license = self.resolve(subject.into());
        uses.iter()
            .map(|&use_| match license.and_then(|l| l.term(use_)) {
                Some(term) => Verdict {
                    use_,
                    verdict: term.verdict,
                    clause: Some(term.clause.clone()),
                    conditions: term.conditions.clone(),
                },
                None => Verdict {
                    use_,
                    verdict: VerdictKind::Unknown,
                    clause: None,
                    conditions: Vec::new(),
                },
            })
            .collect()
    }
}

/// [`Licenses::check`] against the built-in knowledge base.
pub fn check<'a>(subject: impl Into<Subject<'a>>, uses: &[Use]) -> Vec<Verdict> {
    Licenses::builtin().check(subject, uses)
}
