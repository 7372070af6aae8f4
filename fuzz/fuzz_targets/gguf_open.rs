//! Feeds arbitrary bytes to the GGUF reader. It must never panic, read out of
//! bounds or allocate absurdly; what it accepts must be consistent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lucid_gguf::{Bytes, GgufFile};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(Bytes::copy_from_slice(data)) else {
        return;
    };
    let m = f.metadata();
    for (key, value) in m.iter() {
        assert!(m.get(key).is_some_and(|v| std::ptr::eq(v, value)));
        let _ = (m.u32(key), m.i32(key), m.u64(key), m.i64(key), m.usize(key));
        let _ = (m.f32(key), m.bool(key), m.str(key));
        let _ = (
            m.str_array(key),
            m.f32_array(key),
            m.i32_array(key),
            m.u32_array(key),
        );
    }
    let _ = f.general();
    assert!(f.alignment().is_power_of_two());
    for t in f.tensors() {
        let bytes = f.tensor_bytes(t);
        assert_eq!(bytes.len(), t.n_bytes);
        assert!(t.offset + t.n_bytes as u64 <= f.file_size());
        assert_eq!(t.offset % f.alignment() as u64, 0);
        let _ = (t.n_elements(), t.n_rows(), t.row_len());
        assert_eq!(f.tensor(&t.name), Some(t));
    }
});
