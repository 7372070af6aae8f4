//! Resumable, verified HTTP downloads into partial files.
//!
//! A download appends to whatever its partial file already holds, asking the
//! server for the rest with `Range`. Servers that ignore `Range` (a `200`
//! instead of a `206`) or answer `416` make it start over. A connection that
//! drops mid-body is resumed a few times before giving up.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::OnceLock;

use reqwest::StatusCode;
use reqwest::Url;
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, RANGE};

use super::{remove_if_exists, verify};
use crate::{Config, FetchError, Progress};

/// How many times a download resumes after its connection drops.
const MAX_RESUMES: u32 = 3;

/// The HTTP client, built on first use so that commands that never touch the
/// network never load TLS roots.
#[derive(Debug)]
pub(crate) struct Http {
    config: Config,
    client: OnceLock<Client>,
}

impl Http {
    pub(crate) fn new(config: Config) -> Http {
        Http {
            config,
            client: OnceLock::new(),
        }
    }

    pub(crate) fn client(&self) -> Result<&Client, FetchError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        // In blocking reqwest, `timeout` bounds sending a request and each
        // read of its body, not the whole transfer, so it acts as a read
        // timeout and large downloads are not cut off.
        let client = Client::builder()
            .user_agent(concat!("lucid/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.config.connect_timeout)
            .timeout(self.config.read_timeout)
            .build()
            .map_err(|e| FetchError::Transport {
                url: "(no request made)".to_owned(),
                reason: format!("could not set up the HTTP client: {}", reason(&e)),
            })?;
        Ok(self.client.get_or_init(|| client))
    }
}

/// One file to download.
pub(crate) struct Download<'a> {
    pub url: &'a Url,
    pub bearer: Option<&'a str>,
    pub dest: &'a Path,
    /// Checked against `Content-Length`, and caps how much is written.
    pub size: Option<u64>,
    /// The expected sha256, if any.
    pub sha256: Option<&'a str>,
    /// Names the file in messages.
    pub what: &'a str,
}

/// Downloads (resuming if `dest` already holds a prefix) and verifies. On a
/// mismatch after a resumed download the prefix may be what was wrong, so the
/// download starts over once from nothing. A file that does not verify is
/// removed.
pub(crate) fn download_verified(
    http: &Http,
    d: &Download<'_>,
    progress: &dyn Progress,
) -> Result<(), FetchError> {
    let resumed = fs_err::metadata(d.dest).is_ok_and(|m| m.len() > 0);
    match download_and_verify(http, d, progress) {
        Err(FetchError::Sha256Mismatch { .. } | FetchError::SizeMismatch { .. }) if resumed => {
            progress.message(&format!(
                "{} did not verify after resuming; downloading it again from the start",
                d.what
            ));
            download_and_verify(http, d, progress)
        }
        other => other,
    }
}

fn download_and_verify(
    http: &Http,
    d: &Download<'_>,
    progress: &dyn Progress,
) -> Result<(), FetchError> {
    let result = download(http, d, progress).and_then(|()| match (d.size, d.sha256) {
        (Some(size), Some(sha256)) => verify(d.dest, d.what, size, sha256, progress),
        (None, Some(sha256)) => {
            let size = fs_err::metadata(d.dest)?.len();
            verify(d.dest, d.what, size, sha256, progress)
        }
        _ => Ok(()),
    });
    if matches!(
        result,
        Err(FetchError::Sha256Mismatch { .. } | FetchError::SizeMismatch { .. })
    ) {
        remove_if_exists(d.dest)?;
    }
    result
}

