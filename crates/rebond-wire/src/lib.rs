//! The browser wire protocol: every message that crosses the WebSocket between the
//! page and the gateway, with its binary codec.
//!
//! Sans-IO: no sockets, no clocks. [`Downlink`] messages go to the browser (pixels,
//! pointer, status), [`Uplink`] messages come from it (input, resize, acks, keepalive).
//! The format is documented in `docs/protocol.md`; the version is negotiated as the
//! WebSocket subprotocol [`SUBPROTOCOL`] and repeated in [`Downlink::Hello`].
//!
//! INVARIANT: decoding never panics and never allocates more than the input's length.

mod catalog;
mod codec;
mod flow;

pub use catalog::{Lang, Text, CATALOG_KEYS};
pub use codec::{DecodeError, Reader};
pub use flow::{FrameAcks, FRAMES_IN_FLIGHT};

/// Protocol version carried in the subprotocol name and in `Hello`.
pub const PROTOCOL_VERSION: u16 = 3;
/// WebSocket subprotocol the page must ask for.
pub const SUBPROTOCOL: &str = "rebond.v3";
/// Largest uplink message the gateway accepts: input is tiny, a microphone packet is
/// the only larger one (see [`MAX_MICROPHONE_PACKET`]); anything bigger is abuse.
pub const MAX_UPLINK_LEN: usize = 1 + MAX_MICROPHONE_PACKET;
/// Largest Opus packet the page may send: 20 ms at 128 kbit/s is 320 bytes.
pub const MAX_MICROPHONE_PACKET: usize = 400;
/// Sound on the socket: Opus, one channel, 48 kHz, 20 ms per packet, both ways.
pub const SOUND_SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms sound packet at [`SOUND_SAMPLE_RATE`].
pub const SOUND_FRAME_SAMPLES: usize = 960;

/// Image codecs the browser decodes natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ImageCodec {
    /// Lossless: text and user interface.
    Png = 1,
    /// Lossy: photographs and video-like regions.
    Jpeg = 2,
}

impl ImageCodec {
    pub fn mime(self) -> &'static str {
        match self {
            ImageCodec::Png => "image/png",
            ImageCodec::Jpeg => "image/jpeg",
        }
    }

    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            1 => Ok(ImageCodec::Png),
            2 => Ok(ImageCodec::Jpeg),
            _ => Err(DecodeError::InvalidValue("image codec")),
        }
    }
}

/// How far the connection to the workstation has come, shown as progress on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Reaching the workstation's RDP port.
    Reaching = 1,
    /// TLS and, where the workstation asks for it, NLA with the user's credentials.
    Securing = 2,
    /// RDP capability exchange and logon.
    SigningIn = 3,
    /// The desktop is on its way.
    Ready = 4,
    /// The workstation was asleep: Wake-on-LAN sent, waiting for it to answer.
    Waking = 5,
}

impl Stage {
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            1 => Ok(Stage::Reaching),
            2 => Ok(Stage::Securing),
            3 => Ok(Stage::SigningIn),
            4 => Ok(Stage::Ready),
            5 => Ok(Stage::Waking),
            _ => Err(DecodeError::InvalidValue("stage")),
        }
    }
}

