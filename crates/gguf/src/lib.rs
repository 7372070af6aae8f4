//! Reading and writing GGUF, the file format that llama.cpp and most open-weight
//! model releases use: metadata, tensor descriptions and memory-mapped tensor data.
