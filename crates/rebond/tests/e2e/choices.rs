//! Where configured, a group's people choose among several workstations (hot desks);
//! anything outside their choices stays refused.

use std::time::Duration;

use rebond_testkit::browser::Chromium;
use rebond_testkit::workstation::{Security, Shadow};
use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_desk_group_chooses_its_workstation_in_the_page() {
    let desk = Shadow::start(Security::Tls).unwrap();
    let config = format!("[[workstation_choices]]\ngroup = \"hot-desk\"\nworkstations = [\"{}\"]\ninsecure_skip_verify = true\n", desk.url());
    let s = Setup::tls_with(gateway_with(&config));
    s.gw.add_user_in(&s.user, &s.password, &["hot-desk"]).unwrap();

    let (_, body) = post_sign_in(&s.gw, &json!({ "user": s.user, "password": s.password }));
    assert_eq!(body["code"], "choose_workstation", "{body}");
    assert_eq!(body["choices"], json!([s.ws.url(), desk.url()]), "their own first");
    let (_, body) = post_sign_in(&s.gw, &json!({ "user": s.user, "password": s.password, "workstation": "rdp://10.9.9.9:3389" }));
    assert_eq!(body["code"], "workstation_not_yours", "{body}");

    // In the page: the person picks the hot desk and works there.
    let chromium = Chromium::start("en-US", 1280, 800).unwrap();
    let mut page = chromium.page().await.unwrap();
    open_sign_in(&mut page, &s.gw).await;
    submit_sign_in(&mut page, &s.user, &s.password).await;
    page.wait_for("!document.getElementById('choose').classList.contains('hidden')", Duration::from_secs(20)).await.unwrap();
    let pick = format!("document.querySelector('#choices button[data-workstation=\"{}\"]').click(); true", desk.url());
    page.eval(&pick).await.unwrap();
    wait_for_desktop(&mut page).await;
    let log = s.gw.log_text();
    assert!(log.contains(&format!("workstation={}", desk.url())), "{log}");
}
