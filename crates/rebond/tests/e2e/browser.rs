//! The real page in headless Chromium: French sign-in, a refusal in French, then
//! the desktop on the canvas, keystrokes typed in the page reaching the terminal, the
//! terminal's scrolling drawn exactly, and a window uncovered drawn from the page's
//! tile cache.

use std::path::PathBuf;
use std::time::Duration;

use rebond_testkit::browser::Chromium;

use crate::common::*;

/// `KeyboardEvent.code` of a character on a US keyboard (the test workstation's X keymap).
fn code_of(c: char) -> (String, String) {
    match c {
        'a'..='z' => (format!("Key{}", c.to_ascii_uppercase()), c.to_string()),
        '0'..='9' => (format!("Digit{c}"), c.to_string()),
        ' ' => ("Space".into(), " ".into()),
        '/' => ("Slash".into(), "/".into()),
        '-' => ("Minus".into(), "-".into()),
        '.' => ("Period".into(), ".".into()),
        other => panic!("no key for {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn page_signs_in_shows_the_desktop_and_types() {
    let Setup { user, password, ws, gw } = Setup::tls();

    let chromium = Chromium::start("fr-FR", 1280, 800).unwrap();
    let mut page = chromium.page().await.unwrap();
    page.set_language("fr-FR").await.unwrap();
    open_sign_in(&mut page, &gw).await;
    let heading = page.eval("document.getElementById('heading').textContent").await.unwrap();
    assert_eq!(heading, "Connectez-vous pour retrouver votre poste de travail");

    // A wrong password: one clear sentence, in French, with its code.
    submit_sign_in(&mut page, &user, "not-the-password").await;
    page.wait_for("!document.getElementById('error').classList.contains('hidden')", Duration::from_secs(20)).await.unwrap();
    let sentence = page.eval("document.getElementById('error-sentence').textContent").await.unwrap();
    assert_eq!(sentence, "Nom d'utilisateur ou mot de passe incorrect.");
    assert_eq!(page.eval("document.getElementById('error-code').textContent").await.unwrap(), "RB-1 bad_credentials");

    // Then the right one: the desktop fills the page.
    page.eval("document.getElementById('again').click(); true").await.unwrap();
    submit_sign_in(&mut page, &user, &password).await;
    wait_for_desktop(&mut page).await;
    assert_eq!(page.eval("document.getElementById('screen').width").await.unwrap(), 1280);
    assert_eq!(page.eval("document.getElementById('password').value").await.unwrap(), "", "the page forgets the password");

    // Keystrokes typed in the page reach the terminal.
    page.eval("document.getElementById('screen').focus(); true").await.unwrap();
    let marker = PathBuf::from(format!("/tmp/rebond-chromium-{}", rebond_testkit::unique()));
    for c in format!("touch {}", marker.display()).chars() {
        let (code, key) = code_of(c);
        page.press(&code, &key, 0).await.unwrap();
    }
    page.press("Enter", "Enter", 0).await.unwrap();
    assert!(wait_for_file(&marker, Duration::from_secs(10)).await, "keys typed in the page did not reach the workstation");
    let _ = std::fs::remove_file(&marker);

    // The terminal scrolls: the page draws moves (pixels it has, from where they were)
    // and, with them, the canvas shows what the workstation's screen shows.
    // A full screen of lines, then one more line every 0.2 s: each scrolls it by one.
    for command in ["seq 1 100", "ping -i 0.2 -c 15 127.0.0.1"] {
        for c in command.chars() {
            let (code, key) = code_of(c);
            page.press(&code, &key, 0).await.unwrap();
        }
        page.press("Enter", "Enter", 0).await.unwrap();
    }
    page.wait_for("window.rebondStats.moves > 0", Duration::from_secs(20)).await.expect("the scroll came as moves");
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_canvas_shows_the_workstation(&mut page, &chromium, &ws).await;
}

/// The page's canvas, pixel for pixel, is the workstation's screen.
async fn assert_canvas_shows_the_workstation(page: &mut rebond_testkit::browser::Page, chromium: &Chromium, ws: &rebond_testkit::workstation::Shadow) {
    let shot = chromium.profile.join("workstation.png");
    ws.display.screenshot(&shot).unwrap();
    let data_url = page.eval("document.getElementById('screen').toDataURL('image/png')").await.unwrap();
    let canvas_png = chromium.profile.join("canvas.png");
    let b64 = data_url.as_str().unwrap().trim_start_matches("data:image/png;base64,");
    use base64::Engine as _;
    std::fs::write(&canvas_png, base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
    let (_, _, canvas) = rebond_testkit::read_png(&canvas_png).unwrap();
    assert_same_picture(&canvas, &shot, "canvas in Chromium");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_closed_over_another_brings_it_back_from_the_page_cache() {
    let Setup { user, password, ws, gw } = Setup::tls();
    let chromium = Chromium::start("en-US", 1280, 800).unwrap();
    let mut page = chromium.page().await.unwrap();
    open_sign_in(&mut page, &gw).await;
    submit_sign_in(&mut page, &user, &password).await;
    wait_for_desktop(&mut page).await;

    // A document in a window; a second window covers it all, then closes.
    let window = |title: &str, text: &str| {
        let mut cmd = ws.display.screen().command("xterm");
        let lines = format!("seq -f '%g: {text}, a line of text as wide as most of the screen, {text}' 1 100; sleep 60");
        cmd.args(rebond_testkit::workstation::terminal_args(1280, 800)).args(["-T", title, "-e", "sh", "-c", &lines]);
        let proc = rebond_testkit::Proc::spawn(title, cmd, None).unwrap();
        ws.display.screen().wait_for(&[title], Duration::from_secs(10)).unwrap();
        proc
    };
    let _document = window("rebond-document", "the document under the other window");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = page.eval("window.rebondStats.fromCache").await.unwrap().as_u64().unwrap();
    let cover = window("rebond-cover", "the window that covers the document");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(cover);
    page.wait_for(&format!("window.rebondStats.fromCache > {before} + 100"), Duration::from_secs(20))
        .await
        .expect("the document came back from the page's cache");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_canvas_shows_the_workstation(&mut page, &chromium, &ws).await;
}
