//! A JSON Schema, compiled into the small grammar the constraint walks.
//!
//! Only a subset of JSON Schema can be turned into a token mask that is
//! decided one byte at a time without look-ahead; everything outside it is
//! refused when the schema is compiled, naming the keyword, rather than
//! silently not enforced. The subset (also in the crate docs):
//!
//! - `type`: `object`, `array`, `string`, `number`, `integer`, `boolean`,
//!   `null`, or a list of them;
//! - objects: `properties`, `required`, `additionalProperties` (properties
//!   are written in the order the schema lists them, and no others: that
//!   output is valid whatever `additionalProperties` says); an object without
//!   `properties` takes any keys and values;
//! - arrays: `items`, `minItems`, `maxItems`;
//! - `enum` and `const` with any JSON values;
//! - `anyOf` whose branches begin with different characters (a string or
//!   `null`, an object or an array, ...);
//! - strings (with `type: string`): one of `pattern` (a regular expression
//!   in Rust's `regex` syntax, which covers the usual ECMA-262 subset:
//!   classes, groups, alternation, quantifiers; no look-around or
//!   back-references; unanchored as JSON Schema says, so `^…$` for a whole
//!   match; its text has no escapes), `format` (`date`, `time`,
//!   `date-time`, `uuid`, `email`, `uri`; [`FORMATS`] gives the exact
//!   subset each writes) or `minLength`/`maxLength`;
//! - numbers (with `type: number` or `integer`): `minimum`, `maximum`,
//!   `exclusiveMinimum`, `exclusiveMaximum` (also draft 4's boolean form);
//!   a bounded number is written without an exponent, and every prefix the
//!   constraint admits can still end inside the bounds;
//! - `$ref` to `#`, `#/$defs/NAME` or `#/definitions/NAME` (recursion is fine);
//! - annotations that do not constrain: `title`, `description`, `default`,
//!   `examples`, `$schema`, `$id`, `$comment`, `deprecated`, `readOnly`,
//!   `writeOnly`.

use std::collections::HashMap;
use std::sync::Arc;

use regex_automata::dfa::Automaton;
use regex_automata::dfa::dense;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, util::syntax};

use super::doc::Json as Value;
use super::number::{NUMBER_KEYWORDS, NumBounds};

use crate::error::SchemaError;

/// Index of a node in [`Grammar::nodes`].
pub(crate) type NodeId = u32;

/// Index of a literal set in [`Grammar::literals`].
pub(crate) type LitSetId = u32;

/// The most alternatives in one `enum` or properties in one object: the
/// constraint tracks the candidates still possible in a 128-bit mask.
pub(crate) const MAX_CHOICES: usize = 128;

/// One property of an object schema.
#[derive(Clone, Debug)]
pub(crate) struct Property {
    /// The value's schema.
    pub node: NodeId,
    pub required: bool,
}

/// What a value must look like.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// Any JSON value.
    Any,
    /// An object with exactly these keys possible, in this order; `keys` is
    /// a literal set of the JSON-encoded names (with their quotes).
    Object {
        props: Vec<Property>,
        keys: LitSetId,
    },
    /// An object with any keys and any values.
    AnyObject,
    Array {
        items: NodeId,
        min: u32,
        max: u32,
    },
    String,
    Number {
        integer: bool,
        /// `minimum`/`maximum` and their exclusive forms.
        bounds: Option<NumBounds>,
    },
    /// One of these JSON texts exactly (`enum`, `const`, `true`/`false`, `null`).
    Literals(LitSetId),
    /// One of several nodes, told apart by their first byte.
    Union(Vec<NodeId>),
    /// A string whose text (between the quotes, without escapes) the
    /// pattern's DFA matches whole.
    Pattern(Arc<Pattern>),
    /// Not resolved yet (a `$ref` while compiling).
    Ref(String),
}

