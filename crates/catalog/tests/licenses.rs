//! The license knowledge base against a table written here, and every cited
//! clause against the license text the repository carries.
//!
//! The table below is the specification: each license × use has the verdict a
//! careful reading of the license gives, written by hand rather than read back
//! from the data, so that a change to the data that changes a verdict fails
//! here and has to be made on purpose in both places.

// A failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use lucid_catalog::{
    Catalog, Licenses, Policy, PolicyError, Use, VerdictKind, check, normalize_text,
};

use VerdictKind::{Allowed as A, Conditional as C, Forbidden as F, Unknown as U};

/// Columns: commercial, redistribute-weights, modify, distill, over-700m-mau,
/// prohibited-domain.
const TABLE: &[(&str, [VerdictKind; 6])] = &[
    ("apache-2.0", [A, C, A, A, A, A]),
    ("mit", [A, C, A, A, A, A]),
    ("gpl-3.0", [A, C, A, A, A, A]),
    ("cc-by-4.0", [A, C, A, A, A, A]),
    ("cc-by-nc-4.0", [F, C, C, C, C, C]),
    // Llama 2 and 3: 1.b.v forbids improving other LLMs with Llama outputs;
    // section 2 withholds every right above 700M monthly active users.
    ("llama2", [C, C, C, F, F, F]),
    ("llama3", [C, C, C, F, F, F]),
    // Llama 3.1 and 3.2 dropped 1.b.v: training on outputs is allowed if the
    // resulting model's name starts with "Llama" (1.b.i).
    ("llama3.1", [C, C, C, C, F, F]),
    ("llama3.2", [C, C, C, C, F, F]),
    // Gemma: a model trained on Gemma outputs is a Model Derivative (1.1(e)),
    // allowed but bound by the Gemma Terms; no user threshold.
    ("gemma", [C, C, C, C, A, F]),
    ("bigscience-bloom-rail-1.0", [C, C, C, C, A, F]),
    // Qwen: commercial use above 100M monthly active users needs a license.
    ("qwen", [C, C, C, C, F, A]),
    ("qwen-research", [F, C, C, C, C, U]),
    ("openai-api-terms", [C, F, C, C, U, F]),
    ("anthropic-api-terms", [C, F, U, C, U, F]),
    ("google-gemini-api-terms", [C, F, C, C, U, F]),
];

/// The licenses some of whose citations rest on a URL alone, because the
/// repository cannot carry their text. Anything else must be checked.
const NOT_TEXT_CHECKED: &[&str] = &[
    "qwen-research",
    "openai-api-terms",
    "anthropic-api-terms",
    "google-gemini-api-terms",
];

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn every_license_and_use_has_the_verdict_of_the_table() {
    let licenses = Licenses::builtin();
    let known: Vec<&str> = licenses.iter().map(|l| l.id.as_str()).collect();
    let tabled: Vec<&str> = TABLE.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        known, tabled,
        "the knowledge base and the table list different licenses"
    );
    for (id, expected) in TABLE {
        let verdicts = check(*id, &Use::ALL);
        for (verdict, want) in verdicts.iter().zip(expected) {
            assert_eq!(
                verdict.verdict, *want,
                "{id} × {}: {:?}",
                verdict.use_, verdict.clause
            );
            assert!(
                verdict.clause.is_some(),
                "{id} × {} has no clause",
                verdict.use_
            );
        }
    }
}

