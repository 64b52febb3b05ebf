//! The one shared parser of environment values. Each module owns its settings type and reads
//! it from an [`Env`] here; `config` only assembles them. Every variable a module reads is
//! remembered, with its default and whether it is a secret, so that `hub config check` can
//! show the effective configuration without a second list of names to keep in step.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// One line naming the variable and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// How a variable's value may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Plain,
    /// A URL whose password is dropped.
    Url,
    /// Never shown; only whether it is set and its length.
    Secret,
}

#[derive(Debug, Clone)]
struct Reading {
    set: Option<String>,
    default: Option<String>,
    shown: Shown,
}

/// The environment as a lookup table, so that tests can vary it without touching globals.
pub struct Env {
    vars: HashMap<String, String>,
    read: RefCell<BTreeMap<String, Reading>>,
}

impl Env {
    pub fn from_process() -> Self {
        Self::from_map(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::from_map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    fn from_map(vars: HashMap<String, String>) -> Self {
        Self {
            vars,
            read: RefCell::new(BTreeMap::new()),
        }
    }

    fn lookup(&self, name: &str, default: Option<String>, shown: Shown) -> Option<&str> {
        let value = self
            .vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty());
        self.read.borrow_mut().insert(
            name.to_owned(),
            Reading {
                set: value.map(str::to_owned),
                default,
                shown,
            },
        );
        value
    }

    /// An optional setting without a default.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.lookup(name, None, Shown::Plain)
    }

    /// A text setting with a default.
    pub fn text<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.lookup(name, Some(default.to_owned()), Shown::Plain)
            .unwrap_or(default)
    }

    /// A URL, shown without its password.
    pub fn url<'a>(&'a self, name: &str, default: Option<&'a str>) -> Option<&'a str> {
        self.lookup(name, default.map(str::to_owned), Shown::Url)
            .or(default)
    }

    /// A secret: never shown, not even by `hub config check`.
    pub fn secret(&self, name: &str) -> Option<&str> {
        self.lookup(name, None, Shown::Secret)
    }

    pub fn parse<T: FromStr + Display>(
        &self,
        name: &str,
        default: T,
        what: &str,
    ) -> Result<T, ConfigError> {
        match self.lookup(name, Some(default.to_string()), Shown::Plain) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| ConfigError(format!("{name} must be {what}, got {text:?}"))),
        }
    }

    /// A whole number within `range`.
    pub fn count(
        &self,
        name: &str,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<usize, ConfigError> {
        bounded(self.parse(name, default, "a whole number")?, name, range)
    }

    /// A positive duration in milliseconds.
    pub fn millis(&self, name: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        let ms = positive(
            self.parse(name, default_ms, "a whole number of milliseconds")?,
            name,
        )?;
        Ok(Duration::from_millis(ms))
    }

    /// A positive duration in whole seconds.
    pub fn seconds(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(positive(
            self.parse(name, default, "a whole number of seconds")?,
            name,
        )?))
    }

    /// A positive duration in whole hours.
    pub fn hours(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        let hours = positive(self.parse(name, default, "a whole number of hours")?, name)?;
        Ok(Duration::from_secs(hours.saturating_mul(3600)))
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self
            .lookup(name, Some(default.to_string()), Shown::Plain)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None => Ok(default),
            Some("true" | "on" | "1" | "yes") => Ok(true),
            Some("false" | "off" | "0" | "no") => Ok(false),
            Some(other) => Err(ConfigError(format!(
                "{name} must be true or false, got {other:?}"
            ))),
        }
    }

    /// Every variable read so far, one `NAME=value` line each, in name order: secrets
    /// redacted, URLs without their password, defaults marked.
    pub fn effective(&self) -> Vec<String> {
        self.read
            .borrow()
            .iter()
            .map(|(name, reading)| match (&reading.set, &reading.default) {
                (Some(value), _) => format!("{name}={}", show(value, reading.shown)),
                (None, Some(default)) => {
                    format!("{name}={} (default)", show(default, reading.shown))
                }
                (None, None) => format!("{name} (unset)"),
            })
            .collect()
    }
}

