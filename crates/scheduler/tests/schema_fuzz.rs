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
