//! What may cross the bounce: the RDP channels the workstation is offered, and the
//! messages the browser may send up.
//!
//! Sans-IO. The RDP side (`rebond-rdp`) asks [`ChannelPolicy`] before it announces
//! any channel; the gateway and the bounce worker pass every uplink message through
//! [`UplinkFilter`].
//!
//! INVARIANT: the only way up from the browser is a decoded, checked [`Input`].

pub mod second_factor;
mod session_policy;
mod throttle;
mod typing;

pub use session_policy::{policy_for, SessionPolicy};
pub use throttle::{LockoutPolicy, SignInThrottle, ThrottleLimits};
pub use typing::{is_character_key, Typing, TypingGuard, TypingPolicy, MAX_KEYS_PER_SECOND, WINDOW};

use rebond_wire::{Button, DecodeError, Uplink};

/// The static virtual channel that carries dynamic channels ([MS-RDPEDYC]).
pub const DRDYNVC: &str = "drdynvc";
/// The dynamic channel for resizing the desktop ([MS-RDPEDISP]).
pub const DISPLAY_CONTROL: &str = "Microsoft::Windows::RDS::DisplayControl";
/// The workstation's sound output ([MS-RDPEA]), a static channel.
pub const RDPSND: &str = "rdpsnd";
/// Sound input to the workstation ([MS-RDPEAI]), a dynamic channel.
pub const AUDIO_INPUT: &str = "AUDIO_INPUT";

/// Which RDP virtual channels a session may open. Display and input travel on the
/// main (I/O) channel, which is not a virtual channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPolicy {
    static_channels: Vec<&'static str>,
    dynamic_channels: Vec<&'static str>,
}

impl ChannelPolicy {
    /// Pixels down, input up, and desktop resizing: nothing else.
    pub fn pixels_only() -> Self {
        Self { static_channels: vec![DRDYNVC], dynamic_channels: vec![DISPLAY_CONTROL] }
    }

    /// Pixels and input, plus the sound channels the person's policy allows: the
    /// workstation's sound out (`speaker`) and sound into it (`microphone`). Sound is
    /// decoded and re-encoded by the worker, so it carries nothing but sound.
    pub fn with_sound(speaker: bool, microphone: bool) -> Self {
        let mut policy = Self::pixels_only();
        if speaker {
            policy.static_channels.push(RDPSND);
        }
        if microphone {
            policy.dynamic_channels.push(AUDIO_INPUT);
        }
        policy
    }

    pub fn allows_static(&self, name: &str) -> bool {
        self.static_channels.iter().any(|c| c.eq_ignore_ascii_case(name))
    }

    pub fn allows_dynamic(&self, name: &str) -> bool {
        self.dynamic_channels.contains(&name)
    }

    /// Checks a complete channel list, as announced in the MCS Connect Initial.
    pub fn check_static<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), ChannelViolation> {
        for name in names {
            if !self.allows_static(name) {
                return Err(ChannelViolation(name.to_owned()));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel {0:?} is not allowed by the pixels-only policy")]
pub struct ChannelViolation(pub String);

/// An input event that passed the filter, in desktop coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Key { scancode: u8, extended: bool, down: bool },
    PointerMove { x: u16, y: u16 },
    PointerButton { button: Button, down: bool, x: u16, y: u16 },
    Wheel { delta: i16, horizontal: bool, x: u16, y: u16 },
}

/// What to do with one uplink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send these events to the workstation.
    Input(Vec<Input>),
    /// The browser's viewport changed: ask the workstation for this size.
    Resize { width: u16, height: u16 },
    /// The page drew a frame.
    FrameAck { seq: u32 },
    /// Alive, nothing to do.
    Keepalive,
    /// One Opus packet for the workstation's microphone (the policy allows it).
    Microphone { packet: Vec<u8> },
    /// End the session and record why.
    Violation(Violation),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("malformed uplink message: {0}")]
    Malformed(DecodeError),
    #[error("text message on the uplink ({0} bytes)")]
    TextMessage(usize),
    #[error("scancode 0x{0:02x} is outside the keyboard")]
    Scancode(u8),
    #[error("resize to {0}x{1} is outside {MIN_SIDE}..={MAX_SIDE}")]
    Resize(u16, u16),
    #[error("microphone sound while the policy does not allow the microphone")]
    MicrophoneNotAllowed,
}

