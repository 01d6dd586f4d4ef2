//! Active Directory: sign-in by LDAP simple bind over TLS (LDAPS or StartTLS, the
//! directory's CA verified), nested groups, and the user's workstation from the
//! directory (`msTSPrimaryDesktop` → the computer's `dNSHostName`, or another attribute).
//!
//! The decisions (which name to bind with, what a refusal means) are pure functions
//! ([`AccountName`], [`refusal_code`]); [`ActiveDirectory`] only talks to the servers.
//!
//! INVARIANT: an empty password never reaches a bind (AD may treat it as an anonymous
//! success, Samba as a bad password that counts towards lockout).
//! INVARIANT: a directory that does not answer is `SignInUnavailable`, never a wrong password.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use rebond_wire::ErrorCode;
use tracing::{debug, warn};
use zeroize::Zeroizing;

/// Where and how to reach the domain.
#[derive(Debug, Clone)]
pub struct AdSettings {
    /// `ldaps://host[:port]` or `ldap://host[:port]` (then StartTLS), tried in order.
    pub servers: Vec<String>,
    /// PEM of the CA that issued the domain controllers' certificates.
    pub ca_pem: Vec<u8>,
    /// The NetBIOS domain (`CORP`), accepted as `CORP\alice` and sent to workstations.
    pub netbios_domain: String,
    /// The UPN suffix (`corp.example`), for `alice` and `alice@corp.example`.
    pub upn_suffix: String,
    /// Where users, groups and computers are searched (`DC=corp,DC=example`).
    pub base_dn: String,
    /// Only members of these groups (nested membership counts) may sign in; empty: anyone.
    pub allowed_groups: Vec<String>,
    /// The user attribute naming their workstation: a computer's DN (`msTSPrimaryDesktop`)
    /// or a host name.
    pub workstation_attribute: String,
    /// A service account for administrator checks and the lockout policy (optional).
    pub service_account: Option<(String, Zeroizing<String>)>,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
}

/// A signed-in directory user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdAccount {
    /// `sAMAccountName`, lower case: the person's name in Rebond.
    pub user: String,
    pub dn: String,
    /// Names (`cn`) of every group the user is in, directly or through nesting.
    pub groups: Vec<String>,
    /// The workstation's host name from the directory, if any.
    pub workstation: Option<String>,
    /// The domain's lockout policy, read at each sign-in (any user may read it).
    pub lockout: Option<rebond_policy::LockoutPolicy>,
}

/// A user name as a person types it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountName {
    /// `sAMAccountName`.
    pub sam: String,
    /// The name to bind with (`sam@suffix`).
    pub bind_name: String,
}

impl AccountName {
    /// `alice`, `alice@corp.example` or `CORP\alice`; `None` for another domain or a
    /// malformed name.
    pub fn parse(typed: &str, netbios_domain: &str, upn_suffix: &str) -> Option<Self> {
        let typed = typed.trim();
        let sam = if let Some((domain, sam)) = typed.split_once('\\') {
            domain.eq_ignore_ascii_case(netbios_domain).then_some(sam)?
        } else if let Some((sam, suffix)) = typed.split_once('@') {
            suffix.eq_ignore_ascii_case(upn_suffix).then_some(sam)?
        } else {
            typed
        };
        let valid = !sam.is_empty()
            && sam.len() <= 64
            && sam.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '$'));
        valid.then(|| Self { sam: sam.to_lowercase(), bind_name: format!("{}@{}", sam.to_lowercase(), upn_suffix.to_lowercase()) })
    }
}

/// What a refused bind means for the person: AD puts the reason in the diagnostic
/// message (`… data 775, …`). Other result codes mean the directory is not usable.
pub fn refusal_code(rc: u32, diagnostic: &str) -> ErrorCode {
    if rc != 49 {
        return ErrorCode::SignInUnavailable;
    }
    let data = diagnostic.split("data ").nth(1).map(|rest| rest.split(|c: char| !c.is_ascii_hexdigit()).next().unwrap_or(""));
    match data.map(str::to_ascii_lowercase).as_deref() {
        Some("533") => ErrorCode::AccountDisabled,
        Some("701") => ErrorCode::AccountExpired,
        Some("775") => ErrorCode::AccountLocked,
        Some("532") => ErrorCode::PasswordExpired,
        Some("773") => ErrorCode::PasswordMustChange,
        Some("531") => ErrorCode::NotFromThisComputer,
        Some("530") => ErrorCode::OutsideLogonHours,
        // 52e: bad password or unknown user; 525: unknown user. The same sentence for both.
        _ => ErrorCode::BadCredentials,
    }
}

