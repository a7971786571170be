//! The [`SqliteManager`] that opens, sets up and checks SQLite connections.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::ToSql;
use rusqlite::{ErrorCode, OpenFlags};

use super::connection::Connection;
use super::error::{AfterConnectError, ConfigError, ErrorKind, SqliteError};
use super::options::{JournalMode, RecyclingMethod, Synchronous};
use crate::ResourceInfo;

/// The busy timeout a manager starts with.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type HookFn = dyn Fn(&mut rusqlite::Connection) -> Result<(), AfterConnectError> + Send + Sync;
type PragmaValue = dyn ToSql + Send + Sync;

#[derive(Clone)]
enum Target {
    File(PathBuf),
    /// A named shared-cache in-memory database: this URI.
    Memory(String),
}

/// Everything a blocking task needs to open a connection.
#[derive(Clone)]
struct Config {
    target: Target,
    /// The database as errors name it.
    location: Arc<str>,
    journal_mode: Option<JournalMode>,
    synchronous: Synchronous,
    busy_timeout: Duration,
    foreign_keys: bool,
    create_if_missing: bool,
    read_only: bool,
    pragmas: Vec<(String, Arc<PragmaValue>)>,
    hooks: Vec<Arc<HookFn>>,
}

/// A [`quickslot::Manager`](crate::Manager) of SQLite connections, on
/// [`rusqlite`] with a bundled SQLite.
///
/// Start from [`file`](SqliteManager::file), [`memory`](SqliteManager::memory) or
/// [`from_url`](SqliteManager::from_url), change settings, then
/// [`pool_builder`](SqliteManager::pool_builder). `quickslot::sqlite::Manager`
/// is the same type ([`sqlite::Manager`](super::Manager)); this name does not
/// clash with [`quickslot::Manager`](crate::Manager) when both are imported.
///
/// | setting | default |
/// |---|---|
/// | [`journal_mode`](Self::journal_mode) | [`Wal`](JournalMode::Wal) for files opened read-write, else left as is |
/// | [`synchronous`](Self::synchronous) | [`Full`](Synchronous::Full) |
/// | [`busy_timeout`](Self::busy_timeout) | 5 s |
/// | [`foreign_keys`](Self::foreign_keys) | `true` |
/// | [`create_if_missing`](Self::create_if_missing) | `true` |
/// | [`read_only`](Self::read_only) | `false` |
/// | [`recycling_method`](Self::recycling_method) | [`Fast`](RecyclingMethod::Fast) |
///
/// Every new connection is opened on Tokio's blocking pool (when the create
/// runs inside a runtime), then gets the settings in this order:
/// `busy_timeout`, a read of the schema (which tells a file that is not a
/// database), `journal_mode`, `synchronous`, `foreign_keys`, the
/// [`pragma`](Self::pragma)s, then the [`after_connect`](Self::after_connect)
/// hooks, in the order they were added. Each of the four named settings is
/// read back, and a value SQLite did not take fails the create with an
/// [`SqliteError`] of kind [`ErrorKind::Setting`] naming it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use quickslot::sqlite::{JournalMode, SqliteManager, Synchronous};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("app.db");
/// let pool = SqliteManager::file(&path)
///     .journal_mode(JournalMode::Wal)
///     .synchronous(Synchronous::Normal)
///     .busy_timeout(Duration::from_secs(2))
///     .pragma("cache_size", -16_000) // 16 MB of page cache per connection
///     .pool_builder()
///     .max_size(8)
///     .build()?;
///
/// let conn = pool.acquire().await?;
/// let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
/// assert_eq!(mode, "wal");
/// # Ok(()) }
/// ```
pub struct SqliteManager {
    config: Arc<Config>,
    recycling_method: RecyclingMethod,
    /// For an in-memory database: a connection that keeps it alive while
    /// the manager lives, opened with the first pooled one.
    keeper: Option<Arc<Mutex<Option<rusqlite::Connection>>>>,
}

