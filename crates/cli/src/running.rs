//! Talking to a running `lucid serve` (for `lucid ps` and `lucid stop`):
//! where it is, its key, and one request with errors that say what to do.

use std::time::Duration;

use anyhow::Context;

/// Where the server is and how to get in.
#[derive(clap::Args)]
pub struct Server {
    /// The server's address (`lucid serve` listens on 127.0.0.1:8080 unless
    /// told otherwise).
    #[arg(long, env = "LUCID_HOST", default_value = "http://127.0.0.1:8080")]
    host: String,
    /// The server's API key, if it was started with `--api-key`.
    #[arg(long, env = "LUCID_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

impl Server {
    fn base(&self) -> String {
        if self.host.contains("://") {
            self.host.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", self.host.trim_end_matches('/'))
        }
    }

    /// Sends `body` (or nothing, a GET) to `path`; the answer's text when it
    /// succeeded.
    pub fn call(&self, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<String> {
        let base = self.base();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("starting the HTTP client")?;
        let url = format!("{base}{path}");
        let mut request = match body {
            Some(body) => client.post(&url).json(&body),
            None => client.get(&url),
        };
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().map_err(|e| {
            anyhow::anyhow!(
                "no lucid server answers at {base} ({}); start one with `lucid serve`, or give --host",
                root_cause(&e)
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .with_context(|| format!("reading the answer of {url}"))?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            anyhow::bail!("{base} wants an API key: give --api-key or set LUCID_API_KEY");
        }
        if !status.is_success() {
            let said = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| text.trim().to_owned());
            anyhow::bail!("{url} answered {status}: {said}");
        }
        Ok(text)
    }

    /// The address, for messages.
    pub fn address(&self) -> String {
        self.base()
    }
}

/// The innermost error's text (reqwest's own says only "error sending
/// request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
