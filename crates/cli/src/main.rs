//! The `lucid` command: glue between the user's terminal and lucid's crates.

fn main() -> anyhow::Result<()> {
    Ok(())
}