impl SqliteManager {
    fn with_target(target: Target, location: String) -> Self {
        let memory = matches!(target, Target::Memory(_));
        SqliteManager {
            config: Arc::new(Config {
                target,
                location: location.into(),
                journal_mode: None,
                synchronous: Synchronous::Full,
                busy_timeout: DEFAULT_BUSY_TIMEOUT,
                foreign_keys: true,
                create_if_missing: true,
                read_only: false,
                pragmas: Vec::new(),
                hooks: Vec::new(),
            }),
            recycling_method: RecyclingMethod::default(),
            keeper: memory.then(|| Arc::new(Mutex::new(None))),
        }
    }

    /// A manager for the database file at `path` (created if missing, unless
    /// [`create_if_missing`](Self::create_if_missing) is turned off).
    /// Nothing is opened until the pool creates a connection.
    pub fn file(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        SqliteManager::with_target(Target::File(path), location)
    }

    /// A manager for a new, empty in-memory database of its own: a named
    /// shared-cache database (`file:quickslot-memory-N?mode=memory&cache=shared`),
    /// so every connection of the pool sees the same data. It lives as long
    /// as the manager (so the pool) lives: the manager keeps one extra
    /// connection to it open.
    ///
    /// With shared cache, SQLite locks tables, not the file, and a
    /// connection that finds a table locked by another gets
    /// `SQLITE_LOCKED` at once, without the busy timeout. So
    /// `max_size(1)` (one connection, every task in turn) is the usual
    /// setup; with more connections, concurrent writers must expect
    /// `SQLITE_LOCKED` errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = quickslot::sqlite::Manager::memory().pool_builder().max_size(1).build()?;
    /// pool.acquire().await?.execute_batch("CREATE TABLE t (x)")?;
    /// let n: i64 = pool.acquire().await?.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
    /// assert_eq!(n, 0);
    /// # Ok(()) }
    /// ```
    pub fn memory() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let uri = format!(
            "file:quickslot-memory-{}-{n}?mode=memory&cache=shared",
            std::process::id()
        );
        SqliteManager::with_target(Target::Memory(uri.clone()), uri)
    }

    /// A manager for a URL, as found in configuration files:
    ///
    /// * `sqlite://data/app.db`, `sqlite:data/app.db`: the file
    ///   `data/app.db` (relative to the working directory);
    ///   `sqlite:///var/lib/app.db`: the absolute path `/var/lib/app.db`;
    /// * `sqlite::memory:`, `sqlite://:memory:`, or any path with
    ///   `mode=memory`: a new in-memory database, as
    ///   [`memory`](Self::memory) (the name in the URL is not used);
    /// * query parameters: `mode` = `rwc` (read-write, create if missing:
    ///   the default), `rw` (read-write, must exist), `ro` (read-only) or
    ///   `memory`; `journal_mode` (`wal`, `delete`, ...); `synchronous`
    ///   (`off`, `normal`, `full`, `extra`); `busy_timeout` in milliseconds;
    ///   `foreign_keys` (`true`/`false`, `on`/`off`, `1`/`0`).
    ///
    /// `%XX` escapes are decoded in the path and the values.
    ///
    /// ```
    /// use quickslot::sqlite::Manager;
    ///
    /// let manager = Manager::from_url("sqlite://data/app.db?mode=rwc&synchronous=normal")?;
    /// assert_eq!(manager.location(), "data/app.db");
    /// assert!(Manager::from_url("sqlite::memory:")?.location().starts_with("file:"));
    /// # Ok::<(), quickslot::sqlite::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming what is wrong: the scheme, a missing path, a bad
    /// `%` escape, an unknown parameter, or a value a parameter does not
    /// accept.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        super::url::parse(url)
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Sets the journal mode (default: [`JournalMode::Wal`] for files opened
    /// read-write; read-only connections and in-memory databases keep theirs
    /// unless one is set). SQLite reports the mode it ended up in, and
    /// another mode than this one fails the create with
    /// [`ErrorKind::Setting`]: WAL is never silently replaced by a rollback
    /// journal. WAL is persistent: the file stays in WAL mode after the pool
    /// closes.
    pub fn journal_mode(mut self, mode: JournalMode) -> Self {
        self.config_mut().journal_mode = Some(mode);
        self
    }

    /// Sets `synchronous` (default: [`Synchronous::Full`]), read back on
    /// every new connection.
    pub fn synchronous(mut self, level: Synchronous) -> Self {
        self.config_mut().synchronous = level;
        self
    }

    /// How long a statement waits for another connection's lock before
    /// failing with `SQLITE_BUSY` (default: 5 s; zero fails at once).
    /// Whole milliseconds, at most `i32::MAX`; read back on every new
    /// connection.
    ///
    /// Keep it below the pool's `acquire_timeout` (30 s by default), so that
    /// a create stuck on a lock fails as [`ErrorKind::Busy`] rather than as
    /// an acquire timeout.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().busy_timeout = timeout;
        self
    }

    /// Whether foreign key constraints are enforced (default: `true`;
    /// SQLite's own default is off). Read back on every new connection.
    pub fn foreign_keys(mut self, enforce: bool) -> Self {
        self.config_mut().foreign_keys = enforce;
        self
    }

    /// Whether a missing database file is created (default: `true`). Off, a
    /// missing file fails the create with [`ErrorKind::NotFound`]. No effect
    /// on an in-memory database.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.config_mut().create_if_missing = create;
        self
    }

    /// Whether connections are opened read-only (default: `false`). A
    /// read-only connection never creates the file, and keeps the file's
    /// journal mode unless [`journal_mode`](Self::journal_mode) asks for
    /// one (which then must already be the file's).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.config_mut().read_only = read_only;
        self
    }

    /// Adds a `PRAGMA name = value` to run on every new connection, after
    /// the named settings, for anything else (`cache_size`, `temp_store`,
    /// `mmap_size`, `main.page_size`...). A name SQLite does not know fails
    /// the create with [`ErrorKind::Setting`] (SQLite itself ignores unknown
    /// pragmas), as does a statement SQLite rejects. The value is not read
    /// back: pragmas report values in many forms; check one in an
    /// [`after_connect`](Self::after_connect) hook if it matters.
    ///
    /// ```
    /// use quickslot::sqlite::Manager;
    ///
    /// let manager = Manager::memory()
    ///     .pragma("temp_store", "memory")
    ///     .pragma("cache_size", -64_000);
    /// ```
    pub fn pragma(
        mut self,
        name: impl Into<String>,
        value: impl ToSql + Send + Sync + 'static,
    ) -> Self {
        self.config_mut()
            .pragmas
            .push((name.into(), Arc::new(value)));
        self
    }

    /// Adds a closure to run on every new connection, after the settings,
    /// on the blocking task that opened it: register functions or
    /// collations, attach databases, size the statement cache, check the
    /// schema version... Hooks run in the order they were added; an error
    /// fails the create with [`ErrorKind::AfterConnect`].
    ///
    /// Create or migrate the schema once, before the pool serves, not here:
    /// the pool's first connections run their hooks at the same time, and in
    /// WAL mode a write that loses that race fails at once with
    /// `SQLITE_BUSY` (its read snapshot is stale), whatever the busy
    /// timeout.
    ///
    /// ```
    /// use quickslot::sqlite::Manager;
    ///
    /// let manager = Manager::memory().after_connect(|conn| {
    ///     conn.set_prepared_statement_cache_capacity(256);
    ///     let version: String = conn.query_row("SELECT sqlite_version()", [], |r| r.get(0))?;
    ///     if version.as_str() < "3.35" {
    ///         return Err(format!("SQLite {version} is too old").into());
    ///     }
    ///     Ok(())
    /// });
    /// ```
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut rusqlite::Connection) -> Result<(), AfterConnectError> + Send + Sync + 'static,
    {
        self.config_mut().hooks.push(Arc::new(hook));
        self
    }

    /// Sets what is checked when an idle connection is checked out (default:
    /// [`RecyclingMethod::Fast`]).
    pub fn recycling_method(mut self, method: RecyclingMethod) -> Self {
        self.recycling_method = method;
        self
    }

    /// The database: the file's path as given, or the `file:` URI of an
    /// in-memory database (which another `rusqlite` connection can open with
    /// [`OpenFlags::SQLITE_OPEN_URI`] while the manager lives).
    pub fn location(&self) -> &str {
        &self.config.location
    }

    /// Whether this manager's database is in memory.
    pub fn is_memory(&self) -> bool {
        matches!(self.config.target, Target::Memory(_))
    }

    /// The recycling method.
    pub fn get_recycling_method(&self) -> RecyclingMethod {
        self.recycling_method
    }

    /// A pool builder for this manager with the defaults of a typical
    /// SQLite pool: `min_idle` 1, `max_size` 10, `acquire_timeout` 30 s,
    /// `idle_timeout` 10 minutes, `max_lifetime` 30 minutes. Each can be
    /// changed on the returned builder; [`memory`](Self::memory) with
    /// `max_size(1)` is the usual single-connection in-memory setup.
    ///
    /// ```
    /// let pool = quickslot::sqlite::Manager::memory().pool_builder().build()?;
    /// assert_eq!(pool.status().max_size, 10);
    /// # Ok::<(), quickslot::BuildError>(())
    /// ```
    pub fn pool_builder(self) -> crate::Builder<Self> {
        crate::Pool::builder(self)
            .min_idle(1)
            .max_size(10)
            .acquire_timeout(Duration::from_secs(30))
            .default_idle_timeout(Duration::from_secs(10 * 60))
            .default_max_lifetime(Duration::from_secs(30 * 60))
    }

    /// Opens and sets up one connection (blocking).
    fn connect(
        config: &Config,
        keeper: Option<&Mutex<Option<rusqlite::Connection>>>,
    ) -> Result<Connection, SqliteError> {
        if let Some(keeper) = keeper {
            let mut keeper = keeper.lock().unwrap_or_else(PoisonError::into_inner);
            if keeper.is_none() {
                *keeper = Some(config.open()?);
            }
        }
        let mut conn = config.open()?;
        config.set_up(&mut conn)?;
        Ok(Connection::new(conn, config.location.clone()))
    }
}

