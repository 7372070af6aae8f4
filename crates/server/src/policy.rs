//! The deployment's license policy (`intended_uses`), enforced where models
//! are loaded and where requests are routed.
//!
//! The verdicts come from `lucid-catalog`'s license knowledge base; this
//! module only decides which license a served or routed model is under
//! (its catalog entry, else the license its file declares, else the
//! vendor's API terms for `openai:`/`anthropic:`/`gemini:` names), turns a
//! refusal into a 403 that names the clause, and logs conditional uses once
//! per model with their conditions.

use std::collections::HashSet;
use std::sync::Mutex;

use axum::http::StatusCode;
use lucid_catalog::{Catalog, Policy, PolicyError, PolicyOutcome};
use lucid_engine::LoadedModel;
use lucid_providers::ModelRef;

use crate::error::ApiError;

/// A [`Policy`] and the models whose conditions were already logged.
#[derive(Debug, Default)]
pub struct LicensePolicy {
    policy: Policy,
    logged: Mutex<HashSet<String>>,
}

impl LicensePolicy {
    pub fn new(policy: Policy) -> LicensePolicy {
        LicensePolicy {
            policy,
            logged: Mutex::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn outcome_for_local(&self, name: &str, model: &LoadedModel) -> PolicyOutcome {
        match Catalog::builtin().find(name) {
            Some(entry) => self.policy.evaluate(entry),
            None => {
                let license = model.meta.license.as_deref().unwrap_or("unknown");
                self.policy.evaluate(license)
            }
        }
    }

    /// Whether a local model may be served: checked before the server starts.
    pub fn check_local(&self, name: &str, model: &LoadedModel) -> Result<(), PolicyError> {
        if self.policy.intended_uses.is_empty() {
            return Ok(());
        }
        let outcome = self.outcome_for_local(name, model);
        outcome.check(name)?;
        self.log_conditions(name, &outcome);
        Ok(())
    }

    /// Whether a request may be routed to a provider's model; a refusal is
    /// a 403 naming the use and the clause.
    pub fn check_remote(&self, model: &str) -> Result<(), ApiError> {
        if self.policy.intended_uses.is_empty() {
            return Ok(());
        }
        let parsed = ModelRef::parse(model).map_err(ApiError::from)?;
        let catalog = Catalog::builtin();
        let entry = catalog
            .find(model)
            .or_else(|| parsed.model().and_then(|m| catalog.find(m)));
        let outcome = match (entry, &parsed) {
            (Some(e), _) => self.policy.evaluate(e),
            (None, ModelRef::OpenAi { .. }) => self.policy.evaluate("openai-api-terms"),
            (None, ModelRef::Anthropic { .. }) => self.policy.evaluate("anthropic-api-terms"),
            (None, ModelRef::Gemini { .. }) => self.policy.evaluate("google-gemini-api-terms"),
            (None, _) => self.policy.evaluate("unknown"),
        };
        outcome.check(model).map_err(|e| ApiError {
            code: Some("license_forbids_use"),
            param: Some("model".into()),
            ..ApiError::new(StatusCode::FORBIDDEN, "permission_error", e.to_string())
        })?;
        self.log_conditions(model, &outcome);
        Ok(())
    }

    fn log_conditions(&self, model: &str, outcome: &PolicyOutcome) {
        if outcome.conditional.is_empty() && outcome.unknown.is_empty() {
            return;
        }
        let first = self
            .logged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(model.to_owned());
        if !first {
            return;
        }
        for (use_, conditions) in &outcome.conditional {
            tracing::warn!(
                model,
                license = %outcome.license,
                %use_,
                conditions = %conditions.join("; "),
                "the license permits this use on conditions"
            );
        }
        for use_ in &outcome.unknown {
            tracing::warn!(model, license = %outcome.license, %use_, "lucid does not know whether the license permits this use");
        }
    }
}