/// Stable error codes: the page, `rebond probe --json` and the logs all use them.
///
/// The numbers never change meaning; new codes take new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    BadCredentials = 1,
    WorkstationUnreachable = 2,
    WorkstationRefusedCredentials = 3,
    SessionTakenOver = 4,
    SessionEndedAtWorkstation = 5,
    GatewayAtCapacity = 6,
    NoWorkstation = 7,
    WorkstationCertificateUntrusted = 8,
    ForbiddenMessage = 9,
    SessionExpired = 10,
    WorkerFailed = 11,
    WorkstationProtocolError = 12,
    GatewayShuttingDown = 13,
    BadRequest = 14,
    SignedOut = 15,
    Idle = 16,
    InjectedTyping = 17,
    SignInUnavailable = 18,
    SessionOpenElsewhere = 19,
    AccountDisabled = 20,
    AccountExpired = 21,
    AccountLocked = 22,
    PasswordExpired = 23,
    PasswordMustChange = 24,
    NotFromThisComputer = 25,
    OutsideLogonHours = 26,
    NotInAllowedGroup = 27,
    TooManyAttempts = 28,
    PasswordMissing = 29,
    WorkstationNotYours = 30,
    WorkstationDidNotWake = 31,
    SecondFactorRequired = 32,
    SecondFactorWrong = 33,
    ChooseWorkstation = 34,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 34] = [
        ErrorCode::BadCredentials,
        ErrorCode::WorkstationUnreachable,
        ErrorCode::WorkstationRefusedCredentials,
        ErrorCode::SessionTakenOver,
        ErrorCode::SessionEndedAtWorkstation,
        ErrorCode::GatewayAtCapacity,
        ErrorCode::NoWorkstation,
        ErrorCode::WorkstationCertificateUntrusted,
        ErrorCode::ForbiddenMessage,
        ErrorCode::SessionExpired,
        ErrorCode::WorkerFailed,
        ErrorCode::WorkstationProtocolError,
        ErrorCode::GatewayShuttingDown,
        ErrorCode::BadRequest,
        ErrorCode::SignedOut,
        ErrorCode::Idle,
        ErrorCode::InjectedTyping,
        ErrorCode::SignInUnavailable,
        ErrorCode::SessionOpenElsewhere,
        ErrorCode::AccountDisabled,
        ErrorCode::AccountExpired,
        ErrorCode::AccountLocked,
        ErrorCode::PasswordExpired,
        ErrorCode::PasswordMustChange,
        ErrorCode::NotFromThisComputer,
        ErrorCode::OutsideLogonHours,
        ErrorCode::NotInAllowedGroup,
        ErrorCode::TooManyAttempts,
        ErrorCode::PasswordMissing,
        ErrorCode::WorkstationNotYours,
        ErrorCode::WorkstationDidNotWake,
        ErrorCode::SecondFactorRequired,
        ErrorCode::SecondFactorWrong,
        ErrorCode::ChooseWorkstation,
    ];

    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| *c as u16 == v)
    }

    /// The stable name, as shown with the sentence (`RB-3 workstation_refused_credentials`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::WorkstationUnreachable => "workstation_unreachable",
            ErrorCode::WorkstationRefusedCredentials => "workstation_refused_credentials",
            ErrorCode::SessionTakenOver => "session_taken_over",
            ErrorCode::SessionEndedAtWorkstation => "session_ended_at_workstation",
            ErrorCode::GatewayAtCapacity => "gateway_at_capacity",
            ErrorCode::NoWorkstation => "no_workstation",
            ErrorCode::WorkstationCertificateUntrusted => "workstation_certificate_untrusted",
            ErrorCode::ForbiddenMessage => "forbidden_message",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::WorkerFailed => "worker_failed",
            ErrorCode::WorkstationProtocolError => "workstation_protocol_error",
            ErrorCode::GatewayShuttingDown => "gateway_shutting_down",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::SignedOut => "signed_out",
            ErrorCode::Idle => "idle",
            ErrorCode::InjectedTyping => "injected_typing",
            ErrorCode::SignInUnavailable => "sign_in_unavailable",
            ErrorCode::SessionOpenElsewhere => "session_open_elsewhere",
            ErrorCode::AccountDisabled => "account_disabled",
            ErrorCode::AccountExpired => "account_expired",
            ErrorCode::AccountLocked => "account_locked",
            ErrorCode::PasswordExpired => "password_expired",
            ErrorCode::PasswordMustChange => "password_must_change",
            ErrorCode::NotFromThisComputer => "not_allowed_from_this_computer",
            ErrorCode::OutsideLogonHours => "outside_logon_hours",
            ErrorCode::NotInAllowedGroup => "not_in_allowed_group",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::PasswordMissing => "password_missing",
            ErrorCode::WorkstationNotYours => "workstation_not_yours",
            ErrorCode::WorkstationDidNotWake => "workstation_did_not_wake",
            ErrorCode::SecondFactorRequired => "second_factor_required",
            ErrorCode::SecondFactorWrong => "second_factor_wrong",
            ErrorCode::ChooseWorkstation => "choose_workstation",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// The one sentence the person reads.
    pub fn sentence(self, lang: Lang) -> &'static str {
        catalog::error_sentence(self, lang)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RB-{} {}", *self as u16, self.name())
    }
}

