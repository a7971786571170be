//! Building a [`tokio_postgres::Config`] from a connection string or from the
//! standard `PG*` environment variables, with typed errors.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use tokio_postgres::config::{
    ChannelBinding, Config, LoadBalanceHosts, SslMode, SslNegotiation, TargetSessionAttrs,
};

/// Why a connection configuration could not be built.
///
/// Returned by [`parse_config`], [`config_from_env`] and
/// [`config_from_env_map`]. Never produced by a panic: every malformed input is
/// reported through this type.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL (`postgres://...`) or `key=value` connection string could not be
    /// parsed. The wrapped error (the [`source`](std::error::Error::source))
    /// names the offending option.
    Parse(tokio_postgres::Error),
    /// A connection string that the driver would read, but that libpq
    /// rejects or that would not mean what it says: an invalid
    /// percent-encoding, an unencoded `#` or `@` in a URL, white space in a
    /// host name, port 0, an option without a name, an empty string (see
    /// [`parse_config`]).
    Invalid {
        /// The part at fault: `"user"`, `"password"`, `"host"`, `"port"`,
        /// `"dbname"`, `"option name"`, `"option value"` or
        /// `"connection string"`.
        part: &'static str,
        /// What is wrong with it (never any of the password).
        reason: String,
    },
    /// An environment variable holds a value that cannot be used.
    InvalidEnv {
        /// The variable, e.g. `"PGPORT"`.
        var: &'static str,
        /// The value found in the environment.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An environment variable is set but is not valid UTF-8.
    NotUnicode {
        /// The variable, e.g. `"PGHOST"`.
        var: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The driver's message is the source, not repeated here.
            ConfigError::Parse(_) => f.write_str("invalid PostgreSQL connection string"),
            ConfigError::Invalid { part, reason } => {
                write!(
                    f,
                    "invalid {part} in the PostgreSQL connection string: {reason}"
                )
            }
            ConfigError::InvalidEnv { var, value, reason } => {
                write!(
                    f,
                    "invalid value {value:?} in environment variable {var}: {reason}"
                )
            }
            ConfigError::NotUnicode { var } => {
                write!(f, "environment variable {var} is not valid UTF-8")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Parse(e) => Some(e),
            _ => None,
        }
    }
}

/// Parses a libpq-style connection string: a URL
/// (`postgres://user:password@host:port/dbname?option=value`, several hosts as
/// `host1:port1,host2:port2`) or `key=value` pairs
/// (`host=localhost port=5432 user=app`).
///
/// This is a pure function: it reads no environment and touches no network,
/// so it is safe to call on untrusted input (it is the entry point of the
/// connection-string fuzz target).
///
/// It is stricter than `tokio_postgres`'s own parser, which reads some
/// strings that libpq rejects into a configuration that does not mean what
/// the string says. These are errors here, each naming the part at fault:
///
/// | string | `tokio_postgres` alone | here |
/// |---|---|---|
/// | `postgres://us%zzer@host/db` | user `us%zzer` | invalid percent-encoding in the user |
/// | `postgres://u@ho st/db`, `host='ho st'` | host `ho st` (fails on connect) | white space in the host name |
/// | `postgres://u@host/db#x` | database `db#x` | unencoded `#` (URLs take no fragment) |
/// | `postgres://h/db?options=a@b` | user `h/db?options=a`, host `b` | unencoded `@` after the host |
/// | `postgres://u@host:0/db`, `port=0` | port 0 (fails on connect) | port 0 |
/// | `postgres://u@a,,b/db`, `host=a,,b` | an empty host name | empty host name |
/// | `=`, `host=h =x` | accepted, `=x` ignored | an option without a name |
/// | `""`, white space only | an empty configuration (fails on connect) | empty connection string |
///
/// A string without any host still parses (the host can be added with
/// [`Config::host`]); connecting with it fails.
///
/// # Errors
///
/// [`ConfigError::Parse`] for a string the driver rejects (unknown option,
/// invalid option value, unterminated quote, ...), [`ConfigError::Invalid`]
/// for the cases above.
///
/// # Examples
///
/// ```
/// use quickslot::postgres::{parse_config, ConfigError};
///
/// let config = parse_config("postgres://app:secret@db1:5432,db2:5433/orders?connect_timeout=3")?;
/// assert_eq!(config.get_user(), Some("app"));
/// assert_eq!(config.get_ports(), &[5432, 5433]);
///
/// assert!(matches!(parse_config("port=not-a-number"), Err(ConfigError::Parse(_))));
/// assert!(matches!(
///     parse_config("postgres://us%zzer@db/orders"),
///     Err(ConfigError::Invalid { part: "user", .. })
/// ));
/// assert!(parse_config("").is_err());
/// # Ok::<(), ConfigError>(())
/// ```
pub fn parse_config(s: &str) -> Result<Config, ConfigError> {
    match url_body(s) {
        Some(body) => check_url(body)?,
        None => check_key_value(s)?,
    }
    let config = s.parse::<Config>().map_err(ConfigError::Parse)?;
    check_config(&config)?;
    Ok(config)
}

