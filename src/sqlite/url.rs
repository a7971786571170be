//! `sqlite:` URLs, for [`SqliteManager::from_url`].

use std::time::Duration;

use super::error::ConfigError;
use super::manager::SqliteManager;
use super::options::{JournalMode, Synchronous};

pub(super) fn parse(url: &str) -> Result<SqliteManager, ConfigError> {
    let rest = strip_scheme(url).ok_or_else(|| ConfigError::Scheme {
        url: url.to_owned(),
    })?;
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let path = decode(path)?;

    let mut mode = None;
    let mut settings = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name)?;
        let value = decode(value)?;
        match name.as_str() {
            "mode" => {
                mode = Some(match value.as_str() {
                    "ro" | "rw" | "rwc" | "memory" => value,
                    _ => {
                        return Err(ConfigError::invalid(
                            "mode",
                            &value,
                            "ro, rw, rwc or memory",
                        ))
                    }
                })
            }
            "journal_mode" | "synchronous" | "busy_timeout" | "foreign_keys" => {
                settings.push(parse_setting(&name, &value)?)
            }
            _ => return Err(ConfigError::UnknownParameter { name }),
        }
    }

    let memory = path == ":memory:" || mode.as_deref() == Some("memory");
    let mut manager = if memory {
        SqliteManager::memory()
    } else if path.is_empty() {
        return Err(ConfigError::MissingPath);
    } else {
        SqliteManager::file(path)
    };
    match mode.as_deref() {
        Some("ro") => manager = manager.read_only(true),
        Some("rw") => manager = manager.create_if_missing(false),
        _ => {}
    }
    for setting in settings {
        manager = match setting {
            Setting::JournalMode(mode) => manager.journal_mode(mode),
            Setting::Synchronous(level) => manager.synchronous(level),
            Setting::BusyTimeout(timeout) => manager.busy_timeout(timeout),
            Setting::ForeignKeys(on) => manager.foreign_keys(on),
        };
    }
    Ok(manager)
}

enum Setting {
    JournalMode(JournalMode),
    Synchronous(Synchronous),
    BusyTimeout(Duration),
    ForeignKeys(bool),
}

fn parse_setting(name: &str, value: &str) -> Result<Setting, ConfigError> {
    Ok(match name {
        "journal_mode" => Setting::JournalMode(value.parse()?),
        "synchronous" => Setting::Synchronous(value.parse()?),
        "busy_timeout" => match value.parse::<u64>() {
            Ok(ms) => Setting::BusyTimeout(Duration::from_millis(ms)),
            Err(_) => {
                return Err(ConfigError::invalid(
                    "busy_timeout",
                    value,
                    "a whole number of milliseconds",
                ))
            }
        },
        _ => Setting::ForeignKeys(match value.to_ascii_lowercase().as_str() {
            "true" | "on" | "1" | "yes" => true,
            "false" | "off" | "0" | "no" => false,
            _ => {
                return Err(ConfigError::invalid(
                    "foreign_keys",
                    value,
                    "true or false, on or off, 1 or 0",
                ))
            }
        }),
    })
}

/// The URL after `sqlite://` or `sqlite:` (the scheme in any case).
fn strip_scheme(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sqlite") {
        return None;
    }
    Some(rest.strip_prefix("//").unwrap_or(rest))
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`).
fn decode(text: &str) -> Result<String, ConfigError> {
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let invalid = || ConfigError::Encoding {
        text: text.to_owned(),
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(invalid)?;
            let hex = std::str::from_utf8(hex).map_err(|_| invalid())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let m = parse("sqlite://data/app.db").unwrap();
        assert_eq!(m.location(), "data/app.db");
        let m = parse("sqlite:data/app.db").unwrap();
        assert_eq!(m.location(), "data/app.db");
        let m = parse("sqlite:///var/lib/app.db").unwrap();
        assert_eq!(m.location(), "/var/lib/app.db");
        let m = parse("SQLite://my%20db.sqlite?mode=rwc").unwrap();
        assert_eq!(m.location(), "my db.sqlite");
        assert!(parse("sqlite::memory:").unwrap().is_memory());
        assert!(parse("sqlite://:memory:").unwrap().is_memory());
        assert!(parse("sqlite://anything?mode=memory").unwrap().is_memory());
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse("postgres://x").unwrap_err(),
            ConfigError::Scheme {
                url: "postgres://x".into()
            }
        );
        assert_eq!(parse("sqlite://").unwrap_err(), ConfigError::MissingPath);
        assert_eq!(
            parse("sqlite://a.db?cache=shared").unwrap_err().to_string(),
            "unknown parameter `cache` in the SQLite URL"
        );
        assert_eq!(
            parse("sqlite://a.db?mode=rwx").unwrap_err().to_string(),
            "invalid mode `rwx` (expected ro, rw, rwc or memory)"
        );
        assert_eq!(
            parse("sqlite://a.db?journal_mode=fast")
                .unwrap_err()
                .to_string(),
            "invalid journal_mode `fast` (expected delete, truncate, persist, memory, wal or off)"
        );
        assert!(matches!(
            parse("sqlite://a%2.db").unwrap_err(),
            ConfigError::Encoding { .. }
        ));
        assert!(matches!(
            parse("sqlite://a.db?busy_timeout=5s").unwrap_err(),
            ConfigError::InvalidValue {
                name: "busy_timeout",
                ..
            }
        ));
    }

    #[test]
    fn settings() {
        let m = parse(
            "sqlite://a.db?mode=ro&journal_mode=DELETE&synchronous=normal\
             &busy_timeout=250&foreign_keys=off",
        )
        .unwrap();
        let debug = format!("{m:?}");
        for part in [
            "read_only: true",
            "journal_mode: Some(Delete)",
            "synchronous: Normal",
            "busy_timeout: 250ms",
            "foreign_keys: false",
        ] {
            assert!(debug.contains(part), "{debug}");
        }
        let m = parse("sqlite://a.db?mode=rw").unwrap();
        assert!(format!("{m:?}").contains("create_if_missing: false"));
    }
}
