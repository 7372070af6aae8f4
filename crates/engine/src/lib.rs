//! The local inference engine: model families, the forward pass, the KV cache,
//! sampling and generation. It knows nothing of HTTP or of where files came from.
