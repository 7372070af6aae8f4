//! Text to token ids and back, built from what a model file says about its
//! vocabulary: byte-level BPE, SentencePiece-style, and Hugging Face's tokenizer.json.
