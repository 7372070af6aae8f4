//! The Jinja environment Hugging Face transformers renders chat templates
//! in, restated for minijinja.
//!
//! Chat templates are written against `apply_chat_template`, so what they
//! print depends on more than Jinja: transformers compiles them with
//! `trim_blocks` and `lstrip_blocks` on and the `loopcontrols` extension,
//! replaces Jinja's `tojson` with `json.dumps` (no HTML escaping, Python's
//! separators, keys in the order given), and adds `raise_exception` and
//! `strftime_now` (`transformers/utils/chat_template_utils.py`,
//! `_cached_compile_jinja_template`). Python's string and dict methods
//! (`strip`, `startswith`, `items`, …) come from minijinja-contrib's
//! pycompat. `tests/chat_templates.rs` holds real templates to
//! transformers' output byte for byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};

/// The date `strftime_now` prints: the clock's, or a day pinned for
/// reproducible prompts. Shared by a template and its compiled environment.
#[derive(Clone, Debug)]
pub(super) struct Clock(Arc<AtomicI64>);

/// [`Clock`]'s value while it follows the system clock.
const NOW: i64 = i64::MIN;

impl Clock {
    pub(super) fn new() -> Clock {
        Clock(Arc::new(AtomicI64::new(NOW)))
    }

    /// Pins the date to a day (days since 1970-01-01), or lets it follow
    /// the system clock again with `None`.
    pub(super) fn pin(&self, day: Option<i64>) {
        self.0.store(day.unwrap_or(NOW), Ordering::Relaxed);
    }

    pub(super) fn pinned(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&d| d != NOW)
    }

    /// Today (UTC) as days since 1970-01-01, unless pinned.
    fn today(&self) -> i64 {
        self.pinned().unwrap_or_else(|| {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            (secs / 86_400) as i64
        })
    }
}

/// An environment configured as transformers configures its own, with the
/// functions and filters it adds; `strftime_now` reads `clock`.
pub(super) fn environment(clock: Clock) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", move |format: String| {
        let (y, m, d) = civil_from_days(clock.today());
        format_date(&format, y, m, d)
    });
    env.add_filter("tojson", tojson);
    env.set_formatter(python_formatter);
    env
}

/// Prints `{{ value }}` as Jinja does, with Python's `str()`: `None`,
/// `True`, `1e-05`, `['a', 1]`, `{'k': None}` where minijinja would print
/// `none`, `true`, `0.00001`, `["a", 1]`. Strings and undefined values
/// print as minijinja prints them.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Seq | ValueKind::Map => {
            let mut text = String::new();
            python_repr(value, 0, &mut text)?;
            out.write_str(&text).map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `repr` of a value (a string quoted and escaped); containers
/// hold their items' `repr`, as Python's `str()` of a list or dict does.
fn python_repr(value: &Value, depth: usize, out: &mut String) -> Result<(), Error> {
    if depth > 512 {
        return Err(invalid("the value nests too deeply to print"));
    }
    match value.kind() {
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if value.is_integer() => out.push_str(&value.to_string()),
        ValueKind::Number => {
            let x = f64::try_from(value.clone())?;
            out.push_str(&match python_float(x).as_str() {
                "NaN" => "nan".to_owned(),
                "Infinity" => "inf".to_owned(),
                "-Infinity" => "-inf".to_owned(),
                other => other.to_owned(),
            });
        }
        ValueKind::String => python_repr_str(value.as_str().unwrap_or_default(), out),
        ValueKind::Seq => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(&item, depth + 1, out)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(&key, depth + 1, out)?;
                out.push_str(": ");
                python_repr(&value.get_item(&key)?, depth + 1, out)?;
            }
            out.push('}');
        }
        _ => out.push_str(&value.to_string()),
    }
    Ok(())
}