impl Config {
    fn flags(&self) -> OpenFlags {
        let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
        match &self.target {
            Target::Memory(_) => {
                flags |= OpenFlags::SQLITE_OPEN_URI;
                flags |= if self.read_only {
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                } else {
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
                };
            }
            Target::File(_) if self.read_only => flags |= OpenFlags::SQLITE_OPEN_READ_ONLY,
            Target::File(_) => {
                flags |= OpenFlags::SQLITE_OPEN_READ_WRITE;
                if self.create_if_missing {
                    flags |= OpenFlags::SQLITE_OPEN_CREATE;
                }
            }
        }
        flags
    }

    fn open(&self) -> Result<rusqlite::Connection, SqliteError> {
        let opened = match &self.target {
            Target::File(path) => rusqlite::Connection::open_with_flags(path, self.flags()),
            Target::Memory(uri) => rusqlite::Connection::open_with_flags(uri, self.flags()),
        };
        opened.map_err(|e| self.open_error(e))
    }

    /// Names a failed open: SQLite says "unable to open database file" for
    /// a missing directory, a missing file and a refused permission alike,
    /// so the file system is asked which it was.
    fn open_error(&self, e: rusqlite::Error) -> SqliteError {
        let kind = match (&self.target, e.sqlite_error_code()) {
            (Target::File(path), Some(ErrorCode::CannotOpen)) => classify_cannot_open(
                path,
                self.create_if_missing && !self.read_only,
                self.read_only,
            ),
            (_, Some(ErrorCode::PermissionDenied)) => ErrorKind::PermissionDenied,
            (_, Some(ErrorCode::NotADatabase)) => ErrorKind::NotADatabase,
            (_, Some(ErrorCode::DatabaseBusy)) => ErrorKind::Busy,
            _ => ErrorKind::Open,
        };
        SqliteError::new(kind, &self.location)
            .on_read_only(self.read_only)
            .busy_timeout(self.busy_timeout)
            .with_source(e)
    }

