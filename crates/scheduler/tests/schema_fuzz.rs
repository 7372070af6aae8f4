//! Random JSON schemas, nested with `$ref`, `anyOf`, `oneOf`, `allOf`,
//! objects and arrays, compiled and then driven byte by byte: each must
//! compile or be refused with an error within its time budget, and a
//! compiled one must accept or refuse any byte without panicking or
//! stalling. Seeded, so a failure names the case that reproduces it.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use lucid_scheduler::{Grammar, Json, JsonState};
use serde_json::{Value, json};

/// SplitMix64: enough randomness for generating cases, and reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const REFS: &[&str] = &[
    "#",
    "#/$defs/a",
    "#/$defs/b",
    "#/$defs/missing",
    "#/properties/x",
];

fn schema(rng: &mut Rng, depth: usize) -> Value {
    let leaf = depth == 0 || rng.below(4) == 0;
    if leaf {
        return match rng.below(9) {
            0 => json!({"type": "string"}),
            1 => json!({"type": "integer"}),
            2 => json!({"type": "number"}),
            3 => json!({"type": "boolean"}),
            4 => json!({"type": "null"}),
            5 => json!({"enum": ["a", 1, null, true]}),
            6 => json!({"const": "k"}),
            7 => json!({"$ref": REFS[rng.below(REFS.len())]}),
            _ => json!({}),
        };
    }
    let children = |rng: &mut Rng| -> Vec<Value> {
        (0..1 + rng.below(3))
            .map(|_| schema(rng, depth - 1))
            .collect()
    };
    match rng.below(7) {
        0 => json!({"anyOf": children(rng)}),
        1 => json!({"oneOf": children(rng)}),
        2 => json!({"allOf": children(rng)}),
        3 => {
            let mut props = serde_json::Map::new();
            for (i, s) in children(rng).into_iter().enumerate() {
                props.insert(["x", "y", "z"][i % 3].to_owned(), s);
            }
            let required: Vec<&str> = props
                .keys()
                .map(String::as_str)
                .take(rng.below(3))
                .collect();
            json!({"type": "object", "properties": props, "required": required})
        }
        4 => json!({"type": "array", "items": schema(rng, depth - 1), "maxItems": rng.below(4)}),
        5 => json!({"type": ["string", "integer", "null"]}),
        _ => json!({"$ref": REFS[rng.below(REFS.len())]}),
    }
}

fn root(rng: &mut Rng) -> Value {
    let mut s = schema(rng, 5);
    if let Value::Object(m) = &mut s {
        m.insert(
            "$defs".into(),
            json!({"a": schema(rng, 3), "b": {"$ref": "#/$defs/a"}}),
        );
    }
    s
}

const ALPHABET: &[u8] = b"{}[]\":,0123456789-.eExyzakntrufls ";

#[test]
fn random_schemas_compile_or_are_refused_in_bounded_time() {
    let budget = Duration::from_secs(10);
    let start = Instant::now();
    let (mut compiled, mut refused, mut bytes_fed) = (0, 0, 0usize);
    let mut case = 0u64;
    while start.elapsed() < budget && case < 50_000 {
        let mut rng = Rng(case);
        let s = root(&mut rng);
        let t = Instant::now();
        let result = Grammar::from_schema(&Json::from(&s));
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "case {case} compiled in {took:?}: {s}"
        );
        let Ok(grammar) = result else {
            refused += 1;
            case += 1;
            continue;
        };
        compiled += 1;
        let grammar = Arc::new(grammar);
        let mut state = JsonState::new(grammar.clone());
        let mut scratch = JsonState::new(grammar);
        let t = Instant::now();
        for _ in 0..300 {
            if state.is_done() {
                break;
            }
            // Prefer a byte the grammar takes, found by trying a few.
            let mut advanced = false;
            for _ in 0..8 {
                let b = ALPHABET[rng.below(ALPHABET.len())];
                scratch.copy_from(&state);
                if scratch.push(b) {
                    state.copy_from(&scratch);
                    bytes_fed += 1;
                    advanced = true;
                    break;
                }
            }
            if !advanced {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "case {case} walked in {:?}: {s}",
            t.elapsed()
        );
        case += 1;
    }
    eprintln!(
        "{case} random schemas in {:?}: {compiled} compiled ({bytes_fed} bytes fed), {refused} refused",
        start.elapsed()
    );
    assert!(
        compiled > 0 && refused > 0,
        "the generator covers both outcomes"
    );
}