/// Gateway to browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Downlink {
    Hello { version: u16 },
    Status { stage: Stage },
    /// The desktop's size; the page sizes its canvas to it and clears it.
    DesktopSize { width: u16, height: u16 },
    /// An image to draw at (x, y).
    Tile { x: u16, y: u16, width: u16, height: u16, codec: ImageCodec, data: Vec<u8> },
    /// End of a frame: draw everything before it, then acknowledge `seq`.
    FrameEnd { seq: u32 },
    /// The workstation's pointer shape, as a PNG with its hotspot.
    PointerShape { hotspot_x: u16, hotspot_y: u16, png: Vec<u8> },
    PointerHidden,
    PointerDefault,
    /// The session is over; the code says why.
    Error { code: ErrorCode },
    /// Something the person should know while the session goes on.
    Notice { notice: Notice, seconds: u32 },
    /// The secret binding this socket to the session: while the socket is open, only a
    /// page that presents it may open another socket for the session (after a network
    /// drop the server may not have noticed yet). The page keeps it in memory only.
    SocketKey { key: [u8; SOCKET_KEY_LEN] },
    /// What sound the person's policy allows, sent when the page attaches; the page
    /// shows the speaker and microphone buttons accordingly.
    SoundSettings { speaker: bool, microphone: bool, microphone_bitrate: u32 },
    /// 20 ms of the workstation's sound: one Opus packet (mono, 48 kHz). `fresh` marks
    /// the first packet after silence, so the page restarts its jitter buffer instead
    /// of counting an underrun.
    Speaker { fresh: bool, packet: Vec<u8> },
    /// Rectangles of the picture that moved (a scroll, a dragged window): each is drawn
    /// from where it was. Every source is read from the picture as it stood before this
    /// message, so the moves of one message may overlap. Comes before a frame's tiles.
    Moves { moves: Vec<Move> },
    /// Tiles the page kept (see [`Downlink::CacheStores`]) drawn again: each
    /// rectangle's tiles from their slots ([`CacheRect::tiles`]). Comes after a frame's
    /// moves and before its images.
    CacheDraws { rects: Vec<CacheRect> },
    /// The page keeps these rectangles of its picture, as it stands before the frame
    /// draws over them: each rectangle's tiles go to their slots ([`CacheRect::tiles`]),
    /// replacing what they held, for [`Downlink::CacheDraws`] to draw again. Comes first
    /// in a frame.
    CacheStores { rects: Vec<CacheRect> },
}

/// Slots in a page's tile cache: four screens of 1280×800 in 64-pixel tiles (16 MiB of
/// pixels in the page).
pub const TILE_CACHE_SLOTS: u16 = 1024;
/// Largest side of a cached tile, in pixels.
pub const CACHED_TILE_SIDE: u16 = 64;

/// A rectangle of tiles of the page's cache, kept or drawn: its tiles (of
/// [`CACHED_TILE_SIDE`] from its top left corner; those of the last column and row may
/// be smaller), row by row, are in consecutive slots from `slot` ([`CacheRect::tiles`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheRect {
    pub slot: u16,
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

/// One tile of a [`CacheRect`]: its slot and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptTile {
    pub slot: u16,
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

impl CacheRect {
    /// Bytes of one rectangle on the wire.
    pub const LEN: usize = 10;

