//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits), the
//! second factor of policies that ask for one. Sans-IO: the caller gives the time.

use hmac::{Hmac, Mac as _};

/// Seconds per code.
pub const STEP_SECONDS: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Bytes of a new secret (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;

/// The code for `secret` at time step `step`.
pub fn code_at_step(secret: &[u8], step: u64) -> u32 {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    binary % 10u32.pow(DIGITS)
}

/// The code shown by an authenticator at `unix_time`.
pub fn code_at(secret: &[u8], unix_time: u64) -> u32 {
    code_at_step(secret, unix_time / STEP_SECONDS)
}

/// Checks a typed code against the current step and its neighbours (clocks drift),
/// refusing any step at or before `last_used_step` (a code works once). Returns the
/// step that matched.
pub fn verify(secret: &[u8], typed: &str, unix_time: u64, last_used_step: Option<u64>) -> Option<u64> {
    let typed = typed.trim().replace(' ', "");
    if typed.len() != DIGITS as usize || !typed.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let typed: u32 = typed.parse().ok()?;
    let now = unix_time / STEP_SECONDS;
    [now.saturating_sub(1), now, now + 1]
        .into_iter()
        .filter(|step| last_used_step.is_none_or(|last| *step > last))
        .find(|step| code_at_step(secret, *step) == typed)
}

/// The `otpauth://` URI an authenticator app reads from the enrolment QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret_base32: &str) -> String {
    let enc = |s: &str| s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
    format!(
        "otpauth://totp/{}:{}?secret={secret_base32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B (SHA-1 column; the RFC prints 8 digits, we keep the last 6).
    #[test]
    fn rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (time, eight_digits) in [(59u64, 94287082u32), (1111111109, 7081804), (1111111111, 14050471), (1234567890, 89005924), (2000000000, 69279037)] {
            assert_eq!(code_at(secret, time), eight_digits % 1_000_000, "t={time}");
        }
    }

    #[test]
    fn a_code_works_once_within_a_step_of_drift() {
        let secret = b"12345678901234567890";
        let now = 1_700_000_000;
        let code = format!("{:06}", code_at(secret, now));
        let step = verify(secret, &code, now, None).unwrap();
        assert_eq!(verify(secret, &code, now, Some(step)), None, "replayed");
        assert!(verify(secret, &code, now + 30, None).is_some(), "one step late");
        assert_eq!(verify(secret, &code, now + 90, None), None, "too late");
        assert_eq!(verify(secret, "12345", now, None), None);
        assert_eq!(verify(secret, "abcdef", now, None), None);
    }

    #[test]
    fn otpauth() {
        assert_eq!(
            otpauth_uri("Rebond", "alice@corp", "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/Rebond:alice%40corp?secret=JBSWY3DPEHPK3PXP&issuer=Rebond&algorithm=SHA1&digits=6&period=30"
        );
    }
}
