//! JSON-constrained decoding: a token-level mask that guarantees the output
//! is valid JSON, or JSON valid against a schema.
//!
//! A [`Grammar`] is compiled once per request from `response_format`
//! ([`Grammar::any_object`] for `json_object`, [`Grammar::from_schema`] for
//! `json_schema`); [`JsonState`] tracks the output byte by byte; and
//! [`TokenTable`] knows each token's bytes, so the scheduler can ask whether
//! a token keeps the output on track. [`JsonConstraint`] puts the two behind
//! the engine's [`TokenConstraint`], and the engine's `Sequence::sample` asks
//! it lazily: it samples as usual and only when the
//! token is refused masks it and samples again, falling back to a full mask
//! over the vocabulary after a few refusals. Greedy decoding thus picks the
//! most likely *allowed* token, and sampling draws from the model's
//! distribution restricted to the allowed tokens.
//!
//! The schema subset is listed in [`schema`]; anything outside it is refused
//! with a [`SchemaError`](crate::SchemaError) that names the keyword.

pub mod doc;
mod number;
pub mod schema;
pub mod state;

use std::sync::Arc;

use lucid_engine::TokenConstraint;
use lucid_tokenizer::Tokenizer;

pub use doc::Json;
pub use schema::Grammar;
pub use state::JsonState;

/// What the constraint needs to know about each token of a vocabulary.
#[derive(Debug)]
pub struct TokenTable {
    bytes: Vec<Vec<u8>>,
    /// End-of-generation tokens: allowed exactly when the value is complete.
    eog: Vec<bool>,
    /// Control tokens other than end-of-generation: never allowed.
    control: Vec<bool>,
}

impl TokenTable {
    /// The table for a tokenizer's vocabulary, padded to `vocab` entries
    /// (the model may have more embeddings than the tokenizer has tokens).
    pub fn new(tokenizer: &Tokenizer, vocab: usize) -> TokenTable {
        let n = tokenizer.vocab_size();
        let mut t = TokenTable {
            bytes: Vec::with_capacity(vocab),
            eog: Vec::with_capacity(vocab),
            control: Vec::with_capacity(vocab),
        };
        for id in 0..vocab as u32 {
            if (id as usize) < n {
                t.bytes.push(tokenizer.token_bytes(id));
                t.eog.push(tokenizer.is_end_of_generation(id));
                t.control.push(tokenizer.is_control(id));
            } else {
                t.bytes.push(Vec::new());
                t.eog.push(false);
                t.control.push(true);
            }
        }
        t
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether `token` may follow `state`, using `scratch` as working space.
    pub fn allows(&self, state: &JsonState, token: u32, scratch: &mut JsonState) -> bool {
        let i = token as usize;
        if self.eog.get(i).copied().unwrap_or(false) {
            return state.can_end();
        }
        if self.control.get(i).copied().unwrap_or(true) {
            return false;
        }
        let Some(bytes) = self.bytes.get(i) else {
            return false;
        };
        // A token that adds nothing would let the model loop without progress.
        if bytes.is_empty() {
            return false;
        }
        scratch.copy_from(state);
        scratch.feed(bytes)
    }

    /// Moves `state` past `token`; `false` if the token was not allowed
    /// (the state is then unchanged).
    pub fn advance(&self, state: &mut JsonState, token: u32) -> bool {
        let i = token as usize;
        if self.eog.get(i).copied().unwrap_or(false) {
            return state.can_end();
        }
        let mut next = state.clone();
        if self.allows(state, token, &mut next) {
            *state = next;
            true
        } else {
            false
        }
    }
}

/// A grammar over a vocabulary: the constraint one sequence generates under.
#[derive(Debug)]
pub struct JsonConstraint<'t> {
    table: &'t TokenTable,
    state: JsonState,
    /// Working space for [`TokenTable::allows`].
    scratch: JsonState,
}

impl<'t> JsonConstraint<'t> {
    pub fn new(table: &'t TokenTable, grammar: Arc<Grammar>) -> JsonConstraint<'t> {
        JsonConstraint {
            table,
            state: JsonState::new(grammar.clone()),
            scratch: JsonState::new(grammar),
        }
    }
}

impl TokenConstraint for JsonConstraint<'_> {
    fn allows(&mut self, id: u32) -> bool {
        self.table.allows(&self.state, id, &mut self.scratch)
    }

    fn advance(&mut self, id: u32) {
        self.table.advance(&mut self.state, id);
    }

