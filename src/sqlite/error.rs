//! The adapter's errors: [`SqliteError`] (opening and checking connections, and
//! queries wrapped with [`SqliteError::query`]) and [`ConfigError`] (URLs and
//! setting names).

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use rusqlite::ErrorCode;

/// The error type of an [`after_connect`](super::SqliteManager::after_connect)
/// hook.
pub type AfterConnectError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure an [`SqliteError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The directory that should hold the database file does not exist.
    MissingDirectory,
    /// The database file does not exist and
    /// [`create_if_missing`](super::SqliteManager::create_if_missing) is off (or
    /// the connection is [`read_only`](super::SqliteManager::read_only)).
    NotFound,
    /// The operating system refused access to the file or its directory.
    PermissionDenied,
    /// The file exists but is not an SQLite database (or is encrypted, or
    /// its header is damaged).
    NotADatabase,
    /// Another connection held a lock on the database for longer than the
    /// [`busy_timeout`](super::SqliteManager::busy_timeout) (`SQLITE_BUSY`).
    Busy,
    /// Opening the database failed for another reason.
    Open,
    /// A setting was refused, or read back a different value than the one
    /// asked for: see [`SqliteError::setting`], [`SqliteError::requested`] and
    /// [`SqliteError::actual`].
    Setting,
    /// An [`after_connect`](super::SqliteManager::after_connect) hook failed.
    AfterConnect,
    /// The blocking task opening the connection was cancelled, because the
    /// Tokio runtime is shutting down.
    Aborted,
    /// The connection went away with an
    /// [`interact`](super::Connection::interact) closure that panicked, or
    /// that the runtime aborted.
    Lost,
    /// The checkout check of an idle connection failed (the `SELECT 1` of
    /// [`RecyclingMethod::Verified`](super::RecyclingMethod::Verified), or
    /// the rollback of a transaction left open).
    Check,
    /// A query failed (an error wrapped by [`SqliteError::query`]).
    Query,
}

/// Why a connection could not be opened or checked, or a query failed.
///
/// The message ([`Display`](fmt::Display)) says what happened and names the
/// database (its path, or the `file:` URI of an in-memory database) and the
/// setting involved; the underlying [`rusqlite::Error`] or hook error is the
/// [`source`](std::error::Error::source), not repeated in the message.
///
/// A pool hands creation errors to the caller of `acquire` at once as
/// [`quickslot::Error::Create`](crate::Error::Create); checkout-check errors
/// only discard the idle connection (the pool then uses or creates another).
///
/// ```
/// use quickslot::sqlite::{ErrorKind, Manager, PoolError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = Manager::file("/nonexistent-directory/app.db")
///     .pool_builder()
///     .min_idle(0)
///     .build()
///     .unwrap();
/// let Err(PoolError::Create(e)) = pool.acquire().await else { panic!() };
/// assert_eq!(e.kind(), ErrorKind::MissingDirectory);
/// assert_eq!(
///     e.to_string(),
///     "cannot open SQLite database `/nonexistent-directory/app.db`: \
///      the directory `/nonexistent-directory` does not exist",
/// );
/// # }
/// ```
pub struct SqliteError {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    location: String,
    /// What was being done: "opening a connection", "setting journal_mode".
    doing: Cow<'static, str>,
    setting: Option<String>,
    requested: Option<String>,
    actual: Option<String>,
    read_only: bool,
    busy_timeout: Option<Duration>,
    source: Option<Source>,
}

enum Source {
    Sqlite(rusqlite::Error),
    Other(AfterConnectError),
}

impl SqliteError {
    pub(super) fn new(kind: ErrorKind, location: &str) -> Self {
        SqliteError {
            inner: Box::new(Inner {
                kind,
                location: location.to_owned(),
                doing: Cow::Borrowed("opening a connection"),
                setting: None,
                requested: None,
                actual: None,
                read_only: false,
                busy_timeout: None,
                source: None,
            }),
        }
    }

    pub(super) fn with_source(mut self, source: rusqlite::Error) -> Self {
        self.inner.source = Some(Source::Sqlite(source));
        self
    }

    pub(super) fn with_hook_source(mut self, source: AfterConnectError) -> Self {
        self.inner.source = Some(Source::Other(source));
        self
    }

    pub(super) fn doing(mut self, doing: impl Into<Cow<'static, str>>) -> Self {
        self.inner.doing = doing.into();
        self
    }

    /// Marks the error as met while applying `setting`.
    pub(super) fn in_setting(mut self, setting: &str) -> Self {
        self.inner.setting = Some(setting.to_owned());
        self.inner.doing = Cow::Owned(format!("setting {setting}"));
        self
    }

    pub(super) fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.inner.busy_timeout = Some(timeout);
        self
    }

    /// A refused or mismatched setting.
    pub(super) fn refused(
        location: &str,
        setting: &str,
        requested: String,
        actual: Option<String>,
    ) -> Self {
        let mut e = SqliteError::new(ErrorKind::Setting, location);
        e.inner.setting = Some(setting.to_owned());
        e.inner.requested = Some(requested);
        e.inner.actual = actual;
        e
    }

    pub(super) fn on_read_only(mut self, read_only: bool) -> Self {
        self.inner.read_only = read_only;
        self
    }

    /// Wraps the error of a query on `conn` with the database's path:
    /// [`ErrorKind::Busy`] for `SQLITE_BUSY` (a lock held past the busy
    /// timeout), [`ErrorKind::Query`] otherwise. The `rusqlite` error is the
    /// [`source`](std::error::Error::source).
    ///
    /// ```
    /// use quickslot::sqlite::{rusqlite, SqliteError, ErrorKind};
    ///
    /// let conn = rusqlite::Connection::open_in_memory()?;
    /// let e = conn.execute("INSERT INTO missing VALUES (1)", []).unwrap_err();
    /// let e = SqliteError::query(&conn, e);
    /// assert_eq!(e.kind(), ErrorKind::Query);
    /// assert_eq!(e.to_string(), "query on SQLite database `:memory:` failed");
    /// # Ok::<(), rusqlite::Error>(())
    /// ```
    pub fn query(conn: &rusqlite::Connection, source: rusqlite::Error) -> Self {
        let location = match conn.path() {
            Some(path) if !path.is_empty() => path.to_owned(),
            _ => String::from(":memory:"),
        };
        if source.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) {
            let timeout = conn
                .pragma_query_value(None, "busy_timeout", |row| row.get::<_, i64>(0))
                .ok()
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis);
            let mut e = SqliteError::new(ErrorKind::Busy, &location)
                .doing("running a query")
                .with_source(source);
            e.inner.busy_timeout = timeout;
            e
        } else {
            SqliteError::new(ErrorKind::Query, &location).with_source(source)
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The database: the file's path as given to the manager, or the
    /// `file:` URI of an in-memory database.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// The setting involved (`"journal_mode"`, `"busy_timeout"`, a
    /// [`pragma`](super::SqliteManager::pragma)'s name...), for
    /// [`ErrorKind::Setting`] and for a [`ErrorKind::Busy`] met while
    /// applying one.
    pub fn setting(&self) -> Option<&str> {
        self.inner.setting.as_deref()
    }

    /// The value asked for, for [`ErrorKind::Setting`].
    pub fn requested(&self) -> Option<&str> {
        self.inner.requested.as_deref()
    }

    /// The value SQLite reported instead, when it accepted the statement but
    /// kept another value (WAL asked of a read-only file: `"delete"`).
    pub fn actual(&self) -> Option<&str> {
        self.inner.actual.as_deref()
    }

    /// The underlying `rusqlite` error, if there is one.
    pub fn rusqlite_error(&self) -> Option<&rusqlite::Error> {
        match &self.inner.source {
            Some(Source::Sqlite(e)) => Some(e),
            _ => None,
        }
    }

    /// The SQLite result code of the underlying error, if there is one.
    pub fn sqlite_code(&self) -> Option<ErrorCode> {
        self.rusqlite_error().and_then(|e| e.sqlite_error_code())
    }
}

