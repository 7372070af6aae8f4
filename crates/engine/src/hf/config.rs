//! Typed reads of `config.json`.

use lucid_tensor::ops::Activation;
use serde_json::Value as Json;

use crate::error::{EngineError, Result};

/// Reads typed values from `config.json`, naming the file and key in errors.
pub struct HfConfig<'a> {
    pub(super) map: &'a serde_json::Map<String, Json>,
    pub(super) source_name: String,
}

impl HfConfig<'_> {
    /// The value of `key`, treating `null` as absent.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A positive integer.
    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.invalid(key, "is missing"))
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(0) => Err(self.invalid(key, "must not be zero")),
                Some(n) => Ok(Some(n)),
                None => Err(self.invalid(key, "must be a positive integer")),
            },
        }
    }

    /// A finite number.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x as f32)),
                _ => Err(self.invalid(key, "must be a finite number")),
            },
        }
    }

    /// A number the maths divides by or takes the root of: above zero.
    pub fn opt_positive_f32(&self, key: &str) -> Result<Option<f32>> {
        let v = self.opt_f32(key)?;
        crate::arch::above_zero(v).map_err(|why| self.invalid(key, &why))
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.invalid(key, "must be true or false")),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.invalid(key, "must be a string")),
        }
    }

    /// The activation function a config names (`activation_function`,
    /// `hidden_act`), `default` when it names none.
    pub fn activation(&self, key: &str, default: Activation) -> Result<Activation> {
        match self.opt_str(key)? {
            None => Ok(default),
            Some(name) => activation_by_name(name).ok_or_else(|| {
                self.invalid(
                    key,
                    &format!(
                        "activation '{name}' is not one lucid runs (gelu, gelu_new, relu, silu)"
                    ),
                )
            }),
        }
    }

    /// `num_attention_heads`, `num_key_value_heads` (which must divide it;
    /// the same when absent) and the head size (`head_dim`, else
    /// `hidden_size / num_attention_heads`, which must divide evenly): the
    /// grouped-query attention of the Llama-style and Gemma checkpoints.
    pub fn attention_heads(&self, d_model: usize) -> Result<(usize, usize, usize)> {
        let n_heads = self.usize("num_attention_heads")?;
        let n_kv_heads = self.opt_usize("num_key_value_heads")?.unwrap_or(n_heads);
        if n_heads % n_kv_heads != 0 {
            return Err(self.invalid("num_key_value_heads", "must divide num_attention_heads"));
        }
        let head_dim = match self.opt_usize("head_dim")? {
            Some(h) => h,
            None if d_model.is_multiple_of(n_heads) => d_model / n_heads,
            None => return Err(self.invalid("num_attention_heads", "must divide hidden_size")),
        };
        Ok((n_heads, n_kv_heads, head_dim))
    }

    pub fn invalid(&self, key: &str, why: &str) -> EngineError {
        EngineError::Config {
            source_name: self.source_name.clone(),
            message: format!("{key}: {why}"),
        }
    }
}

/// The activation a Hugging Face name stands for. The `gelu_new` family is
/// GELU with the tanh approximation; plain `gelu` is the exact one.
pub fn activation_by_name(name: &str) -> Option<Activation> {
    Some(match name {
        "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => Activation::GeluTanh,
        "gelu" => Activation::GeluErf,
        "relu" => Activation::Relu,
        "silu" | "swish" => Activation::Silu,
        _ => return None,
    })
}

/// The Hugging Face name of an activation, the inverse of
/// [`activation_by_name`].
pub fn activation_name(act: Activation) -> &'static str {
    match act {
        Activation::GeluTanh => "gelu_new",
        Activation::GeluErf => "gelu",
        Activation::Relu => "relu",
        Activation::Silu => "silu",
    }
}