/// Python's `repr` of a string: single quotes unless the text has some and
/// no double ones, backslash escapes for the quote, backslashes and
/// characters Python does not print (control and format characters and
/// whitespace other than the space: Python's Unicode categories, nearly).
fn python_repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control()
                || (c.is_whitespace() && c != ' ')
                || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                    | '\u{2060}'..='\u{2064}' | '\u{feff}') =>
            {
                let n = c as u32;
                out.push_str(&match n {
                    0..=0xff => format!("\\x{n:02x}"),
                    0x100..=0xffff => format!("\\u{n:04x}"),
                    _ => format!("\\U{n:08x}"),
                });
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn raise_exception(message: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Days since 1970-01-01 of a calendar day, or `None` when there is no
/// such day (Howard Hinnant's `days_from_civil`).
pub(super) fn days_from_civil(year: i64, m: u32, d: u32) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = year - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // 31 February comes back as 3 March: no such day.
    (civil_from_days(days) == (year, m, d)).then_some(days)
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A date in the few `strftime` codes chat templates use: `%d`, `%m`,
/// `%Y`, `%b`, `%B`, `%%`. Other codes are kept as written.
pub(super) fn format_date(format: &str, y: i64, m: u32, d: u32) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = MONTHS[(m as usize).saturating_sub(1).min(11)];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, each argument given by position or
/// name. Unlike Jinja's own (and minijinja's), it escapes no HTML
/// characters, writes `", "` and `": "` between items, and keeps keys in
/// the order they were given.
fn tojson(value: &Value, args: Rest<Value>) -> Result<Value, Error> {
    // Keyword arguments come last, as one map.
    let mut positional = args.0;
    let kwargs = match positional.last() {
        Some(last) if last.is_kwargs() => Kwargs::try_from(positional.pop().unwrap_or_default())?,
        _ => Kwargs::from_iter(std::iter::empty::<(&str, Value)>()),
    };
    if positional.len() > 4 {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments",
        ));
    }
    let mut positional = positional.into_iter();
    let mut arg = |name: &str| -> Result<Value, Error> {
        match (positional.next(), kwargs.get::<Option<Value>>(name)?) {
            (Some(_), Some(_)) => Err(Error::new(
                ErrorKind::TooManyArguments,
                format!("tojson got {name} twice"),
            )),
            (Some(v), None) | (None, Some(v)) => Ok(v),
            (None, None) => Ok(Value::from(())),
        }
    };
    let ensure_ascii = arg("ensure_ascii")?.is_true();
    let indent = arg("indent")?;
    let separators = arg("separators")?;
    let sort_keys = arg("sort_keys")?.is_true();
    kwargs.assert_all_used()?;

    // Python's `indent`: a count of spaces (none below zero) or the string
    // itself; `None` writes everything on one line.
    let indent = match indent.kind() {
        ValueKind::None | ValueKind::Undefined => None,
        ValueKind::String => Some(indent.as_str().unwrap_or_default().to_owned()),
        ValueKind::Number => Some(
            " ".repeat(
                indent
                    .as_i64()
                    .ok_or_else(|| invalid("tojson's indent is not an integer"))?
                    .clamp(0, 1024) as usize,
            ),
        ),
        _ => return Err(invalid("tojson's indent is neither a number nor a string")),
    };
    let (item, key) = match separators.kind() {
        ValueKind::None | ValueKind::Undefined => (
            if indent.is_some() { "," } else { ", " }.to_owned(),
            ": ".to_owned(),
        ),
        _ => {
            let pair: Vec<Value> = separators.try_iter()?.collect();
            match pair.as_slice() {
                [a, b] => match (a.as_str(), b.as_str()) {
                    (Some(a), Some(b)) => (a.to_owned(), b.to_owned()),
                    _ => return Err(invalid("tojson's separators are not strings")),
                },
                _ => return Err(invalid("tojson's separators are not a pair")),
            }
        }
    };
    let mut out = String::new();
    Dumper {
        ensure_ascii,
        indent,
        item,
        key,
        sort_keys,
    }
    .dump(value, 0, &mut out)?;
    Ok(Value::from(out))
}