/// AD's intervals are negative counts of 100 ns; the lockout policy in seconds.
pub fn interval_seconds(value: &str) -> Option<u64> {
    let v: i64 = value.trim().parse().ok()?;
    Some(v.unsigned_abs() / 10_000_000)
}

/// Why talking to the directory failed (for logs and `rebond check`, never for the person).
#[derive(Debug, thiserror::Error)]
pub enum AdError {
    #[error("no domain controller answered: {0}")]
    Unreachable(String),
    #[error("the directory refused the bind: {0}")]
    Refused(ErrorCode),
    #[error("LDAP: {0}")]
    Ldap(String),
    #[error("the directory CA file holds no certificate")]
    NoCa,
}

/// A connection to the domain.
pub struct ActiveDirectory {
    settings: AdSettings,
    tls: Arc<rustls::ClientConfig>,
}

impl ActiveDirectory {
    pub fn new(settings: AdSettings) -> Result<Self, AdError> {
        use rustls::pki_types::{pem::PemObject as _, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&settings.ca_pem).flatten() {
            roots.add(cert).map_err(|e| AdError::Ldap(format!("directory CA: {e}")))?;
        }
        if roots.is_empty() {
            return Err(AdError::NoCa);
        }
        let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        Ok(Self { settings, tls: Arc::new(tls) })
    }

    pub fn settings(&self) -> &AdSettings {
        &self.settings
    }

    /// Connects to the first domain controller that answers (TLS verified).
    async fn connect(&self) -> Result<(ldap3::Ldap, String), AdError> {
        let mut errors = Vec::new();
        for url in &self.settings.servers {
            let conn_settings = LdapConnSettings::new()
                .set_conn_timeout(self.settings.connect_timeout)
                .set_config(self.tls.clone())
                .set_starttls(url.starts_with("ldap://"));
            match tokio::time::timeout(self.settings.connect_timeout, LdapConnAsync::with_settings(conn_settings, url)).await {
                Ok(Ok((conn, mut ldap))) => {
                    ldap3::drive!(conn);
                    ldap.with_timeout(self.settings.operation_timeout);
                    return Ok((ldap, url.clone()));
                }
                Ok(Err(e)) => errors.push(format!("{url}: {e}")),
                Err(_) => errors.push(format!("{url}: no answer within {:?}", self.settings.connect_timeout)),
            }
            warn!(server = %url, error = %errors.last().expect("pushed"), "domain controller unavailable, trying the next");
        }
        Err(AdError::Unreachable(errors.join("; ")))
    }

    /// Binds; a refusal is mapped to the person's error code.
    async fn bind(ldap: &mut ldap3::Ldap, name: &str, password: &str) -> Result<(), AdError> {
        let res = ldap.simple_bind(name, password).await.map_err(|e| AdError::Ldap(e.to_string()))?;
        match res.rc {
            0 => Ok(()),
            rc => match refusal_code(rc, &res.text) {
                ErrorCode::SignInUnavailable => Err(AdError::Ldap(format!("bind: rc {rc} {}", res.text))),
                code => Err(AdError::Refused(code)),
            },
        }
    }

    /// Signs a person in: bind as them, then read their groups and workstation.
    pub async fn sign_in(&self, typed: &str, password: &Zeroizing<String>) -> Result<AdAccount, ErrorCode> {
        if password.is_empty() {
            return Err(ErrorCode::PasswordMissing);
        }
        let name = AccountName::parse(typed, &self.settings.netbios_domain, &self.settings.upn_suffix).ok_or(ErrorCode::BadCredentials)?;
        let unavailable = |e: AdError| {
            warn!(error = %e, "directory unavailable during sign-in");
            ErrorCode::SignInUnavailable
        };
        let (mut ldap, _) = self.connect().await.map_err(unavailable)?;
        match Self::bind(&mut ldap, &name.bind_name, password).await {
            Ok(()) => {}
            Err(AdError::Refused(code)) => {
                let _ = ldap.unbind().await;
                return Err(code);
            }
            Err(e) => return Err(unavailable(e)),
        }
        let account = self.account(&mut ldap, &name.sam).await.map_err(unavailable)?;
        let _ = ldap.unbind().await;
        let account = account.ok_or_else(|| {
            warn!(user = %name.sam, "bound, but the account is not under the configured base DN");
            ErrorCode::BadCredentials
        })?;
        if !self.settings.allowed_groups.is_empty()
            && !self.settings.allowed_groups.iter().any(|a| account.groups.iter().any(|g| g.eq_ignore_ascii_case(a)))
        {
            return Err(ErrorCode::NotInAllowedGroup);
        }
        Ok(account)
    }

