//! Configuration loading, one typed `Config` per service.
//!
//! Order: the struct's defaults, then the YAML file, in which `${VAR}` and `${VAR:-default}`
//! are expanded from the environment (a `.env` file in the working directory is read first).
//! Unknown keys and invalid values are startup errors that name the key, e.g.
//! `ingest.yaml: deliver.batch_size: invalid type: string "x", expected u32`. What serde cannot
//! say (ranges, URL schemes, one value against another) each config says in its [`Validate`]
//! impl, checked by [`load_checked`] before the service uses any of it.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: environment variable `{var}` is not set (used as ${{{var}}})")]
    MissingEnv { path: PathBuf, var: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl ConfigError {
    pub fn invalid(path: &Path, key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// A configuration that checks its own values once parsed.
pub trait Validate {
    fn validate(&self, check: &Check<'_>) -> Result<(), ConfigError>;
}

/// Where a configuration's checks report to: the file, and the key path so far.
pub struct Check<'a> {
    path: &'a Path,
    prefix: String,
}

impl<'a> Check<'a> {
    pub fn new(path: &'a Path) -> Self {
        Self {
            path,
            prefix: String::new(),
        }
    }

    /// The checks of a nested section, whose keys are reported under `key.`.
    pub fn under(&self, key: &str) -> Check<'a> {
        Check {
            path: self.path,
            prefix: format!("{}{key}.", self.prefix),
        }
    }

    /// `Ok` when `ok`, else the error naming `key` with `message`.
    pub fn that(&self, ok: bool, key: &str, message: &str) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(ConfigError::invalid(
                self.path,
                &format!("{}{key}", self.prefix),
                message,
            ))
        }
    }

    /// Checks a URL's scheme.
    pub fn scheme(&self, url: &str, key: &str, schemes: &[&str]) -> Result<(), ConfigError> {
        let ok = schemes.iter().any(|s| url.starts_with(&format!("{s}://")));
        let list = schemes
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(" or ");
        self.that(ok, key, &format!("must start with {list}"))
    }
}

/// Loads a YAML config file into `T` and runs its checks.
pub fn load_checked<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let cfg: T = load(path)?;
    cfg.validate(&Check::new(path))?;
    Ok(cfg)
}

/// Loads a YAML config file into `T`, expanding `${VAR}` references first.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let _ = dotenvy::dotenv();
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text =
        expand_env(&raw, |v| std::env::var(v).ok()).map_err(|var| ConfigError::MissingEnv {
            path: path.to_owned(),
            var,
        })?;
    parse(path, &text)
}

/// Parses YAML text into `T`, reporting the path of the offending key.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." {
            "(top level)".to_owned()
        } else {
            key
        };
        ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message: e.into_inner().to_string(),
        }
    })
}

/// Expands `${VAR}` and `${VAR:-default}` outside comment lines; returns the name of the first
/// unset variable.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            expand_line(line, &lookup, &mut out)?;
        }
    }
    Ok(out)
}

fn expand_line(
    line: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), String> {
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(());
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (lookup(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(name.to_owned()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// Serde helper for durations written as `30s`, `500ms`, `2m`, `1h` or a number of seconds.
/// Default interval at which services look for a changed keyring file.
pub fn default_keyring_reload() -> Duration {
    Duration::from_secs(10)
}

pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => super::parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `250ms`, `30s`, `5m`, `24h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration `{text}`: expected e.g. 500ms, 30s, 5m, 24h"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("invalid duration unit `{other}` in `{text}`")),
    };
    // Not `from_secs_f64`, which panics beyond u64::MAX seconds (found by the `config` fuzz
    // target): a config file must not be able to crash a service at startup.
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration `{text}` is too long"))
}

/// TLS material of a service: the CA that signs peers, and the service's own certificate.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_defaults() {
        let env = |v: &str| (v == "A").then(|| "1".to_owned());
        assert_eq!(expand_env("x ${A} ${B:-2} y", env).unwrap(), "x 1 2 y");
        assert_eq!(expand_env("${C}", env).unwrap_err(), "C");
        assert_eq!(
            expand_env("# see ${C}\na: ${A}\n", env).unwrap(),
            "# see ${C}\na: 1\n"
        );
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_duration("9999999999999999h").is_err());
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        size: u32,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        inner: Inner,
    }

    #[test]
    fn checks_name_the_full_key_path() {
        let c = Check::new(Path::new("x.yaml"));
        assert!(c.that(true, "a", "m").is_ok());
        let err = c.under("limits").that(false, "idle", "bad").unwrap_err();
        assert_eq!(err.to_string(), "x.yaml: limits.idle: bad");
        let err = c.scheme("http://x", "store_url", &["https"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("store_url: must start with https://")
        );
        assert!(c.scheme("rediss://x", "u", &["redis", "rediss"]).is_ok());
    }

    #[test]
    fn invalid_value_names_the_key() {
        let err = parse::<Outer>(Path::new("x.yaml"), "inner:\n  size: big\n").unwrap_err();
        assert!(err.to_string().contains("inner.size"), "{err}");
        let err =
            parse::<Outer>(Path::new("x.yaml"), "inner:\n  size: 1\n  colour: red\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