fn show(value: &str, shown: Shown) -> String {
    match shown {
        Shown::Plain => value.to_owned(),
        Shown::Url => redact_url(value),
        Shown::Secret => format!("<redacted, {} bytes>", value.len()),
    }
}

fn bounded(
    value: usize,
    name: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError(format!(
            "{name} must be between {} and {}, got {value}",
            range.start(),
            range.end()
        )))
    }
}

pub fn positive<T: PartialOrd + Default>(value: T, name: &str) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError(format!("{name} must be greater than 0")))
    }
}

/// An absolute http(s) URL with a host.
pub fn http_url(name: &str, text: &str) -> Result<String, ConfigError> {
    let valid = reqwest::Url::parse(text.trim())
        .map(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .unwrap_or(false);
    if !valid {
        return Err(ConfigError(format!(
            "{name} must be an http(s) URL, got {:?}",
            redact_url(text)
        )));
    }
    Ok(text.trim().to_owned())
}

/// Drops the password of a URL before it is shown anywhere: the one in its userinfo, and the
/// value of any query parameter that names a credential (`?password=`, which libpq takes,
/// `token`, `secret`, `api_key`, ...).
pub fn redact_url(text: &str) -> String {
    let text = match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &text[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &text[..scheme_end + 3], &text[at..])
        }
        _ => text.to_owned(),
    };
    let Some((base, query)) = text.split_once('?') else {
        return text;
    };
    let (query, fragment) = query
        .split_once('#')
        .map_or((query, None), |(q, f)| (q, Some(f)));
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if names_a_credential(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    let mut shown = format!("{base}?{}", query.join("&"));
    if let Some(fragment) = fragment {
        shown.push('#');
        shown.push_str(fragment);
    }
    shown
}

fn names_a_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "sig",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_view_marks_defaults_and_hides_secrets_and_passwords() {
        let env = Env::from_pairs([
            ("POOL", "4"),
            ("TOKEN", "a-very-secret-token"),
            ("DB", "postgres://hub:hunter2@db/hub"),
        ]);
        assert_eq!(env.parse("POOL", 8u32, "a number"), Ok(4));
        assert_eq!(env.parse("WORKERS", 2u32, "a number"), Ok(2));
        assert_eq!(env.secret("TOKEN"), Some("a-very-secret-token"));
        assert!(env.url("DB", None).is_some());
        assert_eq!(env.get("ABSENT"), None);
        assert_eq!(
            env.effective(),
            [
                "ABSENT (unset)",
                "DB=postgres://hub:***@db/hub",
                "POOL=4",
                "TOKEN=<redacted, 19 bytes>",
                "WORKERS=2 (default)",
            ]
        );
    }

    #[test]
    fn passwords_in_a_url_query_are_hidden_too() {
        // libpq takes `?password=`, and tokens often ride in webhook or operator URLs.
        let env = Env::from_pairs([(
            "DB",
            "postgres://db.internal/hub?user=hub&password=hunter2&sslmode=require",
        )]);
        assert!(env.url("DB", None).is_some());
        let shown = env.effective().join("\n");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
        for url in [
            "https://rgs.example/hook?token=abc123secret",
            "https://op.example/api?api_key=abc123secret&x=1",
            "redis://cache:6379/0?password=abc123secret",
        ] {
            assert!(!redact_url(url).contains("abc123secret"), "{url}");
        }
    }

    #[test]
    fn blank_values_count_as_unset() {
        let env = Env::from_pairs([("NAME", "  ")]);
        assert_eq!(env.text("NAME", "fallback"), "fallback");
        assert_eq!(env.effective(), ["NAME=fallback (default)"]);
    }

    #[test]
    fn durations_and_flags_name_the_variable_when_wrong() {
        let env = Env::from_pairs([("WAIT_MS", "0"), ("ON", "maybe"), ("HOURS", "x")]);
        assert_eq!(
            env.millis("WAIT_MS", 5).unwrap_err().0,
            "WAIT_MS must be greater than 0"
        );
        assert_eq!(
            env.flag("ON", true).unwrap_err().0,
            "ON must be true or false, got \"maybe\""
        );
        assert!(env
            .hours("HOURS", 1)
            .unwrap_err()
            .0
            .starts_with("HOURS must be"));
    }
}