/// A string pattern compiled to a DFA over the string's bytes.
pub(crate) struct Pattern {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
    /// The states from which some continuation matches. The DFA's own
    /// dead state is not the only one that cannot: a state past a match
    /// that no byte leaves is another, and the constraint must never let a
    /// string into one (the model could not close it). Indexed by
    /// [`Pattern::index`]: the constraint asks it for every byte of every
    /// candidate token, so it is a flat table, not a hash set.
    live: Vec<bool>,
    /// The regular expression, for errors and debugging.
    source: String,
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

/// The largest `minLength`/`maxLength`: each character is a few DFA states,
/// and 5,000 took 0.7 s to build here.
pub const MAX_STRING_LENGTH: u64 = 1000;

/// The most memory one pattern's DFA may take; `maxLength: 100000` or a
/// pattern with a large repetition is refused rather than built.
const PATTERN_DFA_BYTES: usize = 4 << 20;

/// The regular expression each supported `format` is written as: a subset
/// of what the format allows, always valid (dates only with days every
/// year has: February up to the 28th).
pub const FORMATS: &[(&str, &str)] = &[
    ("date", DATE),
    ("time", TIME),
    ("date-time", DATE_TIME),
    (
        "uuid",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    ),
    (
        "email",
        "[A-Za-z0-9][A-Za-z0-9_+-]{0,30}(\\.[A-Za-z0-9_+-]{1,30})?@[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?){0,3}\\.[A-Za-z]{2,24}",
    ),
    (
        "uri",
        "[a-z][a-z0-9+.-]{0,15}://[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*(\\?([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?",
    ),
];

const DATE: &str = "[0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))";
const TIME: &str =
    "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";
const DATE_TIME: &str = "[0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";

impl Pattern {
    /// A DFA that matches exactly the texts of `regex` (anchored at both
    /// ends: the caller wraps an unanchored pattern).
    fn new(regex: &str) -> Result<Pattern, String> {
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(regex_automata::dfa::StartKind::Anchored)
                    // Whether the whole text is in the language: every
                    // match counts, not the first (leftmost-first stops
                    // extending after it).
                    .match_kind(regex_automata::MatchKind::All)
                    .dfa_size_limit(Some(PATTERN_DFA_BYTES))
                    .determinize_size_limit(Some(PATTERN_DFA_BYTES)),
            )
            .syntax(syntax::Config::new().unicode(true).utf8(true))
            .build(regex)
            .map_err(|e| e.to_string())?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| e.to_string())?;
        let mut pattern = Pattern {
            dfa,
            start,
            live: Vec::new(),
            source: regex.to_owned(),
        };
        for s in live_states(&pattern.dfa, start) {
            let i = pattern.index(s);
            if i >= pattern.live.len() {
                pattern.live.resize(i + 1, false);
            }
            pattern.live[i] = true;
        }
        if !pattern.is_live(start) {
            return Err("no text matches it".to_owned());
        }
        Ok(pattern)
    }

    /// A dense DFA's state ids are multiples of its stride.
    fn index(&self, state: StateID) -> usize {
        state.as_usize() >> self.dfa.stride2()
    }

    fn is_live(&self, state: StateID) -> bool {
        self.live.get(self.index(state)).copied().unwrap_or(false)
    }

    pub(crate) fn start(&self) -> StateID {
        self.start
    }

    /// The state after `b`, or `None` where no text that continues so can
    /// match.
    pub(crate) fn next(&self, state: StateID, b: u8) -> Option<StateID> {
        let next = self.dfa.next_state(state, b);
        self.is_live(next).then_some(next)
    }

    /// Whether the text that led to `state` matches whole.
    pub(crate) fn accepts(&self, state: StateID) -> bool {
        self.dfa.is_match_state(self.dfa.next_eoi_state(state))
    }
}