fn invalid(why: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, why.to_owned())
}

/// Python's `json.dumps` over a template value.
struct Dumper {
    ensure_ascii: bool,
    indent: Option<String>,
    item: String,
    key: String,
    sort_keys: bool,
}

impl Dumper {
    fn dump(&self, value: &Value, depth: usize, out: &mut String) -> Result<(), Error> {
        // json.dumps refuses nesting deeper than Python's recursion limit.
        if depth > 512 {
            return Err(invalid("tojson: the value nests too deeply"));
        }
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number if value.is_integer() => out.push_str(&value.to_string()),
            ValueKind::Number => {
                let x = f64::try_from(value.clone())?;
                out.push_str(&python_float(x));
            }
            ValueKind::String => self.string(value.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.container('[', ']', items.len(), depth, out, |i, out| {
                    self.dump(&items[i], depth + 1, out)
                })?;
            }
            ValueKind::Map => {
                let mut pairs = Vec::new();
                for k in value.try_iter()? {
                    let v = value.get_item(&k)?;
                    pairs.push((self.key_text(&k)?, v));
                }
                if self.sort_keys {
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.container('{', '}', pairs.len(), depth, out, |i, out| {
                    let (k, v) = &pairs[i];
                    self.string(k, out);
                    out.push_str(&self.key);
                    self.dump(v, depth + 1, out)
                })?;
            }
            kind => {
                return Err(invalid(&format!(
                    "tojson: a value of type {kind} is not JSON serializable"
                )));
            }
        }
        Ok(())
    }

    /// `[…]` or `{…}` of `len` items, written by `each`, laid out as
    /// json.dumps lays them out (empty ones stay `[]` and `{}`).
    fn container(
        &self,
        open: char,
        close: char,
        len: usize,
        depth: usize,
        out: &mut String,
        mut each: impl FnMut(usize, &mut String) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if len == 0 {
            out.push(close);
            return Ok(());
        }
        let newline = |out: &mut String, level: usize| {
            if let Some(indent) = &self.indent {
                out.push('\n');
                for _ in 0..level {
                    out.push_str(indent);
                }
            }
        };
        for i in 0..len {
            if i > 0 {
                out.push_str(&self.item);
            }
            newline(out, depth + 1);
            each(i, out)?;
        }
        newline(out, depth);
        out.push(close);
        Ok(())
    }

