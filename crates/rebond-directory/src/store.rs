//! The local store: SQLite in the data folder.

use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use rusqlite::{params, Connection, OptionalExtension as _};
use zeroize::Zeroizing;

use crate::{normalize_user, valid_user_name, Route, RouteError, SignIn, Trust, Wake};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("invalid user name {0:?}: use letters, digits, '.', '-', '_', '@' or '\\'")]
    UserName(String),
    #[error("invalid group name {0:?}: use letters, digits, '.', '-', '_', '@' or '\\'")]
    GroupName(String),
    #[error("the password is empty")]
    EmptyPassword,
    #[error("no such user: {0}")]
    NoSuchUser(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// Users and routes, in one SQLite file.
pub struct Store {
    db: Connection,
    /// A hash checked when the user is unknown, so both refusals take the same time.
    decoy: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS user_groups (
    name TEXT NOT NULL,
    grp TEXT NOT NULL,
    PRIMARY KEY (name, grp)
);
CREATE TABLE IF NOT EXISTS routes (
    user TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    trust_kind TEXT NOT NULL,
    trust_value TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (datetime('now'))
);
";

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        add_wake_columns(&db)?;
        Self::with(db)
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Connection::open_in_memory()?;
        db.execute_batch(SCHEMA)?;
        add_wake_columns(&db)?;
        Self::with(db)
    }

    fn with(db: Connection) -> Result<Self, StoreError> {
        let decoy = hash_password("decoy password, never matches")?;
        Ok(Self { db, decoy })
    }

    /// Adds a user, or sets the password of an existing one.
    pub fn set_user(&self, name: &str, password: &Zeroizing<String>) -> Result<(), StoreError> {
        if !valid_user_name(name) {
            return Err(StoreError::UserName(name.to_owned()));
        }
        if password.is_empty() {
            return Err(StoreError::EmptyPassword);
        }
        self.upsert_user(name, &hash_password(password)?)
    }

    /// Adds a user with an Argon2 hash computed elsewhere (configuration files).
    pub fn set_user_hash(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        if !valid_user_name(name) {
            return Err(StoreError::UserName(name.to_owned()));
        }
        PasswordHash::new(hash).map_err(|e| StoreError::Hash(e.to_string()))?;
        self.upsert_user(name, hash)
    }

    fn upsert_user(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO users (name, password_hash) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
            params![normalize_user(name), hash],
        )?;
        Ok(())
    }

    pub fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        let n = self.db.execute("DELETE FROM users WHERE name = ?1", params![normalize_user(name)])?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    /// Replaces a user's groups (the local equivalent of directory groups: usage by
    /// group, and later policies).
    pub fn set_groups(&self, name: &str, groups: &[String]) -> Result<(), StoreError> {
        for g in groups {
            if !valid_user_name(g) {
                return Err(StoreError::GroupName(g.clone()));
            }
        }
        let name = normalize_user(name);
        let tx = self.db.unchecked_transaction()?;
        tx.execute("DELETE FROM user_groups WHERE name = ?1", params![name])?;
        for g in groups {
            tx.execute("INSERT OR IGNORE INTO user_groups (name, grp) VALUES (?1, ?2)", params![name, g.trim()])?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn groups(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.db.prepare("SELECT grp FROM user_groups WHERE name = ?1 ORDER BY grp")?;
        let rows = stmt.query_map(params![normalize_user(name)], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn users(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.db.prepare("SELECT name FROM users ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Checks a password. Unknown users and wrong passwords look the same, in
    /// answer and in time.
    pub fn sign_in(&self, name: &str, password: &Zeroizing<String>) -> Result<SignIn, StoreError> {
        let user = normalize_user(name);
        let hash: Option<String> = self
            .db
            .query_row("SELECT password_hash FROM users WHERE name = ?1", params![user], |r| r.get(0))
            .optional()?;
        let stored = hash.as_deref().unwrap_or(&self.decoy);
        let parsed = PasswordHash::new(stored).map_err(|e| StoreError::Hash(e.to_string()))?;
        let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        if !(ok && hash.is_some() && !password.is_empty()) {
            return Ok(SignIn::Refused);
        }
        let groups = self.groups(&user)?;
        Ok(SignIn::Accepted { user, groups })
    }

    pub fn set_route(&self, user: &str, route: &Route) -> Result<(), StoreError> {
        if !valid_user_name(user) {
            return Err(StoreError::UserName(user.to_owned()));
        }
        let (mac, address) = match &route.wake {
            Some(w) => (Some(w.mac_text()), Some(w.address.to_string())),
            None => (None, None),
        };
        self.db.execute(
            "INSERT INTO routes (user, host, port, trust_kind, trust_value, wake_mac, wake_address) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(user) DO UPDATE SET host = excluded.host, port = excluded.port,
               trust_kind = excluded.trust_kind, trust_value = excluded.trust_value,
               wake_mac = excluded.wake_mac, wake_address = excluded.wake_address, updated_at = datetime('now')",
            params![normalize_user(user), route.host, route.port, route.trust.kind(), route.trust.value(), mac, address],
        )?;
        Ok(())
    }

    pub fn remove_route(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self.db.execute("DELETE FROM routes WHERE user = ?1", params![normalize_user(user)])? > 0)
    }

    pub fn route(&self, user: &str) -> Result<Option<Route>, StoreError> {
        Ok(self.routes_where(Some(&normalize_user(user)))?.into_iter().next().map(|(_, r)| r))
    }

    pub fn routes(&self) -> Result<Vec<(String, Route)>, StoreError> {
        self.routes_where(None)
    }

    fn routes_where(&self, user: Option<&str>) -> Result<Vec<(String, Route)>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT user, host, port, trust_kind, trust_value, wake_mac, wake_address FROM routes
             WHERE ?1 IS NULL OR user = ?1 ORDER BY user",
        )?;
        type Row = (String, String, u16, String, String, Option<String>, Option<String>);
        let rows = stmt.query_map(params![user], |r| -> rusqlite::Result<Row> {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (user, host, port, kind, value, mac, address) = row?;
            let wake = mac.map(|m| Wake::parse(&m, address.as_deref())).transpose()?;
            out.push((user, Route { host, port, trust: Trust::from_parts(&kind, &value)?, wake }));
        }
        Ok(out)
    }
}

/// Stores made before Wake-on-LAN lack its columns.
fn add_wake_columns(db: &Connection) -> Result<(), StoreError> {
    let has: bool = db.query_row("SELECT COUNT(*) FROM pragma_table_info('routes') WHERE name = 'wake_mac'", [], |r| r.get::<_, i64>(0))? > 0;
    if !has {
        db.execute_batch("ALTER TABLE routes ADD COLUMN wake_mac TEXT; ALTER TABLE routes ADD COLUMN wake_address TEXT;")?;
    }
    Ok(())
}

/// An Argon2id hash in PHC form.
pub fn hash_password(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Zeroizing<String> {
        Zeroizing::new(s.to_owned())
    }

    #[test]
    fn users_sign_in_with_their_password_only() {
        let s = Store::in_memory().unwrap();
        s.set_user("Alice", &pw("correct horse")).unwrap();
        s.set_groups("alice", &["sales".into(), "call-centre".into()]).unwrap();
        assert_eq!(
            s.sign_in("alice ", &pw("correct horse")).unwrap(),
            SignIn::Accepted { user: "alice".into(), groups: vec!["call-centre".into(), "sales".into()] }
        );
        assert!(matches!(s.set_groups("alice", &["a,b".into()]), Err(StoreError::GroupName(_))));
        assert_eq!(s.sign_in("alice", &pw("wrong")).unwrap(), SignIn::Refused);
        assert_eq!(s.sign_in("bob", &pw("correct horse")).unwrap(), SignIn::Refused);
        assert_eq!(s.sign_in("alice", &pw("")).unwrap(), SignIn::Refused);
        assert!(matches!(s.set_user("bad name", &pw("x")), Err(StoreError::UserName(_))));
        assert!(matches!(s.set_user("carol", &pw("")), Err(StoreError::EmptyPassword)));
        let hash: String = s.db.query_row("SELECT password_hash FROM users", [], |r| r.get(0)).unwrap();
        assert!(hash.starts_with("$argon2id$"), "stored as Argon2id, never in clear");
        s.remove_user("alice").unwrap();
        assert_eq!(s.users().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn routes_round_trip() {
        let s = Store::in_memory().unwrap();
        let r = Route::parse_url("rdp://127.0.0.1:3390", Trust::Pinned("ab".repeat(32))).unwrap();
        s.set_route("Alice", &r).unwrap();
        assert_eq!(s.route("alice").unwrap(), Some(r.clone()));
        assert_eq!(s.routes().unwrap(), vec![("alice".to_owned(), r)]);
        assert!(s.remove_route("alice").unwrap());
        assert_eq!(s.route("alice").unwrap(), None);
    }
}