    /// Applies and checks every setting, then runs the hooks.
    fn set_up(&self, conn: &mut rusqlite::Connection) -> Result<(), SqliteError> {
        let loc = &*self.location;
        let read_only = self.read_only || conn.is_readonly("main").unwrap_or(false);
        // Errors met while applying `setting`.
        let failed = |setting: &str, requested: String, e: rusqlite::Error| {
            if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) {
                SqliteError::new(ErrorKind::Busy, loc)
                    .in_setting(setting)
                    .busy_timeout(self.busy_timeout)
                    .with_source(e)
            } else if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) {
                SqliteError::new(ErrorKind::NotADatabase, loc).with_source(e)
            } else {
                SqliteError::refused(loc, setting, requested, None)
                    .on_read_only(read_only)
                    .with_source(e)
            }
        };

        // 1. busy_timeout, first, so that the rest waits for locks.
        let busy_ms = i64::try_from(self.busy_timeout.as_millis())
            .unwrap_or(i64::MAX)
            .min(i64::from(i32::MAX));
        let requested = format!("{busy_ms} ms");
        conn.busy_timeout(Duration::from_millis(busy_ms.unsigned_abs()))
            .map_err(|e| failed("busy_timeout", requested.clone(), e))?;
        let actual: i64 = conn
            .pragma_query_value(None, "busy_timeout", |row| row.get(0))
            .map_err(|e| failed("busy_timeout", requested.clone(), e))?;
        if actual != busy_ms {
            return Err(SqliteError::refused(
                loc,
                "busy_timeout",
                requested,
                Some(format!("{actual} ms")),
            ));
        }

        // 2. Read the schema: the first access to the file, which tells a
        //    file that is not a database.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| {
            row.get::<_, i64>(0)
        })
        .map_err(|e| {
            let kind = match e.sqlite_error_code() {
                Some(ErrorCode::NotADatabase) => ErrorKind::NotADatabase,
                Some(ErrorCode::DatabaseBusy) => ErrorKind::Busy,
                Some(ErrorCode::PermissionDenied) => ErrorKind::PermissionDenied,
                _ => ErrorKind::Open,
            };
            SqliteError::new(kind, loc)
                .doing("reading the schema")
                .busy_timeout(self.busy_timeout)
                .with_source(e)
        })?;

        // 3. journal_mode: SQLite answers with the mode it is in. Switching
        //    needs an exclusive lock, which SQLite refuses at once, without
        //    the busy handler, while another connection switches too (the
        //    pool's first connections, another process): retried until the
        //    busy timeout.
        let journal_mode = self.journal_mode.or(match self.target {
            Target::File(_) if !self.read_only => Some(JournalMode::Wal),
            _ => None,
        });
        if let Some(mode) = journal_mode {
            let requested = mode.as_str();
            let actual: String = retry_busy(self.busy_timeout, || {
                conn.pragma_update_and_check(None, "journal_mode", requested, |row| row.get(0))
            })
            .map_err(|e| failed("journal_mode", requested.to_owned(), e))?;
            if !actual.eq_ignore_ascii_case(requested) {
                return Err(SqliteError::refused(
                    loc,
                    "journal_mode",
                    requested.to_owned(),
                    Some(actual.to_ascii_lowercase()),
                )
                .on_read_only(read_only));
            }
        }

        // 4. synchronous.
        let requested = self.synchronous.as_str();
        conn.pragma_update(None, "synchronous", requested)
            .map_err(|e| failed("synchronous", requested.to_owned(), e))?;
        let actual: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .map_err(|e| failed("synchronous", requested.to_owned(), e))?;
        if actual != self.synchronous.level() {
            let actual = Synchronous::from_level(actual)
                .map_or_else(|| actual.to_string(), |s| s.as_str().to_owned());
            return Err(SqliteError::refused(
                loc,
                "synchronous",
                requested.to_owned(),
                Some(actual),
            ));
        }

        // 5. foreign_keys.
        let requested = if self.foreign_keys { "on" } else { "off" };
        conn.pragma_update(None, "foreign_keys", self.foreign_keys)
            .map_err(|e| failed("foreign_keys", requested.to_owned(), e))?;
        let actual: bool = conn
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .map_err(|e| failed("foreign_keys", requested.to_owned(), e))?;
        if actual != self.foreign_keys {
            let actual = if actual { "on" } else { "off" };
            return Err(SqliteError::refused(
                loc,
                "foreign_keys",
                requested.to_owned(),
                Some(actual.to_owned()),
            ));
        }

        // 6. The other pragmas.
        for (name, value) in &self.pragmas {
            let shown = show_value(&**value);
            let (schema, pragma) = match name.split_once('.') {
                Some((schema, pragma)) => (Some(schema), pragma),
                None => (None, name.as_str()),
            };
            let known: Result<i64, _> = conn.query_row(
                "SELECT count(*) FROM pragma_pragma_list WHERE name = ?1",
                [pragma.to_ascii_lowercase()],
                |row| row.get(0),
            );
            // Without the introspection pragmas (an SQLite built without
            // them), the name is not checked.
            if known == Ok(0) {
                return Err(SqliteError::refused(loc, name, shown, None));
            }
            retry_busy(self.busy_timeout, || {
                conn.pragma_update(schema, pragma, &**value)
            })
            .map_err(|e| failed(name, shown, e))?;
        }

        // 7. The hooks.
        for hook in &self.hooks {
            hook(conn)
                .map_err(|e| SqliteError::new(ErrorKind::AfterConnect, loc).with_hook_source(e))?;
        }
        Ok(())
    }
}