    /// Reads an account by `sAMAccountName`, with its nested groups and workstation.
    async fn account(&self, ldap: &mut ldap3::Ldap, sam: &str) -> Result<Option<AdAccount>, AdError> {
        let attr = self.settings.workstation_attribute.as_str();
        let filter = format!("(&(objectClass=user)(sAMAccountName={}))", ldap3::ldap_escape(sam));
        let Some(entry) = search(ldap, &self.settings.base_dn, Scope::Subtree, &filter, vec![attr]).await?.into_iter().next() else {
            return Ok(None);
        };
        // Every group, nested membership included (LDAP_MATCHING_RULE_IN_CHAIN).
        let filter = format!("(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={}))", ldap3::ldap_escape(entry.dn.as_str()));
        let mut groups: Vec<String> = search(ldap, &self.settings.base_dn, Scope::Subtree, &filter, vec!["cn"])
            .await?
            .into_iter()
            .filter_map(|g| g.attrs.get("cn").and_then(|v| v.first().cloned()))
            .collect();
        groups.sort();
        let value = entry.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr)).and_then(|(_, v)| v.first().cloned());
        let workstation = match value {
            Some(dn) if looks_like_dn(&dn) => search(ldap, &dn, Scope::Base, "(objectClass=*)", vec!["dNSHostName"])
                .await?
                .into_iter()
                .next()
                .and_then(|c| c.attrs.get("dNSHostName").and_then(|v| v.first().cloned())),
            other => other,
        };
        let lockout = self.read_lockout(ldap).await.ok();
        Ok(Some(AdAccount { user: sam.to_lowercase(), dn: entry.dn, groups, workstation, lockout }))
    }

    /// The domain's lockout policy, read with the service account.
    pub async fn lockout_policy(&self) -> Result<rebond_policy::LockoutPolicy, AdError> {
        let (mut ldap, _) = self.connect().await?;
        self.bind_service(&mut ldap).await?;
        let policy = self.read_lockout(&mut ldap).await;
        let _ = ldap.unbind().await;
        policy
    }

    async fn read_lockout(&self, ldap: &mut ldap3::Ldap) -> Result<rebond_policy::LockoutPolicy, AdError> {
        let entries = search(ldap, &self.settings.base_dn, Scope::Base, "(objectClass=*)", vec!["lockoutThreshold", "lockOutObservationWindow"]).await?;
        let entry = entries.into_iter().next().ok_or_else(|| AdError::Ldap("the base DN is not the domain".into()))?;
        let get = |k: &str| entry.attrs.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).and_then(|(_, v)| v.first().cloned());
        let threshold = get("lockoutThreshold").ok_or_else(|| AdError::Ldap("the base DN has no lockout policy".into()))?;
        Ok(rebond_policy::LockoutPolicy {
            threshold: threshold.parse().unwrap_or(0),
            observation_window_seconds: get("lockOutObservationWindow").and_then(|v| interval_seconds(&v)).unwrap_or(0),
        })
    }

    async fn bind_service(&self, ldap: &mut ldap3::Ldap) -> Result<(), AdError> {
        let (name, password) = self.settings.service_account.as_ref().ok_or_else(|| AdError::Ldap("no service account is configured".into()))?;
        Self::bind(ldap, name, password).await
    }

    /// For `rebond check`: what an administrator needs to know, line by line. Returns
    /// whether all is well (each problem says what to do) and the user, if found.
    pub async fn check(&self, user: Option<&str>, report: &mut Vec<String>) -> (bool, Option<AdAccount>) {
        let mut found = None;
        let ok = self.check_into(user, report, &mut found).await;
        (ok, found)
    }

    async fn check_into(&self, user: Option<&str>, report: &mut Vec<String>, found: &mut Option<AdAccount>) -> bool {
        let (mut ldap, url) = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                report.push(format!("FAIL  directory: {e}"));
                report.push("      check `servers`, that port 636 (or 389 with StartTLS) is open from this host, and that `ca_file` is the CA that issued the domain controllers' certificates".into());
                return false;
            }
        };
        report.push(format!("ok    directory: {url} answers; its TLS certificate is trusted"));
        if self.settings.service_account.is_none() {
            report.push("note  no service account: the lockout policy is read at the first sign-in, and users cannot be looked up here".into());
            return true;
        }
        if let Err(e) = self.bind_service(&mut ldap).await {
            report.push(format!("FAIL  service account: {e}"));
            report.push("      check `service_account` and the password file".into());
            return false;
        }
        report.push("ok    service account: bind accepted".into());
        match self.lockout_policy().await {
            Ok(l) => report.push(format!(
                "ok    lockout policy: {} bad passwords within {} s lock an account; the gateway stops each account at {}",
                l.threshold,
                l.observation_window_seconds,
                rebond_policy::ThrottleLimits::below(Some(l)).per_account
            )),
            Err(e) => report.push(format!("warn  lockout policy unreadable: {e}")),
        }
        let Some(user) = user else { return true };
        let Some(name) = AccountName::parse(user, &self.settings.netbios_domain, &self.settings.upn_suffix) else {
            report.push(format!("FAIL  {user:?} is not a user name of this domain ({}\\name or name@{})", self.settings.netbios_domain, self.settings.upn_suffix));
            return false;
        };
        match self.account(&mut ldap, &name.sam).await {
            Ok(Some(a)) => {
                report.push(format!("ok    user: {} ({})", a.user, a.dn));
                report.push(format!("      groups: {}", if a.groups.is_empty() { "none".into() } else { a.groups.join(", ") }));
                let allowed = self.settings.allowed_groups.is_empty()
                    || self.settings.allowed_groups.iter().any(|g| a.groups.iter().any(|m| m.eq_ignore_ascii_case(g)));
                if !allowed {
                    report.push(format!("FAIL  {} is in none of the allowed groups ({}): add them to one", a.user, self.settings.allowed_groups.join(", ")));
                    return false;
                }
                match &a.workstation {
                    Some(w) => report.push(format!("ok    workstation from the directory ({}): {w}", self.settings.workstation_attribute)),
                    None => report.push(format!(
                        "note  no workstation in the directory: set {} on the user (or a route with `rebond route set`)",
                        self.settings.workstation_attribute
                    )),
                }
                *found = Some(a);
                true
            }
            Ok(None) => {
                report.push(format!("FAIL  no user {} under {}", name.sam, self.settings.base_dn));
                false
            }
            Err(e) => {
                report.push(format!("FAIL  cannot read the user: {e}"));
                false
            }
        }
    }
}

