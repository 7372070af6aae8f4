//! Writes every hook point of one forward pass to files, for comparing
//! lucid's intermediate values with another implementation's
//! (`scripts/goldens/llama/layer_trace.py` does so with llama.cpp's).
//!
//! ```text
//! cargo run --release -p lucid-engine --example trace -- MODEL OUT_DIR f16|f32 ID,ID,...
//! ```
//!
//! The token ids run as one batch; `f16`/`f32` is the key/value cache's
//! precision. Each point becomes `OUT_DIR/<point>.f32` (little-endian f32,
//! row-major) and a line `<point> <shape...>` in `OUT_DIR/index.txt`.
//! Attention patterns are left out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use lucid_engine::{
    HookData, HookPoint, Hooks, KvCache, KvPrecision, LoadedModel, LogitsFor, Observer, Session,
};

struct Dump {
    dir: PathBuf,
    index: String,
    error: Option<std::io::Error>,
}

impl Observer for Dump {
    fn wants(&self, point: HookPoint) -> bool {
        !matches!(point, HookPoint::AttnPattern(_))
    }

    fn observe(&mut self, point: HookPoint, data: HookData<'_>) {
        let bytes: Vec<u8> = data.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        if let Err(e) = std::fs::write(self.dir.join(format!("{point}.f32")), bytes) {
            self.error.get_or_insert(e);
        }
        let shape: Vec<String> = data.shape.iter().map(usize::to_string).collect();
        let _ = writeln!(self.index, "{point} {}", shape.join(" "));
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let [model, dir, precision, ids] = args else {
        return Err("usage: trace MODEL OUT_DIR f16|f32 ID,ID,...".into());
    };
    let precision = match precision.as_str() {
        "f16" => KvPrecision::F16,
        "f32" => KvPrecision::F32,
        other => return Err(format!("cache precision {other:?}: expected f16 or f32")),
    };
    let tokens = ids
        .split(',')
        .map(|t| t.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("token ids {ids:?}: {e}"))?;
    let model = LoadedModel::load(Path::new(model)).map_err(|e| e.to_string())?;
    let info = model.model.info();
    let cache = KvCache::new(
        info.n_layers,
        info.kv_width,
        info.kv_width,
        tokens.len(),
        precision,
    );
    let mut session = Session::with_cache(&model, 2, cache);
    std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    let mut dump = Dump {
        dir: PathBuf::from(dir),
        index: String::new(),
        error: None,
    };
    session
        .feed(&tokens, LogitsFor::All, &mut Hooks::new(&mut dump))
        .map_err(|e| e.to_string())?;
    if let Some(e) = dump.error {
        return Err(format!("{dir}: {e}"));
    }
    std::fs::write(dump.dir.join("index.txt"), dump.index).map_err(|e| format!("{dir}: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trace: {e}");
            ExitCode::FAILURE
        }
    }
}