/// Runs `f` again while it fails with `SQLITE_BUSY`, pausing 1 ms, then
/// doubling up to 50 ms, until `timeout` has passed: the busy timeout for a
/// statement SQLite fails at once instead of calling its busy handler.
fn retry_busy<T>(
    timeout: Duration,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match f() {
            Err(e)
                if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && started.elapsed() + pause < timeout =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Which of the reasons for `SQLITE_CANTOPEN` applies to `path`.
fn classify_cannot_open(path: &Path, create: bool, read_only: bool) -> ErrorKind {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ErrorKind::MissingDirectory,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return ErrorKind::PermissionDenied
        }
        Ok(meta) if !meta.is_dir() => return ErrorKind::MissingDirectory,
        _ => {}
    }
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if create {
                // SQLite could not create the file in an existing directory.
                if dir_is_read_only(dir) {
                    ErrorKind::PermissionDenied
                } else {
                    ErrorKind::Open
                }
            } else {
                ErrorKind::NotFound
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        Ok(meta) if meta.is_dir() => ErrorKind::Open,
        Ok(_) => {
            let probe = std::fs::OpenOptions::new()
                .read(true)
                .write(!read_only)
                .open(path);
            match probe {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    ErrorKind::PermissionDenied
                }
                _ => ErrorKind::Open,
            }
        }
        Err(_) => ErrorKind::Open,
    }
}

