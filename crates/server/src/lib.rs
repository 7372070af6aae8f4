//! `lucid serve`: an OpenAI- and Ollama-compatible HTTP server and the glass-box web page.