fn invalid(part: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        part,
        reason: reason.into(),
    }
}

/// The text after `postgres://` or `postgresql://`, for a URL.
fn url_body(s: &str) -> Option<&str> {
    ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| s.strip_prefix(prefix))
}

/// Every `%` starts a two-digit hexadecimal escape.
fn check_percent(part: &'static str, text: &str) -> Result<(), ConfigError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let escape = bytes.get(i + 1..i + 3);
            if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                let shown: String = text[i..].chars().take(3).collect();
                let reason = format!("{shown:?} is not a percent-encoded byte (write %25 for '%')");
                // Never show any of a password.
                return Err(if part == "password" {
                    invalid(
                        part,
                        "it holds a '%' that starts no percent-encoded byte (write %25 for '%')",
                    )
                } else {
                    invalid(part, reason)
                });
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// The part of a URL body (the text after the scheme) that holds byte `at`.
fn url_part_at(body: &str, at: usize) -> &'static str {
    let authority_end = body.find(['/', '?']).unwrap_or(body.len());
    let query_start = body.find('?').unwrap_or(body.len());
    if at < authority_end {
        match body[..authority_end].find('@') {
            Some(cred_end) if at < cred_end => match body[..cred_end].find(':') {
                Some(colon) if at > colon => "password",
                _ => "user",
            },
            _ => "host",
        }
    } else if at < query_start {
        "dbname"
    } else {
        "option value"
    }
}

/// The checks of a URL the driver would misread, mirroring how it splits
/// one: credentials up to the first `@`, hosts up to `/` or `?`, the
/// database name up to `?`, then `&`-separated options.
fn check_url(body: &str) -> Result<(), ConfigError> {
    if let Some(at) = body.find('#') {
        return Err(invalid(
            url_part_at(body, at),
            "it holds an unencoded '#' (write %23; a URL here takes no #fragment)",
        ));
    }
    let authority_end = body.find(['/', '?']).unwrap_or(body.len());
    let rest = match body.find('@') {
        Some(at) if at < authority_end => {
            let credentials = &body[..at];
            match credentials.split_once(':') {
                Some((user, password)) => {
                    check_percent("user", user)?;
                    check_percent("password", password)?;
                }
                None => check_percent("user", credentials)?,
            }
            &body[at + 1..]
        }
        Some(at) => {
            return Err(invalid(
                url_part_at(body, at),
                "it holds an unencoded '@' (write %40; in a user name or password \
                 also write '/' as %2F and '?' as %3F)",
            ))
        }
        None => body,
    };
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let hosts = &rest[..host_end];
    if !hosts.is_empty() {
        for chunk in hosts.split(',') {
            check_url_host(chunk)?;
        }
    }
    let rest = &rest[host_end..];
    let (path, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    check_percent("dbname", path.strip_prefix('/').unwrap_or(path))?;
    if let Some(query) = query {
        for pair in query.split('&') {
            let Some((key, value)) = pair.split_once('=') else {
                // The driver reports an unterminated parameter.
                continue;
            };
            if key.is_empty() {
                return Err(invalid(
                    "option name",
                    "an option without a name ('=' first)",
                ));
            }
            check_percent("option name", key)?;
            check_percent("option value", value)?;
        }
    }
    Ok(())
}

/// One `host[:port]` (or `[v6]:port`) of a URL's host list.
fn check_url_host(chunk: &str) -> Result<(), ConfigError> {
    if chunk.is_empty() {
        return Err(invalid("host", "an empty host name in the list"));
    }
    let (host, port) = if let Some(inner) = chunk.strip_prefix('[') {
        match inner.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            // The driver reports the missing bracket.
            None => return Ok(()),
        }
    } else {
        match chunk.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (chunk, None),
        }
    };
    check_percent("host", host)?;
    if host.is_empty() {
        return Err(invalid("host", "an empty host name before the port"));
    }
    if let Some(port) = port {
        check_percent("port", port)?;
        if port.is_empty() {
            return Err(invalid("port", "an empty port after ':'"));
        }
    }
    Ok(())
}

