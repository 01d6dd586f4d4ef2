//! Who may sign in, and which workstation is theirs.
//!
//! The embedded default is a local store in SQLite: users with Argon2id password
//! hashes, and a route table from user to workstation. With Active Directory ([`ad`]),
//! the directory checks passwords, gives groups and the workstation; the local route
//! table still overrides the workstation.
//!
//! INVARIANT: passwords are only ever held as [`zeroize::Zeroizing`] strings and
//! stored as Argon2id hashes; no function here logs or returns them.

pub mod ad;
mod route;
mod store;

pub use route::{Route, RouteError, Trust, Wake};
pub use store::{hash_password, Store, StoreError};

/// The outcome of a sign-in attempt against the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    Accepted { user: String, groups: Vec<String> },
    /// Unknown user or wrong password: the person is told the same thing for both.
    Refused,
}

/// A user name as typed: trimmed; the local store compares names case-insensitively.
pub fn normalize_user(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Checks a user name typed by a person or an administrator.
pub fn valid_user_name(name: &str) -> bool {
    let n = name.trim();
    !n.is_empty()
        && n.len() <= 104
        && n.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '\\'))
}
