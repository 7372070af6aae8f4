//! Helpers shared by the CLI's test files.

use std::io::Read;
use std::process::Child;

/// Everything a child started with a piped stderr wrote there.
pub fn stderr_of(child: &mut Child) -> String {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)
            .expect("reading the child's stderr");
    }
    stderr
}