#[test]
fn every_cited_quote_is_in_the_carried_text() {
    let mut checked = 0;
    for license in Licenses::builtin().iter() {
        for doc in &license.documents {
            if let Some(file) = &doc.file {
                assert!(
                    repo_root().join(file).is_file(),
                    "{}: {file} is missing",
                    license.id
                );
            }
        }
        for (use_, term) in license.terms() {
            for citation in &term.clause.citations {
                // A citation is checked exactly when its document's text is
                // carried; an unchecked one must say so.
                assert_eq!(
                    citation.text_checked,
                    citation.file.is_some(),
                    "{} × {use_}",
                    license.id
                );
                let Some(file) = &citation.file else {
                    assert!(
                        NOT_TEXT_CHECKED.contains(&license.id.as_str()),
                        "{} × {use_} cites {} without checking it",
                        license.id,
                        citation.url
                    );
                    let doc = license
                        .documents
                        .iter()
                        .find(|d| d.key == citation.document)
                        .unwrap();
                    assert!(doc.not_carried.is_some());
                    continue;
                };
                let text =
                    normalize_text(&std::fs::read_to_string(repo_root().join(file)).unwrap());
                assert!(!citation.quotes.is_empty(), "{} × {use_}", license.id);
                for quote in &citation.quotes {
                    assert!(
                        text.contains(&normalize_text(quote)),
                        "{} × {use_}: not found in {file}: {quote:?}",
                        license.id
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} quotes checked");
}

#[test]
fn key_clauses() {
    // (license, use, section the verdict rests on, words in its summary)
    for (id, use_, section, words) in [
        ("gemma", Use::Distill, "1.1(e)", "Model Derivative"),
        ("gemma", Use::RedistributeWeights, "3.1", "Notice file"),
        (
            "gemma",
            Use::ProhibitedDomain,
            "3.2",
            "Prohibited Use Policy",
        ),
        (
            "llama2",
            Use::Distill,
            "1.b.v",
            "any other large language model",
        ),
        (
            "llama3",
            Use::Distill,
            "1.b.v",
            "any other large language model",
        ),
        ("llama3.1", Use::Distill, "1.b.i", "\"Llama\""),
        ("llama3.2", Use::Distill, "1.b.i", "\"Llama\""),
        ("llama2", Use::Over700mMau, "2", "700 million"),
        ("llama3.2", Use::Over700mMau, "2", "700 million"),
        ("llama3", Use::Modify, "1.a, 1.b.i", "\"Llama 3\""),
        ("qwen", Use::Over700mMau, "4", "100 million"),
        (
            "cc-by-nc-4.0",
            Use::Commercial,
            "1(i), 2(a)(1)",
            "NonCommercial",
        ),
        ("apache-2.0", Use::Commercial, "2", "royalty-free"),
        (
            "google-gemini-api-terms",
            Use::Distill,
            "Use Restrictions",
            "compete",
        ),
    ] {
        let v = check(id, &[use_]).remove(0);
        let clause = v.clause.unwrap();
        assert!(
            clause.section.starts_with(section),
            "{id} × {use_}: §{}",
            clause.section
        );
        assert!(
            clause.summary.contains(words),
            "{id} × {use_}: {}",
            clause.summary
        );
    }
}

#[test]
fn unknown_licenses_are_unknown_for_every_use() {
    for id in [
        "other",
        "proprietary",
        "cc-by-sa-4.0",
        "",
        "totally-made-up",
    ] {
        for v in check(id, &Use::ALL) {
            assert_eq!(v.verdict, VerdictKind::Unknown, "{id} × {}", v.use_);
            assert!(v.clause.is_none());
            assert!(v.conditions.is_empty());
        }
    }
}

#[test]
fn licenses_are_found_by_alias_ignoring_case() {
    let licenses = Licenses::builtin();
    for (name, id) in [
        ("Apache-2.0", "apache-2.0"),
        ("apache2", "apache-2.0"),
        ("MIT", "mit"),
        ("llama3_2", "llama3.2"),
        ("Llama-3.1", "llama3.1"),
        ("GEMMA", "gemma"),
        (" gemma ", "gemma"),
        ("bigscience-rail-1.0", "bigscience-bloom-rail-1.0"),
        ("gpl-3.0-only", "gpl-3.0"),
    ] {
        assert_eq!(
            licenses.license(name).map(|l| l.id.as_str()),
            Some(id),
            "{name}"
        );
    }
}

#[test]
fn every_catalog_model_has_a_known_license() {
    for entry in Catalog::builtin().models() {
        assert!(
            Licenses::builtin()
                .license(entry.license.as_str())
                .is_some(),
            "{} is under `{}`, which the knowledge base does not know",
            entry.name,
            entry.license
        );
    }
}

#[test]
fn models_are_checked_through_their_license() {
    let catalog = Catalog::builtin();
    for (model, use_, want) in [
        ("smollm2", Use::Commercial, A),
        ("gemma3", Use::Distill, C),
        ("gemma3", Use::ProhibitedDomain, F),
        ("qwen2.5-3b-instruct", Use::Commercial, F),
        ("qwen2.5-7b-instruct", Use::Commercial, A),
        ("qwen2.5-72b-instruct", Use::Over700mMau, F),
        ("llama-3.2-1b-instruct", Use::Over700mMau, F),
        ("llama-3.2-1b-instruct", Use::Distill, C),
        ("gpt2", Use::Distill, A),
        ("pythia-12b", Use::Commercial, A),
        ("gpt-4o", Use::RedistributeWeights, F),
        ("claude-3-5-haiku-latest", Use::Over700mMau, U),
        ("apertus-8b-instruct", Use::Commercial, A),
    ] {
        let entry = catalog.find(model).unwrap();
        assert_eq!(check(entry, &[use_])[0].verdict, want, "{model} × {use_}");
    }
}

#[test]
fn uses_parse_with_a_clear_error() {
    assert_eq!(
        Use::parse_list("commercial, distill,commercial").unwrap(),
        [Use::Commercial, Use::Distill]
    );
    assert_eq!(
        Use::parse_list("Over-700M-MAU").unwrap(),
        [Use::Over700mMau]
    );
    let err = Use::parse_list("commercial,training").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown use `training`; valid uses are `commercial`, `redistribute-weights`, \
         `modify`, `distill`, `over-700m-mau`, `prohibited-domain`"
    );
    assert!(Use::parse_list("").is_err());
}

#[test]
fn policy_refuses_forbidden_uses_with_the_clause() {
    let catalog = Catalog::builtin();
    let policy = Policy {
        intended_uses: vec![Use::Commercial, Use::Distill],
        refuse_unknown: false,
    };
    // SmolLM2 (Apache-2.0): nothing to refuse or to log.
    let outcome = policy.evaluate(catalog.find("smollm2").unwrap());
    assert!(!outcome.is_refused());
    assert!(outcome.conditional.is_empty() && outcome.unknown.is_empty());
    // Gemma 3: both conditional, with conditions to log.
    let outcome = policy.evaluate(catalog.find("gemma3").unwrap());
    assert!(!outcome.is_refused());
    let uses: Vec<Use> = outcome.conditional.iter().map(|(u, _)| *u).collect();
    assert_eq!(uses, [Use::Commercial, Use::Distill]);
    assert!(outcome.conditional.iter().all(|(_, c)| !c.is_empty()));
    // Qwen2.5-3B: non-commercial research license, refused with its clause.
    let outcome = policy.evaluate(catalog.find("qwen2.5-3b-instruct").unwrap());
    assert!(outcome.is_refused());
    let err = outcome.check("qwen2.5-3b-instruct").unwrap_err();
    assert!(matches!(
        err,
        PolicyError::Forbidden {
            use_: Use::Commercial,
            ..
        }
    ));
    // Llama 3 forbids distillation into other models: 1.b.v.
    let err = policy.evaluate("llama3").check("some-llama-3").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("`distill`"), "{message}");
    assert!(message.contains("§1.b.v"), "{message}");
    // Unknown licenses pass unless the policy refuses them.
    let outcome = policy.evaluate("other");
    assert!(!outcome.is_refused());
    assert_eq!(outcome.unknown, [Use::Commercial, Use::Distill]);
    let strict = Policy {
        refuse_unknown: true,
        ..policy
    };
    assert!(strict.evaluate("other").check("x").is_err());
}

#[test]
fn policy_reads_from_a_server_config() {
    let policy: Policy =
        toml::from_str(r#"intended_uses = ["commercial", "over-700m-mau"]"#).unwrap();
    assert_eq!(policy.intended_uses, [Use::Commercial, Use::Over700mMau]);
    assert!(!policy.refuse_unknown);
    let err = toml::from_str::<Policy>(r#"intended_uses = ["training"]"#).unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
}

#[test]
fn invalid_license_documents_are_rejected() {
    let good = std::fs::read_to_string(repo_root().join("catalog/licenses/mit.toml")).unwrap();
    assert!(Licenses::from_documents([("mit.toml", good.as_str())]).is_ok());
    for (from, to, expect) in [
        ("[uses.modify]", "[uses.modification]", "unknown variant"),
        (
            "verdict = \"allowed\"",
            "verdict = \"maybe\"",
            "unknown variant",
        ),
        (
            "quote = \"the rights to use, copy, modify, merge\"",
            "text_checked = false",
            "must quote it",
        ),
        (
            "quote = \"the rights to use, copy, modify, merge\"",
            "",
            "without a quote",
        ),
        (
            "conditions = [\"include the copyright notice and the MIT permission notice in all copies\"]",
            "",
            "lists no conditions",
        ),
        ("file = \"licenses/mit.txt\"", "", "exactly one of"),
    ] {
        assert!(good.contains(from), "{from}");
        let text = good.replacen(from, to, 1);
        let err = Licenses::from_documents([("mit.toml", text.as_str())]).unwrap_err();
        assert!(err.to_string().contains(expect), "{from} -> {to}: {err}");
    }
    // A use left out is an error, not a silent `unknown`.
    let cut = good.split("[uses.prohibited-domain]").next().unwrap();
    let err = Licenses::from_documents([("mit.toml", cut)]).unwrap_err();
    assert!(
        err.to_string()
            .contains("`prohibited-domain` has no verdict"),
        "{err}"
    );
}

#[test]
fn every_license_file_is_compiled_in() {
    let dir = repo_root().join("catalog/licenses");
    let on_disk = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(
        on_disk,
        Licenses::builtin().iter().count(),
        "catalog/licenses and builtin.rs disagree"
    );
}
