//! The test cases, by area.

mod anthropic;
mod compat;
mod conformance;
mod gemini;
mod openai;
mod router;
