//! The Audio Input Redirection Virtual Channel ([MS-RDPEAI]), dynamic channel
//! `AUDIO_INPUT`: the person's microphone, delivered to the workstation.
//!
//! The exchange ([MS-RDPEAI] 1.3.1; FreeRDP's `channels/audin` behaves the same):
//!
//! ```text
//! server → client  Version (1)             client → server  Version
//! server → client  Formats (its formats)   client → server  Formats (the subset it can
//!                                                             produce; later indices point here)
//! server → client  Open (frames per packet, initial format index)
//!                                          client → server  FormatChange (that index), OpenReply (0)
//!                                          client → server  DataIncoming, Data (PCM) ... repeated
//! server → client  FormatChange (index)    client → server  FormatChange (the same index)
//! ```
//!
//! Every PDU starts with a one-byte message id; integers are little-endian.

use crate::format::AudioFormat;
use crate::pcm::{le_bytes_from_mono, mono_from_le_bytes, Resampler};

/// The channel's name.
pub const CHANNEL_NAME: &str = "AUDIO_INPUT";
/// The rate the worker hands samples in (the browser's Opus decodes at 48 kHz).
pub const INPUT_RATE: u32 = 48_000;

const VERSION: u8 = 0x01;
const FORMATS: u8 = 0x02;
const OPEN: u8 = 0x03;
const OPEN_REPLY: u8 = 0x04;
const DATA_INCOMING: u8 = 0x05;
const DATA: u8 = 0x06;
const FORMAT_CHANGE: u8 = 0x07;

/// More formats than any server offers: a bigger count is an attack on memory.
const MAX_FORMATS: u32 = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudinError {
    #[error("AUDIO_INPUT message truncated")]
    Truncated,
    #[error("AUDIO_INPUT message has {0} unexpected trailing bytes")]
    Trailing(usize),
    #[error("unknown AUDIO_INPUT message id 0x{0:02x}")]
    UnknownMessage(u8),
    #[error("AUDIO_INPUT: {0} formats is not plausible")]
    TooManyFormats(u32),
    #[error("AUDIO_INPUT: format index {0} is not in the list")]
    NoSuchFormat(u32),
    #[error("AUDIO_INPUT: the workstation asked for a format that is not 16-bit PCM")]
    NotPcm,
    #[error("AUDIO_INPUT: {0} arrived out of order")]
    OutOfOrder(&'static str),
    #[error("AUDIO_INPUT: the client could not open its device (result 0x{0:08x})")]
    OpenFailed(u32),
}

/// One AUDIO_INPUT PDU ([MS-RDPEAI] 2.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudinPdu {
    /// 2.2.2.1: `Version` (1 or 2).
    Version(u32),
    /// 2.2.2.2: the formats, then extra data (server only; kept as is).
    /// `cbSizeFormatsPacket` is written as the whole PDU's length (as FreeRDP does) and
    /// ignored when read.
    Formats { formats: Vec<AudioFormat>, extra: Vec<u8> },
    /// 2.2.2.3: frames per Data PDU, the initial format (an index into the client's
    /// Formats), and the capture format the server would like (a WAVEFORMATEX, often
    /// WAVE_FORMAT_EXTENSIBLE; informative).
    Open { frames_per_packet: u32, initial_format: u32, capture: AudioFormat },
    /// 2.2.2.4: 0 for success.
    OpenReply(u32),
    /// 2.2.2.5: a Data PDU follows.
    DataIncoming,
    /// 2.2.2.6: samples in the current format.
    Data(Vec<u8>),
    /// 2.2.2.7: index into the client's Formats.
    FormatChange(u32),
}

/// A bounds-checked little-endian reader.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], AudinError> {
        if self.bytes.len() < n {
            return Err(AudinError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, AudinError> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, AudinError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, AudinError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    fn finish(self) -> Result<(), AudinError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(AudinError::Trailing(n)),
        }
    }
}

