//! The adapter's errors: [`DieselError`] (creating and checking connections),
//! [`ConfigError`] (reading the database URL from the environment) and
//! [`InteractError`] (running a closure on the blocking pool).

use std::any::Any;
use std::fmt;

/// The error an [`after_connect`](super::DieselManager::after_connect) hook
/// returns: any error, boxed. Diesel's [`QueryResult`](::diesel::QueryResult)
/// converts with `?`.
pub type AfterConnectError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of creating or checking a Diesel connection.
///
/// A pool returns creation errors to the caller of `acquire` at once, as
/// [`quickslot::Error::Create`](crate::Error::Create); a failed checkout
/// check ([`Ping`](Self::Ping)) only discards the connection, and the pool
/// tries another or opens a new one.
///
/// `Display` says what happened; the driver's message (the server's
/// `password authentication failed ...`, SQLite's `unable to open database
/// file`) is the [`source`](std::error::Error::source).
///
/// ```
/// use quickslot::diesel::{DieselError, DieselManager};
/// use diesel::SqliteConnection;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = DieselManager::<SqliteConnection>::new("/no/such/directory/app.db")
///     .pool_builder()
///     .build()
///     .unwrap();
/// let err = pool.acquire().await.err().expect("the acquire fails");
/// let Some(DieselError::Connect(connect)) = err.manager_error() else { panic!() };
/// assert_eq!(connect.to_string(), "could not connect to /no/such/directory/app.db");
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum DieselError {
    /// Diesel's `Connection::establish` failed: a malformed URL, an
    /// unreachable server, a wrong password, a file that cannot be opened.
    Connect(ConnectError),
    /// An `after_connect` hook failed on a new connection (the connection
    /// is closed). For hooks added with
    /// [`after_connect_sql`](super::DieselManager::after_connect_sql) or
    /// [`begin_test_transaction`](super::DieselManager::begin_test_transaction)
    /// the boxed error is a [`diesel::result::Error`](::diesel::result::Error).
    AfterConnect(AfterConnectError),
    /// The checkout check of [`RecyclingMethod::Verified`](super::RecyclingMethod::Verified)
    /// (`SELECT 1`) failed; the connection was discarded.
    Ping(::diesel::result::Error),
    /// The blocking task that was to open the connection never ran: the
    /// Tokio runtime is shutting down.
    Shutdown,
}

impl fmt::Display for DieselError {
    // What happened only: the cause is the `source()`, so a report that
    // walks the chain shows each message once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DieselError::Connect(e) => fmt::Display::fmt(e, f),
            DieselError::AfterConnect(_) => f.write_str("the after_connect hook failed"),
            DieselError::Ping(_) => f.write_str("the connection failed its checkout check"),
            DieselError::Shutdown => {
                f.write_str("the runtime shut down before the connection was opened")
            }
        }
    }
}

impl std::error::Error for DieselError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DieselError::Connect(e) => Some(&e.error),
            DieselError::AfterConnect(e) => Some(&**e),
            DieselError::Ping(e) => Some(e),
            DieselError::Shutdown => None,
        }
    }
}

/// A failed `Connection::establish`: Diesel's
/// [`ConnectionError`](::diesel::ConnectionError) and the database it tried
/// (its URL with any password replaced by `***`).
#[derive(Debug)]
pub struct ConnectError {
    target: String,
    error: ::diesel::ConnectionError,
}

impl ConnectError {
    pub(super) fn new(url: &str, error: ::diesel::ConnectionError) -> Self {
        Self {
            target: redact(url),
            error,
        }
    }

    /// The database URL tried, with any password replaced by `***`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Diesel's error.
    pub fn get_ref(&self) -> &::diesel::ConnectionError {
        &self.error
    }

