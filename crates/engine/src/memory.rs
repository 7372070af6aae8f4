//! How much memory this process may still use, so that a model that cannot
//! fit is refused with a clear message before it loads, instead of being
//! found out by the OOM killer (or by a machine that pages for minutes).
//!
//! The answer is the smallest of what the system has available
//! (`MemAvailable` in `/proc/meminfo`, which counts page cache that can be
//! dropped, such as a model file read earlier) and what the process's
//! control group still allows (cgroup v2 `memory.max`, or v1
//! `memory.limit_in_bytes`, less what the group uses besides its page
//! cache). [`LIMIT_VAR`] overrides both: a size (`8GiB`, `512MiB`,
//! `1000000`) to plan with, or `none` to skip the check.

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

/// The variable that sets the memory to plan with, or turns the check off.
pub const LIMIT_VAR: &str = "LUCID_MEMORY_LIMIT";

/// What [`LIMIT_VAR`] says, if it is set and valid; `Some(None)` for `none`.
fn override_from_env() -> Result<Option<Option<u64>>> {
    let Ok(value) = std::env::var(LIMIT_VAR) else {
        return Ok(None);
    };
    if value.trim().eq_ignore_ascii_case("none") {
        return Ok(Some(None));
    }
    parse_size(&value).map(|b| Some(Some(b))).ok_or_else(|| {
        EngineError::Open {
            path: LIMIT_VAR.into(),
            message: format!(
                "'{value}' is not a size: write bytes with an optional unit (512MiB, 8GiB, 8G) or 'none'"
            ),
        }
    })
}

/// Bytes this process may still use, when they can be told (Linux); the
/// value of [`LIMIT_VAR`] when it is set.
pub fn available() -> Result<Option<u64>> {
    if let Some(set) = override_from_env()? {
        return Ok(set);
    }
    let system = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| meminfo_available(&t));
    let group = cgroup_available();
    Ok(match (system, group) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Refuses, naming both amounts, when `needed` bytes for `what` exceed the
/// memory available.
pub fn check_fits(what: &str, needed: u64) -> Result<()> {
    match available()? {
        Some(available) if needed > available => Err(EngineError::NotEnoughMemory {
            what: what.to_owned(),
            needed,
            available,
        }),
        _ => Ok(()),
    }
}

/// Bytes in the largest binary unit that keeps them above 1 (`93.8 MiB`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `MemAvailable` from the text of `/proc/meminfo`, in bytes.
pub fn meminfo_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A size such as `512MiB`, `8GiB`, `8G`, `1.5GB` or `1000000` (bytes), as
/// binary multiples (`G` and `GB` are GiB, as `ulimit` and Docker read them).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    let bytes = number * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// What the control group still allows, if it sets a limit.
fn cgroup_available() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // cgroup v2: one line "0::/path".
    if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
        let dir = group_dir(Path::new("/sys/fs/cgroup"), path);
        if let Some(limit) = read(&dir, "memory.max") {
            let used = read(&dir, "memory.current")?;
            let cache = stat(&dir, "file").unwrap_or(0);
            return Some(group_room(limit, used, cache));
        }
    }
    // cgroup v1: a line "N:memory:/path".
    let path = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    })?;
    let dir = group_dir(Path::new("/sys/fs/cgroup/memory"), path);
    let limit = read(&dir, "memory.limit_in_bytes")?;
    let used = read(&dir, "memory.usage_in_bytes")?;
    let cache = stat(&dir, "total_cache")
        .or_else(|| stat(&dir, "cache"))
        .unwrap_or(0);
    Some(group_room(limit, used, cache))
}

/// The group's own directory when this mount shows it, else the mount's
/// root (a container sees its own group there).
fn group_dir(mount: &Path, path: &str) -> PathBuf {
    let own = mount.join(path.trim_start_matches('/'));
    if own.is_dir() {
        own
    } else {
        mount.to_path_buf()
    }
}

/// A number from a control file; `None` for "max" (no limit) or anything
/// unreadable.
fn read(dir: &Path, file: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A value of `memory.stat`.
fn stat(dir: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Room under a group's `limit`: what it uses, less its page cache (which
/// the kernel drops before it kills), subtracted.
fn group_room(limit: u64, used: u64, cache: u64) -> u64 {
    limit.saturating_sub(used.saturating_sub(cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       24683772 kB\nMemFree:  1 kB\nMemAvailable:   24077736 kB\n";
        assert_eq!(meminfo_available(text), Some(24077736 * 1024));
        assert_eq!(meminfo_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("1000000"), Some(1_000_000));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size(" 8 gb "), Some(8 << 30));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("10k"), Some(10 << 10));
        for bad in ["", "lots", "8 parsecs", "-1G", "1e99", "GiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_groups_page_cache_counts_as_room() {
        assert_eq!(group_room(1000, 600, 100), 500);
        assert_eq!(group_room(1000, 1200, 0), 0);
        // No limit ("max" is not a number: no room is computed at all);
        // v1's "no limit" is a huge number.
        assert_eq!(group_room(u64::MAX - 4095, 10, 0), u64::MAX - 4105);
    }
}
