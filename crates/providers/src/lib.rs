//! One request, response and stream type for every kind of model: the local
//! engine and vendors' APIs (OpenAI, Anthropic, Gemini, OpenAI-compatible endpoints).