/// The states reachable from `start` from which some text reaches a match:
/// every state and its 256 transitions once, then matches walked backwards.
fn live_states(dfa: &dense::DFA<Vec<u32>>, start: StateID) -> Vec<StateID> {
    let accepts = |s: StateID| dfa.is_match_state(dfa.next_eoi_state(s));
    let mut seen = std::collections::HashSet::from([start]);
    let mut order = vec![start];
    let mut preds: HashMap<StateID, Vec<StateID>> = HashMap::new();
    let mut i = 0;
    while let Some(&s) = order.get(i) {
        i += 1;
        if dfa.is_dead_state(s) || dfa.is_quit_state(s) {
            continue;
        }
        for b in 0..=255u8 {
            let t = dfa.next_state(s, b);
            preds.entry(t).or_default().push(s);
            if seen.insert(t) {
                order.push(t);
            }
        }
    }
    let mut live: std::collections::HashSet<StateID> =
        order.iter().copied().filter(|&s| accepts(s)).collect();
    let mut todo: Vec<StateID> = live.iter().copied().collect();
    while let Some(t) = todo.pop() {
        for &s in preds.get(&t).map_or(&[][..], Vec::as_slice) {
            if live.insert(s) {
                todo.push(s);
            }
        }
    }
    live.into_iter().collect()
}

/// A compiled schema: the nodes and literal sets the constraint refers to by index.
#[derive(Clone, Debug)]
pub struct Grammar {
    pub(crate) nodes: Vec<Node>,
    pub(crate) literals: Vec<Vec<Vec<u8>>>,
    pub(crate) root: NodeId,
    /// Plain text rather than JSON ([`Grammar::choice`], [`Grammar::regex`]):
    /// no whitespace around the value, a pattern without quotes.
    pub(crate) text: bool,
}

/// Literal set ids that every grammar has.
pub(crate) const LIT_TRUE_FALSE: LitSetId = 0;
pub(crate) const LIT_NULL: LitSetId = 1;
pub(crate) const LIT_TRUE: LitSetId = 2;
pub(crate) const LIT_FALSE: LitSetId = 3;

impl Grammar {
    fn empty() -> Grammar {
        Grammar {
            nodes: Vec::new(),
            literals: vec![
                vec![b"true".to_vec(), b"false".to_vec()],
                vec![b"null".to_vec()],
                vec![b"true".to_vec()],
                vec![b"false".to_vec()],
            ],
            root: 0,
            text: false,
        }
    }

    /// Plain text that is exactly one of `choices` (vLLM's
    /// `guided_choice`).
    pub fn choice(choices: &[String]) -> Result<Grammar, SchemaError> {
        let err = |message: String| SchemaError {
            path: "/".into(),
            message,
        };
        if choices.is_empty() {
            return Err(err("no choices: nothing can match".into()));
        }
        if choices.len() > MAX_CHOICES {
            return Err(err(format!(
                "{} choices; at most {MAX_CHOICES} are supported",
                choices.len()
            )));
        }
        if choices.iter().any(String::is_empty) {
            return Err(err("a choice is empty".into()));
        }
        let mut g = Grammar::empty();
        let set = g.literals.len() as LitSetId;
        g.literals
            .push(choices.iter().map(|c| c.as_bytes().to_vec()).collect());
        g.nodes.push(Node::Literals(set));
        g.root = 0;
        g.text = true;
        Ok(g)
    }

