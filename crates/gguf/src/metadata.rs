//! The key-value metadata of a GGUF file, in file order, with typed getters.
//!
//! Model code asks for what it needs by type (`m.u32("llama.block_count")?`)
//! and gets an error that names the key and the file when the key is absent
//! or holds something else, so that each model family does not have to write
//! its own matching on [`Value`].

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::StringArray;
use crate::error::GgufError;
use crate::value::{Array, Value};

/// Metadata entries in insertion (file) order, with lookup by key.
#[derive(Clone, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    /// The file the metadata came from, for error messages.
    path: Option<Arc<Path>>,
}

impl Metadata {
    pub fn new() -> Metadata {
        Metadata::default()
    }

    pub(crate) fn with_capacity(n: usize, path: Option<Arc<Path>>) -> Metadata {
        Metadata {
            entries: Vec::with_capacity(n),
            index: HashMap::with_capacity(n),
            path,
        }
    }

    /// Sets `key` to `value`. A key that is already present keeps its place
    /// and gets the new value; the old one is returned.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Option<Value> {
        let key = key.into();
        if let Some(&i) = self.index.get(&key) {
            return self
                .entries
                .get_mut(i)
                .map(|(_, old)| std::mem::replace(old, value));
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        None
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        let &i = self.index.get(key)?;
        self.entries.get(i).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The entries in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn missing(&self, key: &str) -> GgufError {
        GgufError::MissingKey {
            path: self.path.as_deref().map(Path::to_path_buf),
            key: key.to_owned(),
        }
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &Value) -> GgufError {
        GgufError::WrongType {
            path: self.path.as_deref().map(Path::to_path_buf),
            key: key.to_owned(),
            expected,
            found: found.type_name(),
        }
    }

    /// Looks `key` up and converts its value with `convert`, which returns
    /// `None` for a value of the wrong type.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        convert: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match convert(value) {
            Some(v) => Ok(Some(v)),
            None => Err(self.wrong_type(key, expected, value)),
        }
    }

    /// Looks `key` up as an integer of any GGUF integer type and narrows it
    /// to `T`.
    fn integer<T: TryFrom<i128>>(
        &self,
        key: &str,
        target: &'static str,
    ) -> Result<Option<T>, GgufError> {
        let Some(wide) = self.typed(key, target, Value::as_integer)? else {
            return Ok(None);
        };
        match T::try_from(wide) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(GgufError::OutOfRange {
                path: self.path.as_deref().map(Path::to_path_buf),
                key: key.to_owned(),
                value: wide.to_string(),
                target,
            }),
        }
    }
}

/// Defines a required getter and its `opt_` variant from one lookup.
macro_rules! getters {
    ($(
        $(#[$doc:meta])*
        $name:ident, $opt:ident -> $ret:ty = |$m:ident, $key:ident| $lookup:expr;
    )*) => {
        impl Metadata {$(
            $(#[$doc])*
            ///
            /// Errors with [`GgufError::MissingKey`] when the key is absent.
            pub fn $name(&self, key: &str) -> Result<$ret, GgufError> {
                self.$opt(key)?.ok_or_else(|| self.missing(key))
            }

            $(#[$doc])*
            ///
            /// `Ok(None)` when the key is absent.
            pub fn $opt(&self, key: &str) -> Result<Option<$ret>, GgufError> {
                let ($m, $key) = (self, key);
                $lookup
            }
        )*}
    };
}

getters! {
    /// The value of an integer key, of any integer type, if it fits in u32.
    u32, opt_u32 -> u32 = |m, key| m.integer(key, "u32");
    /// The value of an integer key, of any integer type, if it fits in i32.
    i32, opt_i32 -> i32 = |m, key| m.integer(key, "i32");
    /// The value of an integer key, of any integer type, if it fits in u64.
    u64, opt_u64 -> u64 = |m, key| m.integer(key, "u64");
    /// The value of an integer key, of any integer type, if it fits in i64.
    i64, opt_i64 -> i64 = |m, key| m.integer(key, "i64");
    /// The value of an integer key, of any integer type, if it fits in usize.
    usize, opt_usize -> usize = |m, key| m.integer(key, "usize");
    /// The value of an f32 or f64 key, as f32.
    f32, opt_f32 -> f32 = |m, key| m.typed(key, "f32", |v| match *v {
        Value::F32(x) => Some(x),
        // Narrowing is what the caller asks for: f32 is what models compute in.
        Value::F64(x) => Some(x as f32),
        _ => None,
    });
    /// The value of a bool key.
    bool, opt_bool -> bool = |m, key| m.typed(key, "bool", |v| match *v {
        Value::Bool(b) => Some(b),
        _ => None,
    });
    /// The value of a string key.
    str, opt_str -> &str = |m, key| m.typed(key, "string", Value::as_str);
    /// The value of an array-of-strings key.
    str_array, opt_str_array -> &StringArray = |m, key| m.typed(key, "array of string", |v| match v {
        Value::Array(Array::String(a)) => Some(a),
        _ => None,
    });
    /// The value of an array-of-f32 key.
    f32_array, opt_f32_array -> &[f32] = |m, key| m.typed(key, "array of f32", |v| match v {
        Value::Array(Array::F32(a)) => Some(a.as_slice()),
        _ => None,
    });
    /// The value of an array-of-i32 key.
    i32_array, opt_i32_array -> &[i32] = |m, key| m.typed(key, "array of i32", |v| match v {
        Value::Array(Array::I32(a)) => Some(a.as_slice()),
        _ => None,
    });
    /// The value of an array-of-u32 key.
    u32_array, opt_u32_array -> &[u32] = |m, key| m.typed(key, "array of u32", |v| match v {
        Value::Array(Array::U32(a)) => Some(a.as_slice()),
        _ => None,
    });
}

impl PartialEq for Metadata {
    /// Same entries in the same order; where they came from does not matter.
    fn eq(&self, other: &Metadata) -> bool {
        self.entries == other.entries
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>> FromIterator<(K, Value)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Metadata {
        let mut m = Metadata::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}