fn dir_is_read_only(dir: &Path) -> bool {
    std::fs::metadata(dir).is_ok_and(|m| m.permissions().readonly())
}

/// A pragma's value as errors show it.
fn show_value(value: &PragmaValue) -> String {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    let value = match value.to_sql() {
        Ok(ToSqlOutput::Borrowed(v)) => v,
        Ok(ToSqlOutput::Owned(ref v)) => return show_value_ref(ValueRef::from(v)),
        _ => return String::from("?"),
    };
    show_value_ref(value)
}

fn show_value_ref(value: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => String::from("NULL"),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(r) => r.to_string(),
        ValueRef::Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
        ValueRef::Blob(_) => String::from("a blob"),
    }
}

impl fmt::Debug for SqliteManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &*self.config;
        let pragmas: Vec<(&str, String)> = c
            .pragmas
            .iter()
            .map(|(name, value)| (name.as_str(), show_value(&**value)))
            .collect();
        f.debug_struct("SqliteManager")
            .field("location", &c.location)
            .field("journal_mode", &c.journal_mode)
            .field("synchronous", &c.synchronous)
            .field("busy_timeout", &c.busy_timeout)
            .field("foreign_keys", &c.foreign_keys)
            .field("create_if_missing", &c.create_if_missing)
            .field("read_only", &c.read_only)
            .field("pragmas", &pragmas)
            .field("after_connect_hooks", &c.hooks.len())
            .field("recycling_method", &self.recycling_method)
            .finish()
    }
}

