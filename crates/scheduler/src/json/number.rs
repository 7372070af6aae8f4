//! Numeric bounds (`minimum`, `maximum`, `exclusiveMinimum`,
//! `exclusiveMaximum`) as the constraint enforces them.
//!
//! A bounded number is written without an exponent, with at most
//! [`MAX_DIGITS`] digits before and after the point (integers without a
//! point). Its value is then a whole number of `10^-scale` units (`scale` is
//! 0 for integers, [`MAX_DIGITS`] for numbers), so bounds become two `i128`
//! limits in those units, rounded inwards once when the schema is compiled,
//! and every comparison after that is exact: no value the bounds allow is
//! refused because of binary rounding (`minimum: 0.1` admits `0.1`).
//!
//! The constraint lets a byte through only while some continuation of the
//! digits written so far can still end inside the bounds
//! ([`NumBounds::reachable`]), so a bounded number never reaches a dead end.

use super::doc::Json as Value;
use super::state::MAX_DIGITS;

/// Where a number's digits have got to, as the constraint tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    pub negative: bool,
    /// No digit yet (only the sign, or nothing).
    pub empty: bool,
    /// The integer part so far, and its number of digits.
    pub int: u64,
    pub int_digits: u8,
    /// Whether the point has been written; the fraction's digits so far,
    /// and their number.
    pub point: bool,
    pub frac: u64,
    pub frac_digits: u8,
}

impl Default for Written {
    fn default() -> Written {
        Written {
            negative: false,
            empty: true,
            int: 0,
            int_digits: 0,
            point: false,
            frac: 0,
            frac_digits: 0,
        }
    }
}

/// The values a bounded number may take, in units of `10^-scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NumBounds {
    pub lo: i128,
    pub hi: i128,
    /// Digits after the point: 0 for integers.
    pub scale: u8,
}

/// The keywords that bound a number.
pub(crate) const NUMBER_KEYWORDS: &[&str] =
    &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

fn pow10(n: u32) -> i128 {
    10i128.pow(n)
}

impl NumBounds {
    /// The bounds a schema object gives a number (`integer` or not), or
    /// `None` when it gives none. `Err` carries the keyword at fault and
    /// why.
    pub(crate) fn from_schema(
        obj: &[(String, Value)],
        integer: bool,
    ) -> Result<Option<NumBounds>, (String, String)> {
        let get = |k: &str| obj.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        if NUMBER_KEYWORDS.iter().all(|k| get(k).is_none()) {
            return Ok(None);
        }
        let scale = if integer { 0 } else { MAX_DIGITS };
        // Beyond every number the constraint lets the model write.
        let limit = pow10(u32::from(MAX_DIGITS + scale));
        let mut lo = -limit;
        let mut hi = limit;
        // Draft 4 wrote exclusivity as a boolean beside `minimum`/`maximum`.
        let flag = |k: &str| matches!(get(k), Some(Value::Bool(true)));
        for key in NUMBER_KEYWORDS {
            let Some(v) = get(key) else { continue };
            if matches!(v, Value::Bool(_)) && key.starts_with("exclusive") {
                continue;
            }
            let Value::Number(n) = v else {
                return Err((key.to_string(), "must be a number".into()));
            };
            let text = n.to_string();
            let Some(x) = Scaled::parse(&text, scale, limit) else {
                return Err((key.to_string(), format!("`{text}` is not a number")));
            };
            match *key {
                "minimum" if flag("exclusiveMinimum") => lo = lo.max(x.floor + 1),
                "minimum" => lo = lo.max(x.ceil()),
                "exclusiveMinimum" => lo = lo.max(x.floor + 1),
                "maximum" if flag("exclusiveMaximum") => hi = hi.min(x.ceil() - 1),
                "maximum" => hi = hi.min(x.floor),
                _ => hi = hi.min(x.ceil() - 1),
            }
        }
        if lo > hi {
            let what = if integer {
                "no integer".to_owned()
            } else {
                format!("no number with at most {MAX_DIGITS} digits after the point")
            };
            return Err((
                "minimum".into(),
                format!("{what} lies between the bounds: nothing can match"),
            ));
        }
        Ok(Some(NumBounds { lo, hi, scale }))
    }

    /// The value written, in units, when it is a complete number.
    fn value(&self, w: &Written) -> i128 {
        let scale = u32::from(self.scale);
        let magnitude = i128::from(w.int) * pow10(scale)
            + i128::from(w.frac) * pow10(scale - u32::from(w.frac_digits.min(self.scale)));
        if w.negative { -magnitude } else { magnitude }
    }