    /// Plain text that the regular expression matches whole (vLLM's
    /// `guided_regex`; Rust `regex` syntax, as for `pattern`).
    pub fn regex(regex: &str) -> Result<Grammar, SchemaError> {
        let pattern = Pattern::new(regex).map_err(|e| SchemaError {
            path: "/".into(),
            message: format!("the regular expression cannot be used for constrained decoding: {e}"),
        })?;
        let mut g = Grammar::empty();
        g.nodes.push(Node::Pattern(Arc::new(pattern)));
        g.root = 0;
        g.text = true;
        Ok(g)
    }

    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`,
    /// Ollama's `format: "json"`).
    pub fn any_object() -> Grammar {
        let mut g = Grammar::empty();
        g.nodes.push(Node::AnyObject);
        g.root = 0;
        g
    }

    /// Any JSON value.
    pub fn any_value() -> Grammar {
        let mut g = Grammar::empty();
        g.nodes.push(Node::Any);
        g.root = 0;
        g
    }

    /// Compiles a JSON Schema, refusing what the subset does not cover.
    pub fn from_schema(schema: &Value) -> Result<Grammar, SchemaError> {
        let mut c = Compiler {
            g: Grammar::empty(),
            root: schema,
            defs: HashMap::new(),
        };
        let root = c.node(schema, "")?;
        c.g.root = root;
        c.resolve_refs()?;
        Ok(c.g)
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    pub(crate) fn literal_set(&self, id: LitSetId) -> &[Vec<u8>] {
        &self.literals[id as usize]
    }

    /// The bytes a value of `id` may begin with (whitespace aside), when
    /// that does not depend on other nodes (every node but a union).
    fn own_first_bytes(&self, id: NodeId) -> ByteSet {
        let mut set = ByteSet::default();
        match self.node(id) {
            Node::Any | Node::Ref(_) => set = ByteSet::all(),
            Node::Object { .. } | Node::AnyObject => set.insert(b'{'),
            Node::Array { .. } => set.insert(b'['),
            Node::String | Node::Pattern(_) => set.insert(b'"'),
            Node::Number { .. } => {
                set.insert(b'-');
                for d in b'0'..=b'9' {
                    set.insert(d);
                }
            }
            Node::Literals(l) => {
                for lit in self.literal_set(*l) {
                    if let Some(&b) = lit.first() {
                        set.insert(b);
                    }
                }
            }
            Node::Union(_) => {}
        }
        set
    }

    /// The bytes each node's value may begin with, every node visited once
    /// (a union's set is the union of its alternatives'). `Err(id)` names a
    /// union that is its own alternative before any byte is read (`anyOf:
    /// [{"$ref": "#"}, ...]` at the root): no value of it could ever begin.
    fn first_byte_sets(&self) -> Result<Vec<ByteSet>, NodeId> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let n = self.nodes.len();
        let mut sets = vec![ByteSet::default(); n];
        let mut mark = vec![Mark::New; n];
        // Depth-first with an explicit stack (node, next alternative): a
        // schema controls how deep unions nest through `$ref`s.
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for start in 0..n {
            if mark[start] != Mark::New {
                continue;
            }
            mark[start] = Mark::Open;
            stack.push((start, 0));
            while let Some((id, next)) = stack.last().copied() {
                if let Node::Union(alts) = &self.nodes[id]
                    && let Some(&alt) = alts.get(next)
                {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                    let alt = alt as usize;
                    match mark[alt] {
                        Mark::New => {
                            mark[alt] = Mark::Open;
                            stack.push((alt, 0));
                        }
                        Mark::Open => return Err(alt as NodeId),
                        Mark::Done => {}
                    }
                    continue;
                }
                sets[id] = match &self.nodes[id] {
                    Node::Union(alts) => alts
                        .iter()
                        .fold(ByteSet::default(), |acc, &a| acc.union(sets[a as usize])),
                    _ => self.own_first_bytes(id as NodeId),
                };
                mark[id] = Mark::Done;
                stack.pop();
            }
        }
        Ok(sets)
    }
}

/// A set of bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn all() -> ByteSet {
        ByteSet([u64::MAX; 4])
    }

    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    fn union(self, other: ByteSet) -> ByteSet {
        ByteSet(std::array::from_fn(|i| self.0[i] | other.0[i]))
    }

    fn intersects(self, other: ByteSet) -> bool {
        self.0.iter().zip(other.0).any(|(a, b)| a & b != 0)
    }
}

/// Keywords that describe and do not constrain: accepted and ignored.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords the compiler understands.
const SUPPORTED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "$ref",
    "$defs",
    "definitions",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
];