/// A random walk through the constraint: any byte it allows, but one of
/// `closing` (where allowed) one time in `close_one_in`, so that walks
/// finish. The text, if the value was finished within `limit` bytes; a walk
/// with no byte allowed fails the test, named by `what`.
fn walk_value(
    grammar: &Arc<Grammar>,
    rng: &mut Rng,
    limit: usize,
    closing: &[u8],
    close_one_in: usize,
    what: &str,
) -> Option<Vec<u8>> {
    let mut state = JsonState::new(grammar.clone());
    let mut text = Vec::new();
    while !state.is_done() && text.len() < limit {
        let allowed: Vec<u8> = (0..=255u8).filter(|&b| state.clone().push(b)).collect();
        assert!(
            !allowed.is_empty(),
            "{what}: stuck after {:?}",
            String::from_utf8_lossy(&text)
        );
        let closers: Vec<u8> = allowed
            .iter()
            .copied()
            .filter(|b| closing.contains(b))
            .collect();
        let b = if !closers.is_empty() && rng.below(close_one_in) == 0 {
            closers[rng.below(closers.len())]
        } else {
            allowed[rng.below(allowed.len())]
        };
        assert!(state.push(b));
        text.push(b);
    }
    state.is_done().then_some(text)
}

/// Strings held to `pattern`, `format` and lengths: random walks through
/// the constraint (any byte it allows, picked at random) that finish are
/// valid against the schema by the `jsonschema` crate, formats checked.
#[test]
fn constrained_strings_always_validate() {
    let schemas = [
        json!({"type": "string", "pattern": "^[a-z]{3}-[0-9]{2,4}$"}),
        // Unanchored: a digit anywhere.
        json!({"type": "string", "pattern": "[0-9]"}),
        json!({"type": "string", "format": "date"}),
        json!({"type": "string", "format": "time"}),
        json!({"type": "string", "format": "date-time"}),
        json!({"type": "string", "format": "uuid"}),
        json!({"type": "string", "format": "email"}),
        json!({"type": "string", "format": "uri"}),
        json!({"type": "string", "minLength": 2, "maxLength": 5}),
        json!({"type": ["string", "null"], "maxLength": 3}),
        // `oneOf`, as pydantic writes a union: exactly one alternative
        // matches every output.
        json!({"type": "object", "properties": {"v": {"oneOf": [
            {"type": "string", "maxLength": 4}, {"type": "integer"}, {"type": "null"}]}},
            "required": ["v"]}),
        json!({"type": "object", "properties": {
            "pet": {"oneOf": [
                {"type": "object", "properties": {"cat": {"type": "boolean"}}, "required": ["cat"]},
                {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2}]}},
            "required": ["pet"]}),
        json!({"type": "object", "properties": {
            "id": {"type": "string", "format": "uuid"},
            "when": {"type": "string", "format": "date-time"},
            "code": {"type": "string", "pattern": "^[A-Z]{2}$"}},
            "required": ["id", "when", "code"]}),
    ];
    let mut rng = Rng(7);
    for schema in &schemas {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .unwrap();
        let grammar = Arc::new(Grammar::from_schema(&Json::from(schema)).unwrap());
        let mut finished = 0;
        for walk in 0..50 {
            // Close strings now and then, so that walks finish.
            let what = format!("{schema}: walk {walk}");
            let Some(text) = walk_value(&grammar, &mut rng, 2000, b"\"", 4, &what) else {
                continue;
            };
            finished += 1;
            let value: Value = serde_json::from_slice(&text)
                .unwrap_or_else(|e| panic!("{schema}: {e}: {}", String::from_utf8_lossy(&text)));
            assert!(validator.is_valid(&value), "{schema}: invalid: {value}");
        }
        assert!(
            finished >= 25,
            "{schema}: only {finished} of 50 walks finished"
        );
    }
}