    /// A key as json.dumps writes it: strings as they are, numbers,
    /// booleans and None as their JSON text.
    fn key_text(&self, key: &Value) -> Result<String, Error> {
        match key.kind() {
            ValueKind::String => Ok(key.as_str().unwrap_or_default().to_owned()),
            ValueKind::None | ValueKind::Bool | ValueKind::Number => {
                let mut text = String::new();
                self.dump(key, 0, &mut text)?;
                Ok(text)
            }
            kind => Err(invalid(&format!(
                "tojson: keys must be str, int, float, bool or None, not {kind}"
            ))),
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped,
    /// and with `ensure_ascii` everything outside printable ASCII as
    /// `\uXXXX` (UTF-16 surrogate pairs above the BMP), as Python does.
    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !(' '..='~').contains(&c)) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr` of a float, which json.dumps writes: the shortest
/// digits that read back the same, in positional notation from 1e-4 up to
/// 1e16 (always with a fractional part) and in scientific notation outside
/// it (`1e-05`, `1.5e+16`); `NaN` and `Infinity` as JavaScript spells them.
pub(super) fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    // Rust's `{:e}` is the shortest round-trip form: `-1.25e-7`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs());
    }
    // The decimal point goes after `exp + 1` digits.
    let point = exp + 1;
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, value: serde_json::Value) -> Result<String, Error> {
        let env = environment(Clock::new());
        env.render_str(
            source,
            minijinja::context! { x => Value::from_serialize(value) },
        )
    }

    #[test]
    fn dates_for_templates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
        assert_eq!(days_from_civil(2026, 11, 29), Some(20_786));
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(2025, 2, 29), None);
        assert_eq!(days_from_civil(2025, 13, 1), None);
        assert_eq!(format_date("%d %b %Y", 2024, 7, 26), "26 Jul 2024");
        assert_eq!(format_date("%B %m %% %q", 2024, 12, 1), "December 12 % %q");
        let clock = Clock::new();
        clock.pin(days_from_civil(2025, 3, 5));
        let env = environment(clock);
        assert_eq!(
            env.render_str("{{ strftime_now('%Y-%m-%d') }}", ())
                .unwrap(),
            "2025-03-05"
        );
    }

    /// `{{ value }}` prints as jinja2 prints it under transformers (the
    /// expected text is its output for the same template and value).
    #[test]
    fn values_print_as_python_prints_them() {
        let x = serde_json::json!({
            "a": null,
            "b": [1, 2.5, true, "it's", "say \"hi\"", "both ' \"", "tab\there\u{a0}\u{200b}\\", 1e20],
            "c": "plain", "d": 3, "e": 1e-05, "f": {}
        });
        let source = "{{ x }}|{{ x.a }}|{{ x.b }}|{{ x.c }}|{{ x.d }}|{{ x.e }}|{{ none }}|\
                      {{ true }}|{{ 1e-5 }}|{{ y }}|{{ x.f }}";
        assert_eq!(
            render(source, x).unwrap(),
            r#"{'a': None, 'b': [1, 2.5, True, "it's", 'say "hi"', 'both \' "', 'tab\there\xa0\u200b\\', 1e+20], 'c': 'plain', 'd': 3, 'e': 1e-05, 'f': {}}|None|[1, 2.5, True, "it's", 'say "hi"', 'both \' "', 'tab\there\xa0\u200b\\', 1e+20]|plain|3|1e-05|None|True|1e-05||{}"#
        );
    }

    /// Python's float repr, as `json.dumps` writes it (values from
    /// CPython 3.12).
    #[test]
    fn floats_as_python_writes_them() {
        for (x, python) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (22.5, "22.5"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"),
            (-3.25e100, "-3.25e+100"),
            (123456789.125, "123456789.125"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(python_float(x), python, "{x:e}");
        }
    }

    /// json.dumps's output for the same values (CPython 3.12).
    #[test]
    fn tojson_is_python_json_dumps() {
        let v =
            serde_json::json!({"b": [1, 2.5, true, null], "a": "<é>&'\"\n\u{1}", "e": {}, "l": []});
        assert_eq!(
            render("{{ x | tojson }}", v.clone()).unwrap(),
            r#"{"b": [1, 2.5, true, null], "a": "<é>&'\"\n\u0001", "e": {}, "l": []}"#
        );
        assert_eq!(
            render("{{ x | tojson(indent=2) }}", v.clone()).unwrap(),
            "{\n  \"b\": [\n    1,\n    2.5,\n    true,\n    null\n  ],\n  \"a\": \"<é>&'\\\"\\n\\u0001\",\n  \"e\": {},\n  \"l\": []\n}"
        );
        assert_eq!(
            render(
                "{{ x | tojson(separators=(',', ':'), sort_keys=true, ensure_ascii=true) }}",
                v.clone()
            )
            .unwrap(),
            r#"{"a":"<\u00e9>&'\"\n\u0001","b":[1,2.5,true,null],"e":{},"l":[]}"#
        );
        assert_eq!(
            render("{{ x | tojson(true) }}", serde_json::json!("😀")).unwrap(),
            r#""\ud83d\ude00""#
        );
        assert_eq!(
            render("{{ x | tojson(indent='\t') }}", serde_json::json!([1])).unwrap(),
            "[\n\t1\n]"
        );
        assert!(render("{{ y | tojson }}", serde_json::json!(1)).is_err());
        assert!(render("{{ x | tojson(bogus=1) }}", serde_json::json!(1)).is_err());
    }
}