impl AudinPdu {
    pub fn decode(bytes: &[u8]) -> Result<Self, AudinError> {
        let mut r = Reader::new(bytes);
        let pdu = match r.u8()? {
            VERSION => AudinPdu::Version(r.u32()?),
            FORMATS => {
                let count = r.u32()?;
                if count > MAX_FORMATS {
                    return Err(AudinError::TooManyFormats(count));
                }
                let _size = r.u32()?;
                let formats = (0..count).map(|_| AudioFormat::decode(&mut r)).collect::<Result<Vec<_>, _>>()?;
                return Ok(AudinPdu::Formats { formats, extra: r.rest().to_vec() });
            }
            OPEN => {
                let frames_per_packet = r.u32()?;
                let initial_format = r.u32()?;
                let capture = AudioFormat::decode(&mut r)?;
                AudinPdu::Open { frames_per_packet, initial_format, capture }
            }
            OPEN_REPLY => AudinPdu::OpenReply(r.u32()?),
            DATA_INCOMING => AudinPdu::DataIncoming,
            DATA => return Ok(AudinPdu::Data(r.rest().to_vec())),
            FORMAT_CHANGE => AudinPdu::FormatChange(r.u32()?),
            other => return Err(AudinError::UnknownMessage(other)),
        };
        r.finish()?;
        Ok(pdu)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        match self {
            AudinPdu::Version(v) => {
                out.push(VERSION);
                out.extend_from_slice(&v.to_le_bytes());
            }
            AudinPdu::Formats { formats, extra } => {
                out.push(FORMATS);
                out.extend_from_slice(&(formats.len() as u32).to_le_bytes());
                let size = 9 + formats.iter().map(AudioFormat::encoded_len).sum::<usize>() + extra.len();
                out.extend_from_slice(&(size as u32).to_le_bytes());
                for f in formats {
                    f.encode(&mut out);
                }
                out.extend_from_slice(extra);
            }
            AudinPdu::Open { frames_per_packet, initial_format, capture } => {
                out.push(OPEN);
                out.extend_from_slice(&frames_per_packet.to_le_bytes());
                out.extend_from_slice(&initial_format.to_le_bytes());
                capture.encode(&mut out);
            }
            AudinPdu::OpenReply(result) => {
                out.push(OPEN_REPLY);
                out.extend_from_slice(&result.to_le_bytes());
            }
            AudinPdu::DataIncoming => out.push(DATA_INCOMING),
            AudinPdu::Data(data) => {
                out.reserve(data.len());
                out.push(DATA);
                out.extend_from_slice(data);
            }
            AudinPdu::FormatChange(index) => {
                out.push(FORMAT_CHANGE);
                out.extend_from_slice(&index.to_le_bytes());
            }
        }
        out
    }
}

/// The client side (the bounce worker): answers the workstation and turns 48 kHz mono
/// samples into Data PDUs in the format the workstation opened.
#[derive(Debug)]
pub struct AudinClient {
    /// The formats we told the server we produce; indices point into this list.
    formats: Vec<AudioFormat>,
    open: Option<Opened>,
}

#[derive(Debug)]
struct Opened {
    format: AudioFormat,
    frames_per_packet: usize,
    resampler: Resampler,
    pending: Vec<i16>,
}

/// What we can produce, in our order of preference when a server lets us choose.
pub fn client_formats() -> Vec<AudioFormat> {
    let mut formats = Vec::new();
    for rate in [48_000, 44_100, 22_050, 16_000, 8_000] {
        for channels in [1, 2] {
            formats.push(AudioFormat::pcm(rate, channels));
        }
    }
    formats
}

impl Default for AudinClient {
    fn default() -> Self {
        Self::new()
    }
}

impl AudinClient {
    pub fn new() -> Self {
        Self { formats: Vec::new(), open: None }
    }

    /// Whether the workstation opened the device: samples are delivered from now on.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The format samples are delivered in, once open.
    pub fn format(&self) -> Option<&AudioFormat> {
        self.open.as_ref().map(|o| &o.format)
    }

    /// One message from the workstation; returns the replies to send, in order.
    pub fn on_message(&mut self, payload: &[u8]) -> Result<Vec<Vec<u8>>, AudinError> {
        match AudinPdu::decode(payload)? {
            // Version 1 is what every server accepts; version 2 adds nothing we use.
            AudinPdu::Version(_) => Ok(vec![AudinPdu::Version(1).encode()]),
            AudinPdu::Formats { formats, .. } => {
                let ours = client_formats();
                // The server's formats that we can produce, in the server's order.
                self.formats = formats.into_iter().filter(|f| f.is_pcm16() && ours.iter().any(|o| same_pcm(o, f))).collect();
                self.open = None;
                Ok(vec![AudinPdu::Formats { formats: self.formats.clone(), extra: Vec::new() }.encode()])
            }
            AudinPdu::Open { frames_per_packet, initial_format, .. } => {
                let format = self.pick(initial_format)?;
                // 0 or absurd (over a second): 20 ms.
                let rate = format.samples_per_sec;
                let frames = match frames_per_packet {
                    0 => rate / 50,
                    n if n > rate => rate / 50,
                    n => n,
                } as usize;
                self.open = Some(Opened {
                    resampler: Resampler::new(INPUT_RATE, rate),
                    format,
                    frames_per_packet: frames.max(1),
                    pending: Vec::new(),
                });
                Ok(vec![AudinPdu::FormatChange(initial_format).encode(), AudinPdu::OpenReply(0).encode()])
            }
            AudinPdu::FormatChange(index) => {
                let format = self.pick(index)?;
                let open = self.open.as_mut().ok_or(AudinError::OutOfOrder("a format change before open"))?;
                let rate = format.samples_per_sec;
                if open.format.samples_per_sec != rate {
                    open.frames_per_packet = (open.frames_per_packet as u64 * u64::from(rate)
                        / u64::from(open.format.samples_per_sec).max(1))
                    .max(1) as usize;
                    open.resampler = Resampler::new(INPUT_RATE, rate);
                }
                open.format = format;
                open.pending.clear();
                Ok(vec![AudinPdu::FormatChange(index).encode()])
            }
            AudinPdu::OpenReply(_) | AudinPdu::DataIncoming | AudinPdu::Data(_) => {
                Err(AudinError::OutOfOrder("a client message from the server"))
            }
        }
    }

