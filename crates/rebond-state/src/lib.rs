//! The gateway's shared records: usage metering (who used which workstation, when,
//! how actively, how many bytes; the basis of pay-per-use) and the live-session
//! claims that let several gateway nodes agree on who holds each person's session.
//!
//! Two backends behind one API: SQLite in the data folder (the embedded single-node
//! default) and PostgreSQL (a cluster of nodes). Both apply the same migrations
//! (`migrations/*.sql`, portable SQL) and run the same queries (`$N` parameters, which
//! SQLite also reads positionally). The report ([`report`]) is pure.
//!
//! INVARIANT: a session's record is written when it starts and brought up to date at
//! least every [`CHECKPOINT_SECONDS`] and when it ends, so a crash loses at most that much.
//! INVARIANT: one live-session claim per person; the newest sign-in's claim wins.

pub mod audit;
pub mod report;

pub use audit::AuditRecord;

use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::warn;

/// How often a running session's record is brought up to date.
pub const CHECKPOINT_SECONDS: u64 = 30;

/// The schema, in order; each file is applied once and recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_usage.sql")),
    (2, include_str!("../migrations/0002_live_sessions.sql")),
    (3, include_str!("../migrations/0003_usage_groups.sql")),
    (4, include_str!("../migrations/0004_audit.sql")),
    (5, include_str!("../migrations/0005_second_factor.sql")),
];

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the database task failed: {0}")]
    Join(String),
}

/// One session's usage. Times are Unix seconds (UTC).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRecord {
    pub session: String,
    pub user: String,
    pub workstation: String,
    /// The gateway node that served it.
    pub node: String,
    /// The person's groups when the session started.
    pub groups: Vec<String>,
    pub started_at: i64,
    /// `None` while the session runs.
    pub ended_at: Option<i64>,
    pub active_seconds: u64,
    pub idle_seconds: u64,
    pub bytes_to_browser: u64,
    pub bytes_from_browser: u64,
}

/// The database, local or shared.
#[derive(Clone)]
pub enum State {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(Arc<tokio_postgres::Client>, Arc<tokio::sync::Mutex<()>>),
}

/// A value bound to a query on either backend.
/// A stored second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondFactor {
    pub sealed_secret: String,
    pub enrolled: bool,
    pub last_step: Option<i64>,
}

enum Val<'a> {
    Text(&'a str),
    Int(i64),
    OptInt(Option<i64>),
}

impl State {
    /// SQLite in `path` (WAL, so the CLI can read while the gateway writes).
    pub fn open_sqlite(path: &Path) -> Result<Self, StateError> {
        let db = rusqlite::Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        Self::migrate_sqlite(&db)?;
        Ok(State::Sqlite(Arc::new(Mutex::new(db))))
    }

    pub fn in_memory() -> Result<Self, StateError> {
        let db = rusqlite::Connection::open_in_memory()?;
        Self::migrate_sqlite(&db)?;
        Ok(State::Sqlite(Arc::new(Mutex::new(db))))
    }

    fn migrate_sqlite(db: &rusqlite::Connection) -> Result<(), StateError> {
        db.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")?;
        for (version, sql) in MIGRATIONS {
            let done: i64 = db.query_row("SELECT COUNT(*) FROM schema_migrations WHERE version = $1", [version], |r| r.get(0))?;
            if done == 0 {
                let tx = db.unchecked_transaction()?;
                tx.execute_batch(sql)?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", [version])?;
                tx.commit()?;
            }
        }
        Ok(())
    }