    /// The rectangle's tiles, in order (slots wrap around at [`TILE_CACHE_SLOTS`]).
    pub fn tiles(&self) -> impl Iterator<Item = KeptTile> + '_ {
        let side = usize::from(CACHED_TILE_SIDE);
        let (right, bottom) = (u32::from(self.x) + u32::from(self.width), u32::from(self.y) + u32::from(self.height));
        (u32::from(self.y)..bottom)
            .step_by(side)
            .flat_map(move |y| (u32::from(self.x)..right).step_by(side).map(move |x| (x, y)))
            .enumerate()
            .map(move |(i, (x, y))| KeptTile {
                slot: ((usize::from(self.slot) + i) % usize::from(TILE_CACHE_SLOTS)) as u16,
                x: x as u16,
                y: y as u16,
                width: (right - x).min(u32::from(CACHED_TILE_SIDE)) as u16,
                height: (bottom - y).min(u32::from(CACHED_TILE_SIDE)) as u16,
            })
    }
}

/// One moved rectangle: the `width` × `height` pixels at (`src_x`, `src_y`) go to (`x`, `y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub src_x: u16,
    pub src_y: u16,
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

impl Move {
    /// Bytes of one move on the wire.
    pub const LEN: usize = 12;
}

/// Most entries in one [`Downlink::Moves`], [`Downlink::CacheDraws`] or
/// [`Downlink::CacheStores`]: one per tile of a 4K desktop.
pub const MAX_MOVES: usize = 4096;

fn put_cache_rects(out: &mut Vec<u8>, tag: u8, rects: &[CacheRect]) {
    out.reserve(1 + rects.len() * CacheRect::LEN);
    out.push(tag);
    for c in rects {
        codec::put_u16s(out, &[c.slot, c.x, c.y, c.width, c.height]);
    }
}

fn cache_rects(r: &mut Reader<'_>) -> Result<Vec<CacheRect>, DecodeError> {
    let count = entries(r, CacheRect::LEN, "cache rectangles length")?;
    let mut rects = Vec::with_capacity(count);
    for _ in 0..count {
        let c = CacheRect { slot: r.u16()?, x: r.u16()?, y: r.u16()?, width: r.u16()?, height: r.u16()? };
        let fits = |at: u16, len: u16| len > 0 && u32::from(at) + u32::from(len) <= u32::from(u16::MAX);
        if c.slot >= TILE_CACHE_SLOTS || !fits(c.x, c.width) || !fits(c.y, c.height) {
            return Err(DecodeError::InvalidValue("cache rectangle"));
        }
        rects.push(c);
    }
    Ok(rects)
}

/// The number of fixed-size entries that make up the rest of a message: at least one,
/// at most [`MAX_MOVES`], and nothing left over.
fn entries(r: &Reader<'_>, len: usize, what: &'static str) -> Result<usize, DecodeError> {
    let count = r.remaining() / len;
    if count == 0 || count > MAX_MOVES || !r.remaining().is_multiple_of(len) {
        return Err(DecodeError::InvalidValue(what));
    }
    Ok(count)
}

/// Length of a [`Downlink::SocketKey`].
pub const SOCKET_KEY_LEN: usize = 16;
/// A reconnecting page offers its socket key as the WebSocket subprotocol
/// `rebond.key.<32 lowercase hex digits>`, next to [`SUBPROTOCOL`].
pub const SOCKET_KEY_PROTOCOL_PREFIX: &str = "rebond.key.";

/// Announcements shown over the desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Notice {
    /// This gateway node is draining: the session ends at the latest in `seconds`.
    Draining = 1,
    /// No input for a while: the page is disconnected in `seconds` unless the person moves.
    IdleWarning = 2,
    /// Keystrokes arrive faster than a person types: they are slowed to a person's pace.
    InjectedTypingSlowed = 3,
    /// Keystrokes arrive faster than a person types: this is recorded.
    InjectedTypingRecorded = 4,
}

impl Notice {
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            1 => Ok(Notice::Draining),
            2 => Ok(Notice::IdleWarning),
            3 => Ok(Notice::InjectedTypingSlowed),
            4 => Ok(Notice::InjectedTypingRecorded),
            _ => Err(DecodeError::InvalidValue("notice")),
        }
    }
}

