//! A deployment's declared uses, and whether a model's license permits them.
//!
//! This is what a server enforces: its configuration says what the models it
//! serves will be used for (`intended_uses = ["commercial", "distill"]`), and
//! before it loads a model or routes a request to one it calls
//! [`Policy::evaluate`]. A model whose license forbids a declared use is
//! refused with [`PolicyError`], which names the clause; conditional uses come
//! back with their conditions, for the server to log once per model; unknown
//! licenses are refused only when [`Policy::refuse_unknown`] is set.
//!
//! ```
//! use lucid_catalog::{Catalog, Policy, Use};
//!
//! let policy = Policy { intended_uses: vec![Use::Distill], refuse_unknown: false };
//! let gemma = Catalog::builtin().find("gemma3").unwrap();
//! let outcome = policy.evaluate(gemma);
//! assert!(outcome.refused.is_empty());
//! assert_eq!(outcome.conditional[0].0, Use::Distill);
//!
//! let llama3 = Policy { intended_uses: vec![Use::Distill], refuse_unknown: false }
//!     .evaluate("llama3");
//! assert!(llama3.check("some-llama-3-model").is_err());
//! ```

use serde::Deserialize;

use crate::check::Subject;
use crate::error::PolicyError;
use crate::license::{Clause, Licenses, Use, VerdictKind};

/// The uses a deployment declares, as a server reads them from its config.
///
/// It deserializes from `intended_uses = ["commercial", "distill"]` and an
/// optional `refuse_unknown = true`; unknown keys are not rejected, so a
/// server may `#[serde(flatten)]` it into its own config table (an unknown
/// *use* is still an error that lists the valid ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Policy {
    /// What the served models will be used for.
    #[serde(default)]
    pub intended_uses: Vec<Use>,
    /// Refuse models whose license lucid does not know (or whose terms for a
    /// declared use it has not recorded). Off by default: such models are
    /// reported in [`PolicyOutcome::unknown`] and let through.
    #[serde(default)]
    pub refuse_unknown: bool,
}

/// What the policy makes of one model's license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// The license id the model is under.
    pub license: String,
    /// Declared uses the license forbids, with the clause that forbids each.
    pub refused: Vec<(Use, Clause)>,
    /// Declared uses the license permits on conditions, with the conditions.
    pub conditional: Vec<(Use, Vec<String>)>,
    /// Declared uses on which lucid has no verdict.
    pub unknown: Vec<Use>,
    refuse_unknown: bool,
}

impl Policy {
    /// Evaluates the declared uses against the built-in knowledge base.
    pub fn evaluate<'a>(&self, subject: impl Into<Subject<'a>>) -> PolicyOutcome {
        self.evaluate_with(Licenses::builtin(), subject)
    }

    /// Evaluates the declared uses against `licenses`.
    pub fn evaluate_with<'a>(
        &self,
        licenses: &Licenses,
        subject: impl Into<Subject<'a>>,
    ) -> PolicyOutcome {
        let subject = subject.into();
        let mut outcome = PolicyOutcome {
            license: subject.license_id().to_owned(),
            refused: Vec::new(),
            conditional: Vec::new(),
            unknown: Vec::new(),
            refuse_unknown: self.refuse_unknown,
        };
        for verdict in licenses.check(subject, &self.intended_uses) {
            match (verdict.verdict, verdict.clause) {
                (VerdictKind::Forbidden, Some(clause)) => {
                    outcome.refused.push((verdict.use_, clause));
                }
                (VerdictKind::Conditional, _) => {
                    outcome.conditional.push((verdict.use_, verdict.conditions));
                }
                (VerdictKind::Allowed, _) => {}
                (VerdictKind::Unknown, _) | (VerdictKind::Forbidden, None) => {
                    outcome.unknown.push(verdict.use_);
                }
            }
        }
        outcome
    }
}

impl PolicyOutcome {
    /// Whether the model must not be loaded or routed to.
    pub fn is_refused(&self) -> bool {
        !self.refused.is_empty() || (self.refuse_unknown && !self.unknown.is_empty())
    }

    /// `Ok` when the model may be used; otherwise the error to show, naming
    /// `model`, the use and the clause.
    pub fn check(&self, model: &str) -> Result<(), PolicyError> {
        if let Some((use_, clause)) = self.refused.first() {
            return Err(PolicyError::Forbidden {
                model: model.to_owned(),
                license: self.license.clone(),
                use_: *use_,
                clause: Box::new(clause.clone()),
            });
        }
        if self.refuse_unknown
            && let Some(use_) = self.unknown.first()
        {
            return Err(PolicyError::Unknown {
                model: model.to_owned(),
                license: self.license.clone(),
                use_: *use_,
            });
        }
        Ok(())
    }
}
