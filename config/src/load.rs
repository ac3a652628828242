//! From text to typed configuration: TOML parsing with full key paths in every error.
//!
//! The document is parsed by [`toml::Deserializer`] and walked by [`serde_path_to_error`],
//! which records the dotted path (`server.listen`) of whatever failed. The parser's spans
//! point back into the text, which gives line numbers for syntax errors and the value as
//! written for type errors.

use std::{fs, ops::Range, path::Path};

use serde::de::DeserializeOwned;

use crate::error::ConfigError;

/// A configuration file type: its embedded example (also its defaults) and its rules.
pub(crate) trait ConfigFile: DeserializeOwned {
    /// The example file, every key at its default.
    const EXAMPLE: &'static str;
    /// How messages name the embedded example.
    const EMBEDDED_ORIGIN: &'static str;
    /// Checks every range and cross-field rule.
    fn check(&self, origin: &str) -> Result<(), ConfigError>;
}

/// Loads the file at `path`, or the embedded example when `path` is `None`; keys missing from
/// the file take their defaults. The result is checked.
pub(crate) fn load<T: ConfigFile>(path: Option<&Path>) -> Result<T, ConfigError> {
    match path {
        None => from_toml_str(T::EXAMPLE, T::EMBEDDED_ORIGIN),
        Some(path) => {
            let (text, origin) = read(path)?;
            from_toml_str(&text, &origin)
        }
    }
}

/// Parses and checks `text`; `origin` names it in error messages.
pub(crate) fn from_toml_str<T: ConfigFile>(text: &str, origin: &str) -> Result<T, ConfigError> {
    let config: T = parse(text, origin)?;
    config.check(origin)?;
    Ok(config)
}

/// Asserts that `T`'s example file parses to exactly `T::default()` and sets every key, so
/// that a new field cannot be added without documenting it there.
#[cfg(test)]
pub(crate) fn assert_example_is_the_defaults<T>()
where
    T: ConfigFile + Default + PartialEq + std::fmt::Debug + serde::Serialize,
{
    let parsed: T = from_toml_str(T::EXAMPLE, "example").unwrap();
    assert_eq!(parsed, T::default());
    assert_eq!(load::<T>(None).unwrap(), T::default());
    let table = toml::Table::try_from(T::default()).unwrap();
    let example: toml::Table = toml::from_str(T::EXAMPLE).unwrap();
    for (section, keys) in &table {
        let keys = keys.as_table().unwrap();
        let example_keys = example[section].as_table().unwrap();
        for key in keys.keys() {
            assert!(example_keys.contains_key(key), "{section}.{key} missing");
        }
    }
}

/// Reads the file at `path`; its display form is the origin in messages.
pub(crate) fn read(path: &Path) -> Result<(String, String), ConfigError> {
    let origin = path.display().to_string();
    match fs::read_to_string(path) {
        Ok(text) => Ok((text, origin)),
        Err(source) => Err(ConfigError::Read { origin, source }),
    }
}

/// Deserializes `text` into `T`; keys that are absent take `T`'s defaults (the structs carry
/// `#[serde(default)]`), keys that are unknown are errors (`deny_unknown_fields`).
pub(crate) fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|err| ConfigError::Syntax {
        origin: origin.to_owned(),
        line: err.span().map(|span| line_of(text, span.start)),
        message: one_line(err.message()),
    })?;
    serde_path_to_error::deserialize(de).map_err(|err| field_error(text, origin, err))
}

/// The known key nearest to the unknown one at `path`, from serde's message ("unknown field
/// `x`, expected one of `a`, `b`" or "expected `a`"): at most a third of its letters away.
fn nearest_key(path: &str, message: &str) -> Option<String> {
    let (section, unknown) = match path.rsplit_once('.') {
        Some((section, key)) => (Some(section), key),
        None => (None, path),
    };
    let (_, expected) = message.split_once("expected")?;
    let (distance, best) = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|known| (edit_distance(unknown, known), known))
        .min()?;
    if distance == 0 || distance > unknown.chars().count().max(3) / 3 {
        return None;
    }
    Some(match section {
        Some(section) => format!("{section}.{best}"),
        None => best.to_string(),
    })
}

/// Levenshtein distance between `a` and `b`, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

pub(crate) fn field_error(
    text: &str,
    origin: &str,
    err: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let mut message = one_line(inner.message());
    // A section given as a scalar: say "table" rather than the Rust struct's name.
    if let Some(at) = message
        .find(", expected struct ")
        .or_else(|| message.find(", expected a map"))
    {
        message.truncate(at);
        message.push_str(", expected a table");
    }

    // serde phrases `deny_unknown_fields` failures as "unknown field `x`, expected one of ...";
    // the tracked path already ends with the offending key.
    if message.starts_with("unknown field") {
        return ConfigError::UnknownKey {
            origin: origin.to_owned(),
            suggestion: nearest_key(&path, &message),
            key: path,
        };
    }
    // A path of "." means the error is about the document itself, not a key.
    if path == "." {
        return ConfigError::Syntax {
            origin: origin.to_owned(),
            line: inner.span().map(|span| line_of(text, span.start)),
            message,
        };
    }
    // serde's own type messages ("invalid type: string \"x\", expected u64") already quote
    // the value; a message from a `FromStr` (e.g. "invalid socket address syntax") does not,
    // so the value is taken from the text the error's span covers.
    let shows_value = ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|prefix| message.starts_with(prefix));
    let message = match inner.span().and_then(|span| snippet(text, span)) {
        Some(raw) if !shows_value => format!("{message} (got {raw})"),
        _ => message,
    };
    ConfigError::BadValue {
        origin: origin.to_owned(),
        key: path,
        message,
    }
}

/// 1-based line number of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The source text under `span`, if it is short and on one line (a scalar value).
fn snippet(text: &str, span: Range<usize>) -> Option<&str> {
    let raw = text.get(span)?.trim();
    (!raw.is_empty() && raw.len() <= 80 && !raw.contains('\n')).then_some(raw)
}

/// Folds a possibly multi-line parser message onto one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
