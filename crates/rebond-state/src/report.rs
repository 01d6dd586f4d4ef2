//! `rebond usage`: totals by user or by day, as a table, CSV or JSON. Pure.

use std::collections::BTreeMap;

use crate::UsageRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    User,
    /// A session counts in each of its person's groups (`(no group)` when none).
    Group,
    Day,
}

/// Totals for one group.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    pub key: String,
    pub sessions: u64,
    pub active_minutes: f64,
    pub idle_minutes: f64,
    pub bytes_to_browser: u64,
    pub bytes_from_browser: u64,
}

const DATE: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!("[year]-[month]-[day]");

/// The UTC calendar date (YYYY-MM-DD) of a Unix time.
pub fn utc_date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.date().format(DATE).ok())
        .unwrap_or_else(|| "invalid-date".into())
}

/// Parses YYYY-MM-DD as midnight UTC.
pub fn parse_date(text: &str) -> Option<i64> {
    let date = time::Date::parse(text.trim(), DATE).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

pub fn totals(records: &[UsageRecord], by: GroupBy) -> Vec<Totals> {
    let mut groups: BTreeMap<String, Totals> = BTreeMap::new();
    for r in records {
        let keys = match by {
            GroupBy::User => vec![r.user.clone()],
            GroupBy::Day => vec![utc_date(r.started_at)],
            GroupBy::Group if r.groups.is_empty() => vec!["(no group)".to_owned()],
            GroupBy::Group => r.groups.clone(),
        };
        for key in keys {
            let t = groups.entry(key.clone()).or_insert_with(|| Totals { key, ..Totals::default() });
            t.sessions += 1;
            t.active_minutes += r.active_seconds as f64 / 60.0;
            t.idle_minutes += r.idle_seconds as f64 / 60.0;
            t.bytes_to_browser += r.bytes_to_browser;
            t.bytes_from_browser += r.bytes_from_browser;
        }
    }
    groups.into_values().collect()
}

pub fn table(rows: &[Totals], key_title: &str) -> String {
    let mut out = format!(
        "{key_title:<24} {:>8} {:>14} {:>12} {:>16} {:>16}\n",
        "sessions", "active (min)", "idle (min)", "bytes down", "bytes up"
    );
    for t in rows {
        out.push_str(&format!(
            "{:<24} {:>8} {:>14.1} {:>12.1} {:>16} {:>16}\n",
            t.key, t.sessions, t.active_minutes, t.idle_minutes, t.bytes_to_browser, t.bytes_from_browser
        ));
    }
    out
}

pub fn csv(rows: &[Totals], key_title: &str) -> String {
    let mut out = format!("{key_title},sessions,active_minutes,idle_minutes,bytes_to_browser,bytes_from_browser\n");
    for t in rows {
        let key = if t.key.contains([',', '"', '\n']) { format!("\"{}\"", t.key.replace('"', "\"\"")) } else { t.key.clone() };
        out.push_str(&format!(
            "{key},{},{:.2},{:.2},{},{}\n",
            t.sessions, t.active_minutes, t.idle_minutes, t.bytes_to_browser, t.bytes_from_browser
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(user: &str, started_at: i64, active: u64, idle: u64, down: u64) -> UsageRecord {
        let groups = if user == "alice" { vec!["sales".into(), "support".into()] } else { vec![] };
        UsageRecord {
            session: format!("{user}-{started_at}"),
            user: user.into(),
            workstation: "rdp://pc:3389".into(),
            node: "n1".into(),
            groups,
            started_at,
            ended_at: Some(started_at + (active + idle) as i64),
            active_seconds: active,
            idle_seconds: idle,
            bytes_to_browser: down,
            bytes_from_browser: 1,
        }
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1795824000), "2026-11-28");
        assert_eq!(parse_date("2026-11-28"), Some(1795824000));
        assert_eq!(parse_date("2024-02-29").map(utc_date).as_deref(), Some("2024-02-29"));
        assert_eq!(parse_date("2026-02-30"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn totals_by_user_and_day_are_exact() {
        let day = 1795824000;
        let records = vec![
            rec("alice", day + 3600, 600, 60, 1000),
            rec("bob", day + 7200, 120, 0, 10),
            rec("alice", day + 86_400 + 10, 60, 0, 5),
        ];
        let by_user = totals(&records, GroupBy::User);
        assert_eq!(by_user.len(), 2);
        assert_eq!((by_user[0].key.as_str(), by_user[0].sessions, by_user[0].bytes_to_browser), ("alice", 2, 1005));
        assert!((by_user[0].active_minutes - 11.0).abs() < 1e-9);
        let by_day = totals(&records, GroupBy::Day);
        assert_eq!(by_day.iter().map(|t| (t.key.as_str(), t.sessions)).collect::<Vec<_>>(), vec![("2026-11-28", 2), ("2026-11-29", 1)]);
        let by_group = totals(&records, GroupBy::Group);
        assert_eq!(
            by_group.iter().map(|t| (t.key.as_str(), t.sessions)).collect::<Vec<_>>(),
            vec![("(no group)", 1), ("sales", 2), ("support", 2)]
        );
        let text = csv(&by_day, "day");
        assert!(text.starts_with("day,sessions,"));
        assert!(text.contains("2026-11-28,2,12.00,1.00,1010,2\n"));
    }
}