    /// PostgreSQL at `url` (`postgres://user:password@host:port/db`), shared by the nodes.
    pub async fn connect_postgres(url: &str) -> Result<Self, StateError> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                warn!(%error, "the PostgreSQL connection ended");
            }
        });
        // One node migrates at a time.
        client.batch_execute("SELECT pg_advisory_lock(726562)").await?;
        client.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)").await?;
        for (version, sql) in MIGRATIONS {
            let done = client.query_opt("SELECT version FROM schema_migrations WHERE version = $1", &[version]).await?;
            if done.is_none() {
                client.batch_execute(&format!("BEGIN; {sql}; INSERT INTO schema_migrations (version) VALUES ({version}); COMMIT;")).await?;
            }
        }
        client.batch_execute("SELECT pg_advisory_unlock(726562)").await?;
        Ok(State::Postgres(Arc::new(client), Arc::default()))
    }

    /// Runs a statement on either backend.
    async fn execute(&self, sql: &'static str, values: Vec<Val<'_>>) -> Result<u64, StateError> {
        match self {
            State::Sqlite(db) => {
                let db = db.clone();
                let owned: Vec<rusqlite::types::Value> = values.iter().map(sqlite_value).collect();
                tokio::task::spawn_blocking(move || {
                    let db = db.lock().unwrap();
                    Ok(db.execute(sql, rusqlite::params_from_iter(owned))? as u64)
                })
                .await
                .map_err(|e| StateError::Join(e.to_string()))?
            }
            State::Postgres(client, _) => {
                let params = pg_params(&values);
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                Ok(client.execute(sql, &refs).await?)
            }
        }
    }

    /// Writes (or brings up to date) a session's record.
    pub async fn record_usage(&self, r: &UsageRecord) -> Result<(), StateError> {
        self.execute(
            "INSERT INTO usage (session, username, workstation, node, started_at, ended_at, active_seconds,
                                idle_seconds, bytes_to_browser, bytes_from_browser, groups)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (session) DO UPDATE SET ended_at = excluded.ended_at,
               active_seconds = excluded.active_seconds, idle_seconds = excluded.idle_seconds,
               bytes_to_browser = excluded.bytes_to_browser, bytes_from_browser = excluded.bytes_from_browser",
            vec![
                Val::Text(&r.session),
                Val::Text(&r.user),
                Val::Text(&r.workstation),
                Val::Text(&r.node),
                Val::Int(r.started_at),
                Val::OptInt(r.ended_at),
                Val::Int(r.active_seconds as i64),
                Val::Int(r.idle_seconds as i64),
                Val::Int(r.bytes_to_browser as i64),
                Val::Int(r.bytes_from_browser as i64),
                Val::Text(&r.groups.join(",")),
            ],
        )
        .await
        .map(drop)
    }

    /// Sessions that started in `[from, to)`, from every node.
    pub async fn usage_between(&self, from: i64, to: i64) -> Result<Vec<UsageRecord>, StateError> {
        const SQL: &str = "SELECT session, username, workstation, node, started_at, ended_at, active_seconds,
                                  idle_seconds, bytes_to_browser, bytes_from_browser, groups
                           FROM usage WHERE started_at >= $1 AND started_at < $2 ORDER BY started_at, session";
        self.query(SQL, vec![Val::Int(from), Val::Int(to)], |r| {
            Ok(UsageRecord {
                session: r.text(0)?,
                user: r.text(1)?,
                workstation: r.text(2)?,
                node: r.text(3)?,
                started_at: r.int(4)?,
                ended_at: r.opt_int(5)?,
                active_seconds: r.int(6)? as u64,
                idle_seconds: r.int(7)? as u64,
                bytes_to_browser: r.int(8)? as u64,
                bytes_from_browser: r.int(9)? as u64,
                groups: split_groups(&r.text(10)?),
            })
        })
        .await
    }

    /// Runs a query on either backend, decoding each row.
    async fn query<T: Send + 'static>(
        &self,
        sql: &'static str,
        values: Vec<Val<'_>>,
        decode: fn(&dyn Row) -> Result<T, StateError>,
    ) -> Result<Vec<T>, StateError> {
        match self {
            State::Sqlite(db) => {
                let db = db.clone();
                let owned: Vec<rusqlite::types::Value> = values.iter().map(sqlite_value).collect();
                tokio::task::spawn_blocking(move || {
                    let db = db.lock().unwrap();
                    let mut stmt = db.prepare(sql)?;
                    let mut rows = stmt.query(rusqlite::params_from_iter(owned))?;
                    let mut out = Vec::new();
                    while let Some(row) = rows.next()? {
                        out.push(decode(row)?);
                    }
                    Ok(out)
                })
                .await
                .map_err(|e| StateError::Join(e.to_string()))?
            }
            State::Postgres(client, _) => {
                let params = pg_params(&values);
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                client.query(sql, &refs).await?.iter().map(|r| decode(r)).collect()
            }
        }
    }

    /// Claims `user`'s live session for `session` on `node`: the newest sign-in wins.
    pub async fn claim_session(&self, user: &str, session: &str, node: &str, now: i64) -> Result<(), StateError> {
        self.execute(
            "INSERT INTO live_sessions (username, session, node, claimed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (username) DO UPDATE SET session = excluded.session, node = excluded.node,
               claimed_at = excluded.claimed_at",
            vec![Val::Text(user), Val::Text(session), Val::Text(node), Val::Int(now)],
        )
        .await
        .map(drop)
    }

    /// A person's second factor: the sealed secret (see the gateway's `second_factor`),
    /// whether enrolment was confirmed with a code, and the last code's time step.
    pub async fn second_factor(&self, user: &str) -> Result<Option<SecondFactor>, StateError> {
        let rows = self
            .query(
                "SELECT sealed_secret, enrolled, last_step FROM second_factors WHERE username = $1",
                vec![Val::Text(user)],
                |r| Ok(SecondFactor { sealed_secret: r.text(0)?, enrolled: r.int(1)? != 0, last_step: r.opt_int(2)? }),
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// Starts an enrolment (replacing an unconfirmed one; a confirmed one stays).
    pub async fn begin_second_factor(&self, user: &str, sealed_secret: &str, now: i64) -> Result<(), StateError> {
        self.execute(
            "INSERT INTO second_factors (username, sealed_secret, enrolled, last_step, created_at) VALUES ($1, $2, 0, NULL, $3)
             ON CONFLICT (username) DO UPDATE SET sealed_secret = excluded.sealed_secret, created_at = excluded.created_at
             WHERE second_factors.enrolled = 0",
            vec![Val::Text(user), Val::Text(sealed_secret), Val::Int(now)],
        )
        .await
        .map(drop)
    }

    /// Records a code's time step as used (and the enrolment as confirmed). False if
    /// that step or a later one was already used: a code works once, on any node.
    pub async fn use_second_factor_step(&self, user: &str, step: i64) -> Result<bool, StateError> {
        let n = self
            .execute(
                // $1 first: SQLite numbers parameters in order of first appearance.
                "UPDATE second_factors SET enrolled = 1, last_step = $1 WHERE username = $2 AND (last_step IS NULL OR last_step < $1)",
                vec![Val::Int(step), Val::Text(user)],
            )
            .await?;
        Ok(n == 1)
    }

    /// Forgets a person's second factor (a lost device): they enrol again at next sign-in.
    pub async fn remove_second_factor(&self, user: &str) -> Result<bool, StateError> {
        Ok(self.execute("DELETE FROM second_factors WHERE username = $1", vec![Val::Text(user)]).await? == 1)
    }

    /// Whether `session` still holds `user`'s claim (false: a newer sign-in took it).
    pub async fn holds_claim(&self, user: &str, session: &str) -> Result<bool, StateError> {
        let holders = self.query("SELECT session FROM live_sessions WHERE username = $1", vec![Val::Text(user)], |r| r.text(0)).await?;
        Ok(holders.first().is_none_or(|h| h == session))
    }

    /// Gives up the claim when the session ends (only if it still holds it).
    pub async fn release_claim(&self, user: &str, session: &str) -> Result<(), StateError> {
        self.execute(
            "DELETE FROM live_sessions WHERE username = $1 AND session = $2",
            vec![Val::Text(user), Val::Text(session)],
        )
        .await
        .map(drop)
    }
}

impl State {
    /// Appends an audit record, chained to the last one. Appends from every node are
    /// serialized (a database lock in PostgreSQL, the connection in SQLite).
    pub async fn audit(&self, at: i64, node: &str, kind: &str, user: &str, detail: &serde_json::Value) -> Result<AuditRecord, StateError> {
        let detail = detail.to_string();
        const LAST: &str = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";
        const INSERT: &str = "INSERT INTO audit (seq, at, node, kind, username, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        let make = |last: Option<(i64, String)>| {
            let (seq, prev) = last.map(|(s, h)| (s + 1, h)).unwrap_or((1, audit::GENESIS.to_owned()));
            let hash = audit::chain_hash(&prev, seq, at, node, kind, user, &detail);
            AuditRecord { seq, at, node: node.into(), kind: kind.into(), user: user.into(), detail: detail.clone(), prev_hash: prev, hash }
        };
        match self {
            State::Sqlite(db) => {
                let db = db.clone();
                let (node, kind, user, detail2) = (node.to_owned(), kind.to_owned(), user.to_owned(), detail.clone());
                tokio::task::spawn_blocking(move || {
                    use rusqlite::OptionalExtension as _;
                    let db = db.lock().unwrap();
                    let tx = db.unchecked_transaction()?;
                    let last: Option<(i64, String)> = tx.query_row(LAST, [], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
                    let (seq, prev) = last.map(|(s, h)| (s + 1, h)).unwrap_or((1, audit::GENESIS.to_owned()));
                    let hash = audit::chain_hash(&prev, seq, at, &node, &kind, &user, &detail2);
                    tx.execute(INSERT, rusqlite::params![seq, at, node, kind, user, detail2, prev, hash])?;
                    tx.commit()?;
                    Ok(AuditRecord { seq, at, node, kind, user, detail: detail2, prev_hash: prev, hash })
                })
                .await
                .map_err(|e| StateError::Join(e.to_string()))?
            }
            State::Postgres(client, local) => {
                let _turn = local.lock().await;
                client.batch_execute("SELECT pg_advisory_lock(726563)").await?;
                let appended = async {
                    let last = client.query_opt(LAST, &[]).await?.map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)));
                    let r = make(last);
                    client
                        .execute(INSERT, &[&r.seq, &r.at, &r.node, &r.kind, &r.user, &r.detail, &r.prev_hash, &r.hash])
                        .await?;
                    Ok::<_, StateError>(r)
                }
                .await;
                client.batch_execute("SELECT pg_advisory_unlock(726563)").await?;
                appended
            }
        }
    }

    /// The whole audit log, in order.
    pub async fn audit_log(&self) -> Result<Vec<AuditRecord>, StateError> {
        const SQL: &str = "SELECT seq, at, node, kind, username, detail, prev_hash, hash FROM audit ORDER BY seq";
        self.query(SQL, vec![], |r| {
            Ok(AuditRecord {
                seq: r.int(0)?,
                at: r.int(1)?,
                node: r.text(2)?,
                kind: r.text(3)?,
                user: r.text(4)?,
                detail: r.text(5)?,
                prev_hash: r.text(6)?,
                hash: r.text(7)?,
            })
        })
        .await
    }
}

