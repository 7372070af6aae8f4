//! GPT-2's mapping between bytes and printable characters.
//!
//! Byte-level BPE vocabularies store every byte as a visible character so that
//! token texts are printable: bytes that are printable Latin-1 stand for
//! themselves, and the other 68 (controls, space, NBSP, soft hyphen) take the
//! characters from U+0100 up, in byte order. A space is `Ġ` (U+0120), a
//! newline `Ċ` (U+010A).

/// Whether byte value `cp` is printable Latin-1 and so its own character.
fn is_self_mapped(cp: u32) -> bool {
    matches!(cp, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The byte for each character U+0100..U+0144, built once.
fn high_table() -> &'static [u8; 68] {
    static TABLE: std::sync::OnceLock<[u8; 68]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u8; 68];
        let mut n = 0;
        for b in 0u8..=255 {
            if !is_self_mapped(u32::from(b))
                && let Some(slot) = t.get_mut(n)
            {
                *slot = b;
                n += 1;
            }
        }
        t
    })
}

/// GPT-2's character for each byte.
pub(crate) fn byte_chars() -> [char; 256] {
    let mut chars = ['\0'; 256];
    let mut n = 0;
    for (b, slot) in chars.iter_mut().enumerate() {
        let b = b as u32;
        let cp = if is_self_mapped(b) {
            b
        } else {
            n += 1;
            0xFF + n
        };
        *slot = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    chars
}

/// Appends the bytes that the byte-level token text `text` stands for. A
/// character outside the mapping (a vocabulary with stray text) is kept as
/// its own UTF-8.
pub(crate) fn decode_into(text: &str, out: &mut Vec<u8>) {
    let high = high_table();
    for c in text.chars() {
        let cp = u32::from(c);
        if is_self_mapped(cp) {
            out.push(cp as u8);
        } else if let Some(&b) = cp.checked_sub(0x100).and_then(|n| high.get(n as usize)) {
            out.push(b);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapped_characters_cover_every_byte_once() {
        let mut bytes = Vec::new();
        let printable = (0x21..=0x7Eu32).chain(0xA1..=0xAC).chain(0xAE..=0xFF);
        for c in printable.chain(0x100..0x144).filter_map(char::from_u32) {
            let mut out = Vec::new();
            decode_into(c.encode_utf8(&mut [0; 4]), &mut out);
            assert_eq!(out.len(), 1, "{c:?}");
            bytes.extend(out);
        }
        bytes.sort_unstable();
        assert_eq!(bytes, (0u8..=255).collect::<Vec<_>>());
        let mut out = Vec::new();
        decode_into("ĠhelloĊ\u{144}", &mut out);
        assert_eq!(out, " hello\n\u{144}".as_bytes());
    }
}