impl crate::Manager for SqliteManager {
    type Resource = Connection;
    type Error = SqliteError;

    /// Opens and sets up a connection, on Tokio's blocking pool inside a
    /// runtime (in place otherwise). A panicking `after_connect` hook
    /// panics here too.
    async fn create(&self) -> Result<Connection, SqliteError> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return SqliteManager::connect(&self.config, self.keeper.as_deref());
        };
        let config = self.config.clone();
        let keeper = self.keeper.clone();
        match runtime
            .spawn_blocking(move || SqliteManager::connect(&config, keeper.as_deref()))
            .await
        {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(SqliteError::new(ErrorKind::Aborted, &self.config.location)),
        }
    }

    /// Waits for a connection still out in a cancelled `interact`, rolls
    /// back a transaction left open, and with
    /// [`RecyclingMethod::Verified`] runs `SELECT 1`.
    async fn recycle(&self, conn: &mut Connection, _: &ResourceInfo) -> Result<(), SqliteError> {
        let loc = &*self.config.location;
        if conn.reclaim().await.is_err() {
            return Err(SqliteError::new(ErrorKind::Lost, loc));
        }
        let Some(raw) = conn.get_mut() else {
            return Err(SqliteError::new(ErrorKind::Lost, loc));
        };
        if !raw.is_autocommit() {
            raw.execute_batch("ROLLBACK")
                .map_err(|e| SqliteError::new(ErrorKind::Check, loc).with_source(e))?;
        }
        if self.recycling_method == RecyclingMethod::Verified {
            raw.prepare_cached("SELECT 1")
                .and_then(|mut statement| statement.query_row([], |row| row.get::<_, i64>(0)))
                .map_err(|e| SqliteError::new(ErrorKind::Check, loc).with_source(e))?;
        }
        Ok(())
    }

    /// A connection returned inside a transaction is rolled back (and
    /// dropped if that fails); one lost with a panicking `interact` closure
    /// is dropped.
    fn is_broken(&self, conn: &mut Connection) -> bool {
        match conn.try_reclaim() {
            Ok(true) => {}
            // Still out in a cancelled `interact`: the checkout waits for it.
            Ok(false) => return false,
            Err(_) => return true,
        }
        let Some(raw) = conn.get_mut() else {
            return true;
        };
        if raw.is_autocommit() {
            return false;
        }
        tracing::debug!(
            target: "quickslot::sqlite",
            location = %self.config.location,
            "connection returned inside a transaction: rolling it back",
        );
        raw.execute_batch("ROLLBACK").is_err() || !raw.is_autocommit()
    }
}
