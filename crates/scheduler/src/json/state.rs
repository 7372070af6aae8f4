//! The byte-level automaton that decides, for a [`Grammar`], whether a text
//! can still become valid JSON of the right shape.
//!
//! It is a pushdown automaton: a stack of frames, one per open value
//! (object, array, string, number, literal). Feeding a byte either moves the
//! top frame on, pushes a child, pops a finished value (a number or an
//! ambiguous literal pops when a byte arrives that cannot continue it, and
//! that byte is fed again to the parent), or is refused. The constraint asks
//! it about each candidate token's bytes on a clone, so the state is kept
//! small: indices into the grammar and bit masks, no strings.
//!
//! Whitespace between tokens is at most [`MAX_WS_RUN`] space; numbers have at most [`MAX_DIGITS`] digits per part,
//! and strings must be valid UTF-8 without control characters: otherwise a
//! small model can pad forever and never finish the value.

use std::sync::Arc;

use super::number::Written;
use super::schema::{Grammar, LIT_FALSE, LIT_NULL, LIT_TRUE, LitSetId, Node, NodeId};

/// Whitespace between JSON tokens is at most this many spaces. Small models
/// given the freedom of llama.cpp's JSON grammar (a newline and up to 20
/// spaces or tabs anywhere) spend their token budget on indentation and
/// never close the value; compact JSON with single spaces is still valid
/// JSON and always makes progress.
pub const MAX_WS_RUN: u8 = 1;
/// The most digits in a number's integer, fraction or exponent part.
pub const MAX_DIGITS: u8 = 16;
/// The deepest nesting of unconstrained (`Any`) values.
const MAX_ANY_DEPTH: u16 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ObjPhase {
    /// After `{`: a key or `}`.
    Start,
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or `}`.
    AfterValue,
    /// After `,`: a key.
    NeedKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArrPhase {
    Start,
    AfterValue,
    AfterComma,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NumPhase {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl NumPhase {
    fn accepting(self) -> bool {
        matches!(
            self,
            NumPhase::Zero | NumPhase::Int | NumPhase::Frac | NumPhase::ExpDigits
        )
    }
}

/// What the next byte of a string may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StrPhase {
    Plain,
    /// After a backslash.
    Escape,
    /// Inside `\uXXXX`, this many hex digits to go.
    Unicode(u8),
    /// Inside a multi-byte UTF-8 character: continuation bytes to go, and
    /// the range the next one must be in.
    Utf8 {
        left: u8,
        lo: u8,
        hi: u8,
    },
}

#[derive(Clone, Debug)]
enum Frame {
    /// A value of this node is expected next.
    Value(NodeId),
    Object {
        node: NodeId,
        phase: ObjPhase,
        /// The first property that may still be written.
        next: u16,
    },
    AnyObject {
        phase: ObjPhase,
        depth: u16,
    },
    Array {
        items: NodeId,
        min: u32,
        max: u32,
        count: u32,
        phase: ArrPhase,
    },
    AnyArray {
        phase: ArrPhase,
        depth: u16,
    },
    /// An unconstrained value is expected (inside `Any` containers).
    AnyValue {
        depth: u16,
    },
    Str(StrPhase),
    /// Inside a string held to a pattern: the node and the DFA's state.
    Pat {
        node: NodeId,
        state: regex_automata::util::primitives::StateID,
    },
    Num {
        integer: bool,
        phase: NumPhase,
        digits: u8,
        /// The node, when it bounds the value; then `written` is checked
        /// against the bounds at every byte.
        bounded: Option<NodeId>,
        written: Written,
    },
    /// Matching one of a set of literal texts.
    Lit {
        set: LitSetId,
        /// Candidates still possible.
        cand: u128,
        pos: u16,
        /// For object keys: the object's first allowed property, so the
        /// match can tell the object which property it was.
        key_of: bool,
    },
}

/// How far a text has got through a grammar. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JsonState {
    grammar: Arc<Grammar>,
    stack: Vec<Frame>,
    /// Whitespace bytes since the last other byte.
    ws_run: u8,
}

enum Step {
    Consumed,
    Refused,
    /// The top frame is finished; feed the byte again to its parent.
    PopAndRefeed,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl JsonState {
    /// The state before any output.
    pub fn new(grammar: Arc<Grammar>) -> JsonState {
        let root = grammar.root;
        JsonState {
            grammar,
            stack: vec![Frame::Value(root)],
            ws_run: 0,
        }
    }

    /// Makes `self` equal to `other`, reusing `self`'s allocation.
    pub fn copy_from(&mut self, other: &JsonState) {
        if !Arc::ptr_eq(&self.grammar, &other.grammar) {
            self.grammar = other.grammar.clone();
        }
        self.stack.clone_from(&other.stack);
        self.ws_run = other.ws_run;
    }

    /// Whether the value is complete and nothing more may follow.
    pub fn is_done(&self) -> bool {
        self.stack.is_empty()
    }

    /// Whether the text so far is a complete value (a number at the top
    /// level may still go on, but may also end here).
    pub fn can_end(&self) -> bool {
        for (i, f) in self.stack.iter().enumerate().rev() {
            let finished = match f {
                Frame::Num {
                    phase,
                    bounded,
                    written,
                    ..
                } => phase.accepting() && self.in_bounds(*bounded, written),
                Frame::Lit { set, cand, pos, .. } => {
                    self.complete_candidate(*set, *cand, *pos).is_some()
                }
                // Plain text held to a pattern ends where the pattern may.
                Frame::Pat { node, state } if self.grammar.text => {
                    matches!(self.grammar.node(*node), Node::Pattern(p) if p.accepts(*state))
                }
                _ => false,
            };
            if !finished {
                return false;
            }
            // Only values that end without a closing byte may be cut off,
            // and only if everything below them is finished too.
            if i == 0 {
                return true;
            }
        }
        self.stack.is_empty()
    }

    /// Feeds `bytes`; on `false` the state is unspecified (use a clone).
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.push(b))
    }

    /// Feeds one byte.
    pub fn push(&mut self, b: u8) -> bool {
        loop {
            let step = match self.stack.last() {
                None => return false,
                Some(_) => self.step(b),
            };
            match step {
                Step::Consumed => {
                    if is_ws(b)
                        && !matches!(self.stack.last(), Some(Frame::Str(_) | Frame::Pat { .. }))
                    {
                        self.ws_run = self.ws_run.saturating_add(1);
                    } else {
                        self.ws_run = 0;
                    }
                    return true;
                }
                Step::Refused => return false,
                Step::PopAndRefeed => {
                    self.stack.pop();
                }
            }
        }
    }

    /// Whether whitespace byte `b` may come next.
    fn ws_ok(&self, b: u8) -> bool {
        b == b' ' && self.ws_run < MAX_WS_RUN
    }

    /// Whether a number as written may end here: always, unless its node
    /// bounds it and it is outside the bounds.
    fn in_bounds(&self, bounded: Option<NodeId>, written: &Written) -> bool {
        match bounded.map(|n| self.grammar.node(n)) {
            Some(Node::Number {
                bounds: Some(nb), ..
            }) => nb.contains(written),
            _ => true,
        }
    }

    fn complete_candidate(&self, set: LitSetId, cand: u128, pos: u16) -> Option<usize> {
        let lits = self.grammar.literal_set(set);
        (0..lits.len()).find(|&i| cand & (1u128 << i) != 0 && lits[i].len() == usize::from(pos))
    }

    fn step(&mut self, b: u8) -> Step {
        let grammar = self.grammar.clone();
        let ws_ok = self.ws_ok(b);
        let Some(top) = self.stack.last_mut() else {
            return Step::Refused;
        };
        match top {
            Frame::Value(node) => {
                if is_ws(b) && !grammar.text {
                    return if ws_ok { Step::Consumed } else { Step::Refused };
                }
                let node = *node;
                match grammar.node(node) {
                    Node::Any => {
                        *top = Frame::AnyValue { depth: 0 };
                        self.step(b)
                    }
                    Node::Object { .. } => {
                        if b == b'{' {
                            *top = Frame::Object {
                                node,
                                phase: ObjPhase::Start,
                                next: 0,
                            };
                            Step::Consumed
                        } else {
                            Step::Refused
                        }
                    }
                    Node::AnyObject => {
                        if b == b'{' {
                            *top = Frame::AnyObject {
                                phase: ObjPhase::Start,
                                depth: 1,
                            };
                            Step::Consumed
                        } else {
                            Step::Refused
                        }
                    }
                    Node::Array { items, min, max } => {
                        if b == b'[' {
                            *top = Frame::Array {
                                items: *items,
                                min: *min,
                                max: *max,
                                count: 0,
                                phase: ArrPhase::Start,
                            };
                            Step::Consumed
                        } else {
                            Step::Refused
                        }
                    }
                    Node::String => {
                        if b == b'"' {
                            *top = Frame::Str(StrPhase::Plain);
                            Step::Consumed
                        } else {
                            Step::Refused
                        }
                    }
                    Node::Pattern(p) => {
                        let start = Frame::Pat {
                            node,
                            state: p.start(),
                        };
                        if grammar.text {
                            // Plain text: the pattern sees every byte.
                            *top = start;
                            self.step(b)
                        } else if b == b'"' {
                            *top = start;
                            Step::Consumed
                        } else {
                            Step::Refused
                        }
                    }
                    Node::Number { integer, bounds } => {
                        if b == b'-' || b.is_ascii_digit() {
                            let written = Written {
                                negative: b == b'-',
                                ..Written::default()
                            };
                            if bounds.is_some_and(|nb| !nb.reachable(&written)) {
                                return Step::Refused;
                            }
                            *top = Frame::Num {
                                integer: *integer,
                                phase: NumPhase::Minus,
                                digits: 0,
                                bounded: bounds.is_some().then_some(node),
                                written,
                            };
                            // Start as if after a sign, then handle the byte.
                            if b == b'-' {
                                Step::Consumed
                            } else {
                                self.step(b)
                            }
                        } else {
                            Step::Refused
                        }
                    }
                    Node::Literals(set) => {
                        let f = lit_frame(&grammar, *set, false);
                        if let Some(top) = self.stack.last_mut() {
                            *top = f;
                        }
                        self.step(b)
                    }
                    Node::Union(alts) => {
                        for &a in alts {
                            if first_byte_ok(&grammar, a, b) {
                                if let Some(top) = self.stack.last_mut() {
                                    *top = Frame::Value(a);
                                }
                                return self.step(b);
                            }
                        }
                        Step::Refused
                    }
                    Node::Ref(_) => Step::Refused,
                }
            }
            Frame::AnyValue { depth } => {
                if is_ws(b) {
                    return if ws_ok { Step::Consumed } else { Step::Refused };
                }
                let depth = *depth;
                match b {
                    b'{' if depth < MAX_ANY_DEPTH => {
                        *top = Frame::AnyObject {
                            phase: ObjPhase::Start,
                            depth: depth + 1,
                        };
                        Step::Consumed
                    }
                    b'[' if depth < MAX_ANY_DEPTH => {
                        *top = Frame::AnyArray {
                            phase: ArrPhase::Start,
                            depth: depth + 1,
                        };
                        Step::Consumed
                    }
                    b'"' => {
                        *top = Frame::Str(StrPhase::Plain);
                        Step::Consumed
                    }
                    b'-' => {
                        *top = Frame::Num {
                            integer: false,
                            phase: NumPhase::Minus,
                            digits: 0,
                            bounded: None,
                            written: Written {
                                negative: true,
                                ..Written::default()
                            },
                        };
                        Step::Consumed
                    }
                    b'0'..=b'9' => {
                        *top = Frame::Num {
                            integer: false,
                            phase: NumPhase::Minus,
                            digits: 0,
                            bounded: None,
                            written: Written::default(),
                        };
                        self.step(b)
                    }
                    b't' | b'f' | b'n' => {
                        let set = match b {
                            b't' => LIT_TRUE,
                            b'f' => LIT_FALSE,
                            _ => LIT_NULL,
                        };
                        let f = lit_frame(&grammar, set, false);
                        if let Some(top) = self.stack.last_mut() {
                            *top = f;
                        }
                        self.step(b)
                    }
                    _ => Step::Refused,
                }
            }
            Frame::Object { node, phase, next } => {
                let (node, next_v) = (*node, *next);
                if is_ws(b) {
                    return if ws_ok { Step::Consumed } else { Step::Refused };
                }
                match (*phase, b) {
                    (ObjPhase::Start | ObjPhase::NeedKey, b'"') => {
                        let cand = allowed_keys(&grammar, node, next_v);
                        if cand == 0 {
                            return Step::Refused;
                        }
                        let Node::Object { keys, .. } = grammar.node(node) else {
                            return Step::Refused;
                        };
                        if let Some(Frame::Object { phase, .. }) = self.stack.last_mut() {
                            *phase = ObjPhase::Colon;
                        }
                        self.stack.push(Frame::Lit {
                            set: *keys,
                            cand,
                            pos: 0,
                            key_of: true,
                        });
                        self.step(b)
                    }
                    (ObjPhase::Start | ObjPhase::AfterValue, b'}') => {
                        if may_close(&grammar, node, next_v) {
                            // The object is complete.
                            self.stack.pop();
                            Step::Consumed
                        } else {
                            Step::Refused
                        }
                    }
                    (ObjPhase::AfterValue, b',') => {
                        if allowed_keys(&grammar, node, next_v) != 0 {
                            *phase = ObjPhase::NeedKey;
                            Step::Consumed
                        } else {
                            Step::Refused
                        }
                    }
                    (ObjPhase::Colon, b':') => {
                        // `next` was set past the matched key; its value follows.
                        let Node::Object { props, .. } = grammar.node(node) else {
                            return Step::Refused;
                        };
                        let Some(prop) = usize::from(next_v)
                            .checked_sub(1)
                            .and_then(|i| props.get(i))
                        else {
                            return Step::Refused;
                        };
                        *phase = ObjPhase::AfterValue;
                        self.stack.push(Frame::Value(prop.node));
                        Step::Consumed
                    }
                    _ => Step::Refused,
                }
            }
            Frame::AnyObject { phase, depth } => {
                if is_ws(b) {
                    return if ws_ok { Step::Consumed } else { Step::Refused };
                }
                let depth = *depth;
                match (*phase, b) {
                    (ObjPhase::Start | ObjPhase::NeedKey, b'"') => {
                        *phase = ObjPhase::Colon;
                        self.stack.push(Frame::Str(StrPhase::Plain));
                        Step::Consumed
                    }
                    (ObjPhase::Start | ObjPhase::AfterValue, b'}') => {
                        self.stack.pop();
                        Step::Consumed
                    }
                    (ObjPhase::AfterValue, b',') => {
                        *phase = ObjPhase::NeedKey;
                        Step::Consumed
                    }
                    (ObjPhase::Colon, b':') => {
                        *phase = ObjPhase::AfterValue;
                        self.stack.push(Frame::AnyValue { depth });
                        Step::Consumed
                    }
                    _ => Step::Refused,
                }
            }
            Frame::Array {
                items,
                min,
                max,
                count,
                phase,
            } => {
                if is_ws(b) {
                    return if ws_ok { Step::Consumed } else { Step::Refused };
                }
                match (*phase, b) {
                    (ArrPhase::Start | ArrPhase::AfterValue, b']') => {
                        if *count >= *min {
                            self.stack.pop();
                            Step::Consumed
                        } else {
                            Step::Refused
                        }
                    }
                    (ArrPhase::AfterValue, b',') => {
                        if *count < *max {
                            *phase = ArrPhase::AfterComma;
                            Step::Consumed
                        } else {
                            Step::Refused
                        }
                    }
                    (ArrPhase::Start | ArrPhase::AfterComma, _) => {
                        if *count >= *max {
                            return Step::Refused;
                        }
                        *count += 1;
                        *phase = ArrPhase::AfterValue;
                        let items = *items;
                        self.stack.push(Frame::Value(items));
                        self.step(b)
                    }
                    _ => Step::Refused,
                }
            }
            Frame::AnyArray { phase, depth } => {
                if is_ws(b) {
                    return if ws_ok { Step::Consumed } else { Step::Refused };
                }
                let depth = *depth;
                match (*phase, b) {
                    (ArrPhase::Start | ArrPhase::AfterValue, b']') => {
                        self.stack.pop();
                        Step::Consumed
                    }
                    (ArrPhase::AfterValue, b',') => {
                        *phase = ArrPhase::AfterComma;
                        Step::Consumed
                    }
                    (ArrPhase::Start | ArrPhase::AfterComma, _) => {
                        *phase = ArrPhase::AfterValue;
                        self.stack.push(Frame::AnyValue { depth });
                        self.step(b)
                    }
                    _ => Step::Refused,
                }
            }
            Frame::Pat { node, state } => {
                let Node::Pattern(p) = self.grammar.node(*node) else {
                    return Step::Refused;
                };
                match b {
                    b'"' if p.accepts(*state) && !grammar.text => {
                        self.stack.pop();
                        Step::Consumed
                    }
                    // The text is written without escapes, so that its
                    // bytes are the string the pattern sees.
                    b'"' | b'\\' | 0x00..=0x1F if !grammar.text => Step::Refused,
                    _ => match p.next(*state, b) {
                        Some(next) => {
                            *state = next;
                            Step::Consumed
                        }
                        None => Step::Refused,
                    },
                }
            }
            Frame::Str(phase) => match *phase {
                StrPhase::Plain => match b {
                    b'"' => {
                        self.stack.pop();
                        Step::Consumed
                    }
                    b'\\' => {
                        *phase = StrPhase::Escape;
                        Step::Consumed
                    }
                    0x00..=0x1F => Step::Refused,
                    0x20..=0x7F => Step::Consumed,
                    0xC2..=0xDF => {
                        *phase = StrPhase::Utf8 {
                            left: 1,
                            lo: 0x80,
                            hi: 0xBF,
                        };
                        Step::Consumed
                    }
                    0xE0..=0xEF => {
                        let (lo, hi) = match b {
                            0xE0 => (0xA0, 0xBF),
                            0xED => (0x80, 0x9F),
                            _ => (0x80, 0xBF),
                        };
                        *phase = StrPhase::Utf8 { left: 2, lo, hi };
                        Step::Consumed
                    }
                    0xF0..=0xF4 => {
                        let (lo, hi) = match b {
                            0xF0 => (0x90, 0xBF),
                            0xF4 => (0x80, 0x8F),
                            _ => (0x80, 0xBF),
                        };
                        *phase = StrPhase::Utf8 { left: 3, lo, hi };
                        Step::Consumed
                    }
                    _ => Step::Refused,
                },
                StrPhase::Escape => match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                        *phase = StrPhase::Plain;
                        Step::Consumed
                    }
                    b'u' => {
                        *phase = StrPhase::Unicode(4);
                        Step::Consumed
                    }
                    _ => Step::Refused,
                },
                StrPhase::Unicode(n) => {
                    if b.is_ascii_hexdigit() {
                        *phase = if n <= 1 {
                            StrPhase::Plain
                        } else {
                            StrPhase::Unicode(n - 1)
                        };
                        Step::Consumed
                    } else {
                        Step::Refused
                    }
                }
                StrPhase::Utf8 { left, lo, hi } => {
                    if (lo..=hi).contains(&b) {
                        *phase = if left <= 1 {
                            StrPhase::Plain
                        } else {
                            StrPhase::Utf8 {
                                left: left - 1,
                                lo: 0x80,
                                hi: 0xBF,
                            }
                        };
                        Step::Consumed
                    } else {
                        Step::Refused
                    }
                }
            },
            Frame::Num {
                integer,
                phase,
                digits,
                bounded,
                written,
            } => {
                let integer = *integer;
                let bounds = bounded.and_then(|n| match grammar.node(n) {
                    Node::Number { bounds, .. } => *bounds,
                    _ => None,
                });
                let digit = b.is_ascii_digit();
                let more = *digits < MAX_DIGITS;
                let next = match (*phase, b) {
                    (NumPhase::Minus, b'0') => Some((NumPhase::Zero, 1)),
                    (NumPhase::Minus, _) if digit => Some((NumPhase::Int, 1)),
                    (NumPhase::Int, _) if digit && more => Some((NumPhase::Int, *digits + 1)),
                    (NumPhase::Zero | NumPhase::Int, b'.') if !integer => Some((NumPhase::Dot, 0)),
                    // Bounded numbers are written without an exponent.
                    (NumPhase::Zero | NumPhase::Int | NumPhase::Frac, b'e' | b'E')
                        if !integer && bounds.is_none() =>
                    {
                        Some((NumPhase::Exp, 0))
                    }
                    (NumPhase::Dot, _) if digit => Some((NumPhase::Frac, 1)),
                    (NumPhase::Frac, _) if digit && more => Some((NumPhase::Frac, *digits + 1)),
                    (NumPhase::Exp, b'+' | b'-') => Some((NumPhase::ExpSign, 0)),
                    (NumPhase::Exp | NumPhase::ExpSign, _) if digit => {
                        Some((NumPhase::ExpDigits, 1))
                    }
                    (NumPhase::ExpDigits, _) if digit && *digits < 3 => {
                        Some((NumPhase::ExpDigits, *digits + 1))
                    }
                    _ => None,
                };
                match next {
                    Some((p, d)) => {
                        let mut w = *written;
                        let value = u64::from(b.wrapping_sub(b'0'));
                        match p {
                            NumPhase::Zero | NumPhase::Int => {
                                w.empty = false;
                                w.int = w.int * 10 + value;
                                w.int_digits = d;
                            }
                            NumPhase::Dot => w.point = true,
                            NumPhase::Frac => {
                                w.frac = w.frac * 10 + value;
                                w.frac_digits = d;
                            }
                            _ => {}
                        }
                        if bounds.is_some_and(|nb| !nb.reachable(&w)) {
                            return Step::Refused;
                        }
                        *written = w;
                        *phase = p;
                        *digits = d;
                        Step::Consumed
                    }
                    None if phase.accepting()
                        && !digit
                        && bounds.is_none_or(|nb| nb.contains(written)) =>
                    {
                        Step::PopAndRefeed
                    }
                    None => Step::Refused,
                }
            }
            Frame::Lit {
                set,
                cand,
                pos,
                key_of,
            } => {
                let lits = grammar.literal_set(*set);
                let p = usize::from(*pos);
                let mut next = 0u128;
                let mut complete = None;
                for (i, lit) in lits.iter().enumerate().take(128) {
                    if *cand & (1u128 << i) == 0 {
                        continue;
                    }
                    if lit.get(p) == Some(&b) {
                        next |= 1u128 << i;
                    } else if lit.len() == p {
                        complete = Some(i);
                    }
                }
                if next == 0 {
                    // Nothing continues: if one literal was already whole,
                    // it ends here and the byte belongs to the parent.
                    return match complete {
                        Some(i) => {
                            let key_of = *key_of;
                            self.finish_literal(i, key_of);
                            Step::PopAndRefeed
                        }
                        None => Step::Refused,
                    };
                }
                *cand = next;
                *pos += 1;
                let p = usize::from(*pos);
                // A single candidate that is now whole ends at once.
                if next.count_ones() == 1 {
                    let i = next.trailing_zeros() as usize;
                    if lits.get(i).is_some_and(|l| l.len() == p) {
                        let key_of = *key_of;
                        self.finish_literal(i, key_of);
                        self.stack.pop();
                    }
                }
                Step::Consumed
            }
        }
    }

    /// Tells the object whose key literal `i` matched which property it is.
    fn finish_literal(&mut self, i: usize, key_of: bool) {
        if !key_of {
            return;
        }
        let n = self.stack.len();
        if n >= 2
            && let Frame::Object { next, .. } = &mut self.stack[n - 2]
        {
            *next = (i + 1) as u16;
        }
    }
}

