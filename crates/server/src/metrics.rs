//! Prometheus metrics, written by hand in the text exposition format (a
//! handful of counters and histograms does not need a library).
//!
//! Counters and histograms live here and are updated by the handlers;
//! gauges (queue depth, active sequences, KV-cache bytes) are read from each
//! model's scheduler when `/metrics` is scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::state::LocalModel;

/// Bucket bounds in seconds.
const TTFT_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const TOKEN_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(bounds) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        for (i, b) in bounds.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(
            out,
            "{name}_sum{{{}}} {}",
            labels.trim_end_matches(','),
            self.sum
        );
        let _ = writeln!(
            out,
            "{name}_count{{{}}} {}",
            labels.trim_end_matches(','),
            self.count
        );
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (route, status) → count.
    requests: BTreeMap<(String, u16), u64>,
    /// model → tokens.
    prompt_tokens: BTreeMap<String, u64>,
    cached_tokens: BTreeMap<String, u64>,
    completion_tokens: BTreeMap<String, u64>,
    /// model → finish reason → count.
    finished: BTreeMap<(String, &'static str), u64>,
    ttft: BTreeMap<String, Histogram>,
    token_latency: BTreeMap<String, Histogram>,
    /// (model, task) → inputs embedded or documents scored, and their tokens.
    embedding_inputs: BTreeMap<(String, &'static str), u64>,
    embedding_tokens: BTreeMap<(String, &'static str), u64>,
    /// Connections turned away at the connection limit.
    connections_refused: u64,
}

/// The server's counters and histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn request(&self, route: &str, status: u16) {
        *self
            .lock()
            .requests
            .entry((route.to_owned(), status))
            .or_default() += 1;
    }

    pub fn first_token(&self, model: &str, ttft: Duration) {
        self.lock()
            .ttft
            .entry(model.to_owned())
            .or_default()
            .observe(TTFT_BUCKETS, ttft.as_secs_f64());
    }

    pub fn token(&self, model: &str, latency: Duration) {
        self.lock()
            .token_latency
            .entry(model.to_owned())
            .or_default()
            .observe(TOKEN_BUCKETS, latency.as_secs_f64());
    }

    pub fn finished(&self, model: &str, reason: &'static str, usage: &lucid_scheduler::Usage) {
        let mut m = self.lock();
        *m.prompt_tokens.entry(model.to_owned()).or_default() += usage.prompt_tokens as u64;
        *m.cached_tokens.entry(model.to_owned()).or_default() += usage.cached_tokens as u64;
        *m.completion_tokens.entry(model.to_owned()).or_default() += usage.completion_tokens as u64;
        *m.finished.entry((model.to_owned(), reason)).or_default() += 1;
    }

    /// A generation whose client went away before it ended.
    pub fn cancelled(&self, model: &str) {
        *self
            .lock()
            .finished
            .entry((model.to_owned(), "cancelled"))
            .or_default() += 1;
    }

    /// Inputs embedded (`task` "embed") or documents scored ("rerank") by
    /// `model`, and the tokens they were.
    pub fn embedded(&self, model: &str, task: &'static str, inputs: usize, tokens: usize) {
        let mut m = self.lock();
        *m.embedding_inputs
            .entry((model.to_owned(), task))
            .or_default() += inputs as u64;
        *m.embedding_tokens
            .entry((model.to_owned(), task))
            .or_default() += tokens as u64;
    }

    /// A connection turned away at the connection limit.
    pub fn connection_refused(&self) {
        self.lock().connections_refused += 1;
    }

    /// The text exposition of everything, with the models' gauges.
    pub fn render(&self, models: &[LocalModel]) -> String {
        let m = self.lock();
        let mut out = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str("# HELP lucid_requests_total HTTP requests by route and status.\n# TYPE lucid_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "lucid_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                esc(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP lucid_connections_refused_total Connections turned away at --max-connections.\n\
             # TYPE lucid_connections_refused_total counter\nlucid_connections_refused_total {}",
            m.connections_refused
        );
        for (name, help, map) in [
            (
                "lucid_prompt_tokens_total",
                "Prompt tokens of finished local generations.",
                &m.prompt_tokens,
            ),
            (
                "lucid_prompt_cached_tokens_total",
                "Prompt tokens reused from the prefix cache.",
                &m.cached_tokens,
            ),
            (
                "lucid_completion_tokens_total",
                "Tokens generated by local models.",
                &m.completion_tokens,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (model, n) in map {
                let _ = writeln!(out, "{name}{{model=\"{}\"}} {n}", esc(model));
            }
        }
        out.push_str("# HELP lucid_generations_total Finished local generations by finish reason.\n# TYPE lucid_generations_total counter\n");
        for ((model, reason), n) in &m.finished {
            let _ = writeln!(
                out,
                "lucid_generations_total{{model=\"{}\",reason=\"{reason}\"}} {n}",
                esc(model)
            );
        }
        for (name, help, map) in [
            (
                "lucid_embedding_inputs_total",
                "Inputs embedded (task embed) and documents scored (task rerank).",
                &m.embedding_inputs,
            ),
            (
                "lucid_embedding_tokens_total",
                "Tokens of the inputs embedded and the query-document pairs scored.",
                &m.embedding_tokens,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((model, task), n) in map {
                let _ = writeln!(
                    out,
                    "{name}{{model=\"{}\",task=\"{task}\"}} {n}",
                    esc(model)
                );
            }
        }
        out.push_str("# HELP lucid_time_to_first_token_seconds From request to first generated token.\n# TYPE lucid_time_to_first_token_seconds histogram\n");
        for (model, h) in &m.ttft {
            h.write(
                &mut out,
                "lucid_time_to_first_token_seconds",
                &format!("model=\"{}\",", esc(model)),
                TTFT_BUCKETS,
            );
        }
        out.push_str("# HELP lucid_token_latency_seconds Time between generated tokens.\n# TYPE lucid_token_latency_seconds histogram\n");
        for (model, h) in &m.token_latency {
            h.write(
                &mut out,
                "lucid_token_latency_seconds",
                &format!("model=\"{}\",", esc(model)),
                TOKEN_BUCKETS,
            );
        }
        drop(m);
        let stats: Vec<_> = models
            .iter()
            .map(|lm| (esc(&lm.name), lm.scheduler.stats()))
            .collect();
        type Get = fn(&lucid_scheduler::Stats) -> u64;
        let gauges: [(&str, &str, Get); 9] = [
            (
                "lucid_queue_depth",
                "Requests waiting: generations for a sequence slot, embeddings for their pass.",
                |s| s.queued as u64,
            ),
            (
                "lucid_active_sequences",
                "Sequences being read or generated, and embedding requests being run.",
                |s| s.active as u64,
            ),
            (
                "lucid_kv_cache_bytes",
                "KV-cache bytes held (active sequences and prefix cache).",
                |s| s.kv_cache_bytes as u64,
            ),
            (
                "lucid_kv_cache_reserved_bytes",
                "KV-cache bytes reserved for active sequences.",
                |s| s.kv_reserved_bytes as u64,
            ),
            ("lucid_kv_cache_budget_bytes", "KV-cache budget.", |s| {
                s.kv_budget_bytes as u64
            }),
            (
                "lucid_prefix_cache_entries",
                "Finished sequences kept for prefix reuse.",
                |s| s.prefix_cache_entries as u64,
            ),
            (
                "lucid_forward_passes_total",
                "Batched forward passes run.",
                |s| s.steps,
            ),
            (
                "lucid_draft_tokens_total",
                "Tokens guessed by speculative decoding (--draft).",
                |s| s.draft_tokens,
            ),
            (
                "lucid_draft_accepted_tokens_total",
                "Guessed tokens the model agreed with.",
                |s| s.draft_accepted,
            ),
        ];
        for (name, help, get) in gauges {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (model, s) in &stats {
                let _ = writeln!(out, "{name}{{model=\"{model}\"}} {}", get(s));
            }
        }
        out
    }
}