    fn pick(&self, index: u32) -> Result<AudioFormat, AudinError> {
        let format = self.formats.get(index as usize).ok_or(AudinError::NoSuchFormat(index))?;
        if !format.is_pcm16() {
            return Err(AudinError::NotPcm);
        }
        Ok(format.clone())
    }

    /// 48 kHz mono samples from the person's microphone: the DataIncoming and Data
    /// PDUs ready to send (none until the workstation opened the device, and none
    /// until a whole packet of frames is ready).
    pub fn send(&mut self, samples: &[i16]) -> Vec<Vec<u8>> {
        let Some(open) = self.open.as_mut() else { return Vec::new() };
        open.resampler.process(samples, &mut open.pending);
        let mut out = Vec::new();
        while open.pending.len() >= open.frames_per_packet {
            let frames: Vec<i16> = open.pending.drain(..open.frames_per_packet).collect();
            let mut data = Vec::with_capacity(1 + frames.len() * usize::from(open.format.block_align));
            data.push(DATA);
            le_bytes_from_mono(&frames, open.format.channels, &mut data);
            out.push(AudinPdu::DataIncoming.encode());
            out.push(data);
        }
        out
    }
}

fn same_pcm(a: &AudioFormat, b: &AudioFormat) -> bool {
    a.tag == b.tag && a.channels == b.channels && a.samples_per_sec == b.samples_per_sec && a.bits_per_sample == b.bits_per_sample
}

/// The server side (a workstation; Rebond's test workstation runs it): negotiates a
/// PCM format and turns Data PDUs back into samples.
#[derive(Debug)]
pub struct AudinServer {
    offered: Vec<AudioFormat>,
    /// The client's formats; indices point here.
    client: Vec<AudioFormat>,
    current: Option<AudioFormat>,
    opened: bool,
}

/// What the server got from one client message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServerStep {
    /// Messages to send back, in order.
    pub replies: Vec<Vec<u8>>,
    /// Samples received (mono) and their rate.
    pub samples: Vec<i16>,
    pub rate: u32,
}

impl AudinServer {
    pub fn new(offered: Vec<AudioFormat>) -> Self {
        Self { offered, client: Vec::new(), current: None, opened: false }
    }

    /// The first message, when the channel opens.
    pub fn start(&self) -> Vec<Vec<u8>> {
        vec![AudinPdu::Version(1).encode()]
    }

    /// The format the client sends in, once it confirmed the open.
    pub fn format(&self) -> Option<&AudioFormat> {
        self.current.as_ref().filter(|_| self.opened)
    }