/// A result row of either backend.
trait Row {
    fn text(&self, i: usize) -> Result<String, StateError>;
    fn int(&self, i: usize) -> Result<i64, StateError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StateError>;
}

impl Row for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> Result<String, StateError> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StateError> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StateError> {
        Ok(self.get(i)?)
    }
}

impl Row for tokio_postgres::Row {
    fn text(&self, i: usize) -> Result<String, StateError> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StateError> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StateError> {
        Ok(self.try_get(i)?)
    }
}

fn split_groups(text: &str) -> Vec<String> {
    text.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect()
}

fn sqlite_value(v: &Val<'_>) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        Val::Text(t) => Value::Text((*t).to_owned()),
        Val::Int(i) => Value::Integer(*i),
        Val::OptInt(Some(i)) => Value::Integer(*i),
        Val::OptInt(None) => Value::Null,
    }
}

fn pg_params(values: &[Val<'_>]) -> Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> {
    values
        .iter()
        .map(|v| -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
            match v {
                Val::Text(t) => Box::new((*t).to_owned()),
                Val::Int(i) => Box::new(*i),
                Val::OptInt(o) => Box::new(*o),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> UsageRecord {
        UsageRecord {
            session: "n1-1".into(),
            user: "alice".into(),
            workstation: "rdp://pc:3389".into(),
            node: "n1".into(),
            groups: vec!["sales".into(), "support".into()],
            started_at: 1_000,
            ended_at: None,
            active_seconds: 10,
            idle_seconds: 0,
            bytes_to_browser: 5,
            bytes_from_browser: 1,
        }
    }

    #[tokio::test]
    async fn second_factor_enrolment_and_single_use_steps() {
        let s = State::in_memory().unwrap();
        assert_eq!(s.second_factor("alice").await.unwrap(), None);
        s.begin_second_factor("alice", "sealed-1", 10).await.unwrap();
        s.begin_second_factor("alice", "sealed-2", 11).await.unwrap();
        let pending = s.second_factor("alice").await.unwrap().unwrap();
        assert_eq!((pending.sealed_secret.as_str(), pending.enrolled), ("sealed-2", false));
        assert!(s.use_second_factor_step("alice", 100).await.unwrap());
        assert!(!s.use_second_factor_step("alice", 100).await.unwrap(), "a step works once");
        assert!(s.use_second_factor_step("alice", 101).await.unwrap());
        s.begin_second_factor("alice", "sealed-3", 12).await.unwrap();
        let enrolled = s.second_factor("alice").await.unwrap().unwrap();
        assert_eq!((enrolled.sealed_secret.as_str(), enrolled.enrolled, enrolled.last_step), ("sealed-2", true, Some(101)), "a confirmed secret stays");
        assert!(s.remove_second_factor("alice").await.unwrap());
        assert_eq!(s.second_factor("alice").await.unwrap(), None);
    }

    #[tokio::test]
    async fn records_are_updated_in_place_and_selected_by_start() {
        let s = State::in_memory().unwrap();
        let mut r = record();
        s.record_usage(&r).await.unwrap();
        r.ended_at = Some(1_100);
        r.active_seconds = 70;
        r.idle_seconds = 30;
        r.bytes_to_browser = 5_000_000_000;
        s.record_usage(&r).await.unwrap();
        assert_eq!(s.usage_between(0, 2_000).await.unwrap(), vec![r]);
        assert!(s.usage_between(1_001, 2_000).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_newest_claim_wins() {
        let s = State::in_memory().unwrap();
        assert!(s.holds_claim("alice", "a").await.unwrap(), "no claim yet");
        s.claim_session("alice", "a", "node-1", 1).await.unwrap();
        assert!(s.holds_claim("alice", "a").await.unwrap());
        s.claim_session("alice", "b", "node-2", 2).await.unwrap();
        assert!(!s.holds_claim("alice", "a").await.unwrap());
        s.release_claim("alice", "a").await.unwrap();
        assert!(s.holds_claim("alice", "b").await.unwrap(), "a stale session cannot release the new claim");
        s.release_claim("alice", "b").await.unwrap();
        assert!(s.holds_claim("alice", "c").await.unwrap());
    }

    #[tokio::test]
    async fn audit_records_chain() {
        let s = State::in_memory().unwrap();
        for i in 0..3 {
            s.audit(100 + i, "n1", "sign_in", "alice", &serde_json::json!({ "outcome": "accepted" })).await.unwrap();
        }
        let log = s.audit_log().await.unwrap();
        assert_eq!(log.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(audit::verify(&log), Ok(()));
    }

    #[test]
    fn migrations_are_applied_once() {
        let dir = std::env::temp_dir().join(format!("rebond-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.sqlite3");
        State::open_sqlite(&path).unwrap();
        State::open_sqlite(&path).unwrap();
        let db = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = db.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(n as usize, MIGRATIONS.len());
        let _ = std::fs::remove_dir_all(dir);
    }
}
