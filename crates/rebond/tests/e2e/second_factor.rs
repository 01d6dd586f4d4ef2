//! A second factor (TOTP) for the groups whose policy asks for one: enrolment with a QR
//! code in the page, each code once, secrets sealed at rest, a reset by an administrator.

use std::time::Duration;

use rebond_policy::second_factor::code_at;
use rebond_testkit::browser::Chromium;
use serde_json::json;

use crate::common::*;

const POLICY: &str = "[[policies]]\nname = \"finance\"\ngroups = [\"finance\"]\nsecond_factor = true\n";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn secret_of(body: &serde_json::Value) -> Vec<u8> {
    data_encoding::BASE32_NOPAD.decode(body["secret"].as_str().expect("an enrolment carries the secret").as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_factor_is_enrolled_used_once_sealed_and_reset() {
    let s = Setup::tls_with(gateway_with(POLICY));
    s.gw.add_user_in(&s.user, &s.password, &["finance"]).unwrap();
    let sign_in = |code: Option<String>| {
        let mut body = json!({ "user": s.user, "password": s.password });
        if let Some(c) = code {
            body["code"] = c.into();
        }
        post_sign_in(&s.gw, &body)
    };

    // First sign-in: the password is right; the page is asked to enrol, with a QR code.
    let (_, first) = sign_in(None);
    assert_eq!((first["code"].as_str(), first["second_factor"].as_str()), (Some("second_factor_required"), Some("enrol")), "{first}");
    assert!(first["qr"].as_str().unwrap().starts_with("data:image/svg+xml;base64,"));
    assert!(first["otpauth"].as_str().unwrap().starts_with("otpauth://totp/Rebond:"));
    let secret = secret_of(&first);
    let (_, again) = sign_in(None);
    assert_eq!(secret_of(&again), secret, "the same enrolment until it is confirmed");

    // A wrong code, then the right one.
    let right = format!("{:06}", code_at(&secret, now()));
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let (_, body) = sign_in(Some(wrong.into()));
    assert_eq!(body["code"], "second_factor_wrong", "{body}");
    let (head, body) = sign_in(Some(right.clone()));
    assert!(head.starts_with("http/1.1 200"), "{head}{body}");
    assert!(head.contains("set-cookie: rebond_session="));

    // The same code a second time is refused; without a code, the page asks for one (no QR).
    let (_, body) = sign_in(Some(right));
    assert_eq!(body["code"], "second_factor_wrong", "a code works once: {body}");
    let (_, body) = sign_in(None);
    assert_eq!((body["second_factor"].as_str(), body.get("qr")), (Some("code"), None), "{body}");

    // Sealed at rest: neither the secret nor its base32 form is anywhere in the data folder.
    let b32 = data_encoding::BASE32_NOPAD.encode(&secret);
    for entry in std::fs::read_dir(&s.gw.data).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&b32) && !text.contains(&hex::encode(&secret)), "{} holds the secret", entry.path().display());
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_slice()), "{} holds the raw secret", entry.path().display());
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(s.gw.data.join("second-factor.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A lost phone: the administrator resets, and the person enrols a new secret.
    let out = s.gw.cli(&["user", "reset-second-factor", &s.user], None).unwrap();
    assert!(out.contains("enrol a new second factor"), "{out}");
    let (_, body) = sign_in(None);
    assert_eq!(body["second_factor"], "enrol");
    assert_ne!(secret_of(&body), secret);
    let audit = s.gw.cli(&["audit", "export"], None).unwrap();
    assert!(audit.contains("second factor reset") && audit.contains("second_factor_enrolled"), "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_enrols_with_a_qr_code_then_shows_the_desktop() {
    let s = Setup::tls_with(gateway_with(POLICY));
    s.gw.add_user_in(&s.user, &s.password, &["finance"]).unwrap();
    let chromium = Chromium::start("fr-FR", 1280, 800).unwrap();
    let mut page = chromium.page().await.unwrap();
    page.set_language("fr-FR").await.unwrap();
    open_sign_in(&mut page, &s.gw).await;
    submit_sign_in(&mut page, &s.user, &s.password).await;
    page.wait_for("!document.getElementById('second-factor').classList.contains('hidden')", Duration::from_secs(20)).await.unwrap();
    // The QR code is drawn, the instructions are in French, the password is not kept in the form.
    page.wait_for("document.getElementById('qr').complete && document.getElementById('qr').naturalWidth > 0", Duration::from_secs(5)).await.unwrap();
    let heading = page.eval("document.querySelector('#enrol p').textContent").await.unwrap();
    assert!(heading.as_str().unwrap().starts_with("Configurez votre second facteur"), "{heading}");
    assert_eq!(page.eval("document.getElementById('password').value").await.unwrap(), "");
    let otpauth = page.eval("document.getElementById('enrol').dataset.otpauth").await.unwrap();
    let b32 = otpauth.as_str().unwrap().split("secret=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let secret = data_encoding::BASE32_NOPAD.decode(b32.as_bytes()).unwrap();

    // The person types the code from their phone: the desktop appears.
    let code = format!("{:06}", code_at(&secret, now()));
    page.eval(&format!("document.getElementById('code').value = '{code}'; document.getElementById('second-factor').requestSubmit(); true"))
        .await
        .unwrap();
    wait_for_desktop(&mut page).await;
}