    fn is_complete(&self) -> bool {
        self.state.is_done()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    /// Feeds `text` byte by byte; `Ok(complete)` or the offset of the first refused byte.
    fn run(g: &Arc<Grammar>, text: &str) -> Result<bool, usize> {
        let mut s = JsonState::new(g.clone());
        for (i, b) in text.bytes().enumerate() {
            if !s.push(b) {
                return Err(i);
            }
        }
        Ok(s.can_end())
    }

    fn check(schema: &str, accept: &[&str], partial: &[&str], refuse: &[&str]) {
        let g = Arc::new(Grammar::from_schema(&Json::parse(schema).unwrap()).unwrap());
        for t in accept {
            assert_eq!(run(&g, t), Ok(true), "should accept {t} for {schema}");
        }
        for t in partial {
            assert_eq!(
                run(&g, t),
                Ok(false),
                "should be an incomplete prefix: {t} for {schema}"
            );
        }
        for t in refuse {
            assert!(run(&g, t).is_err(), "should refuse {t} for {schema}");
        }
    }

    #[test]
    fn any_object_is_json() {
        let g = Arc::new(Grammar::any_object());
        for t in [
            r#"{}"#,
            r#"{"a": [1, -2.5e3, true, null, "x\"y\u00e9"], "b": {"c": {}}}"#,
            "{ \"é\" : \"日本 \\n\" }",
        ] {
            assert_eq!(run(&g, t), Ok(true), "{t}");
        }
        for t in [
            r#"[1]"#,
            r#"{"a" 1}"#,
            r#"{"a": 01}"#,
            r#"{"a": tru}"#,
            "{\"a\": \"\x01\"}",
            r#"{"a":1,}"#,
        ] {
            let r = run(&g, t);
            assert!(r.is_err() || r == Ok(false), "{t}: {r:?}");
        }
    }

    #[test]
    fn objects_follow_properties_in_order_and_required() {
        check(
            r#"{
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer"},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
                },
                "required": ["name", "age"],
                "additionalProperties": false
            }"#,
            &[
                r#"{"name": "Ann", "age": 3}"#,
                r#"{"name":"Ann","age":-3,"tags":["a","b"]}"#,
            ],
            &[r#"{"name": "Ann""#, r#"{"name": "Ann", "age": 3"#],
            &[
                r#"{"age": 3}"#,
                r#"{"age": 3, "name": "Ann"}"#,
                r#"{"name": "Ann"}"#,
                r#"{"name": "Ann", "age": 3.5}"#,
                r#"{"name": "Ann", "age": 3, "tags": ["a", "b", "c"]}"#,
                r#"{"name": "Ann", "age": 3, "other": 1}"#,
                r#"{"name": 1"#,
            ],
        );
    }

    #[test]
    fn enums_consts_unions_and_refs() {
        check(
            r#"{"enum": ["red", "green", 1, 12, null]}"#,
            &[r#""red""#, r#""green""#, "1", "12", "null"],
            &[r#""gr"#],
            &[r#""blue""#, "13", "2"],
        );
        check(
            r#"{"const": {"b": 1, "a": 2}}"#,
            &[r#"{"b":1,"a":2}"#],
            &[],
            &[r#"{"b": 1}"#],
        );
        check(
            r#"{"type": ["string", "null"]}"#,
            &[r#""x""#, "null"],
            &[],
            &["1"],
        );
        check(
            r#"{"anyOf": [{"type": "object", "properties": {"x": {"type": "boolean"}}}, {"type": "array"}]}"#,
            &[r#"{"x": false}"#, "[]", "[1, {}]"],
            &[],
            &[r#""s""#],
        );
        check(
            r##"{
                "$defs": {"node": {"type": "object", "properties": {
                    "v": {"type": "number"},
                    "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}
                }, "required": ["v", "next"]}},
                "$ref": "#/$defs/node"
            }"##,
            &[r#"{"v": 1, "next": {"v": 2.5, "next": null}}"#],
            &[],
            &[r#"{"v": 1, "next": 3}"#],
        );
    }

    #[test]
    fn whitespace_runs_and_numbers_are_bounded() {
        let g = Arc::new(Grammar::any_object());
        assert_eq!(run(&g, "{ \"a\" : [ 1 , 2 ] }"), Ok(true));
        assert!(run(&g, "{  }").is_err());
        assert!(run(&g, "{\n}").is_err());
        assert!(run(&g, "{\"a\":\t1}").is_err());
        let long_num = format!(
            "{{\"a\": {}}}",
            "1".repeat(usize::from(state::MAX_DIGITS) + 1)
        );
        assert!(run(&g, &long_num).is_err());
    }

    #[test]
    fn a_union_that_is_its_own_alternative_is_refused_at_once() {
        // Each of these once explored 2^33 branches before answering.
        for schema in [
            json!({"anyOf": [{"$ref": "#"}, {"$ref": "#"}]}),
            json!({"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}],
                   "$defs": {"a": {"anyOf": [{"$ref": "#"}, {"type": "string"}]}}}),
        ] {
            let err = Grammar::from_schema(&Json::from(&schema)).unwrap_err();
            assert!(
                err.to_string().contains("left recursion"),
                "{schema}: {err}"
            );
        }
    }

    #[test]
    fn long_ref_chains_resolve_and_only_real_cycles_are_cycles() {
        // d0 -> d1 -> ... -> d199 -> a string.
        let mut defs = serde_json::Map::new();
        for i in 0..200 {
            defs.insert(
                format!("d{i}"),
                json!({"$ref": format!("#/$defs/d{}", i + 1)}),
            );
        }
        defs.insert("d200".into(), json!({"type": "string"}));
        let chain = json!({"$defs": defs, "$ref": "#/$defs/d0"});
        let g = Arc::new(Grammar::from_schema(&Json::from(&chain)).unwrap());
        assert_eq!(run(&g, r#""x""#), Ok(true));
        assert!(run(&g, "1").is_err());

        let cycle = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                           "$ref": "#/$defs/a"});
        let err = Grammar::from_schema(&Json::from(&cycle)).unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    #[test]
    fn unsupported_keywords_are_named() {
        for (schema, word) in [
            (json!({"type": "string", "pattern": "(a)\\1"}), "pattern"),
            (
                json!({"oneOf": [{"type": "string"}, {"enum": ["a"]}]}),
                "oneOf",
            ),
            (json!({"type": "number", "multipleOf": 2}), "multipleOf"),
            (
                json!({"anyOf": [{"type": "string"}, {"enum": ["a"]}]}),
                "anyOf",
            ),
            (
                json!({"type": "object", "properties": {}, "required": ["x"]}),
                "required",
            ),
            (json!({"$ref": "http://example.com/s"}), "$ref"),
        ] {
            let err = Grammar::from_schema(&Json::from(&schema)).unwrap_err();
            assert!(err.to_string().contains(word), "{schema}: {err}");
        }
    }
}
