//! Feeds arbitrary JSON schemas to the JSON-schema compiler, then arbitrary
//! bytes to what it compiled. Compiling must end (a finding if it takes
//! libFuzzer's `-timeout`), refuse cleanly or succeed; the compiled grammar
//! must accept or refuse every byte without panicking.
//!
//! The input is split at its first NUL byte: the schema before, the bytes
//! to feed after.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use lucid_scheduler::{Grammar, Json, JsonState};

fuzz_target!(|data: &[u8]| {
    let (schema, output) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(schema) else {
        return;
    };
    let Ok(grammar) = Grammar::from_schema(&Json::from(&value)) else {
        return;
    };
    let mut state = JsonState::new(Arc::new(grammar));
    for &b in output {
        if !state.push(b) {
            break;
        }
        let _ = (state.is_done(), state.can_end());
    }
});
