//! Feeds arbitrary text to the chat-template compiler as a model file's
//! template, and renders what loads with a small conversation. Loading and
//! rendering must end within their bounds (fuel, depth, output size) and
//! never panic or overflow the stack.
//!
//! Run with `-rss_limit_mb`: this renders in-process, where a template
//! that doubles a string in a loop grows memory before the renderer's
//! bounds can see it, and is found that way. (The `lucid` binary renders
//! in memory-bounded workers, `lucid_engine::chat::isolated`, where such a
//! template fails alone.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use lucid_engine::{ChatMessage, ChatTemplate, Role};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = ChatTemplate::new(Some(source), "<s>", "</s>") else {
        return;
    };
    let conversation = [
        ChatMessage::new(Role::System, "Be brief."),
        ChatMessage::new(Role::User, "Hello there"),
        ChatMessage::new(Role::Assistant, "Hi!"),
        ChatMessage::new(Role::User, "What is 2 + 2?"),
    ];
    let _ = template.render(&conversation, true);
    let _ = template.render(&conversation[1..], false);
});