/// Smallest and largest desktop side the gateway asks for ([MS-RDPEDISP] 2.2.2.2.1).
pub const MIN_SIDE: u16 = 200;
pub const MAX_SIDE: u16 = 8192;

/// Checks the browser's uplink, message by message, for one session.
///
/// It keeps the desktop size (to clamp pointer positions) and the keys and buttons
/// held down (so that a lost page never leaves a key stuck on the workstation).
#[derive(Debug, Clone)]
pub struct UplinkFilter {
    width: u16,
    height: u16,
    keys_down: Vec<(u8, bool)>,
    buttons_down: Vec<Button>,
    last_pointer: (u16, u16),
    microphone: bool,
}

impl UplinkFilter {
    /// A filter for input only: microphone sound is a violation.
    pub fn new(width: u16, height: u16) -> Self {
        Self { width, height, keys_down: Vec::new(), buttons_down: Vec::new(), last_pointer: (0, 0), microphone: false }
    }

    /// Lets microphone packets through (the person's policy allows the microphone).
    pub fn allow_microphone(mut self, allowed: bool) -> Self {
        self.microphone = allowed;
        self
    }

    pub fn set_desktop_size(&mut self, width: u16, height: u16) {
        self.width = width;
        self.height = height;
    }

    /// A text WebSocket message: never allowed.
    pub fn text(&mut self, len: usize) -> Verdict {
        Verdict::Violation(Violation::TextMessage(len))
    }

    /// A binary WebSocket message.
    pub fn binary(&mut self, bytes: &[u8]) -> Verdict {
        match Uplink::decode(bytes) {
            Ok(msg) => self.check(msg),
            Err(e) => Verdict::Violation(Violation::Malformed(e)),
        }
    }

    pub fn check(&mut self, msg: Uplink) -> Verdict {
        match msg {
            Uplink::Key { scancode, extended, down } => {
                // Set-1 make codes are 7 bits; the top bit is the break flag, carried separately.
                if scancode == 0 || scancode > 0x7f {
                    return Verdict::Violation(Violation::Scancode(scancode));
                }
                let key = (scancode, extended);
                if down {
                    if !self.keys_down.contains(&key) {
                        self.keys_down.push(key);
                    }
                } else {
                    self.keys_down.retain(|k| *k != key);
                }
                Verdict::Input(vec![Input::Key { scancode, extended, down }])
            }
            Uplink::PointerMove { x, y } => {
                let (x, y) = self.clamp(x, y);
                Verdict::Input(vec![Input::PointerMove { x, y }])
            }
            Uplink::PointerButton { button, down, x, y } => {
                let (x, y) = self.clamp(x, y);
                if down {
                    if !self.buttons_down.contains(&button) {
                        self.buttons_down.push(button);
                    }
                } else {
                    self.buttons_down.retain(|b| *b != button);
                }
                Verdict::Input(vec![Input::PointerButton { button, down, x, y }])
            }
            Uplink::Wheel { delta, horizontal, x, y } => {
                let (x, y) = self.clamp(x, y);
                Verdict::Input(vec![Input::Wheel { delta: delta.clamp(-256, 255), horizontal, x, y }])
            }
            Uplink::Resize { width, height } => {
                if !(MIN_SIDE..=MAX_SIDE).contains(&width) || !(MIN_SIDE..=MAX_SIDE).contains(&height) {
                    return Verdict::Violation(Violation::Resize(width, height));
                }
                Verdict::Resize { width, height }
            }
            Uplink::FrameAck { seq } => Verdict::FrameAck { seq },
            Uplink::ReleaseAll => Verdict::Input(self.release_all()),
            Uplink::Keepalive => Verdict::Keepalive,
            Uplink::Microphone { packet } if self.microphone => Verdict::Microphone { packet },
            Uplink::Microphone { .. } => Verdict::Violation(Violation::MicrophoneNotAllowed),
        }
    }

    /// Releases for everything still held down; call it when the page goes away.
    pub fn release_all(&mut self) -> Vec<Input> {
        let (x, y) = self.last_pointer;
        let mut out: Vec<Input> = self
            .keys_down
            .drain(..)
            .map(|(scancode, extended)| Input::Key { scancode, extended, down: false })
            .collect();
        out.extend(self.buttons_down.drain(..).map(|button| Input::PointerButton { button, down: false, x, y }));
        out
    }

