//! A route: which workstation a user's session goes to, and how to trust it.

use std::fmt;

/// How the gateway verifies the workstation's TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// A CA certificate file (PEM); the workstation's name must match.
    CaFile(String),
    /// The SHA-256 fingerprint of the workstation's certificate.
    Pinned(String),
    /// No verification (explicit; logged as a warning).
    Insecure,
}

impl Trust {
    pub fn kind(&self) -> &'static str {
        match self {
            Trust::CaFile(_) => "ca",
            Trust::Pinned(_) => "pin",
            Trust::Insecure => "insecure",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Trust::CaFile(v) | Trust::Pinned(v) => v,
            Trust::Insecure => "",
        }
    }

    pub fn from_parts(kind: &str, value: &str) -> Result<Self, RouteError> {
        match kind {
            "ca" => Ok(Trust::CaFile(value.to_owned())),
            "pin" => {
                let hex: String = value.trim_start_matches("sha256:").chars().filter(|c| *c != ':').collect();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(RouteError::Fingerprint(value.to_owned()));
                }
                Ok(Trust::Pinned(value.to_owned()))
            }
            "insecure" => Ok(Trust::Insecure),
            other => Err(RouteError::TrustKind(other.to_owned())),
        }
    }
}

/// Where a user's session goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub port: u16,
    pub trust: Trust,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid workstation address {0:?}: expected rdp://HOST[:PORT]")]
    Url(String),
    #[error("invalid certificate fingerprint {0:?}: expected 64 hexadecimal digits (SHA-256)")]
    Fingerprint(String),
    #[error("unknown trust kind {0:?}: expected ca, pin or insecure")]
    TrustKind(String),
}

impl Route {
    /// Parses `rdp://HOST[:PORT]` (port 3389 by default; IPv6 in brackets).
    pub fn parse_url(url: &str, trust: Trust) -> Result<Self, RouteError> {
        let err = || RouteError::Url(url.to_owned());
        let rest = url.trim().strip_prefix("rdp://").ok_or_else(err)?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, tail) = v6.split_once(']').ok_or_else(err)?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| err())?,
                None if tail.is_empty() => 3389,
                None => return Err(err()),
            };
            (h.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| err())?),
                None => (rest.to_owned(), 3389),
            }
        };
        let host_ok = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !host_ok || port == 0 {
            return Err(err());
        }
        Ok(Route { host, port, trust })
    }

    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("rdp://[{}]:{}", self.host, self.port)
        } else {
            format!("rdp://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (trust: {}", self.url(), self.trust.kind())?;
        match &self.trust {
            Trust::Insecure => f.write_str(")"),
            t => write!(f, " {})", t.value()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let r = Route::parse_url("rdp://pc-042.corp.example:3390", Trust::Insecure).unwrap();
        assert_eq!((r.host.as_str(), r.port), ("pc-042.corp.example", 3390));
        assert_eq!(Route::parse_url("rdp://10.0.0.5", Trust::Insecure).unwrap().port, 3389);
        let v6 = Route::parse_url("rdp://[::1]:3389", Trust::Insecure).unwrap();
        assert_eq!((v6.host.as_str(), v6.url().as_str()), ("::1", "rdp://[::1]:3389"));
        for bad in ["http://x", "rdp://", "rdp://x:0", "rdp://x:99999", "rdp://a b", "rdp://x/../y"] {
            assert!(Route::parse_url(bad, Trust::Insecure).is_err(), "{bad}");
        }
    }

    #[test]
    fn trust() {
        assert!(Trust::from_parts("pin", &"ab".repeat(32)).is_ok());
        assert!(Trust::from_parts("pin", "abcd").is_err());
        assert!(Trust::from_parts("maybe", "").is_err());
    }
}