fn looks_like_dn(value: &str) -> bool {
    value.contains('=') && value.to_ascii_lowercase().contains("dc=")
}

/// A search that skips referrals (AD returns some for the configuration partition).
async fn search(ldap: &mut ldap3::Ldap, base: &str, scope: Scope, filter: &str, attrs: Vec<&str>) -> Result<Vec<SearchEntry>, AdError> {
    let (entries, _) = ldap
        .search(base, scope, filter, attrs)
        .await
        .and_then(|r| r.success())
        .map_err(|e| AdError::Ldap(format!("search {filter}: {e}")))?;
    let found: Vec<SearchEntry> = entries.into_iter().filter(|e| !e.is_ref()).map(SearchEntry::construct).collect();
    debug!(filter, found = found.len(), "directory search");
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_the_three_forms() {
        let a = AccountName::parse("alice", "TEST", "test.lan").unwrap();
        assert_eq!((a.sam.as_str(), a.bind_name.as_str()), ("alice", "alice@test.lan"));
        assert_eq!(AccountName::parse("Alice@TEST.lan", "TEST", "test.lan"), Some(a.clone()));
        assert_eq!(AccountName::parse("test\\ALICE", "TEST", "test.lan"), Some(a));
        assert_eq!(AccountName::parse("OTHER\\alice", "TEST", "test.lan"), None);
        assert_eq!(AccountName::parse("alice@other.example", "TEST", "test.lan"), None);
        assert_eq!(AccountName::parse("al*ice", "TEST", "test.lan"), None);
        assert_eq!(AccountName::parse("", "TEST", "test.lan"), None);
    }

    #[test]
    fn every_bind_refusal_has_its_code() {
        let msg = |d: &str| format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {d}, v1db1");
        for (data, code) in [
            ("52e", ErrorCode::BadCredentials),
            ("525", ErrorCode::BadCredentials),
            ("533", ErrorCode::AccountDisabled),
            ("701", ErrorCode::AccountExpired),
            ("775", ErrorCode::AccountLocked),
            ("532", ErrorCode::PasswordExpired),
            ("773", ErrorCode::PasswordMustChange),
            ("531", ErrorCode::NotFromThisComputer),
            ("530", ErrorCode::OutsideLogonHours),
        ] {
            assert_eq!(refusal_code(49, &msg(data)), code, "{data}");
        }
        assert_eq!(refusal_code(49, "no data here"), ErrorCode::BadCredentials);
        assert_eq!(refusal_code(8, "BindSimple: Transport encryption required."), ErrorCode::SignInUnavailable);
        assert_eq!(refusal_code(52, "unavailable"), ErrorCode::SignInUnavailable);
    }

    #[test]
    fn ad_intervals() {
        assert_eq!(interval_seconds("-6000000000"), Some(600));
        assert_eq!(interval_seconds("0"), Some(0));
        assert_eq!(interval_seconds("x"), None);
    }
}