    fn clamp(&mut self, x: u16, y: u16) -> (u16, u16) {
        let p = (x.min(self.width.saturating_sub(1)), y.min(self.height.saturating_sub(1)));
        self.last_pointer = p;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_only_allows_only_the_dynamic_channel_carrier() {
        let p = ChannelPolicy::pixels_only();
        assert!(p.check_static(["drdynvc"]).is_ok());
        for forbidden in ["cliprdr", "rdpdr", "rdpsnd", "rail", "rdpgfx", "smartcard", "urbdrc", "encomsp"] {
            assert_eq!(p.check_static(["drdynvc", forbidden]), Err(ChannelViolation(forbidden.into())));
        }
        assert!(p.allows_dynamic(DISPLAY_CONTROL));
        assert!(!p.allows_dynamic("Microsoft::Windows::RDS::Graphics"));
        assert!(!p.allows_dynamic("FileRedirectorChannel"));
        assert!(!p.allows_static(RDPSND));
        assert!(!p.allows_dynamic(AUDIO_INPUT));
    }

    #[test]
    fn sound_channels_follow_the_policy() {
        assert!(ChannelPolicy::with_sound(true, false).check_static(["drdynvc", "rdpsnd"]).is_ok());
        assert!(!ChannelPolicy::with_sound(true, false).allows_dynamic(AUDIO_INPUT));
        assert!(ChannelPolicy::with_sound(false, true).check_static(["rdpsnd"]).is_err());
        assert!(ChannelPolicy::with_sound(false, true).allows_dynamic(AUDIO_INPUT));
        for forbidden in ["cliprdr", "rdpdr"] {
            assert!(ChannelPolicy::with_sound(true, true).check_static([forbidden]).is_err());
        }
    }

    #[test]
    fn microphone_sound_needs_the_policy() {
        let packet = Uplink::Microphone { packet: vec![0xf8, 0xff, 0xfe] }.encode();
        assert_eq!(UplinkFilter::new(1280, 800).binary(&packet), Verdict::Violation(Violation::MicrophoneNotAllowed));
        assert_eq!(
            UplinkFilter::new(1280, 800).allow_microphone(true).binary(&packet),
            Verdict::Microphone { packet: vec![0xf8, 0xff, 0xfe] }
        );
    }

    #[test]
    fn only_input_resize_ack_and_keepalive_pass() {
        let mut f = UplinkFilter::new(1280, 800);
        assert_eq!(
            f.binary(&Uplink::PointerMove { x: 5000, y: 10 }.encode()),
            Verdict::Input(vec![Input::PointerMove { x: 1279, y: 10 }])
        );
        assert_eq!(f.binary(&Uplink::Keepalive.encode()), Verdict::Keepalive);
        assert_eq!(f.binary(&Uplink::FrameAck { seq: 3 }.encode()), Verdict::FrameAck { seq: 3 });
        assert_eq!(f.text(12), Verdict::Violation(Violation::TextMessage(12)));
        assert!(matches!(f.binary(&[0x04, 1, 2]), Verdict::Violation(Violation::Malformed(_))));
        assert!(matches!(f.binary(&[]), Verdict::Violation(Violation::Malformed(_))));
        assert_eq!(
            f.binary(&Uplink::Key { scancode: 0x9e, extended: false, down: true }.encode()),
            Verdict::Violation(Violation::Scancode(0x9e))
        );
        assert_eq!(
            f.binary(&Uplink::Resize { width: 50, height: 600 }.encode()),
            Verdict::Violation(Violation::Resize(50, 600))
        );
        assert_eq!(f.binary(&Uplink::Resize { width: 1024, height: 768 }.encode()), Verdict::Resize { width: 1024, height: 768 });
    }

    #[test]
    fn release_all_releases_what_is_held() {
        let mut f = UplinkFilter::new(800, 600);
        f.check(Uplink::Key { scancode: 0x1d, extended: false, down: true });
        f.check(Uplink::Key { scancode: 0x38, extended: true, down: true });
        f.check(Uplink::Key { scancode: 0x38, extended: true, down: true });
        f.check(Uplink::Key { scancode: 0x1d, extended: false, down: false });
        f.check(Uplink::PointerButton { button: Button::Left, down: true, x: 10, y: 20 });
        assert_eq!(
            f.check(Uplink::ReleaseAll),
            Verdict::Input(vec![
                Input::Key { scancode: 0x38, extended: true, down: false },
                Input::PointerButton { button: Button::Left, down: false, x: 10, y: 20 },
            ])
        );
        assert_eq!(f.release_all(), vec![]);
    }
}