/// Whether a value of `node` may begin with `b`.
fn first_byte_ok(g: &Grammar, node: NodeId, b: u8) -> bool {
    match g.node(node) {
        Node::Any | Node::Ref(_) => true,
        Node::Object { .. } | Node::AnyObject => b == b'{',
        Node::Array { .. } => b == b'[',
        Node::String | Node::Pattern(_) => b == b'"',
        Node::Number { .. } => b == b'-' || b.is_ascii_digit(),
        Node::Literals(set) => g.literal_set(*set).iter().any(|l| l.first() == Some(&b)),
        Node::Union(alts) => alts.iter().any(|&a| first_byte_ok(g, a, b)),
    }
}

fn all_candidates(n: usize) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    }
}

fn lit_frame(g: &Grammar, set: LitSetId, key_of: bool) -> Frame {
    Frame::Lit {
        set,
        cand: all_candidates(g.literal_set(set).len()),
        pos: 0,
        key_of,
    }
}

/// Candidate keys of an object: from `next` up to and including the first
/// required property (a required one cannot be skipped).
fn allowed_keys(g: &Grammar, node: NodeId, next: u16) -> u128 {
    let Node::Object { props, .. } = g.node(node) else {
        return 0;
    };
    let mut mask = 0u128;
    for (i, p) in props.iter().enumerate().skip(usize::from(next)) {
        mask |= 1u128 << i;
        if p.required {
            break;
        }
    }
    mask
}

/// Whether an object may close with no required property left out.
fn may_close(g: &Grammar, node: NodeId, next: u16) -> bool {
    match g.node(node) {
        Node::Object { props, .. } => props.iter().skip(usize::from(next)).all(|p| !p.required),
        _ => true,
    }
}
