//! The settings with a fixed set of values: [`JournalMode`], [`Synchronous`]
//! and [`RecyclingMethod`].

use std::fmt;
use std::str::FromStr;

use super::error::ConfigError;

/// SQLite's `journal_mode`: how a transaction is made atomic.
///
/// The default is [`Wal`](JournalMode::Wal) for files opened read-write; a
/// [`read_only`](super::SqliteManager::read_only) connection and an in-memory
/// database keep the mode they have unless one is set. The mode asked for
/// is read back on every new connection: a file that keeps another mode
/// (WAL on a read-only medium, any mode but `memory` or `off` on an
/// in-memory database) fails the create with an error naming
/// `journal_mode`.
///
/// ```
/// use quickslot::sqlite::JournalMode;
///
/// assert_eq!("WAL".parse::<JournalMode>().unwrap(), JournalMode::Wal);
/// assert_eq!(JournalMode::Truncate.as_str(), "truncate");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JournalMode {
    /// A rollback journal, deleted at the end of each transaction.
    Delete,
    /// A rollback journal, truncated to zero length instead of deleted.
    Truncate,
    /// A rollback journal whose header is zeroed instead.
    Persist,
    /// A rollback journal kept in memory (a crash mid-transaction may
    /// corrupt the file).
    Memory,
    /// A write-ahead log: readers do not block the writer nor the writer
    /// readers. Persistent: the file stays in WAL mode.
    Wal,
    /// No journal: no atomic commit or rollback.
    Off,
}

impl JournalMode {
    /// The mode's name as SQLite spells it (`"wal"`).
    pub fn as_str(self) -> &'static str {
        match self {
            JournalMode::Delete => "delete",
            JournalMode::Truncate => "truncate",
            JournalMode::Persist => "persist",
            JournalMode::Memory => "memory",
            JournalMode::Wal => "wal",
            JournalMode::Off => "off",
        }
    }
}

impl fmt::Display for JournalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JournalMode {
    type Err = ConfigError;

    /// Parses a mode's name, in any case.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "delete" => JournalMode::Delete,
            "truncate" => JournalMode::Truncate,
            "persist" => JournalMode::Persist,
            "memory" => JournalMode::Memory,
            "wal" => JournalMode::Wal,
            "off" => JournalMode::Off,
            _ => {
                return Err(ConfigError::invalid(
                    "journal_mode",
                    s,
                    "delete, truncate, persist, memory, wal or off",
                ))
            }
        })
    }
}

/// SQLite's `synchronous`: how often it waits for data to reach the disk.
///
/// The default is [`Full`](Synchronous::Full). With WAL,
/// [`Normal`](Synchronous::Normal) is a common choice: a commit is then
/// durable once a checkpoint ran, and the database cannot be corrupted.
///
/// ```
/// use quickslot::sqlite::Synchronous;
///
/// assert_eq!("normal".parse::<Synchronous>().unwrap(), Synchronous::Normal);
/// assert_eq!(Synchronous::Extra.level(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Synchronous {
    /// Never waits for the disk (a power loss may corrupt the database).
    Off,
    /// Waits at the critical moments only.
    Normal,
    /// Waits at every commit.
    Full,
    /// As `Full`, and also for the directory after deleting a rollback
    /// journal.
    Extra,
}

impl Synchronous {
    /// The level as `PRAGMA synchronous` reads it back (0 to 3).
    pub fn level(self) -> i64 {
        match self {
            Synchronous::Off => 0,
            Synchronous::Normal => 1,
            Synchronous::Full => 2,
            Synchronous::Extra => 3,
        }
    }

    /// The level's name as SQLite spells it (`"full"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Off => "off",
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
            Synchronous::Extra => "extra",
        }
    }

    pub(super) fn from_level(level: i64) -> Option<Self> {
        Some(match level {
            0 => Synchronous::Off,
            1 => Synchronous::Normal,
            2 => Synchronous::Full,
            3 => Synchronous::Extra,
            _ => return None,
        })
    }
}

impl fmt::Display for Synchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Synchronous {
    type Err = ConfigError;

    /// Parses a level's name in any case, or its number (`0` to `3`).
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "off" | "0" => Synchronous::Off,
            "normal" | "1" => Synchronous::Normal,
            "full" | "2" => Synchronous::Full,
            "extra" | "3" => Synchronous::Extra,
            _ => {
                return Err(ConfigError::invalid(
                    "synchronous",
                    s,
                    "off, normal, full or extra",
                ))
            }
        })
    }
}

/// What is checked when an idle connection is checked out again.
///
/// In both modes a connection is checked for an open transaction twice:
/// when it is returned (and rolled back then, or discarded if the rollback
/// fails) and at checkout (the same), so no user is ever handed a connection
/// in the middle of someone else's transaction. Neither check touches the
/// database file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecyclingMethod {
    /// Only `is_autocommit()`: a flag read, no SQL. The default.
    #[default]
    Fast,
    /// Also runs `SELECT 1` (a prepared statement, no file access): proves
    /// the connection handle can still run statements.
    Verified,
}