    pub fn on_message(&mut self, payload: &[u8]) -> Result<ServerStep, AudinError> {
        let mut step = ServerStep::default();
        match AudinPdu::decode(payload)? {
            AudinPdu::Version(_) => {
                step.replies.push(AudinPdu::Formats { formats: self.offered.clone(), extra: Vec::new() }.encode());
            }
            AudinPdu::Formats { formats, .. } => {
                // 48 kHz mono first, then any 48 kHz, then the client's first PCM format.
                let pick = formats
                    .iter()
                    .position(|f| f.is_pcm16() && f.samples_per_sec == 48_000 && f.channels == 1)
                    .or_else(|| formats.iter().position(|f| f.is_pcm16() && f.samples_per_sec == 48_000))
                    .or_else(|| formats.iter().position(AudioFormat::is_pcm16))
                    .ok_or(AudinError::NotPcm)?;
                let format = formats[pick].clone();
                self.client = formats;
                step.replies.push(
                    AudinPdu::Open {
                        frames_per_packet: format.samples_per_sec / 50,
                        initial_format: pick as u32,
                        capture: format.clone(),
                    }
                    .encode(),
                );
                self.current = Some(format);
            }
            AudinPdu::FormatChange(index) => {
                self.current = Some(self.client.get(index as usize).cloned().ok_or(AudinError::NoSuchFormat(index))?);
            }
            AudinPdu::OpenReply(0) => self.opened = true,
            AudinPdu::OpenReply(result) => return Err(AudinError::OpenFailed(result)),
            AudinPdu::DataIncoming => {}
            AudinPdu::Data(data) => {
                let format = self.format().ok_or(AudinError::OutOfOrder("data before the device opened"))?;
                if !format.is_pcm16() {
                    return Err(AudinError::NotPcm);
                }
                step.rate = format.samples_per_sec;
                step.samples = mono_from_le_bytes(&data, format.channels);
            }
            AudinPdu::Open { .. } => return Err(AudinError::OutOfOrder("a server message from the client")),
        }
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, n: usize) -> Vec<i16> {
        (0..n).map(|i| (8_000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 48_000.0).sin()) as i16).collect()
    }

    /// Runs the negotiation between a client and a server offering `offered`.
    fn negotiate(offered: Vec<AudioFormat>) -> (AudinClient, AudinServer) {
        let mut client = AudinClient::new();
        let mut server = AudinServer::new(offered);
        let mut to_client = server.start();
        while !to_client.is_empty() {
            let mut to_server = Vec::new();
            for m in to_client.drain(..) {
                to_server.extend(client.on_message(&m).unwrap());
            }
            for m in to_server {
                to_client.extend(server.on_message(&m).unwrap().replies);
            }
        }
        (client, server)
    }

    fn deliver(client: &mut AudinClient, server: &mut AudinServer, samples: &[i16]) -> (u32, Vec<i16>) {
        let mut received = Vec::new();
        let mut rate = 0;
        let messages = client.send(samples);
        assert!(messages.len().is_multiple_of(2));
        for pair in messages.chunks(2) {
            assert_eq!(pair[0], vec![DATA_INCOMING], "every Data PDU is announced");
            let step = server.on_message(&pair[1]).unwrap();
            received.extend(step.samples);
            rate = step.rate;
        }
        (rate, received)
    }

    #[test]
    fn a_48k_mono_session_delivers_the_samples_exactly() {
        let offered = vec![AudioFormat::pcm(44_100, 2), AudioFormat::pcm(48_000, 1), AudioFormat::pcm(48_000, 2)];
        let (mut client, mut server) = negotiate(offered);
        assert_eq!(client.format(), Some(&AudioFormat::pcm(48_000, 1)));
        assert_eq!(server.format(), Some(&AudioFormat::pcm(48_000, 1)));
        let input = tone(1_000.0, 4_800);
        let (rate, received) = deliver(&mut client, &mut server, &input);
        assert_eq!(rate, 48_000);
        assert_eq!(received, input, "960-frame packets, exact");
    }

    #[test]
    fn a_44k_stereo_session_keeps_the_pitch() {
        let (mut client, mut server) = negotiate(vec![AudioFormat::pcm(44_100, 2)]);
        assert_eq!(server.format(), Some(&AudioFormat::pcm(44_100, 2)));
        let (rate, received) = deliver(&mut client, &mut server, &tone(500.0, 48_000));
        assert_eq!(rate, 44_100);
        assert!(received.len() >= 44_100 - 882 && received.len() <= 44_100, "{} samples", received.len());
        let crossings = received.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count() as f64;
        let hz = crossings / 2.0 / (received.len() as f64 / 44_100.0);
        assert!((hz - 500.0).abs() < 3.0, "{hz} Hz");
    }

    #[test]
    fn formats_that_are_not_pcm16_are_declined() {
        let mut adpcm = AudioFormat::pcm(22_050, 1);
        adpcm.tag = 0x0002;
        let mut client = AudinClient::new();
        client.on_message(&AudinPdu::Version(2).encode()).unwrap();
        let offered = vec![adpcm, AudioFormat::pcm(16_000, 1), AudioFormat::pcm(96_000, 2)];
        let reply = client.on_message(&AudinPdu::Formats { formats: offered, extra: vec![] }.encode()).unwrap();
        assert_eq!(
            AudinPdu::decode(&reply[0]).unwrap(),
            AudinPdu::Formats { formats: vec![AudioFormat::pcm(16_000, 1)], extra: vec![] }
        );
        // An open naming a format we did not list is refused; nothing is sent before open.
        let open = |i| AudinPdu::Open { frames_per_packet: 320, initial_format: i, capture: AudioFormat::pcm(16_000, 1) }.encode();
        assert_eq!(client.on_message(&open(1)), Err(AudinError::NoSuchFormat(1)));
        assert!(client.send(&[0; 960]).is_empty());
        assert_eq!(
            client.on_message(&open(0)).unwrap(),
            vec![AudinPdu::FormatChange(0).encode(), AudinPdu::OpenReply(0).encode()]
        );
        assert_eq!(client.send(&[0; 960]).len(), 2, "20 ms at 16 kHz is one packet of 320 frames");
    }

    #[test]
    fn pdus_have_the_layout_of_the_specification() {
        // [MS-RDPEAI] 2.2.2.1 Version PDU: MessageId 0x01, Version u32.
        assert_eq!(AudinPdu::Version(1).encode(), vec![0x01, 1, 0, 0, 0]);
        // 2.2.2.4 Open Reply: MessageId 0x04, Result u32; 2.2.2.7 Format Change: 0x07, NewFormat u32.
        assert_eq!(AudinPdu::OpenReply(0).encode(), vec![0x04, 0, 0, 0, 0]);
        assert_eq!(AudinPdu::FormatChange(3).encode(), vec![0x07, 3, 0, 0, 0]);
        // 2.2.2.2 Sound Formats: MessageId, NumFormats, cbSizeFormatsPacket (the whole PDU),
        // then AUDIO_FORMAT: tag, channels, rate, bytes/s, block align, bits, cbSize.
        let formats = AudinPdu::Formats { formats: vec![AudioFormat::pcm(44_100, 2)], extra: vec![] }.encode();
        assert_eq!(
            formats,
            vec![
                0x02, 1, 0, 0, 0, 27, 0, 0, 0, // id, one format, 27 bytes in all
                1, 0, 2, 0, 0x44, 0xac, 0, 0, 0x10, 0xb1, 2, 0, 4, 0, 16, 0, 0, 0,
            ]
        );
        // 2.2.2.3 Open: MessageId, FramesPerPacket, initialFormat, WAVEFORMATEX (here
        // WAVE_FORMAT_EXTENSIBLE with 22 bytes of extra data, as Windows and FreeRDP send).
        let mut open = vec![0x03, 0x70, 0x11, 0, 0, 0, 0, 0, 0];
        open.extend([0xfe, 0xff, 2, 0, 0x44, 0xac, 0, 0, 0x10, 0xb1, 2, 0, 4, 0, 16, 0, 22, 0]);
        open.extend([0u8; 22]);
        match AudinPdu::decode(&open).unwrap() {
            AudinPdu::Open { frames_per_packet: 4464, initial_format: 0, capture } => {
                assert_eq!(capture.tag, 0xfffe);
                assert_eq!(capture.extra.len(), 22);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_and_trailing_bytes_are_refused() {
        let pdus = [
            AudinPdu::Version(2),
            AudinPdu::OpenReply(0),
            AudinPdu::FormatChange(1),
            AudinPdu::Formats { formats: vec![AudioFormat::pcm(8_000, 1)], extra: vec![] },
            AudinPdu::Open { frames_per_packet: 1, initial_format: 0, capture: AudioFormat::pcm(8_000, 1) },
        ];
        for pdu in pdus {
            let bytes = pdu.encode();
            assert_eq!(AudinPdu::decode(&bytes), Ok(pdu.clone()));
            for cut in 0..bytes.len() {
                if matches!(pdu, AudinPdu::Formats { .. }) && cut >= 9 + 18 {
                    continue;
                }
                assert!(AudinPdu::decode(&bytes[..cut]).is_err(), "{pdu:?} cut at {cut}");
            }
        }
        assert_eq!(AudinPdu::decode(&[0x01, 1, 0, 0, 0, 9]), Err(AudinError::Trailing(1)));
        assert_eq!(AudinPdu::decode(&[0x02, 0xff, 0xff, 0xff, 0xff]), Err(AudinError::TooManyFormats(u32::MAX)));
        assert_eq!(AudinPdu::decode(&[0x09]), Err(AudinError::UnknownMessage(0x09)));
    }

    proptest::proptest! {
        #[test]
        fn decoding_and_negotiating_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = AudinPdu::decode(&bytes);
            let mut client = AudinClient::new();
            let _ = client.on_message(&bytes);
            let _ = client.send(&[1, 2, 3]);
            let mut server = AudinServer::new(client_formats());
            let _ = server.on_message(&bytes);
        }
    }
}