impl fmt::Display for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &*self.inner;
        let loc = &e.location;
        match e.kind {
            ErrorKind::MissingDirectory => {
                write!(f, "cannot open SQLite database `{loc}`: the directory ")?;
                match Path::new(loc).parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => {
                        write!(f, "`{}` does not exist", dir.display())
                    }
                    _ => f.write_str("does not exist"),
                }
            }
            ErrorKind::NotFound => {
                write!(f, "SQLite database `{loc}` does not exist")?;
                if e.read_only {
                    f.write_str(" (the connection is read-only, so it is not created)")
                } else {
                    f.write_str(" and create_if_missing is off")
                }
            }
            ErrorKind::PermissionDenied => {
                write!(f, "permission denied opening SQLite database `{loc}`")
            }
            ErrorKind::NotADatabase => write!(f, "`{loc}` is not an SQLite database"),
            ErrorKind::Busy => {
                write!(f, "SQLite database `{loc}` stayed locked")?;
                match e.busy_timeout {
                    Some(t) => write!(f, " past the busy timeout of {} ms", t.as_millis())?,
                    None => f.write_str(" past the busy timeout")?,
                }
                write!(f, " while {}", e.doing)
            }
            ErrorKind::Open => write!(f, "cannot open SQLite database `{loc}`"),
            ErrorKind::Setting => {
                let setting = e.setting.as_deref().unwrap_or("a setting");
                let requested = e.requested.as_deref().unwrap_or("?");
                match &e.actual {
                    Some(actual) => write!(
                        f,
                        "SQLite database `{loc}` refused {setting} = {requested}: \
                         it reports {actual}"
                    )?,
                    None if e.source.is_none() => write!(
                        f,
                        "SQLite does not know the pragma `{setting}` (set to {requested} \
                         for database `{loc}`)"
                    )?,
                    None => write!(
                        f,
                        "cannot set {setting} = {requested} on SQLite database `{loc}`"
                    )?,
                }
                if e.read_only {
                    f.write_str(" (the connection is read-only)")?;
                }
                Ok(())
            }
            ErrorKind::AfterConnect => {
                write!(f, "an after_connect hook failed on SQLite database `{loc}`")
            }
            ErrorKind::Aborted => write!(
                f,
                "opening SQLite database `{loc}` was aborted: the runtime is shutting down"
            ),
            ErrorKind::Lost => write!(
                f,
                "a connection to SQLite database `{loc}` was lost with an interact \
                 closure that panicked or was aborted"
            ),
            ErrorKind::Check => write!(
                f,
                "the checkout check of a connection to SQLite database `{loc}` failed"
            ),
            ErrorKind::Query => write!(f, "query on SQLite database `{loc}` failed"),
        }
    }
}