/// Mouse buttons, in the browser's `MouseEvent.button` numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Button {
    Left = 0,
    Middle = 1,
    Right = 2,
    Back = 3,
    Forward = 4,
}

impl Button {
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(Button::Left),
            1 => Ok(Button::Middle),
            2 => Ok(Button::Right),
            3 => Ok(Button::Back),
            4 => Ok(Button::Forward),
            _ => Err(DecodeError::InvalidValue("button")),
        }
    }
}

/// Browser to gateway. Nothing else may go up: see `rebond-policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    /// A physical key, as a PC/AT set-1 scancode; `extended` is the 0xE0 prefix.
    Key { scancode: u8, extended: bool, down: bool },
    PointerMove { x: u16, y: u16 },
    PointerButton { button: Button, down: bool, x: u16, y: u16 },
    /// Wheel rotation in RDP units (120 per notch); positive is away from the user / right.
    Wheel { delta: i16, horizontal: bool, x: u16, y: u16 },
    /// The browser's viewport, in device pixels.
    Resize { width: u16, height: u16 },
    /// The page drew frame `seq`.
    FrameAck { seq: u32 },
    /// Release every pressed key and button (the page lost focus).
    ReleaseAll,
    Keepalive,
    /// 20 ms of the person's microphone: one Opus packet (mono, 48 kHz), at most
    /// [`MAX_MICROPHONE_PACKET`] bytes. Only when the policy allows the microphone
    /// and the person switched it on; the worker decodes it, so only sound goes up.
    Microphone { packet: Vec<u8> },
}

mod tag {
    pub const HELLO: u8 = 0x01;
    pub const STATUS: u8 = 0x02;
    pub const DESKTOP_SIZE: u8 = 0x03;
    pub const TILE: u8 = 0x04;
    pub const FRAME_END: u8 = 0x05;
    pub const POINTER_SHAPE: u8 = 0x06;
    pub const POINTER_HIDDEN: u8 = 0x07;
    pub const POINTER_DEFAULT: u8 = 0x08;
    pub const ERROR: u8 = 0x09;
    pub const NOTICE: u8 = 0x0a;
    pub const SOCKET_KEY: u8 = 0x0b;
    pub const SOUND_SETTINGS: u8 = 0x0c;
    pub const SPEAKER: u8 = 0x0d;
    pub const MOVES: u8 = 0x0e;
    pub const CACHE_DRAWS: u8 = 0x0f;
    pub const CACHE_STORES: u8 = 0x10;

    pub const KEY: u8 = 0x81;
    pub const POINTER_MOVE: u8 = 0x82;
    pub const POINTER_BUTTON: u8 = 0x83;
    pub const WHEEL: u8 = 0x84;
    pub const RESIZE: u8 = 0x85;
    pub const FRAME_ACK: u8 = 0x86;
    pub const RELEASE_ALL: u8 = 0x87;
    pub const KEEPALIVE: u8 = 0x88;
    pub const MICROPHONE: u8 = 0x89;
}

