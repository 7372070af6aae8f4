//! The local model store: pulling model files from their sources into
//! `$LUCID_HOME`, verified and written atomically, and listing or removing them.
