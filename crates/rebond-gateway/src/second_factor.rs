//! The second factor (TOTP) for people whose policy asks for one: enrolment from the
//! page (a QR code to scan), codes checked once each, secrets sealed at rest.
//!
//! INVARIANT: a TOTP secret is written only sealed (AES-256-GCM, with the person's name
//! as associated data, so a sealed secret cannot be moved to another person); the key
//! is in its own file (`second_factor_key_file`, mode 0600), never in the database.

use std::path::Path;

use anyhow::Context as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

/// Seals and opens TOTP secrets.
pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl SecretBox {
    /// Reads the key file, or creates it (32 random bytes, mode 0600) if it is missing.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let key: Zeroizing<Vec<u8>> = match std::fs::read(path) {
            Ok(k) => Zeroizing::new(k),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = Zeroizing::new(vec![0u8; 32]);
                rng.fill(&mut k).map_err(|_| anyhow::anyhow!("no randomness for the second-factor key"))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                write_private(path, &k).with_context(|| format!("cannot write the second-factor key {}", path.display()))?;
                k
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read the second-factor key {}", path.display())),
        };
        anyhow::ensure!(key.len() == 32, "{} must hold 32 bytes (it holds {})", path.display(), key.len());
        let key = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| anyhow::anyhow!("invalid second-factor key"))?;
        Ok(Self { key: LessSafeKey::new(key), rng })
    }

    /// A new random secret.
    pub fn new_secret(&self) -> Zeroizing<Vec<u8>> {
        let mut s = Zeroizing::new(vec![0u8; rebond_policy::second_factor::SECRET_LEN]);
        self.rng.fill(&mut s).expect("system randomness");
        s
    }

    /// `hex(nonce ‖ ciphertext ‖ tag)`, bound to `user`.
    pub fn seal(&self, user: &str, secret: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("system randomness");
        let mut buf = secret.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(user.as_bytes()), &mut buf)
            .expect("sealing cannot fail for small inputs");
        let out = hex::encode([nonce.as_slice(), &buf].concat());
        zeroize::Zeroize::zeroize(&mut buf);
        out
    }

    /// The secret, if `sealed` was sealed for `user` with this key.
    pub fn open(&self, user: &str, sealed: &str) -> Option<Zeroizing<Vec<u8>>> {
        let mut bytes = Zeroizing::new(hex::decode(sealed).ok()?);
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self.key.open_in_place(nonce, Aad::from(user.as_bytes()), rest).ok()?;
        Some(Zeroizing::new(plain.to_vec()))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// What the page must show to go on.
pub enum Challenge {
    /// Ask for the code from the authenticator.
    Code,
    /// First time: show this QR code (and the secret, for typing by hand), then ask for a code.
    Enrol { otpauth: String, secret_base32: String, qr_svg: String },
}

/// The enrolment QR code, as an SVG image.
pub fn qr_svg(text: &str) -> String {
    let code = qrcode::QrCode::new(text.as_bytes()).expect("an otpauth URI fits a QR code");
    code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_owner_and_key() {
        let dir = std::env::temp_dir().join(format!("rebond-2fa-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let b = SecretBox::load_or_create(&dir.join("key")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(dir.join("key")).unwrap().permissions().mode() & 0o777, 0o600);
        let secret = b.new_secret();
        let sealed = b.seal("alice", &secret);
        assert!(!sealed.contains(&hex::encode(&*secret)), "not in clear");
        assert_eq!(b.open("alice", &sealed).as_deref(), Some(&*secret));
        assert_eq!(b.open("bob", &sealed), None, "bound to its owner");
        let again = SecretBox::load_or_create(&dir.join("key")).unwrap();
        assert_eq!(again.open("alice", &sealed).as_deref(), Some(&*secret), "the key file is reused");
        std::fs::write(dir.join("other"), [7u8; 32]).unwrap();
        assert_eq!(SecretBox::load_or_create(&dir.join("other")).unwrap().open("alice", &sealed), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_qr_code_is_an_svg() {
        let svg = qr_svg("otpauth://totp/Rebond:alice?secret=JBSWY3DPEHPK3PXP&issuer=Rebond");
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{}", &svg[..80]);
    }
}
