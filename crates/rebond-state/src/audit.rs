//! The audit log's chain, sans-IO: each record carries the hash of the one before,
//! so deleting, inserting or editing a record breaks the chain at that point.

use sha2::{Digest, Sha256};

/// The hash the first record chains to.
pub const GENESIS: &str = "rebond-audit-v1";

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    /// Unix seconds (UTC).
    pub at: i64,
    pub node: String,
    /// `sign_in`, `session_start`, `session_end`, `violation`, `injected_typing`, `admin`…
    pub kind: String,
    pub user: String,
    /// JSON object with the event's fields.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// SHA-256 over the previous hash and every field, unambiguously framed.
pub fn chain_hash(prev_hash: &str, seq: i64, at: i64, node: &str, kind: &str, user: &str, detail: &str) -> String {
    let mut h = Sha256::new();
    for field in [prev_hash, &seq.to_string(), &at.to_string(), node, kind, user, detail] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("record {0} is missing (records were deleted)")]
    Missing(i64),
    #[error("record {0} does not follow the one before it (a record was removed or inserted)")]
    Link(i64),
    #[error("record {0} was altered after it was written")]
    Altered(i64),
}

/// Checks a whole log, in order of `seq`.
pub fn verify(records: &[AuditRecord]) -> Result<(), ChainBreak> {
    let mut prev = GENESIS.to_owned();
    for (expected_seq, r) in (1..).zip(records) {
        if r.seq != expected_seq {
            return Err(ChainBreak::Missing(expected_seq));
        }
        if r.prev_hash != prev {
            return Err(ChainBreak::Link(r.seq));
        }
        if chain_hash(&r.prev_hash, r.seq, r.at, &r.node, &r.kind, &r.user, &r.detail) != r.hash {
            return Err(ChainBreak::Altered(r.seq));
        }
        prev = r.hash.clone();
    }
    Ok(())
}

/// The record as an RFC 5424 syslog message (facility auth = 4, severity notice = 5).
pub fn syslog_line(r: &AuditRecord, host: &str) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp(r.at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".into());
    let json = serde_json::to_string(r).unwrap_or_default();
    format!("<37>1 {time} {host} rebond - audit - {json}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let detail = format!("{{\"n\":{seq}}}");
                let hash = chain_hash(&prev, seq, 1000 + seq, "node-a", "sign_in", "alice", &detail);
                let r = AuditRecord { seq, at: 1000 + seq, node: "node-a".into(), kind: "sign_in".into(), user: "alice".into(), detail, prev_hash: prev.clone(), hash: hash.clone() };
                prev = hash;
                r
            })
            .collect()
    }

    #[test]
    fn intact_deleted_edited_and_reordered() {
        let log = chain(5);
        assert_eq!(verify(&log), Ok(()));
        let mut deleted = log.clone();
        deleted.remove(2);
        assert_eq!(verify(&deleted), Err(ChainBreak::Missing(3)));
        let mut tail_cut = log.clone();
        tail_cut.truncate(4);
        assert_eq!(verify(&tail_cut), Ok(()), "a cut tail is only visible against a published head");
        let mut edited = log.clone();
        edited[3].user = "mallory".into();
        assert_eq!(verify(&edited), Err(ChainBreak::Altered(4)));
        let mut renumbered = log.clone();
        renumbered.remove(1);
        for (i, r) in renumbered.iter_mut().enumerate() {
            r.seq = i as i64 + 1;
        }
        assert_eq!(verify(&renumbered), Err(ChainBreak::Link(2)));
    }

    #[test]
    fn syslog_format() {
        let line = syslog_line(&chain(1)[0], "gw1");
        assert!(line.starts_with("<37>1 1970-01-01T00:16:41Z gw1 rebond - audit - {\"seq\":1,"), "{line}");
    }
}