impl fmt::Debug for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &*self.inner;
        let mut d = f.debug_struct("SqliteError");
        d.field("kind", &e.kind).field("location", &e.location);
        if let Some(setting) = &e.setting {
            d.field("setting", setting);
        }
        if let Some(requested) = &e.requested {
            d.field("requested", requested);
        }
        if let Some(actual) = &e.actual {
            d.field("actual", actual);
        }
        match &e.source {
            Some(Source::Sqlite(s)) => d.field("source", s),
            Some(Source::Other(s)) => d.field("source", s),
            None => &mut d,
        };
        d.finish_non_exhaustive()
    }
}

impl std::error::Error for SqliteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner.source {
            Some(Source::Sqlite(e)) => Some(e),
            Some(Source::Other(e)) => Some(&**e),
            None => None,
        }
    }
}

/// A connection URL or setting name that could not be parsed (from
/// [`Manager::from_url`](super::SqliteManager::from_url) or the `FromStr` of
/// [`JournalMode`](super::JournalMode) and
/// [`Synchronous`](super::Synchronous)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL does not start with `sqlite:`.
    #[non_exhaustive]
    Scheme {
        /// The URL as given.
        url: String,
    },
    /// The URL names no database file.
    MissingPath,
    /// A `%` escape in the URL is not two hexadecimal digits, or the decoded
    /// bytes are not UTF-8.
    #[non_exhaustive]
    Encoding {
        /// The part of the URL that holds it.
        text: String,
    },
    /// A query parameter this adapter does not know.
    #[non_exhaustive]
    UnknownParameter {
        /// Its name.
        name: String,
    },
    /// A value that is not one of those a setting accepts.
    #[non_exhaustive]
    InvalidValue {
        /// The setting (the URL parameter's name).
        name: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

impl ConfigError {
    pub(super) fn invalid(name: &'static str, value: &str, expected: &'static str) -> Self {
        ConfigError::InvalidValue {
            name,
            value: value.to_owned(),
            expected,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Scheme { url } => {
                write!(
                    f,
                    "`{url}` is not an SQLite URL: it must start with `sqlite:`"
                )
            }
            ConfigError::MissingPath => f.write_str(
                "the SQLite URL names no database file \
                 (`sqlite::memory:` is an in-memory database)",
            ),
            ConfigError::Encoding { text } => {
                write!(f, "invalid percent-encoding in `{text}` of the SQLite URL")
            }
            ConfigError::UnknownParameter { name } => {
                write!(f, "unknown parameter `{name}` in the SQLite URL")
            }
            ConfigError::InvalidValue {
                name,
                value,
                expected,
            } => write!(f, "invalid {name} `{value}` (expected {expected})"),
        }
    }
}

impl std::error::Error for ConfigError {}