/// The keywords that constrain a string's text.
const STRING_KEYWORDS: &[&str] = &["pattern", "format", "minLength", "maxLength"];

struct Compiler<'a> {
    g: Grammar,
    root: &'a Value,
    /// `$ref` targets already compiled, by reference string.
    defs: HashMap<String, NodeId>,
}

impl<'a> Compiler<'a> {
    fn push(&mut self, node: Node) -> NodeId {
        self.g.nodes.push(node);
        (self.g.nodes.len() - 1) as NodeId
    }

    fn literals(&mut self, lits: Vec<Vec<u8>>) -> LitSetId {
        self.g.literals.push(lits);
        (self.g.literals.len() - 1) as LitSetId
    }

    fn err(path: &str, message: impl Into<String>) -> SchemaError {
        SchemaError {
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            },
            message: message.into(),
        }
    }

    fn node(&mut self, schema: &'a Value, path: &str) -> Result<NodeId, SchemaError> {
        let obj = match schema {
            Value::Bool(true) => return Ok(self.push(Node::Any)),
            Value::Bool(false) => {
                return Err(Self::err(path, "the schema `false` matches nothing"));
            }
            Value::Object(o) => o.as_slice(),
            _ => return Err(Self::err(path, "a schema must be an object or a boolean")),
        };
        let get = |k: &str| obj.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        for (key, _) in obj {
            if !SUPPORTED.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
                return Err(Self::err(
                    path,
                    format!(
                        "the keyword `{key}` is not supported by constrained decoding (supported: {})",
                        SUPPORTED.join(", ")
                    ),
                ));
            }
        }
        if let Some(r) = get("$ref") {
            let r = r
                .as_str()
                .ok_or_else(|| Self::err(path, "`$ref` must be a string"))?;
            if obj.len() > 1
                && obj.iter().any(|(k, _)| {
                    !matches!(k.as_str(), "$ref" | "$defs" | "definitions")
                        && !ANNOTATIONS.contains(&k.as_str())
                })
            {
                return Err(Self::err(
                    path,
                    "`$ref` cannot be combined with other keywords",
                ));
            }
            return Ok(self.push(Node::Ref(r.to_owned())));
        }
        if let Some(c) = get("const") {
            return self.literal_node(std::slice::from_ref(c), path);
        }
        if let Some(e) = get("enum") {
            let values = e
                .as_array()
                .ok_or_else(|| Self::err(path, "`enum` must be an array"))?;
            return self.literal_node(values, path);
        }
        // `oneOf` compiles as `anyOf`: a union must be decided by its first
        // byte, and alternatives with no first byte in common take disjoint
        // kinds of JSON value (a string, a number, an object, …), so no
        // value can match two of them and "exactly one" holds.
        if let Some((word, alts)) = get("anyOf")
            .map(|a| ("anyOf", a))
            .or_else(|| get("oneOf").map(|a| ("oneOf", a)))
        {
            let alts = alts
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| Self::err(path, format!("`{word}` must be a non-empty array")))?;
            let mut ids = Vec::new();
            for (i, alt) in alts.iter().enumerate() {
                ids.push(self.node(alt, &format!("{path}/{word}/{i}"))?);
            }
            return Ok(self.push(Node::Union(ids)));
        }
        let names_string = match get("type") {
            Some(Value::String(t)) => t == "string",
            Some(Value::Array(ts)) => ts.iter().any(|t| t.as_str() == Some("string")),
            _ => false,
        };
        if !names_string
            && let Some((key, _)) = obj
                .iter()
                .find(|(k, _)| STRING_KEYWORDS.contains(&k.as_str()))
        {
            return Err(Self::err(
                path,
                format!("`{key}` is supported only with `type: \"string\"`"),
            ));
        }
        let names_number = match get("type") {
            Some(Value::String(t)) => t == "number" || t == "integer",
            Some(Value::Array(ts)) => ts
                .iter()
                .any(|t| matches!(t.as_str(), Some("number" | "integer"))),
            _ => false,
        };
        if !names_number
            && let Some((key, _)) = obj
                .iter()
                .find(|(k, _)| NUMBER_KEYWORDS.contains(&k.as_str()))
        {
            return Err(Self::err(
                path,
                format!("`{key}` is supported only with `type: \"number\"` or `\"integer\"`"),
            ));
        }
        let types: Vec<&str> = match get("type") {
            None => {
                if get("properties").is_some() {
                    vec!["object"]
                } else if get("items").is_some() {
                    vec!["array"]
                } else {
                    return Ok(self.push(Node::Any));
                }
            }
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts
                .iter()
                .map(|t| {
                    t.as_str()
                        .ok_or_else(|| Self::err(path, "`type` must be a string or strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(Self::err(path, "`type` must be a string or strings")),
        };
        if types.is_empty() {
            return Err(Self::err(path, "`type` is an empty list"));
        }
        let has_number = types.contains(&"number");
        let number = |integer: bool| -> Result<Node, SchemaError> {
            let bounds = NumBounds::from_schema(obj, integer)
                .map_err(|(key, why)| Self::err(path, format!("`{key}`: {why}")))?;
            Ok(Node::Number { integer, bounds })
        };
        let mut ids = Vec::new();
        for t in &types {
            let id = match *t {
                "object" => self.object(obj, path)?,
                "array" => self.array(obj, path)?,
                "string" => self.string(obj, path)?,
                "number" => self.push(number(false)?),
                // A number admits every integer, and both begin with a digit.
                "integer" if has_number => continue,
                "integer" => self.push(number(true)?),
                "boolean" => self.push(Node::Literals(LIT_TRUE_FALSE)),
                "null" => self.push(Node::Literals(LIT_NULL)),
                other => return Err(Self::err(path, format!("unknown type `{other}`"))),
            };
            ids.push(id);
        }
        Ok(match ids.as_slice() {
            [one] => *one,
            _ => self.push(Node::Union(ids)),
        })
    }

    /// A string: plain, or held to one of `pattern`, `format` or
    /// `minLength`/`maxLength`.
    fn string(&mut self, obj: &[(String, Value)], path: &str) -> Result<NodeId, SchemaError> {
        let get = |k: &str| obj.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let length = |k: &str| -> Result<Option<u64>, SchemaError> {
            get(k)
                .map(|v| {
                    v.as_u64()
                        .ok_or_else(|| Self::err(path, format!("`{k}` must be a whole number")))
                })
                .transpose()
        };
        let (min, max) = (length("minLength")?, length("maxLength")?);
        let mut regexes = Vec::new();
        if let Some(p) = get("pattern") {
            let p = p
                .as_str()
                .ok_or_else(|| Self::err(path, "`pattern` must be a string"))?;
            // JSON Schema patterns match anywhere in the text.
            regexes.push(("pattern", format!("(?s:.*)(?:{p})(?s:.*)")));
        }
        if let Some(f) = get("format") {
            let f = f
                .as_str()
                .ok_or_else(|| Self::err(path, "`format` must be a string"))?;
            let Some((_, regex)) = FORMATS.iter().find(|(name, _)| *name == f) else {
                return Err(Self::err(
                    path,
                    format!(
                        "the format `{f}` is not supported by constrained decoding (supported: {})",
                        FORMATS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            regexes.push(("format", (*regex).to_owned()));
        }
        if let Some((key, n)) = [("minLength", min), ("maxLength", max)]
            .into_iter()
            .find_map(|(k, n)| n.filter(|&n| n > MAX_STRING_LENGTH).map(|n| (k, n)))
        {
            return Err(Self::err(
                path,
                format!(
                    "`{key}` {n} is above the {MAX_STRING_LENGTH} constrained decoding supports"
                ),
            ));
        }
        if min.is_some() || max.is_some() {
            let (lo, hi) = (
                min.unwrap_or(0),
                max.map_or(String::new(), |m| m.to_string()),
            );
            if max.is_some_and(|m| m < lo) {
                return Err(Self::err(path, "`maxLength` is below `minLength`"));
            }
            regexes.push(("minLength", format!("(?s:.){{{lo},{hi}}}")));
        }
        match regexes.as_slice() {
            [] => Ok(self.push(Node::String)),
            [(keyword, regex)] => {
                let pattern = Pattern::new(regex).map_err(|e| {
                    Self::err(
                        path,
                        format!("`{keyword}` cannot be used for constrained decoding: {e}"),
                    )
                })?;
                Ok(self.push(Node::Pattern(Arc::new(pattern))))
            }
            _ => Err(Self::err(
                path,
                "only one of `pattern`, `format` and `minLength`/`maxLength` may constrain a string",
            )),
        }
    }

    fn literal_node(&mut self, values: &[Value], path: &str) -> Result<NodeId, SchemaError> {
        if values.is_empty() {
            return Err(Self::err(path, "`enum` is empty: nothing can match"));
        }
        if values.len() > MAX_CHOICES {
            return Err(Self::err(
                path,
                format!(
                    "`enum` has {} values; at most {MAX_CHOICES} are supported",
                    values.len()
                ),
            ));
        }
        let mut lits: Vec<Vec<u8>> = values.iter().map(|v| v.to_text().into_bytes()).collect();
        lits.dedup();
        let id = self.literals(lits);
        Ok(self.push(Node::Literals(id)))
    }

    fn object(&mut self, obj: &'a [(String, Value)], path: &str) -> Result<NodeId, SchemaError> {
        let get = |k: &str| obj.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let Some(props) = get("properties") else {
            if get("required").is_some_and(|r| r.as_array().is_some_and(|a| !a.is_empty())) {
                return Err(Self::err(
                    path,
                    "`required` names properties but there are no `properties`",
                ));
            }
            return Ok(self.push(Node::AnyObject));
        };
        let props = props
            .as_object()
            .ok_or_else(|| Self::err(path, "`properties` must be an object"))?;
        if props.len() > MAX_CHOICES {
            return Err(Self::err(
                path,
                format!(
                    "{} properties; at most {MAX_CHOICES} are supported",
                    props.len()
                ),
            ));
        }
        let required: Vec<&str> = match get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|x| {
                    x.as_str()
                        .ok_or_else(|| Self::err(path, "`required` must list strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(Self::err(path, "`required` must be an array")),
        };
        for r in &required {
            if !props.iter().any(|(k, _)| k == r) {
                return Err(Self::err(
                    path,
                    format!("`required` names `{r}`, which is not in `properties`"),
                ));
            }
        }
        match get("additionalProperties") {
            None | Some(Value::Bool(_)) | Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(Self::err(
                    path,
                    "`additionalProperties` must be a boolean or a schema",
                ));
            }
        }
        let mut out = Vec::with_capacity(props.len());
        let mut keys = Vec::with_capacity(props.len());
        for (name, schema) in props {
            let node = self.node(schema, &format!("{path}/properties/{name}"))?;
            out.push(Property {
                node,
                required: required.contains(&name.as_str()),
            });
            keys.push(Value::String(name.clone()).to_text().into_bytes());
        }
        let keys = self.literals(keys);
        Ok(self.push(Node::Object { props: out, keys }))
    }

    fn array(&mut self, obj: &'a [(String, Value)], path: &str) -> Result<NodeId, SchemaError> {
        let get = |k: &str| obj.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let items = match get("items") {
            None => self.push(Node::Any),
            Some(s) => self.node(s, &format!("{path}/items"))?,
        };
        let count = |key: &str, default: u32| -> Result<u32, SchemaError> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .map(|n| n.min(u64::from(u32::MAX)) as u32)
                    .ok_or_else(|| {
                        Self::err(path, format!("`{key}` must be a non-negative integer"))
                    }),
            }
        };
        let min = count("minItems", 0)?;
        let max = count("maxItems", u32::MAX)?;
        if min > max {
            return Err(Self::err(path, "`minItems` is larger than `maxItems`"));
        }
        Ok(self.push(Node::Array { items, min, max }))
    }

    /// Replaces every `Ref` by the node it points to, compiling definitions
    /// on first use, then checks that every union can be decided by its
    /// first byte.
    fn resolve_refs(&mut self) -> Result<(), SchemaError> {
        // `target` may compile definitions, adding nodes as this goes.
        let mut i = 0;
        while i < self.g.nodes.len() {
            if matches!(self.g.nodes[i], Node::Ref(_)) {
                self.resolve_chain(i)?;
            }
            i += 1;
        }
        let sets = self.g.first_byte_sets().map_err(|_| {
            Self::err(
                "/",
                "an `anyOf` has itself as an alternative through `$ref`s before any value begins \
                 (left recursion): no value could match it",
            )
        })?;
        for node in &self.g.nodes {
            if let Node::Union(alts) = node {
                let mut seen = ByteSet::default();
                for &a in alts {
                    let first = sets[a as usize];
                    if first.intersects(seen) {
                        return Err(Self::err(
                            "/",
                            "`anyOf`, `oneOf` or a `type` list has alternatives that can begin with the same character \
                             (for example two strings, or an unconstrained schema); constrained decoding needs \
                             alternatives of different kinds, such as a string or null",
                        ));
                    }
                    seen = seen.union(first);
                }
            }
        }
        Ok(())
    }

    /// Replaces the `$ref` in slot `start`, and every `$ref` slot its chain
    /// of references passes through, with the schema the chain ends at: each
    /// slot is resolved once, however long the chain. A chain that comes
    /// back to a slot it passed never reaches a schema.
    fn resolve_chain(&mut self, start: usize) -> Result<(), SchemaError> {
        let mut chain = vec![start];
        let mut seen = std::collections::HashSet::from([start]);
        let mut slot = start;
        while let Node::Ref(r) = &self.g.nodes[slot] {
            let r = r.clone();
            slot = self.target(&r)? as usize;
            if !seen.insert(slot) {
                return Err(Self::err(
                    &r,
                    "`$ref`s form a cycle that never reaches a schema",
                ));
            }
            chain.push(slot);
        }
        let resolved = self.g.nodes[slot].clone();
        for s in chain {
            self.g.nodes[s] = resolved.clone();
        }
        Ok(())
    }

    fn target(&mut self, r: &str) -> Result<NodeId, SchemaError> {
        if let Some(&id) = self.defs.get(r) {
            return Ok(id);
        }
        let schema: &'a Value = if r == "#" {
            self.root
        } else {
            let name = r
                .strip_prefix("#/$defs/")
                .or_else(|| r.strip_prefix("#/definitions/"))
                .ok_or_else(|| {
                    Self::err(
                        r,
                        "only `$ref`s to `#`, `#/$defs/NAME` and `#/definitions/NAME` are supported",
                    )
                })?;
            let section = if r.starts_with("#/$defs/") {
                "$defs"
            } else {
                "definitions"
            };
            self.root
                .get(section)
                .and_then(|d| d.get(name))
                .ok_or_else(|| Self::err(r, "`$ref` points at a definition that does not exist"))?
        };
        if r == "#" {
            self.defs.insert(r.to_owned(), self.g.root);
            // The root's id is only known after compiling it; it is node 0's
            // compilation result, recorded in `g.root` before refs resolve.
            return Ok(self.g.root);
        }
        // Reserve the slot first so that a recursive definition finds it.
        let slot = self.push(Node::Any);
        self.defs.insert(r.to_owned(), slot);
        let compiled = self.node(schema, r)?;
        self.g.nodes[slot as usize] = self.g.nodes[compiled as usize].clone();
        Ok(slot)
    }
}
