//! What lucid knows about models and their licenses, as data: catalog entries
//! with sources and hashes, and a license knowledge base with cited clauses.
