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
//! - `$ref` to `#`, `#/$defs/NAME` or `#/definitions/NAME` (recursion is fine);
//! - annotations that do not constrain: `title`, `description`, `default`,
//!   `examples`, `$schema`, `$id`, `$comment`, `deprecated`, `readOnly`,
//!   `writeOnly`.

use std::collections::HashMap;

use super::doc::Json as Value;

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
    },
    /// One of these JSON texts exactly (`enum`, `const`, `true`/`false`, `null`).
    Literals(LitSetId),
    /// One of several nodes, told apart by their first byte.
    Union(Vec<NodeId>),
    /// Not resolved yet (a `$ref` while compiling).
    Ref(String),
}

/// A compiled schema: the nodes and literal sets the constraint refers to by index.
#[derive(Clone, Debug)]
pub struct Grammar {
    pub(crate) nodes: Vec<Node>,
    pub(crate) literals: Vec<Vec<Vec<u8>>>,
    pub(crate) root: NodeId,
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
        }
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
            Node::String => set.insert(b'"'),
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
    "$ref",
    "$defs",
    "definitions",
];

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
        if let Some(any_of) = get("anyOf") {
            let alts = any_of
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| Self::err(path, "`anyOf` must be a non-empty array"))?;
            let mut ids = Vec::new();
            for (i, alt) in alts.iter().enumerate() {
                ids.push(self.node(alt, &format!("{path}/anyOf/{i}"))?);
            }
            return Ok(self.push(Node::Union(ids)));
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
        let mut ids = Vec::new();
        for t in &types {
            let id = match *t {
                "object" => self.object(obj, path)?,
                "array" => self.array(obj, path)?,
                "string" => self.push(Node::String),
                "number" => self.push(Node::Number { integer: false }),
                // A number admits every integer, and both begin with a digit.
                "integer" if has_number => continue,
                "integer" => self.push(Node::Number { integer: true }),
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
                            "`anyOf` or a `type` list has alternatives that can begin with the same character \
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
