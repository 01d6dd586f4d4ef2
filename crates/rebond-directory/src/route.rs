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
    /// Wake-on-LAN, for a workstation that may be asleep.
    pub wake: Option<Wake>,
}

/// How to wake a sleeping workstation: its network card's address, and where the
/// magic packet goes (the office subnet's broadcast address, or a relay), UDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    pub mac: [u8; 6],
    pub address: std::net::SocketAddr,
}

impl Wake {
    /// The default destination: the limited broadcast, port 9 (discard).
    pub const DEFAULT_ADDRESS: &'static str = "255.255.255.255:9";

    /// `AA:BB:CC:DD:EE:FF` (or with `-`), and `IP:PORT` (default [`Self::DEFAULT_ADDRESS`]).
    pub fn parse(mac: &str, address: Option<&str>) -> Result<Self, RouteError> {
        let bad = || RouteError::Mac(mac.to_owned());
        let parts: Vec<&str> = mac.trim().split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut bytes = [0u8; 6];
        for (b, p) in bytes.iter_mut().zip(parts) {
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        let address = address.unwrap_or(Self::DEFAULT_ADDRESS);
        let address = address.parse().map_err(|_| RouteError::WakeAddress(address.to_owned()))?;
        Ok(Self { mac: bytes, address })
    }

    pub fn mac_text(&self) -> String {
        self.mac.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }

    /// The magic packet: six 0xFF bytes, then the MAC sixteen times.
    pub fn magic_packet(&self) -> [u8; 102] {
        let mut p = [0xFF; 102];
        for chunk in p[6..].chunks_mut(6) {
            chunk.copy_from_slice(&self.mac);
        }
        p
    }

    /// Whether `packet` is the magic packet for this card.
    pub fn is_magic_packet_for(mac: &[u8; 6], packet: &[u8]) -> bool {
        packet.len() >= 102 && packet[..6] == [0xFF; 6] && packet[6..102].chunks(6).all(|c| c == mac)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid workstation address {0:?}: expected rdp://HOST[:PORT]")]
    Url(String),
    #[error("invalid certificate fingerprint {0:?}: expected 64 hexadecimal digits (SHA-256)")]
    Fingerprint(String),
    #[error("unknown trust kind {0:?}: expected ca, pin or insecure")]
    TrustKind(String),
    #[error("invalid MAC address {0:?}: expected six hexadecimal pairs, AA:BB:CC:DD:EE:FF")]
    Mac(String),
    #[error("invalid wake-on-LAN address {0:?}: expected IP:PORT, for example 10.1.255.255:9")]
    WakeAddress(String),
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
        Ok(Route { host, port, trust, wake: None })
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
        if !matches!(self.trust, Trust::Insecure) {
            write!(f, " {}", self.trust.value())?;
        }
        if let Some(w) = &self.wake {
            write!(f, "; wake-on-LAN {} via {}", w.mac_text(), w.address)?;
        }
        f.write_str(")")
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
    fn wake_on_lan() {
        let w = Wake::parse("00:1a:2B:3c:4d:5E", None).unwrap();
        assert_eq!(w.mac_text(), "00:1A:2B:3C:4D:5E");
        assert_eq!(w.address.to_string(), "255.255.255.255:9");
        let p = w.magic_packet();
        assert!(Wake::is_magic_packet_for(&w.mac, &p));
        assert!(!Wake::is_magic_packet_for(&[0; 6], &p));
        assert_eq!(Wake::parse("00-1a-2b-3c-4d-5e", Some("10.1.255.255:7")).unwrap().address.port(), 7);
        for bad in ["00:1a:2b:3c:4d", "zz:1a:2b:3c:4d:5e", "001a2b3c4d5e"] {
            assert!(Wake::parse(bad, None).is_err(), "{bad}");
        }
        assert!(Wake::parse("00:1a:2b:3c:4d:5e", Some("broadcast")).is_err());
    }

    #[test]
    fn trust() {
        assert!(Trust::from_parts("pin", &"ab".repeat(32)).is_ok());
        assert!(Trust::from_parts("pin", "abcd").is_err());
        assert!(Trust::from_parts("maybe", "").is_err());
    }
}