    /// Whether the number as written may end here.
    pub(crate) fn contains(&self, w: &Written) -> bool {
        let v = self.value(w);
        // `-0` is refused: zero is written `0`.
        let negative_zero = w.negative && v == 0;
        !w.empty && !negative_zero && (self.lo..=self.hi).contains(&v)
    }

    /// Whether some continuation of what is written ends inside the bounds.
    pub(crate) fn reachable(&self, w: &Written) -> bool {
        let scale = u32::from(self.scale);
        let unit = pow10(scale);
        let hits = |lo_mag: i128, hi_mag: i128| -> bool {
            // A negative number must not be zero (see `contains`).
            let (lo, hi) = if w.negative {
                (-hi_mag, -(lo_mag.max(1)))
            } else {
                (lo_mag, hi_mag)
            };
            lo <= hi && lo <= self.hi && self.lo <= hi
        };
        let max = u32::from(MAX_DIGITS);
        if w.empty {
            // Any integer part of up to MAX_DIGITS digits, any fraction.
            return hits(0, pow10(max) * unit - 1);
        }
        let int = i128::from(w.int);
        if w.point {
            let i = u32::from(w.frac_digits);
            let start = int * unit + i128::from(w.frac) * pow10(scale - i);
            return hits(start, start + pow10(scale - i) - 1);
        }
        if w.int == 0 {
            // `0`, then only a point and a fraction.
            return hits(0, unit - 1);
        }
        // `j` more integer digits, then any fraction.
        (0..=max - u32::from(w.int_digits)).any(|j| {
            let p = pow10(j) * unit;
            hits(int * p, (int + 1) * p - 1)
        })
    }
}

/// A bound in units of `10^-scale`: its floor and whether it was exact.
struct Scaled {
    floor: i128,
    exact: bool,
}

impl Scaled {
    fn ceil(&self) -> i128 {
        if self.exact {
            self.floor
        } else {
            self.floor + 1
        }
    }

    /// Parses a JSON number's text exactly, clamped to ±`limit`.
    fn parse(text: &str, scale: u8, limit: i128) -> Option<Scaled> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: String = int.chars().chain(frac.chars()).collect();
        let digits = digits.trim_start_matches('0');
        // The value is digits × 10^shift units.
        let shift = exp - frac.len() as i64 + i64::from(scale);
        let (magnitude, exact) = if digits.is_empty() {
            (0, true)
        } else if shift >= 0 {
            if digits.len() as i64 + shift > 38 {
                (limit, true)
            } else {
                let d: i128 = digits.parse().ok()?;
                ((d * pow10(shift as u32)).min(limit), true)
            }
        } else {
            let cut = (-shift) as usize;
            if cut >= digits.len() {
                (0, false)
            } else {
                let (kept, dropped) = digits.split_at(digits.len() - cut);
                let kept = if kept.len() > 38 {
                    limit
                } else {
                    kept.parse::<i128>().ok()?.min(limit)
                };
                (kept, dropped.bytes().all(|b| b == b'0'))
            }
        };
        Some(if negative {
            Scaled {
                floor: if exact { -magnitude } else { -magnitude - 1 },
                exact,
            }
        } else {
            Scaled {
                floor: magnitude,
                exact,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(schema: &str, integer: bool) -> NumBounds {
        let v = Value::parse(schema).unwrap();
        NumBounds::from_schema(v.as_object().unwrap(), integer)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn bounds_are_exact_in_decimal() {
        let u = pow10(u32::from(MAX_DIGITS));
        let b = bounds(r#"{"minimum": 0.1, "maximum": 2.5e1}"#, false);
        assert_eq!((b.lo, b.hi), (u / 10, 25 * u));
        let b = bounds(
            r#"{"exclusiveMinimum": -1, "exclusiveMaximum": 1e-3}"#,
            false,
        );
        assert_eq!((b.lo, b.hi), (-u + 1, u / 1000 - 1));
        let b = bounds(r#"{"minimum": -2.5, "maximum": 7.9}"#, true);
        assert_eq!((b.lo, b.hi), (-2, 7));
        let b = bounds(r#"{"exclusiveMinimum": 0, "exclusiveMaximum": 10}"#, true);
        assert_eq!((b.lo, b.hi), (1, 9));
        let b = bounds(r#"{"minimum": 0, "exclusiveMinimum": true}"#, true);
        assert_eq!(b.lo, 1);
    }

    #[test]
    fn empty_ranges_are_refused() {
        let v = Value::parse(r#"{"minimum": 0.5, "maximum": 0.7}"#).unwrap();
        let (key, why) = NumBounds::from_schema(v.as_object().unwrap(), true).unwrap_err();
        assert_eq!(key, "minimum");
        assert!(why.contains("nothing can match"), "{why}");
    }
}