/// What the string keywords cannot do is refused, naming the keyword.
#[test]
fn string_keywords_outside_the_subset_are_named() {
    for (schema, named) in [
        (json!({"type": "string", "format": "ipv4"}), "ipv4"),
        (json!({"pattern": "^a$"}), "pattern"),
        (json!({"type": "integer", "maxLength": 3}), "maxLength"),
        (json!({"type": "string", "pattern": "(?<=a)b"}), "pattern"),
        (
            json!({"type": "string", "pattern": "a", "maxLength": 3}),
            "pattern",
        ),
        (
            json!({"type": "string", "maxLength": 1_000_000}),
            "maxLength",
        ),
    ] {
        let e = Grammar::from_schema(&Json::from(&schema)).unwrap_err();
        assert!(e.to_string().contains(named), "{schema}: {e}");
    }
}

/// Large repetitions are refused or compiled within the compile budget.
#[test]
fn large_string_constraints_compile_in_bounded_time() {
    for schema in [
        json!({"type": "string", "maxLength": 200}),
        json!({"type": "string", "maxLength": 1000}),
        json!({"type": "string", "maxLength": 5000}),
        json!({"type": "string", "pattern": "^[a-z]{1000}$"}),
        json!({"type": "string", "pattern": "^(a|b|c|d)*x(a|b|c|d){20}$"}),
        json!({"type": "string", "pattern": "[a-z]{50}[0-9]{50}"}),
        // A DFA of 2^20 states: refused by its size.
        json!({"type": "string", "pattern": "x[ab]{20}"}),
        json!({"type": "string", "maxLength": 100000}),
    ] {
        let t = Instant::now();
        let result = Grammar::from_schema(&Json::from(&schema));
        let took = t.elapsed();
        eprintln!(
            "{schema}: {} in {took:?}",
            if result.is_ok() {
                "compiled"
            } else {
                "refused"
            }
        );
        assert!(took < Duration::from_secs(1), "{schema}: {took:?}");
    }
}

/// A random schema built only from the supported keywords.
fn supported_schema(rng: &mut Rng, depth: usize) -> Value {
    let bound = |rng: &mut Rng| -> Value {
        let whole = rng.below(2001) as i64 - 1000;
        match rng.below(3) {
            0 => json!(whole),
            1 => json!(whole as f64 / 8.0),
            _ => json!(whole as f64 / 1000.0),
        }
    };
    if depth == 0 || rng.below(3) == 0 {
        return match rng.below(9) {
            0 | 1 => {
                let ty = if rng.below(2) == 0 {
                    "integer"
                } else {
                    "number"
                };
                let mut s = serde_json::Map::new();
                s.insert("type".into(), json!(ty));
                let (a, b) = (bound(rng), bound(rng));
                let (lo, hi) = if a.as_f64() <= b.as_f64() {
                    (a, b)
                } else {
                    (b, a)
                };
                if rng.below(3) != 0 {
                    let key = ["minimum", "exclusiveMinimum"][rng.below(2)];
                    s.insert(key.into(), lo);
                }
                if rng.below(3) != 0 {
                    let key = ["maximum", "exclusiveMaximum"][rng.below(2)];
                    s.insert(key.into(), hi);
                }
                Value::Object(s)
            }
            2 => json!({"type": "string", "maxLength": rng.below(6)}),
            3 => {
                let format = ["date", "uuid", "email"][rng.below(3)];
                json!({"type": "string", "format": format})
            }
            4 => json!({"type": "string", "pattern": "^[a-c]{1,3}$"}),
            5 => json!({"enum": ["a", 1, null, true, {"k": [2]}]}),
            6 => json!({"type": "boolean"}),
            7 => json!({"$ref": "#/$defs/leaf"}),
            _ => json!({"type": ["integer", "null"], "minimum": 0}),
        };
    }
    match rng.below(4) {
        0 => {
            let mut props = serde_json::Map::new();
            for name in ["x", "y", "z"].iter().take(1 + rng.below(3)) {
                props.insert((*name).to_owned(), supported_schema(rng, depth - 1));
            }
            let required: Vec<&str> = props
                .keys()
                .map(String::as_str)
                .take(rng.below(4))
                .collect();
            json!({"type": "object", "properties": props, "required": required,
                   "additionalProperties": false})
        }
        1 => {
            let min = rng.below(3);
            json!({"type": "array", "items": supported_schema(rng, depth - 1),
                   "minItems": min, "maxItems": min + rng.below(3)})
        }
        // Alternatives of different kinds, as pydantic writes a union.
        2 => json!({(["anyOf", "oneOf"][rng.below(2)]): [
            {"type": "object", "properties": {"v": supported_schema(rng, depth - 1)},
             "required": ["v"], "additionalProperties": false},
            {"type": "string", "maxLength": 4},
            {"type": "integer", "minimum": -5, "maximum": 5},
            {"type": "null"}]}),
        _ => json!({"type": "array", "items": {"$ref": "#/$defs/leaf"}, "maxItems": 3}),
    }
}

