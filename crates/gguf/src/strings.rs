//! An array of strings kept in one buffer.
//!
//! A vocabulary holds a quarter of a million short texts. Stored as a
//! `Vec<String>` that is a quarter of a million allocations to make and to
//! free; here it is one text buffer and one list of where each string ends,
//! reading it from a file checks UTF-8 once over the whole buffer, and the
//! two are shared, so a tokenizer keeps the file's vocabulary without a copy.

use std::fmt;
use std::ops::Index;
use std::sync::Arc;

/// Strings laid end to end in one buffer, indexed like a slice of `&str`.
/// Cloning shares the buffers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StringArray {
    text: Arc<String>,
    /// `ends[i]` is the byte offset in `text` where string `i` ends; it
    /// starts where string `i - 1` ends (or at 0). Every end is a char
    /// boundary of `text`.
    ends: Arc<Vec<usize>>,
}

impl StringArray {
    /// Builds the array from raw bytes and the end of each string in them,
    /// checking that the bytes are UTF-8 and that no end cuts a character.
    /// On failure, returns the index of the first string that is not valid
    /// UTF-8 on its own.
    pub(crate) fn from_parts(bytes: Vec<u8>, ends: Vec<usize>) -> Result<StringArray, usize> {
        debug_assert!(ends.windows(2).all(|w| w[0] <= w[1]));
        debug_assert!(ends.last().is_none_or(|&e| e == bytes.len()));
        let first_bad = |ends: &[usize], bytes: &[u8]| {
            let mut start = 0;
            for (i, &end) in ends.iter().enumerate() {
                if std::str::from_utf8(&bytes[start..end]).is_err() {
                    return i;
                }
                start = end;
            }
            ends.len()
        };
        // Valid as a whole with every end on a char boundary means every
        // string is valid on its own (and the converse).
        if simdutf8::basic::from_utf8(&bytes).is_err() {
            return Err(first_bad(&ends, &bytes));
        }
        // SAFETY: `simdutf8` has just checked that the bytes are UTF-8.
        let text = unsafe { String::from_utf8_unchecked(bytes) };
        if ends.iter().any(|&end| !text.is_char_boundary(end)) {
            return Err(first_bad(&ends, text.as_bytes()));
        }
        Ok(StringArray {
            text: Arc::new(text),
            ends: Arc::new(ends),
        })
    }

    /// The number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    /// The strings in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + DoubleEndedIterator + '_ {
        (0..self.len()).map(|i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.text[start..self.ends[i]]
        })
    }
}

impl Index<usize> for StringArray {
    type Output = str;

    fn index(&self, i: usize) -> &str {
        match self.get(i) {
            Some(s) => s,
            None => panic!("string {i} of an array of {}", self.len()),
        }
    }
}

impl fmt::Debug for StringArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for StringArray {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> StringArray {
        let (mut text, mut ends) = (String::new(), Vec::new());
        for s in iter {
            text.push_str(s.as_ref());
            ends.push(text.len());
        }
        StringArray {
            text: Arc::new(text),
            ends: Arc::new(ends),
        }
    }
}

impl From<Vec<String>> for StringArray {
    fn from(v: Vec<String>) -> StringArray {
        v.into_iter().collect()
    }
}

impl From<Vec<&str>> for StringArray {
    fn from(v: Vec<&str>) -> StringArray {
        v.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_like_a_slice() {
        let a: StringArray = ["", "ab", "▁x", ""].into_iter().collect();
        assert_eq!(a.len(), 4);
        assert_eq!(a.iter().collect::<Vec<_>>(), ["", "ab", "▁x", ""]);
        assert_eq!(&a[2], "▁x");
        assert_eq!(a.get(4), None);
        assert_eq!(a.iter().next_back(), Some(""));
        assert_eq!(format!("{a:?}"), r#"["", "ab", "▁x", ""]"#);
    }

    #[test]
    fn from_parts_finds_the_bad_string() {
        let ok = StringArray::from_parts(b"abcd".to_vec(), vec![1, 1, 4]).unwrap();
        assert_eq!(ok.iter().collect::<Vec<_>>(), ["a", "", "bcd"]);
        // Invalid bytes in string 1.
        assert_eq!(
            StringArray::from_parts(b"ab\xffc".to_vec(), vec![1, 4]),
            Err(1)
        );
        // Valid as a whole, but the end of string 0 cuts "▁" in two.
        let bytes = "▁".as_bytes().to_vec();
        assert_eq!(StringArray::from_parts(bytes, vec![1, 3]), Err(0));
    }
}