/// Downloads `d.url` into `d.dest`, resuming from its current length.
fn download(http: &Http, d: &Download<'_>, progress: &dyn Progress) -> Result<(), FetchError> {
    let client = http.client()?;
    let mut resumes = 0;
    let mut restarted = false;
    loop {
        // The partial file is only created once a server answers with data,
        // so a source that fails outright leaves nothing behind.
        let mut have = match fs_err::metadata(d.dest) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        if let Some(size) = d.size {
            if have > size {
                remove_if_exists(d.dest)?;
                have = 0;
            }
            if have == size {
                // Complete already (a pull killed after the last byte);
                // verification decides whether it is right.
                return Ok(());
            }
        }
        let mut request = client.get(d.url.clone());
        if let Some(token) = d.bearer {
            request = request.bearer_auth(token);
        }
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = request.send().map_err(|e| transport(d.url, &e))?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {
                if content_range_start(&response) != Some(have) {
                    if restarted {
                        return Err(FetchError::Protocol {
                            url: d.url.to_string(),
                            reason: format!(
                                "asked for bytes {have}- but got Content-Range {:?}",
                                response.headers().get(CONTENT_RANGE)
                            ),
                        });
                    }
                    remove_if_exists(d.dest)?;
                    restarted = true;
                    continue;
                }
            }
            StatusCode::OK => {
                if have > 0 {
                    tracing::debug!(url = %d.url, "server ignored Range; starting over");
                    remove_if_exists(d.dest)?;
                    have = 0;
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 && !restarted => {
                remove_if_exists(d.dest)?;
                restarted = true;
                continue;
            }
            status => {
                return Err(FetchError::Status {
                    url: response.url().to_string(),
                    status: status.as_u16(),
                });
            }
        }
        let total = response.content_length().map(|n| n + have);
        if let (Some(total), Some(size)) = (total, d.size)
            && total != size
        {
            return Err(FetchError::SizeMismatch {
                what: format!("{} (as announced by {})", d.what, d.url),
                expected: size,
                actual: total,
            });
        }
        let mut file = fs_err::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(d.dest)?;
        progress.start(d.what, total.or(d.size));
        progress.advance(have);
        file.seek(SeekFrom::Start(have))?;
        let copied = copy_body(&mut response, &mut file, have, d.size, progress);
        file.sync_all()?;
        drop(file);
        progress.finish();
        match copied {
            Ok(len) => match d.size {
                Some(size) if len < size => {
                    if resumes < MAX_RESUMES {
                        resumes += 1;
                        continue;
                    }
                    return Err(FetchError::SizeMismatch {
                        what: d.what.to_owned(),
                        expected: size,
                        actual: len,
                    });
                }
                _ => return Ok(()),
            },
            Err(BodyError::TooLong { len }) => {
                remove_if_exists(d.dest)?;
                return Err(FetchError::SizeMismatch {
                    what: d.what.to_owned(),
                    expected: d.size.unwrap_or_default(),
                    actual: len,
                });
            }
            Err(BodyError::Read { error, len }) => {
                if len > have && resumes < MAX_RESUMES {
                    resumes += 1;
                    tracing::debug!(url = %d.url, %error, "download interrupted; resuming");
                    continue;
                }
                return Err(FetchError::Transport {
                    url: d.url.to_string(),
                    reason: io_reason(&error),
                });
            }
            Err(BodyError::Write(e)) => return Err(e.into()),
        }
    }
}

enum BodyError {
    /// The server sent more than the expected size: not the file we want.
    TooLong {
        len: u64,
    },
    /// The body could not be read; `len` bytes are on disk.
    Read {
        error: io::Error,
        len: u64,
    },
    Write(io::Error),
}

/// Appends the body to `file`, which already holds `have` bytes; returns the
/// file's new length.
fn copy_body(
    response: &mut Response,
    file: &mut fs_err::File,
    mut have: u64,
    size: Option<u64>,
    progress: &dyn Progress,
) -> Result<u64, BodyError> {
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => return Ok(have),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(BodyError::Read { error, len: have }),
        };
        if size.is_some_and(|size| have + n as u64 > size) {
            return Err(BodyError::TooLong {
                len: have + n as u64,
            });
        }
        file.write_all(&buf[..n]).map_err(BodyError::Write)?;
        have += n as u64;
        progress.advance(n as u64);
    }
}

/// The first byte position of a `Content-Range: bytes a-b/n` header.
fn content_range_start(response: &Response) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// A failed request as a [`FetchError`]: [`FetchError::Unreachable`] when no
/// connection could be made (no such host, refused, timed out connecting),
/// else [`FetchError::Transport`].
pub(crate) fn transport(url: &Url, error: &reqwest::Error) -> FetchError {
    let (url, reason) = (url.to_string(), reason(error));
    if error.is_connect() {
        FetchError::Unreachable { url, reason }
    } else {
        FetchError::Transport { url, reason }
    }
}

/// A short reason for a failed request: reqwest's own message names the URL
/// and wraps the cause several levels deep; the innermost cause ("Connection
/// refused (os error 111)", "dns error") is what a user can act on.
pub(crate) fn reason(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn io_reason(error: &io::Error) -> String {
    if error.kind() == io::ErrorKind::TimedOut {
        return "timed out while reading".to_owned();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
