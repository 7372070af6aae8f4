//! A standalone server for the glass-box routes alone, over models loaded
//! from paths: for trying the page and for its browser test without the
//! main server (`lucid serve` mounts the same router beside its own).
//!
//! ```text
//! lucid-glass-web [--addr 127.0.0.1:8080] [--threads N] NAME=PATH...
//! ```
//!
//! It prints `listening on http://ADDR` on stdout once it accepts
//! connections (with `--addr 127.0.0.1:0`, ADDR has the port the system
//! chose), and stops on Ctrl-C or SIGTERM. The page's chat playground says
//! it is not available here: there is no `/v1/chat/completions`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use lucid_engine::LoadedModel;
use lucid_web::{StaticModels, WebConfig};

const USAGE: &str = "usage: lucid-glass-web [--addr HOST:PORT] [--threads N] NAME=PATH...";

struct Args {
    addr: String,
    threads: Option<usize>,
    models: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".into(),
        threads: None,
        models: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addr" => args.addr = it.next().ok_or("--addr needs HOST:PORT")?,
            "--threads" => {
                let n = it.next().ok_or("--threads needs a number")?;
                args.threads = Some(
                    n.parse()
                        .map_err(|_| format!("--threads: {n:?} is not a number"))?,
                );
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => match a.split_once('=') {
                Some((name, path)) if !name.is_empty() && !path.is_empty() => {
                    args.models.push((name.to_string(), path.to_string()));
                }
                _ => return Err(format!("{a:?} is not NAME=PATH\n{USAGE}")),
            },
        }
    }
    if args.models.is_empty() {
        return Err(format!("no models given\n{USAGE}"));
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("lucid-glass-web: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let mut models = Vec::new();
    for (name, path) in &args.models {
        let model = LoadedModel::load(Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
        eprintln!("loaded {name} from {path}");
        models.push((name.clone(), Arc::new(model)));
    }
    let mut config = WebConfig::default();
    if let Some(t) = args.threads {
        config.threads = t.max(1);
    }
    let app: axum::Router = lucid_web::router(Arc::new(StaticModels::new(models)), config);
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| e.to_string())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
