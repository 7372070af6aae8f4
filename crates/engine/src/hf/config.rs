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