impl Downlink {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Downlink::Hello { version } => {
                out.push(tag::HELLO);
                out.extend_from_slice(&version.to_le_bytes());
            }
            Downlink::Status { stage } => out.extend_from_slice(&[tag::STATUS, *stage as u8]),
            Downlink::DesktopSize { width, height } => {
                out.push(tag::DESKTOP_SIZE);
                codec::put_u16s(out, &[*width, *height]);
            }
            Downlink::Tile { x, y, width, height, codec, data } => {
                out.reserve(10 + data.len());
                out.push(tag::TILE);
                codec::put_u16s(out, &[*x, *y, *width, *height]);
                out.push(*codec as u8);
                out.extend_from_slice(data);
            }
            Downlink::FrameEnd { seq } => {
                out.push(tag::FRAME_END);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            Downlink::PointerShape { hotspot_x, hotspot_y, png } => {
                out.push(tag::POINTER_SHAPE);
                codec::put_u16s(out, &[*hotspot_x, *hotspot_y]);
                out.extend_from_slice(png);
            }
            Downlink::PointerHidden => out.push(tag::POINTER_HIDDEN),
            Downlink::PointerDefault => out.push(tag::POINTER_DEFAULT),
            Downlink::Error { code } => {
                out.push(tag::ERROR);
                out.extend_from_slice(&(*code as u16).to_le_bytes());
            }
            Downlink::Notice { notice, seconds } => {
                out.extend_from_slice(&[tag::NOTICE, *notice as u8]);
                out.extend_from_slice(&seconds.to_le_bytes());
            }
            Downlink::SocketKey { key } => {
                out.push(tag::SOCKET_KEY);
                out.extend_from_slice(key);
            }
            Downlink::SoundSettings { speaker, microphone, microphone_bitrate } => {
                out.extend_from_slice(&[tag::SOUND_SETTINGS, u8::from(*speaker), u8::from(*microphone)]);
                out.extend_from_slice(&microphone_bitrate.to_le_bytes());
            }
            Downlink::Speaker { fresh, packet } => {
                out.reserve(2 + packet.len());
                out.extend_from_slice(&[tag::SPEAKER, u8::from(*fresh)]);
                out.extend_from_slice(packet);
            }
            Downlink::Moves { moves } => {
                out.reserve(1 + moves.len() * Move::LEN);
                out.push(tag::MOVES);
                for m in moves {
                    codec::put_u16s(out, &[m.src_x, m.src_y, m.x, m.y, m.width, m.height]);
                }
            }
            Downlink::CacheDraws { rects } => put_cache_rects(out, tag::CACHE_DRAWS, rects),
            Downlink::CacheStores { rects } => put_cache_rects(out, tag::CACHE_STORES, rects),
        }
    }

    pub const STATUS_TAG: u8 = tag::STATUS;
    pub const DESKTOP_SIZE_TAG: u8 = tag::DESKTOP_SIZE;
    pub const ERROR_TAG: u8 = tag::ERROR;
    pub const FRAME_END_TAG: u8 = tag::FRAME_END;

    /// The type byte of an encoded message.
    pub fn tag(bytes: &[u8]) -> Option<u8> {
        bytes.first().copied()
    }

    /// Decodes the small control messages (status, error) and nothing else, so a
    /// relay can watch them without copying images.
    pub fn decode_header(bytes: &[u8]) -> Option<Self> {
        match bytes.first() {
            Some(&tag::STATUS | &tag::ERROR) => Self::decode(bytes).ok(),
            _ => None,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let msg = match r.u8()? {
            tag::HELLO => Downlink::Hello { version: r.u16()? },
            tag::STATUS => Downlink::Status { stage: Stage::from_u8(r.u8()?)? },
            tag::DESKTOP_SIZE => Downlink::DesktopSize { width: r.u16()?, height: r.u16()? },
            tag::TILE => {
                let (x, y, width, height) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
                let codec = ImageCodec::from_u8(r.u8()?)?;
                return Ok(Downlink::Tile { x, y, width, height, codec, data: r.rest().to_vec() });
            }
            tag::FRAME_END => Downlink::FrameEnd { seq: r.u32()? },
            tag::POINTER_SHAPE => {
                let (hotspot_x, hotspot_y) = (r.u16()?, r.u16()?);
                return Ok(Downlink::PointerShape { hotspot_x, hotspot_y, png: r.rest().to_vec() });
            }
            tag::POINTER_HIDDEN => Downlink::PointerHidden,
            tag::POINTER_DEFAULT => Downlink::PointerDefault,
            tag::ERROR => {
                let raw = r.u16()?;
                Downlink::Error { code: ErrorCode::from_u16(raw).ok_or(DecodeError::InvalidValue("error code"))? }
            }
            tag::NOTICE => Downlink::Notice { notice: Notice::from_u8(r.u8()?)?, seconds: r.u32()? },
            tag::SOCKET_KEY => {
                let mut key = [0u8; SOCKET_KEY_LEN];
                for b in &mut key {
                    *b = r.u8()?;
                }
                Downlink::SocketKey { key }
            }
            tag::SOUND_SETTINGS => {
                Downlink::SoundSettings { speaker: r.bool()?, microphone: r.bool()?, microphone_bitrate: r.u32()? }
            }
            tag::SPEAKER => {
                let fresh = r.bool()?;
                return Ok(Downlink::Speaker { fresh, packet: r.rest().to_vec() });
            }
            tag::MOVES => {
                let count = entries(&r, Move::LEN, "moves length")?;
                let mut moves = Vec::with_capacity(count);
                for _ in 0..count {
                    let m = Move { src_x: r.u16()?, src_y: r.u16()?, x: r.u16()?, y: r.u16()?, width: r.u16()?, height: r.u16()? };
                    if m.width == 0 || m.height == 0 {
                        return Err(DecodeError::InvalidValue("empty move"));
                    }
                    moves.push(m);
                }
                Downlink::Moves { moves }
            }
            tag::CACHE_DRAWS => Downlink::CacheDraws { rects: cache_rects(&mut r)? },
            tag::CACHE_STORES => Downlink::CacheStores { rects: cache_rects(&mut r)? },
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl Uplink {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        match self {
            Uplink::Key { scancode, extended, down } => {
                out.extend_from_slice(&[tag::KEY, *scancode, u8::from(*extended), u8::from(*down)])
            }
            Uplink::PointerMove { x, y } => {
                out.push(tag::POINTER_MOVE);
                codec::put_u16s(&mut out, &[*x, *y]);
            }
            Uplink::PointerButton { button, down, x, y } => {
                out.extend_from_slice(&[tag::POINTER_BUTTON, *button as u8, u8::from(*down)]);
                codec::put_u16s(&mut out, &[*x, *y]);
            }
            Uplink::Wheel { delta, horizontal, x, y } => {
                out.push(tag::WHEEL);
                out.extend_from_slice(&delta.to_le_bytes());
                out.push(u8::from(*horizontal));
                codec::put_u16s(&mut out, &[*x, *y]);
            }
            Uplink::Resize { width, height } => {
                out.push(tag::RESIZE);
                codec::put_u16s(&mut out, &[*width, *height]);
            }
            Uplink::FrameAck { seq } => {
                out.push(tag::FRAME_ACK);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            Uplink::ReleaseAll => out.push(tag::RELEASE_ALL),
            Uplink::Keepalive => out.push(tag::KEEPALIVE),
            Uplink::Microphone { packet } => {
                out.push(tag::MICROPHONE);
                out.extend_from_slice(packet);
            }
        }
        out
    }

    /// Decodes one uplink message. Any trailing byte, unknown type or out-of-range
    /// field is an error: the uplink is strict by design.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_UPLINK_LEN {
            return Err(DecodeError::TooLong(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        let msg = match r.u8()? {
            tag::KEY => Uplink::Key { scancode: r.u8()?, extended: r.bool()?, down: r.bool()? },
            tag::POINTER_MOVE => Uplink::PointerMove { x: r.u16()?, y: r.u16()? },
            tag::POINTER_BUTTON => Uplink::PointerButton {
                button: Button::from_u8(r.u8()?)?,
                down: r.bool()?,
                x: r.u16()?,
                y: r.u16()?,
            },
            tag::WHEEL => Uplink::Wheel { delta: r.u16()? as i16, horizontal: r.bool()?, x: r.u16()?, y: r.u16()? },
            tag::RESIZE => Uplink::Resize { width: r.u16()?, height: r.u16()? },
            tag::FRAME_ACK => Uplink::FrameAck { seq: r.u32()? },
            tag::RELEASE_ALL => Uplink::ReleaseAll,
            tag::KEEPALIVE => Uplink::Keepalive,
            tag::MICROPHONE => {
                let packet = r.rest();
                if packet.is_empty() || packet.len() > MAX_MICROPHONE_PACKET {
                    return Err(DecodeError::InvalidValue("microphone packet length"));
                }
                return Ok(Uplink::Microphone { packet: packet.to_vec() });
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests;
