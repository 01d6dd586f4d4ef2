//! Sign-in throttling, so the gateway never becomes a lockout amplifier.
//!
//! Failed attempts are counted per account and per client address over the
//! directory's observation window. An account is held back one attempt *before* the
//! directory's own lockout threshold (so a person or an attacker going through the
//! gateway can never lock the account), an address after a fixed budget. Sans-IO:
//! the caller passes the time.

use std::collections::HashMap;
use std::net::IpAddr;

/// The directory's account lockout policy (read from the domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Bad passwords that lock the account (0: the domain never locks).
    pub threshold: u32,
    /// Over how long bad passwords are counted, in seconds.
    pub observation_window_seconds: u64,
}

/// Limits the gateway applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures allowed per account within the window.
    pub per_account: u32,
    /// Failures allowed per client address within the window.
    pub per_address: u32,
    pub window_seconds: u64,
}

impl ThrottleLimits {
    /// Failures per address when nothing else is said: a person mistyping twice per
    /// account on a few accounts is fine, a spray is not.
    pub const DEFAULT_PER_ADDRESS: u32 = 20;
    /// Failures per account when the domain never locks.
    pub const DEFAULT_PER_ACCOUNT: u32 = 10;
    pub const DEFAULT_WINDOW_SECONDS: u64 = 15 * 60;

    /// Before the domain's policy is known: two failures per account (any real
    /// lockout threshold is higher).
    pub fn lockout_unknown() -> Self {
        Self { per_account: 2, per_address: Self::DEFAULT_PER_ADDRESS, window_seconds: Self::DEFAULT_WINDOW_SECONDS }
    }

    /// Stops an account's attempts through the gateway two short of the domain's
    /// threshold (the other attempt is left for the person at their office computer),
    /// and never fewer than one.
    pub fn below(lockout: Option<LockoutPolicy>) -> Self {
        let (per_account, window_seconds) = match lockout {
            Some(l) if l.threshold > 0 => (
                l.threshold.saturating_sub(2).max(1),
                l.observation_window_seconds.max(Self::DEFAULT_WINDOW_SECONDS),
            ),
            _ => (Self::DEFAULT_PER_ACCOUNT, Self::DEFAULT_WINDOW_SECONDS),
        };
        Self { per_account, per_address: Self::DEFAULT_PER_ADDRESS, window_seconds }
    }
}

/// The failure history, by account and by address.
#[derive(Debug, Default)]
pub struct SignInThrottle {
    accounts: HashMap<String, Vec<u64>>,
    addresses: HashMap<IpAddr, Vec<u64>>,
}

impl SignInThrottle {
    /// Whether an attempt may go to the directory now (`now` in seconds). `Err` is how
    /// many seconds to wait.
    pub fn check(&mut self, limits: &ThrottleLimits, account: &str, address: IpAddr, now: u64) -> Result<(), u64> {
        let account_wait = wait(self.accounts.get_mut(account), limits.per_account, limits.window_seconds, now);
        let address_wait = wait(self.addresses.get_mut(&address), limits.per_address, limits.window_seconds, now);
        match account_wait.max(address_wait) {
            0 => Ok(()),
            w => Err(w),
        }
    }

    /// A wrong password (or unknown account) from the directory.
    pub fn failed(&mut self, account: &str, address: IpAddr, now: u64) {
        self.accounts.entry(account.to_owned()).or_default().push(now);
        self.addresses.entry(address).or_default().push(now);
        // Bounded memory: forget old history now and then.
        if self.accounts.len() + self.addresses.len() > 100_000 {
            self.accounts.retain(|_, v| v.last().is_some_and(|t| now.saturating_sub(*t) < 3600));
            self.addresses.retain(|_, v| v.last().is_some_and(|t| now.saturating_sub(*t) < 3600));
        }
    }

    /// A successful sign-in clears the account's failures (as the directory does).
    pub fn succeeded(&mut self, account: &str) {
        self.accounts.remove(account);
    }
}

/// Seconds until one of `failures` leaves the window, if they are at the limit.
fn wait(failures: Option<&mut Vec<u64>>, limit: u32, window: u64, now: u64) -> u64 {
    let Some(failures) = failures else { return 0 };
    failures.retain(|t| now.saturating_sub(*t) < window);
    if failures.len() < limit as usize {
        return 0;
    }
    let oldest_that_counts = failures[failures.len() - limit as usize];
    (oldest_that_counts + window).saturating_sub(now).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn an_account_is_held_back_before_the_domain_locks_it() {
        let lockout = LockoutPolicy { threshold: 5, observation_window_seconds: 600 };
        let limits = ThrottleLimits::below(Some(lockout));
        assert_eq!(limits.per_account, 3);
        let mut t = SignInThrottle::default();
        let mut reached_directory = 0;
        for i in 0..10 {
            if t.check(&limits, "ivan", HOME, 100 + i).is_ok() {
                reached_directory += 1;
                t.failed("ivan", HOME, 100 + i);
            }
        }
        assert!(reached_directory < lockout.threshold, "{reached_directory} attempts reached the directory");
        let wait = t.check(&limits, "ivan", HOME, 110).unwrap_err();
        assert_eq!(wait, 900 - 10, "the oldest counted failure leaves the window at 100 + 900");
        assert!(t.check(&limits, "ivan", HOME, 100 + 900).is_ok(), "after the window");
    }

    #[test]
    fn a_success_clears_the_account_and_other_accounts_are_unaffected() {
        let limits = ThrottleLimits::below(Some(LockoutPolicy { threshold: 4, observation_window_seconds: 60 }));
        let mut t = SignInThrottle::default();
        t.failed("alice", HOME, 1);
        t.succeeded("alice");
        t.failed("alice", HOME, 2);
        assert!(t.check(&limits, "alice", HOME, 3).is_ok());
        t.failed("alice", HOME, 3);
        assert!(t.check(&limits, "alice", HOME, 4).is_err());
        assert!(t.check(&limits, "bob", "198.51.100.1".parse().unwrap(), 4).is_ok());
    }

    #[test]
    fn an_address_spraying_many_accounts_is_held_back() {
        let limits = ThrottleLimits::below(None);
        let mut t = SignInThrottle::default();
        for i in 0..ThrottleLimits::DEFAULT_PER_ADDRESS {
            let account = format!("user{i}");
            assert!(t.check(&limits, &account, HOME, 10).is_ok());
            t.failed(&account, HOME, 10);
        }
        assert!(t.check(&limits, "someone-else", HOME, 11).is_err());
        assert!(t.check(&limits, "someone-else", "198.51.100.1".parse().unwrap(), 11).is_ok());
    }

    #[test]
    fn a_domain_without_lockout_still_gets_a_budget_and_tiny_thresholds_keep_one_attempt() {
        assert_eq!(ThrottleLimits::below(Some(LockoutPolicy { threshold: 0, observation_window_seconds: 0 })).per_account, 10);
        assert_eq!(ThrottleLimits::below(Some(LockoutPolicy { threshold: 1, observation_window_seconds: 60 })).per_account, 1);
        assert_eq!(ThrottleLimits::below(Some(LockoutPolicy { threshold: 3, observation_window_seconds: 60 })).per_account, 1);
    }
}