/// The checks of a `key=value` string the driver would misread: an empty
/// string and options without a name. Quoting and escapes follow libpq
/// (`'...'` with `\'` and `\\`, or a bare value up to white space).
fn check_key_value(s: &str) -> Result<(), ConfigError> {
    if s.trim().is_empty() {
        return Err(invalid("connection string", "it is empty"));
    }
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(());
        };
        if first == '=' {
            return Err(invalid(
                "option name",
                "an option without a name ('=' first)",
            ));
        }
        while chars.next_if(|c| *c != '=' && !c.is_whitespace()).is_some() {}
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            // A key without '=': the driver reports it.
            return Ok(());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => {
                        chars.next();
                    }
                    Some('\'') => break,
                    Some(_) => {}
                    // Unterminated: the driver reports it.
                    None => return Ok(()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    chars.next();
                }
            }
        }
    }
}

/// Characters that cannot appear in a TCP host name or IP literal.
fn bad_host_char(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            ',' | '/' | '?' | '#' | '@' | '[' | ']' | '\'' | '"' | '\\'
        )
}

/// The checks of the parsed configuration, for both forms.
fn check_config(config: &Config) -> Result<(), ConfigError> {
    use tokio_postgres::config::Host;
    for host in config.get_hosts() {
        if let Host::Tcp(name) = host {
            if name.is_empty() {
                return Err(invalid("host", "an empty host name"));
            }
            if let Some(c) = name.chars().find(|c| bad_host_char(*c)) {
                let what = if c.is_whitespace() {
                    "white space".to_owned()
                } else {
                    format!("{c:?}")
                };
                return Err(invalid(
                    "host",
                    format!("the host name {name:?} holds {what}"),
                ));
            }
        }
    }
    if config.get_ports().contains(&0) {
        return Err(invalid("port", "0 is not a port number (1-65535)"));
    }
    Ok(())
}

/// The environment variables read by [`config_from_env`] and
/// [`config_from_env_map`], in the order they are read.
pub const ENV_VARS: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGAPPNAME",
    "PGOPTIONS",
    "PGCONNECT_TIMEOUT",
    "PGSSLMODE",
    "PGSSLNEGOTIATION",
    "PGCHANNELBINDING",
    "PGTARGETSESSIONATTRS",
    "PGLOADBALANCEHOSTS",
];