/// The property the constraint exists for: for random schemas made of the
/// supported keywords (numeric bounds among them), every walk through the
/// constraint (any allowed byte, picked at random) that finishes is valid
/// against the schema by the `jsonschema` crate, and no walk gets stuck.
#[test]
fn random_supported_schemas_always_validate() {
    let mut rng = Rng(2026);
    let (mut schemas, mut walks) = (0, 0);
    for case in 0..120 {
        let mut schema = json!({"type": "object",
            "properties": {"a": supported_schema(&mut rng, 3), "b": supported_schema(&mut rng, 2)},
            "required": ["a", "b"], "additionalProperties": false});
        schema["$defs"] = json!({"leaf": supported_schema(&mut rng, 0)});
        if schema["$defs"]["leaf"].get("$ref").is_some() {
            schema["$defs"]["leaf"] = json!({"type": "integer", "exclusiveMaximum": 0});
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let grammar = Arc::new(
            Grammar::from_schema(&Json::from(&schema))
                .unwrap_or_else(|e| panic!("case {case}: {schema} refused: {e}")),
        );
        schemas += 1;
        for walk in 0..10 {
            // Close strings and end numbers now and then, so that walks finish.
            let what = format!("case {case} walk {walk} in {schema}");
            let Some(text) = walk_value(&grammar, &mut rng, 3000, b"\",}]", 3, &what) else {
                continue;
            };
            walks += 1;
            let value: Value = serde_json::from_slice(&text)
                .unwrap_or_else(|e| panic!("case {case}: {e}: {}", String::from_utf8_lossy(&text)));
            if let Some(error) = validator.iter_errors(&value).next() {
                panic!("case {case} walk {walk}: {value} is invalid ({error}) for {schema}");
            }
        }
    }
    eprintln!("{schemas} schemas, {walks} finished walks, all valid");
    assert!(walks >= schemas * 5, "only {walks} walks finished");
}

/// Numbers held to bounds: every value the walk writes is inside them,
/// boundary values themselves can be written, and ranges with no number in
/// them are refused naming the keyword.
#[test]
fn bounded_numbers_reach_their_bounds_and_nothing_beyond() {
    let accepts = |schema: &Value, text: &str| -> bool {
        let grammar = Arc::new(Grammar::from_schema(&Json::from(schema)).unwrap());
        let mut state = JsonState::new(grammar);
        text.bytes().all(|b| state.push(b)) && state.can_end()
    };
    let unit = json!({"type": "number", "minimum": 0.1, "maximum": 0.3});
    for ok in ["0.1", "0.3", "0.25", "0.2999999999999999", "0.10"] {
        assert!(accepts(&unit, ok), "{ok}");
    }
    for bad in ["0.09", "0.3000000000000001", "1", "-0.2", "0", "1e-1"] {
        assert!(!accepts(&unit, bad), "{bad}");
    }
    let open = json!({"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 120});
    for ok in ["-2", "0", "119", "7"] {
        assert!(accepts(&open, ok), "{ok}");
    }
    for bad in ["-3", "120", "1000", "-0", "1.5"] {
        assert!(!accepts(&open, bad), "{bad}");
    }
    // Prefixes of allowed values that are not allowed themselves.
    let negative = json!({"type": "integer", "maximum": -5});
    assert!(accepts(&negative, "-50") && accepts(&negative, "-5"));
    assert!(!accepts(&negative, "-4") && !accepts(&negative, "-0"));
    let above = json!({"type": "integer", "minimum": 10});
    assert!(accepts(&above, "10") && accepts(&above, "99") && !accepts(&above, "9"));
    let tens = json!({"type": "number", "minimum": 10, "maximum": 19.5});
    assert!(accepts(&tens, "10") && accepts(&tens, "19.5") && accepts(&tens, "15"));
    assert!(!accepts(&tens, "1") && !accepts(&tens, "19.51") && !accepts(&tens, "9.9"));
    let ge0 = json!({"type": "integer", "minimum": 0});
    assert!(accepts(&ge0, "9999999999999999"));
    assert!(!accepts(&ge0, "-1"));
    for (schema, named) in [
        (
            json!({"type": "integer", "minimum": 0.2, "maximum": 0.8}),
            "minimum",
        ),
        (
            json!({"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1}),
            "minimum",
        ),
        (json!({"type": "string", "maximum": 3}), "maximum"),
        (json!({"minimum": 3}), "minimum"),
        (json!({"type": "number", "multipleOf": 3}), "multipleOf"),
    ] {
        let e = Grammar::from_schema(&Json::from(&schema)).unwrap_err();
        assert!(e.to_string().contains(named), "{schema}: {e}");
    }
}

/// Walks a grammar at random to a point where it may end, and returns the
/// text; `None` if the walk got no further than `limit` bytes.
fn walk_text(grammar: &Arc<Grammar>, rng: &mut Rng, limit: usize) -> Option<String> {
    let mut state = JsonState::new(grammar.clone());
    let mut text = Vec::new();
    while text.len() < limit {
        if state.is_done() || (state.can_end() && rng.below(3) == 0) {
            return Some(String::from_utf8(text).unwrap());
        }
        let allowed: Vec<u8> = (0..=255u8).filter(|&b| state.clone().push(b)).collect();
        if allowed.is_empty() {
            assert!(
                state.can_end(),
                "stuck after {:?}",
                String::from_utf8_lossy(&text)
            );
            return Some(String::from_utf8(text).unwrap());
        }
        let b = allowed[rng.below(allowed.len())];
        assert!(state.push(b));
        text.push(b);
    }
    None
}

/// Plain-text constraints (vLLM's `guided_choice` and `guided_regex`):
/// every walk ends on exactly one of the choices, or on a whole match of
/// the regular expression; nothing is added around them.
#[test]
fn choices_and_regexes_constrain_plain_text() {
    let choices: Vec<String> = ["yes", "yesterday", "no", "New York", "\"quoted\""]
        .map(String::from)
        .to_vec();
    let grammar = Arc::new(Grammar::choice(&choices).unwrap());
    let mut rng = Rng(7);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let text = walk_text(&grammar, &mut rng, 100).unwrap();
        assert!(choices.contains(&text), "{text:?}");
        seen.insert(text);
    }
    assert_eq!(seen.len(), choices.len(), "every choice is reachable");
    let mut state = JsonState::new(grammar.clone());
    assert!(!state.push(b' '), "no whitespace before a choice");

    let regex = r#"[A-Z][a-z]{2,5}( [0-9]{1,3})?\n"[a-z]*""#;
    let whole = regex::Regex::new(&format!("^(?:{regex})$")).unwrap();
    let grammar = Arc::new(Grammar::regex(regex).unwrap());
    for _ in 0..200 {
        let text = walk_text(&grammar, &mut rng, 2000).unwrap();
        assert!(whole.is_match(&text), "{text:?}");
    }
    for (bad, why) in [
        (Grammar::choice(&[]), "nothing can match"),
        (Grammar::regex("(?<=a)b"), "regular expression"),
    ] {
        assert!(bad.unwrap_err().to_string().contains(why));
    }
}