    /// Unwraps Diesel's error.
    pub fn into_inner(self) -> ::diesel::ConnectionError {
        self.error
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not connect to {}", self.target)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// `url` without its password: `scheme://user:***@host/...` for URLs, and
/// `password=***` in `key=value` connection strings.
pub(super) fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[scheme_end + 3 + at..]
                );
            }
        }
        return url.to_owned();
    }
    // libpq's `key=value` form; a quoted value may hold spaces.
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(pos) = rest.find("password") {
        let (before, from) = rest.split_at(pos);
        out.push_str(before);
        let after_key = &from["password".len()..];
        let trimmed = after_key.trim_start();
        let at_word_start = before.chars().next_back().is_none_or(|c| c.is_whitespace());
        match trimmed.strip_prefix('=') {
            Some(value) if at_word_start => {
                let value = value.trim_start();
                let value_len = if let Some(quoted) = value.strip_prefix('\'') {
                    let mut escaped = false;
                    let end = quoted
                        .char_indices()
                        .find(|&(_, c)| {
                            let close = c == '\'' && !escaped;
                            escaped = c == '\\' && !escaped;
                            close
                        })
                        .map_or(quoted.len(), |(i, _)| i + 1);
                    1 + end
                } else {
                    value.find(char::is_whitespace).unwrap_or(value.len())
                };
                out.push_str("password=***");
                rest = &value[value_len..];
            }
            _ => {
                out.push_str("password");
                rest = after_key;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Why [`DieselManager::from_env`](super::DieselManager::from_env) (or
/// [`from_env_var`](super::DieselManager::from_env_var)) found no database
/// URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The variable is not set (or is empty).
    Missing {
        /// The variable's name.
        var: String,
    },
    /// The variable's value is not valid Unicode.
    NotUnicode {
        /// The variable's name.
        var: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing { var } => {
                write!(f, "the environment variable {var} is not set")
            }
            ConfigError::NotUnicode { var } => {
                write!(f, "the environment variable {var} is not valid Unicode")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why [`interact`](crate::Pooled::interact) returned no result.
#[non_exhaustive]
pub enum InteractError {
    /// The closure panicked. The connection, in an unknown state, was
    /// discarded (counted in [`Discarded::broken`](crate::Discarded::broken))
    /// and its slot freed. The payload is the panic's, for
    /// [`std::panic::resume_unwind`].
    Panic(Box<dyn Any + Send + 'static>),
    /// The closure never ran: the Tokio runtime is shutting down. The
    /// connection went back to the pool unused.
    Cancelled,
}

impl InteractError {
    /// Whether the closure panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, InteractError::Panic(_))
    }

    /// The panic's message, when it was a string (as `panic!("...")` makes
    /// it).
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            InteractError::Panic(payload) => panic_message(&**payload),
            InteractError::Cancelled => None,
        }
    }

    /// The panic's payload, to go on with `std::panic::resume_unwind`.
    ///
    /// # Errors
    ///
    /// Gives `self` back when it is not a panic.
    pub fn into_panic(self) -> Result<Box<dyn Any + Send + 'static>, Self> {
        match self {
            InteractError::Panic(payload) => Ok(payload),
            other => Err(other),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

impl fmt::Debug for InteractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InteractError::Panic(payload) => f
                .debug_tuple("Panic")
                .field(&panic_message(&**payload).unwrap_or("<non-string payload>"))
                .finish(),
            InteractError::Cancelled => f.write_str("Cancelled"),
        }
    }
}

impl fmt::Display for InteractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InteractError::Panic(payload) => match panic_message(&**payload) {
                Some(message) => write!(f, "the interact closure panicked: {message}"),
                None => f.write_str("the interact closure panicked"),
            },
            InteractError::Cancelled => {
                f.write_str("the interact closure never ran: the runtime is shutting down")
            }
        }
    }
}

impl std::error::Error for InteractError {}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/app?sslmode=require"),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
        assert_eq!(
            redact("postgres://app:p@ss@db/app"),
            "postgres://app:***@db/app"
        );
        assert_eq!(redact("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(redact("mysql://db/app"), "mysql://db/app");
        assert_eq!(redact("/var/lib/app.db"), "/var/lib/app.db");
        assert_eq!(redact("file:app.db?mode=ro"), "file:app.db?mode=ro");
    }

    #[test]
    fn redacts_key_value_passwords() {
        assert_eq!(
            redact("host=db user=app password=secret dbname=app"),
            "host=db user=app password=*** dbname=app"
        );
        assert_eq!(
            redact(r"host=db password = 'a \' secret' dbname=app"),
            "host=db password=*** dbname=app"
        );
        assert_eq!(redact("user=passwordless"), "user=passwordless");
        assert_eq!(redact("password=x"), "password=***");
    }
}
