//! One module per `lucid` subcommand, each with its clap `Args` and a `run`.

pub mod bench;
pub mod bom;
pub mod create;
pub mod embed;
pub mod explain;
pub mod license;
pub mod list;
pub mod models;
pub mod ps;
pub mod pull;
pub mod quantize;
pub mod rm;
pub mod run;
pub mod serve;
pub mod show;
pub mod stop;
