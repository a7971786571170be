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
    /// parsed. The wrapped error (and its [`source`](std::error::Error::source))
    /// names the offending option.
    Parse(tokio_postgres::Error),
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
            ConfigError::Parse(e) => {
                write!(f, "invalid PostgreSQL connection string: {e}")?;
                if let Some(cause) = std::error::Error::source(e) {
                    write!(f, ": {cause}")?;
                }
                Ok(())
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
/// # Errors
///
/// [`ConfigError::Parse`] for any malformed string, unknown option or invalid
/// option value.
///
/// # Examples
///
/// ```
/// let config = quickslot::postgres::parse_config(
///     "postgres://app:secret@db1:5432,db2:5433/orders?connect_timeout=3",
/// )?;
/// assert_eq!(config.get_user(), Some("app"));
/// assert_eq!(config.get_ports(), &[5432, 5433]);
///
/// assert!(quickslot::postgres::parse_config("port=not-a-number").is_err());
/// # Ok::<(), quickslot::postgres::ConfigError>(())
/// ```
pub fn parse_config(s: &str) -> Result<Config, ConfigError> {
    s.parse::<Config>().map_err(ConfigError::Parse)
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
