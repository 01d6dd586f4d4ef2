//! The gateway's own records, kept in the data folder: usage metering (who used
//! which workstation, when, how actively, how many bytes), the basis of pay-per-use.
//!
//! Storage is SQLite (embedded default). The report ([`report`]) is pure: it takes
//! records and returns rows, so it is tested without a database.
//!
//! INVARIANT: a session's record is written when it starts and brought up to date at
//! least every [`CHECKPOINT_SECONDS`] and when it ends, so a crash loses at most that much.

pub mod report;

use std::path::Path;

use rusqlite::{params, Connection};

/// How often a running session's record is brought up to date.
pub const CHECKPOINT_SECONDS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// One session's usage. Times are Unix seconds (UTC).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRecord {
    pub session: String,
    pub user: String,
    pub workstation: String,
    pub started_at: i64,
    /// `None` while the session runs.
    pub ended_at: Option<i64>,
    pub active_seconds: u64,
    pub idle_seconds: u64,
    pub bytes_to_browser: u64,
    pub bytes_from_browser: u64,
}

pub struct State {
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage (
    session TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    workstation TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    active_seconds INTEGER NOT NULL DEFAULT 0,
    idle_seconds INTEGER NOT NULL DEFAULT 0,
    bytes_to_browser INTEGER NOT NULL DEFAULT 0,
    bytes_from_browser INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS usage_started ON usage (started_at);
";

impl State {
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Self { db })
    }

    pub fn in_memory() -> Result<Self, StateError> {
        let db = Connection::open_in_memory()?;
        db.execute_batch(SCHEMA)?;
        Ok(Self { db })
    }

    /// Writes (or brings up to date) a session's record.
    pub fn record_usage(&self, r: &UsageRecord) -> Result<(), StateError> {
        self.db.execute(
            "INSERT INTO usage (session, user, workstation, started_at, ended_at, active_seconds, idle_seconds,
                                bytes_to_browser, bytes_from_browser)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(session) DO UPDATE SET ended_at = excluded.ended_at,
               active_seconds = excluded.active_seconds, idle_seconds = excluded.idle_seconds,
               bytes_to_browser = excluded.bytes_to_browser, bytes_from_browser = excluded.bytes_from_browser",
            params![
                r.session,
                r.user,
                r.workstation,
                r.started_at,
                r.ended_at,
                r.active_seconds as i64,
                r.idle_seconds as i64,
                r.bytes_to_browser as i64,
                r.bytes_from_browser as i64
            ],
        )?;
        Ok(())
    }

    /// Sessions that started in `[from, to)`.
    pub fn usage_between(&self, from: i64, to: i64) -> Result<Vec<UsageRecord>, StateError> {
        let mut stmt = self.db.prepare(
            "SELECT session, user, workstation, started_at, ended_at, active_seconds, idle_seconds,
                    bytes_to_browser, bytes_from_browser
             FROM usage WHERE started_at >= ?1 AND started_at < ?2 ORDER BY started_at, session",
        )?;
        let rows = stmt.query_map(params![from, to], |r| {
            Ok(UsageRecord {
                session: r.get(0)?,
                user: r.get(1)?,
                workstation: r.get(2)?,
                started_at: r.get(3)?,
                ended_at: r.get(4)?,
                active_seconds: r.get::<_, i64>(5)? as u64,
                idle_seconds: r.get::<_, i64>(6)? as u64,
                bytes_to_browser: r.get::<_, i64>(7)? as u64,
                bytes_from_browser: r.get::<_, i64>(8)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_updated_in_place_and_selected_by_start() {
        let s = State::in_memory().unwrap();
        let mut r = UsageRecord {
            session: "n1-1".into(),
            user: "alice".into(),
            workstation: "rdp://pc:3389".into(),
            started_at: 1_000,
            ended_at: None,
            active_seconds: 10,
            idle_seconds: 0,
            bytes_to_browser: 5,
            bytes_from_browser: 1,
        };
        s.record_usage(&r).unwrap();
        r.ended_at = Some(1_100);
        r.active_seconds = 70;
        r.idle_seconds = 30;
        s.record_usage(&r).unwrap();
        assert_eq!(s.usage_between(0, 2_000).unwrap(), vec![r]);
        assert!(s.usage_between(1_001, 2_000).unwrap().is_empty());
    }
}