/// Builds a configuration from the process's `PG*` environment variables.
///
/// See [`config_from_env_map`] for the variables and their meaning.
///
/// # Errors
///
/// [`ConfigError::NotUnicode`] when a variable is not UTF-8, and the errors of
/// [`config_from_env_map`].
pub fn config_from_env() -> Result<Config, ConfigError> {
    let mut values: Vec<(&'static str, String)> = Vec::new();
    for &var in ENV_VARS {
        if let Some(os) = std::env::var_os(var) {
            match os.into_string() {
                Ok(s) => values.push((var, s)),
                Err(_) => return Err(ConfigError::NotUnicode { var }),
            }
        }
    }
    config_from_env_map(|name| {
        values
            .iter()
            .find(|(var, _)| *var == name)
            .map(|(_, v)| v.clone())
    })
}

/// Builds a configuration from `PG*` variables looked up through `get`
/// (a pure function: pass a closure over a map in tests, or see
/// [`config_from_env`] for the process environment).
///
/// | variable | meaning |
/// |---|---|
/// | `PGHOST` | comma-separated host names; an entry starting with `/` is a Unix-socket directory. Default `localhost` when neither `PGHOST` nor `PGHOSTADDR` is set |
/// | `PGHOSTADDR` | comma-separated IP addresses (skip name lookup) |
/// | `PGPORT` | one port, or one per host, comma-separated |
/// | `PGUSER`, `PGPASSWORD`, `PGDATABASE` | credentials and database |
/// | `PGAPPNAME` | `application_name` |
/// | `PGOPTIONS` | command-line options sent to the server, e.g. `-c search_path=app` |
/// | `PGCONNECT_TIMEOUT` | seconds, per host; `0` or negative means no timeout, `1` means 2 (as libpq) |
/// | `PGSSLMODE` | `disable`, `allow`/`prefer` (TLS if the server offers it), `require`/`verify-ca`/`verify-full` (TLS required; certificate checks are done by the TLS connector you give the [`PgManager`](super::PgManager)) |
/// | `PGSSLNEGOTIATION` | `postgres` or `direct` |
/// | `PGCHANNELBINDING` | `disable`, `prefer` or `require` |
/// | `PGTARGETSESSIONATTRS` | `any`, `read-write` or `read-only` |
/// | `PGLOADBALANCEHOSTS` | `disable` or `random` |
///
/// Unset and empty variables are ignored.
///
/// # Errors
///
/// [`ConfigError::InvalidEnv`] naming the variable when a value cannot be
/// used (a port that is not a number, an unknown `PGSSLMODE`, a port count that
/// matches neither one nor the host count, ...).
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
///
/// let env = HashMap::from([
///     ("PGHOST", "db1,db2"),
///     ("PGPORT", "5432,5433"),
///     ("PGUSER", "app"),
///     ("PGCONNECT_TIMEOUT", "5"),
/// ]);
/// let config =
///     quickslot::postgres::config_from_env_map(|k| env.get(k).map(|v| v.to_string()))?;
/// assert_eq!(config.get_ports(), &[5432, 5433]);
/// assert_eq!(config.get_connect_timeout(), Some(&std::time::Duration::from_secs(5)));
///
/// let bad = HashMap::from([("PGPORT", "fifty")]);
/// assert!(quickslot::postgres::config_from_env_map(|k| bad.get(k).map(|v| v.to_string())).is_err());
/// # Ok::<(), quickslot::postgres::ConfigError>(())
/// ```
pub fn config_from_env_map<F>(get: F) -> Result<Config, ConfigError>
where
    F: Fn(&str) -> Option<String>,
{
    let get = |var: &str| get(var).filter(|v| !v.is_empty());
    let invalid = |var: &'static str, value: &str, reason: &str| ConfigError::InvalidEnv {
        var,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };

    let mut config = Config::new();
    let mut hosts = 0usize;

    if let Some(value) = get("PGHOST") {
        for host in value.split(',') {
            let host = host.trim();
            if host.is_empty() {
                return Err(invalid("PGHOST", &value, "empty host name in list"));
            }
            config.host(host);
            hosts += 1;
        }
    }
    if let Some(value) = get("PGHOSTADDR") {
        let mut addrs = 0usize;
        for addr in value.split(',') {
            let ip: IpAddr = addr
                .trim()
                .parse()
                .map_err(|_| invalid("PGHOSTADDR", &value, "not an IP address"))?;
            config.hostaddr(ip);
            addrs += 1;
        }
        if hosts != 0 && hosts != addrs {
            return Err(invalid(
                "PGHOSTADDR",
                &value,
                "the number of addresses differs from the number of hosts in PGHOST",
            ));
        }
        hosts = hosts.max(addrs);
    }
    if hosts == 0 {
        config.host("localhost");
        hosts = 1;
    }
    if let Some(value) = get("PGPORT") {
        let mut ports = 0usize;
        for port in value.split(',') {
            let port: u16 = port
                .trim()
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("PGPORT", &value, "not a port number (1-65535)"))?;
            config.port(port);
            ports += 1;
        }
        if ports > 1 && ports != hosts {
            return Err(invalid(
                "PGPORT",
                &value,
                "give one port, or one port per host",
            ));
        }
    }
    if let Some(value) = get("PGUSER") {
        config.user(value);
    }
    if let Some(value) = get("PGPASSWORD") {
        config.password(value);
    }
    if let Some(value) = get("PGDATABASE") {
        config.dbname(value);
    }
    if let Some(value) = get("PGAPPNAME") {
        config.application_name(value);
    }
    if let Some(value) = get("PGOPTIONS") {
        config.options(value);
    }
    if let Some(value) = get("PGCONNECT_TIMEOUT") {
        let secs: i64 = value
            .trim()
            .parse()
            .map_err(|_| invalid("PGCONNECT_TIMEOUT", &value, "not a whole number of seconds"))?;
        if secs > 0 {
            // libpq's minimum is 2 seconds.
            let secs = u64::try_from(secs).unwrap_or(u64::MAX).max(2);
            config.connect_timeout(Duration::from_secs(secs));
        }
    }
    if let Some(value) = get("PGSSLMODE") {
        let mode = match value.trim() {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" | "verify-ca" | "verify-full" => SslMode::Require,
            _ => {
                return Err(invalid(
                    "PGSSLMODE",
                    &value,
                    "expected disable, allow, prefer, require, verify-ca or verify-full",
                ))
            }
        };
        config.ssl_mode(mode);
    }
    if let Some(value) = get("PGSSLNEGOTIATION") {
        let mode = match value.trim() {
            "postgres" => SslNegotiation::Postgres,
            "direct" => SslNegotiation::Direct,
            _ => {
                return Err(invalid(
                    "PGSSLNEGOTIATION",
                    &value,
                    "expected postgres or direct",
                ))
            }
        };
        config.ssl_negotiation(mode);
    }
    if let Some(value) = get("PGCHANNELBINDING") {
        let mode = match value.trim() {
            "disable" => ChannelBinding::Disable,
            "prefer" => ChannelBinding::Prefer,
            "require" => ChannelBinding::Require,
            _ => {
                return Err(invalid(
                    "PGCHANNELBINDING",
                    &value,
                    "expected disable, prefer or require",
                ))
            }
        };
        config.channel_binding(mode);
    }
    if let Some(value) = get("PGTARGETSESSIONATTRS") {
        let attrs = match value.trim() {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            _ => {
                return Err(invalid(
                    "PGTARGETSESSIONATTRS",
                    &value,
                    "expected any, read-write or read-only",
                ))
            }
        };
        config.target_session_attrs(attrs);
    }
    if let Some(value) = get("PGLOADBALANCEHOSTS") {
        let mode = match value.trim() {
            "disable" => LoadBalanceHosts::Disable,
            "random" => LoadBalanceHosts::Random,
            _ => {
                return Err(invalid(
                    "PGLOADBALANCEHOSTS",
                    &value,
                    "expected disable or random",
                ))
            }
        };
        config.load_balance_hosts(mode);
    }
    Ok(config)
}
