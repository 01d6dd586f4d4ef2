//! Driving IronRDP for one bounce session: connect to the workstation with the
//! user's credentials (TLS or NLA), verify its certificate, then run the active
//! stage: RDP frames in, framebuffer damage and pointer changes out, input back.
//!
//! Edge tier (it owns the TCP/TLS socket), but the connector configuration and the
//! channel set are plain functions so tests can inspect what we announce.
//!
//! INVARIANT: the only virtual channels ever announced are those that
//! [`rebond_policy::ChannelPolicy::with_sound`] allows for the person: `drdynvc`,
//! carrying display control (and `AUDIO_INPUT` when the microphone is allowed), and
//! `rdpsnd` when the speaker is allowed. No clipboard, drive, printer, smart card or
//! USB channel, ever.

mod connect;
mod session;
pub mod sound;
mod trust;

pub use connect::{client_connector, connect, connector_config, fetch_certificate, check_workstation, ConnectError, ConnectRequest, Connected, WorkstationFramed};
pub use session::{Session, SessionEvent};
pub use sound::{SoundChannels, SpeakerQueue, SpeakerSound};
pub use trust::{fingerprint_of_der, CertTrust, TrustError};

/// Windows keyboard layout identifier for a browser language tag (`fr-FR`, `en-GB`).
///
/// The browser sends physical key positions (scancodes); the layout tells the
/// workstation how to read them, so an AZERTY keyboard types AZERTY.
pub fn keyboard_layout_for(lang: &str) -> u32 {
    let lang = lang.trim().to_ascii_lowercase();
    match lang.as_str() {
        "fr-be" => 0x080c,
        "fr-ch" => 0x100c,
        "fr-ca" => 0x1009,
        "en-gb" => 0x0809,
        "de-ch" => 0x0807,
        "es" | "es-es" => 0x040a,
        _ => match lang.split('-').next().unwrap_or("") {
            "fr" => 0x040c,
            "de" => 0x0407,
            "it" => 0x0410,
            "es" => 0x040a,
            "nl" => 0x0413,
            "pt" => 0x0816,
            _ => 0x0409,
        },
    }
}

#[cfg(test)]
mod tests;
