//! What a person's session may do, by directory group.
//!
//! Administrators name policies and map groups to them; the first policy whose groups
//! the person belongs to (nested membership already resolved by the directory) applies,
//! else the default. Each feature enforces its own part: the idle watch reads
//! `idle_timeout_seconds` today; sound, recording and the second factor read theirs.

use serde::Deserialize;

/// One named policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionPolicy {
    pub name: String,
    /// Directory groups this policy is for (names, compared without case).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The workstation's sound plays in the browser.
    #[serde(default)]
    pub speaker: bool,
    /// The browser's microphone reaches the workstation.
    #[serde(default)]
    pub microphone: bool,
    /// Disconnect the page after this long without input (overrides the gateway's).
    #[serde(default)]
    pub idle_timeout_seconds: Option<u64>,
    /// Sessions are recorded.
    #[serde(default)]
    pub recording: bool,
    /// A second factor (TOTP) is required at sign-in.
    #[serde(default)]
    pub second_factor: bool,
}

impl SessionPolicy {
    /// Nothing beyond pixels and input: what applies when no policy matches.
    pub fn default_for_everyone() -> Self {
        Self {
            name: "default".into(),
            groups: Vec::new(),
            speaker: false,
            microphone: false,
            idle_timeout_seconds: None,
            recording: false,
            second_factor: false,
        }
    }
}

/// The policy for a person in `groups`: the first in `policies` that names one of them.
pub fn policy_for<'a>(policies: &'a [SessionPolicy], groups: &[String]) -> Option<&'a SessionPolicy> {
    policies.iter().find(|p| p.groups.iter().any(|g| groups.iter().any(|m| m.eq_ignore_ascii_case(g))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, groups: &[&str]) -> SessionPolicy {
        SessionPolicy { name: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..SessionPolicy::default_for_everyone() }
    }

    #[test]
    fn first_matching_policy_wins_without_case() {
        let policies = [policy("call-centre", &["Call Centre"]), policy("staff", &["Rebond Users"])];
        let groups = vec!["rebond users".to_string(), "call centre".to_string()];
        assert_eq!(policy_for(&policies, &groups).unwrap().name, "call-centre");
        assert_eq!(policy_for(&policies, &["Rebond Users".into()]).unwrap().name, "staff");
        assert!(policy_for(&policies, &["Guests".into()]).is_none());
    }
}
