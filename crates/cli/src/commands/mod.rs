//! One module per `lucid` subcommand, each with its clap `Args` and a `run`.

pub mod list;
pub mod pull;
pub mod rm;
