//! The Audio Input Redirection Virtual Channel ([MS-RDPEAI]), dynamic channel
//! `AUDIO_INPUT`: the person's microphone, delivered to the workstation.
//!
//! The exchange ([MS-RDPEAI] 1.3 and 3.2.5; FreeRDP's `channels/audin/client/audin_main.c`
//! and `channels/audin/server/audin.c` behave the same):
//!
//! ```text
//! server → client  Version (1 or 2)        client → server  Version (1)
//! server → client  Formats (its formats)   client → server  DataIncoming, then Formats (the
//!                                                             subset it can produce, in the
//!                                                             server's order; later indices
//!                                                             point into this list)
//! server → client  Open (frames per packet, initial format index, capture format)
//!                                          client → server  FormatChange (that index), OpenReply (0)
//!                                          client → server  DataIncoming, Data (PCM) ... repeated
//! server → client  FormatChange (index)    client → server  FormatChange (the same index)
//! ```
//!
//! Every PDU starts with a one-byte message id; integers are little-endian.
//!
//! [MS-RDPEAI]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpeai/

use crate::format::AudioFormat;
use crate::pcm::{le_bytes_from_mono, mono_from_le_bytes, Resampler};

/// The channel's name.
pub const CHANNEL_NAME: &str = "AUDIO_INPUT";
/// The rate the worker hands samples in (the browser's Opus decodes at 48 kHz).
pub const INPUT_RATE: u32 = 48_000;
/// The version the client answers ([MS-RDPEAI] 2.2.2.1 defines 1 and 2; version 2 only
/// lets the server send Format Change PDUs during capture, which we handle anyway).
/// FreeRDP's client answers 1 too (`audin_process_version`, `ClientVersion = 0x01`).
pub const CLIENT_VERSION: u32 = 1;

const VERSION: u8 = 0x01;
const FORMATS: u8 = 0x02;
const OPEN: u8 = 0x03;
const OPEN_REPLY: u8 = 0x04;
const DATA_INCOMING: u8 = 0x05;
const DATA: u8 = 0x06;
const FORMAT_CHANGE: u8 = 0x07;

/// More formats than any server offers (Windows offers 21, [MS-RDPEAI] 4.1.3): a bigger
/// count is an attack on memory. FreeRDP's client refuses more than 1000.
const MAX_FORMATS: u32 = 256;
/// `Header` + `NumFormats` + `cbSizeFormatsPacket`.
const FORMATS_HEADER_LEN: usize = 9;

/// Why an AUDIO_INPUT message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudinError {
    #[error("message truncated")]
    Truncated,
    #[error("message has {0} unexpected trailing bytes")]
    Trailing(usize),
    #[error("unknown message id 0x{0:02x}")]
    UnknownMessage(u8),
    #[error("{0} formats is not plausible")]
    TooManyFormats(u32),
    #[error("format index {0} is not in the list")]
    NoSuchFormat(u32),
    #[error("the format asked for is not 16-bit PCM")]
    NotPcm,
    #[error("the client offers no 16-bit PCM format")]
    NoCommonFormat,
    #[error("{0} arrived out of order")]
    OutOfOrder(&'static str),
    #[error("the client could not open its device (result 0x{0:08x})")]
    OpenFailed(u32),
}

/// One AUDIO_INPUT PDU ([MS-RDPEAI] 2.2.2 and 2.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudinPdu {
    /// 2.2.2.1: `Version` u32 (1 or 2).
    Version(u32),
    /// 2.2.2.2: `NumFormats` u32, `cbSizeFormatsPacket` u32, the formats, then extra data
    /// (sent by servers only; kept as is). `cbSizeFormatsPacket` is written as the PDU's
    /// length without the extra data (2.2.2.2: what a client MUST send; FreeRDP's client
    /// writes the same) and ignored when read (servers send arbitrary values: Windows
    /// 0x80000000 in 4.1.3, FreeRDP's server 0).
    Formats {
        formats: Vec<AudioFormat>,
        extra: Vec<u8>,
    },
    /// 2.2.2.3: `FramesPerPacket` u32, `initialFormat` u32 (an index into the client's
    /// Formats: the format Data MUST be in), then the capture format the server would
    /// like the device opened in (a WAVEFORMATEX, often WAVE_FORMAT_EXTENSIBLE with 22
    /// bytes of extra data; informative, 3.2.5.1.6).
    Open {
        frames_per_packet: u32,
        initial_format: u32,
        capture: AudioFormat,
    },
    /// 2.2.2.4: `Result` u32, 0 for success.
    OpenReply(u32),
    /// 2.2.3.1: a Data PDU follows (also sent before the client's Formats, 3.2.5.1.4).
    DataIncoming,
    /// 2.2.3.2: samples in the current format (the rest of the PDU).
    Data(Vec<u8>),
    /// 2.2.2.5: index into the client's Formats.
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

    pub(crate) fn finish(self) -> Result<(), AudinError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(AudinError::Trailing(n)),
        }
    }
}

impl AudinPdu {
    /// One whole PDU (the payload of one dynamic-channel message). Never panics; a
    /// field cut short, bytes after the last field, an unknown id or an implausible
    /// format count are errors.
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
                let formats = (0..count)
                    .map(|_| AudioFormat::read(&mut r))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(AudinPdu::Formats {
                    formats,
                    extra: r.rest().to_vec(),
                });
            }
            OPEN => {
                let frames_per_packet = r.u32()?;
                let initial_format = r.u32()?;
                let capture = AudioFormat::read(&mut r)?;
                AudinPdu::Open {
                    frames_per_packet,
                    initial_format,
                    capture,
                }
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

    /// The PDU's bytes.
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
                let size = FORMATS_HEADER_LEN
                    + formats.iter().map(AudioFormat::encoded_len).sum::<usize>();
                out.extend_from_slice(&(size as u32).to_le_bytes());
                for f in formats {
                    f.encode(&mut out);
                }
                out.extend_from_slice(extra);
            }
            AudinPdu::Open {
                frames_per_packet,
                initial_format,
                capture,
            } => {
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
    /// What we can produce (16-bit PCM only).
    producible: Vec<AudioFormat>,
    /// The formats we told the server we produce; indices point into this list.
    // INVARIANT: every format here is 16-bit PCM and in `producible`.
    formats: Vec<AudioFormat>,
    open: Option<Opened>,
}

#[derive(Debug)]
struct Opened {
    format: AudioFormat,
    frames_per_packet: usize,
    resampler: Resampler,
    /// Mono samples at the format's rate, waiting for a whole packet.
    pending: Vec<i16>,
}

/// What the worker can produce: 16-bit PCM at 48, 44.1, 22.05, 16 and 8 kHz, mono and
/// stereo (48 kHz mono input, resampled and duplicated as needed).
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
    /// A client producing [`client_formats`].
    pub fn new() -> Self {
        Self::with_formats(client_formats())
    }

    /// A client producing `producible`; formats that are not 16-bit PCM are dropped.
    pub fn with_formats(producible: Vec<AudioFormat>) -> Self {
        let producible = producible
            .into_iter()
            .filter(AudioFormat::is_pcm16)
            .collect();
        Self {
            producible,
            formats: Vec::new(),
            open: None,
        }
    }

    /// Whether the workstation opened the device: samples are delivered from now on.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The format samples are delivered in, once open.
    pub fn format(&self) -> Option<&AudioFormat> {
        self.open.as_ref().map(|o| &o.format)
    }

    /// The number of frames in each Data PDU, once open.
    pub fn frames_per_packet(&self) -> Option<usize> {
        self.open.as_ref().map(|o| o.frames_per_packet)
    }

    /// The formats agreed with the workstation (what we answered to its Formats PDU).
    pub fn agreed_formats(&self) -> &[AudioFormat] {
        &self.formats
    }

    /// One message from the workstation; returns the replies to send, in order.
    pub fn on_message(&mut self, payload: &[u8]) -> Result<Vec<Vec<u8>>, AudinError> {
        match AudinPdu::decode(payload)? {
            // Whatever the server's version (1 or 2), we answer 1 (see CLIENT_VERSION).
            AudinPdu::Version(_) => Ok(vec![AudinPdu::Version(CLIENT_VERSION).encode()]),
            AudinPdu::Formats { formats, .. } => {
                // The server's formats that we can produce, in the server's order.
                let producible = &self.producible;
                self.formats = formats
                    .into_iter()
                    .filter(|f| f.is_pcm16() && producible.iter().any(|o| same_pcm(o, f)))
                    .collect();
                self.open = None;
                // 3.2.5.1.4: "The client MUST send an Incoming Data PDU before responding
                // to the server with a Sound Formats PDU" (FreeRDP's client does).
                Ok(vec![
                    AudinPdu::DataIncoming.encode(),
                    AudinPdu::Formats {
                        formats: self.formats.clone(),
                        extra: Vec::new(),
                    }
                    .encode(),
                ])
            }
            AudinPdu::Open {
                frames_per_packet,
                initial_format,
                ..
            } => {
                let format = self.pick(initial_format)?;
                let frames = packet_frames(frames_per_packet, format.samples_per_sec);
                self.open = Some(Opened {
                    resampler: Resampler::new(INPUT_RATE, format.samples_per_sec),
                    format,
                    frames_per_packet: frames,
                    pending: Vec::new(),
                });
                // FreeRDP's audin_process_open: Format Change (the same index), then Open
                // Reply with Result 0.
                Ok(vec![
                    AudinPdu::FormatChange(initial_format).encode(),
                    AudinPdu::OpenReply(0).encode(),
                ])
            }
            AudinPdu::FormatChange(index) => {
                let format = self.pick(index)?;
                let open = self
                    .open
                    .as_mut()
                    .ok_or(AudinError::OutOfOrder("a format change before open"))?;
                let rate = format.samples_per_sec;
                if open.format.samples_per_sec != rate {
                    // The same duration per packet at the new rate.
                    let frames = open.frames_per_packet as u64 * u64::from(rate)
                        / u64::from(open.format.samples_per_sec).max(1);
                    open.frames_per_packet =
                        packet_frames(u32::try_from(frames).unwrap_or(0), rate);
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
        let format = self
            .formats
            .get(index as usize)
            .ok_or(AudinError::NoSuchFormat(index))?;
        if !format.is_pcm16() {
            return Err(AudinError::NotPcm);
        }
        Ok(format.clone())
    }

    /// 48 kHz mono samples from the person's microphone: the DataIncoming and Data
    /// PDUs ready to send, in pairs (none until the workstation opened the device, and
    /// none until a whole packet of frames is ready; the rest waits for the next call).
    pub fn send(&mut self, samples: &[i16]) -> Vec<Vec<u8>> {
        let Some(open) = self.open.as_mut() else {
            return Vec::new();
        };
        open.resampler.process(samples, &mut open.pending);
        let mut out = Vec::new();
        let mut start = 0;
        while open.pending.len() - start >= open.frames_per_packet {
            let frames = &open.pending[start..start + open.frames_per_packet];
            start += open.frames_per_packet;
            let mut data =
                Vec::with_capacity(1 + frames.len() * usize::from(open.format.block_align));
            data.push(DATA);
            le_bytes_from_mono(frames, open.format.channels, &mut data);
            // FreeRDP's audin_receive_wave_data: an Incoming Data PDU before each Data PDU.
            out.push(AudinPdu::DataIncoming.encode());
            out.push(data);
        }
        open.pending.drain(..start);
        out
    }
}

/// Frames per Data PDU: the server's number, or 20 ms when it is 0 or over a second.
fn packet_frames(requested: u32, rate: u32) -> usize {
    let twenty_ms = (rate / 50).max(1);
    let frames = match requested {
        0 => twenty_ms,
        n if n > rate => twenty_ms,
        n => n,
    };
    frames as usize
}

fn same_pcm(a: &AudioFormat, b: &AudioFormat) -> bool {
    a.tag == b.tag
        && a.channels == b.channels
        && a.samples_per_sec == b.samples_per_sec
        && a.bits_per_sample == b.bits_per_sample
}

/// The server side (a workstation; Rebond's test workstation runs it): negotiates a
/// PCM format and turns Data PDUs back into samples. It opens the client's first 48 kHz
/// mono format (else any 48 kHz one, else the first 16-bit PCM one) with 20 ms packets.
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
    /// A server offering `offered` (in its order of preference).
    pub fn new(offered: Vec<AudioFormat>) -> Self {
        Self {
            offered,
            client: Vec::new(),
            current: None,
            opened: false,
        }
    }

    /// The first message, when the channel opens: the Version PDU.
    pub fn start(&self) -> Vec<Vec<u8>> {
        vec![AudinPdu::Version(1).encode()]
    }

    /// The format the client sends in, once it confirmed the open.
    pub fn format(&self) -> Option<&AudioFormat> {
        self.current.as_ref().filter(|_| self.opened)
    }

    /// Asks the client to send in its format `index` from now on (the format changes
    /// when the client confirms). Returns the Format Change PDU to send.
    pub fn change_format(&self, index: u32) -> Result<Vec<Vec<u8>>, AudinError> {
        let format = self
            .client
            .get(index as usize)
            .ok_or(AudinError::NoSuchFormat(index))?;
        if !format.is_pcm16() {
            return Err(AudinError::NotPcm);
        }
        Ok(vec![AudinPdu::FormatChange(index).encode()])
    }

    /// One message from the client: the replies to send and, for a Data PDU, the samples.
    pub fn on_message(&mut self, payload: &[u8]) -> Result<ServerStep, AudinError> {
        let mut step = ServerStep::default();
        match AudinPdu::decode(payload)? {
            AudinPdu::Version(_) => {
                step.replies.push(
                    AudinPdu::Formats {
                        formats: self.offered.clone(),
                        extra: Vec::new(),
                    }
                    .encode(),
                );
            }
            AudinPdu::Formats { formats, .. } => {
                // 48 kHz mono first, then any 48 kHz, then the client's first PCM format.
                let pick = formats
                    .iter()
                    .position(|f| f.is_pcm16() && f.samples_per_sec == 48_000 && f.channels == 1)
                    .or_else(|| {
                        formats
                            .iter()
                            .position(|f| f.is_pcm16() && f.samples_per_sec == 48_000)
                    })
                    .or_else(|| formats.iter().position(AudioFormat::is_pcm16))
                    .ok_or(AudinError::NoCommonFormat)?;
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
                self.opened = false;
            }
            // The client confirms the format it now sends in (after Open, or after
            // `change_format`).
            AudinPdu::FormatChange(index) => {
                let format = self
                    .client
                    .get(index as usize)
                    .cloned()
                    .ok_or(AudinError::NoSuchFormat(index))?;
                if !format.is_pcm16() {
                    return Err(AudinError::NotPcm);
                }
                self.current = Some(format);
            }
            AudinPdu::OpenReply(0) => self.opened = true,
            AudinPdu::OpenReply(result) => return Err(AudinError::OpenFailed(result)),
            // Announces a Data PDU, and precedes the client's Formats (3.2.5.1.4).
            AudinPdu::DataIncoming => {}
            AudinPdu::Data(data) => {
                let format = self
                    .format()
                    .ok_or(AudinError::OutOfOrder("data before the device opened"))?;
                if !format.is_pcm16() {
                    return Err(AudinError::NotPcm);
                }
                step.rate = format.samples_per_sec;
                step.samples = mono_from_le_bytes(&data, format.channels);
            }
            AudinPdu::Open { .. } => {
                return Err(AudinError::OutOfOrder("a server message from the client"))
            }
        }
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::WAVE_FORMAT_EXTENSIBLE;

    fn tone(hz: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8_000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 48_000.0).sin()) as i16
            })
            .collect()
    }

    /// Runs the negotiation between `client` and a server offering `offered`.
    fn negotiate_with(
        mut client: AudinClient,
        offered: Vec<AudioFormat>,
    ) -> (AudinClient, AudinServer) {
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

    fn negotiate(offered: Vec<AudioFormat>) -> (AudinClient, AudinServer) {
        negotiate_with(AudinClient::new(), offered)
    }

    fn deliver(
        client: &mut AudinClient,
        server: &mut AudinServer,
        samples: &[i16],
    ) -> (u32, Vec<i16>) {
        let mut received = Vec::new();
        let mut rate = 0;
        let messages = client.send(samples);
        assert!(messages.len().is_multiple_of(2));
        for pair in messages.chunks(2) {
            assert_eq!(pair[0], vec![DATA_INCOMING], "every Data PDU is announced");
            assert_eq!(pair[1][0], DATA);
            assert!(server.on_message(&pair[0]).unwrap().samples.is_empty());
            let step = server.on_message(&pair[1]).unwrap();
            received.extend(step.samples);
            rate = step.rate;
        }
        (rate, received)
    }

    fn hz(samples: &[i16], rate: u32) -> f64 {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count() as f64;
        crossings / 2.0 / (samples.len() as f64 / f64::from(rate))
    }

    #[test]
    fn the_negotiation_goes_as_in_the_specification() {
        let mut client = AudinClient::new();
        let mut server = AudinServer::new(vec![
            AudioFormat::pcm(44_100, 2),
            AudioFormat::pcm(48_000, 1),
        ]);
        let version = server.start();
        assert_eq!(version, vec![vec![0x01, 1, 0, 0, 0]]);
        let reply = client.on_message(&version[0]).unwrap();
        assert_eq!(reply, vec![AudinPdu::Version(CLIENT_VERSION).encode()]);
        let formats = server.on_message(&reply[0]).unwrap().replies;
        let reply = client.on_message(&formats[0]).unwrap();
        assert_eq!(
            reply
                .iter()
                .map(|m| AudinPdu::decode(m).unwrap())
                .collect::<Vec<_>>(),
            vec![
                AudinPdu::DataIncoming,
                AudinPdu::Formats {
                    formats: vec![AudioFormat::pcm(44_100, 2), AudioFormat::pcm(48_000, 1)],
                    extra: vec![]
                },
            ],
            "an Incoming Data PDU first (3.2.5.1.4), then the common formats in the server's order"
        );
        assert!(server.on_message(&reply[0]).unwrap().replies.is_empty());
        let open = server.on_message(&reply[1]).unwrap().replies;
        assert_eq!(
            AudinPdu::decode(&open[0]).unwrap(),
            AudinPdu::Open {
                frames_per_packet: 960,
                initial_format: 1,
                capture: AudioFormat::pcm(48_000, 1)
            },
            "48 kHz preferred, 20 ms packets"
        );
        assert!(client.send(&[0; 960]).is_empty(), "nothing before open");
        let reply = client.on_message(&open[0]).unwrap();
        assert_eq!(
            reply,
            vec![vec![0x07, 1, 0, 0, 0], vec![0x04, 0, 0, 0, 0]],
            "FormatChange(1), OpenReply(0)"
        );
        assert_eq!(client.frames_per_packet(), Some(960));
        assert_eq!(server.format(), None, "not before the open reply");
        for m in reply {
            assert!(server.on_message(&m).unwrap().replies.is_empty());
        }
        assert_eq!(server.format(), Some(&AudioFormat::pcm(48_000, 1)));
    }

    #[test]
    fn a_48k_mono_session_delivers_the_samples_exactly() {
        let offered = vec![
            AudioFormat::pcm(44_100, 2),
            AudioFormat::pcm(48_000, 1),
            AudioFormat::pcm(48_000, 2),
        ];
        let (mut client, mut server) = negotiate(offered);
        assert_eq!(client.format(), Some(&AudioFormat::pcm(48_000, 1)));
        assert_eq!(server.format(), Some(&AudioFormat::pcm(48_000, 1)));
        let input = tone(1_000.0, 4_800);
        // Blocks of any size: 960-frame packets come out, the rest waits.
        let mut received = Vec::new();
        for block in input.chunks(700) {
            let (rate, samples) = deliver(&mut client, &mut server, block);
            if !samples.is_empty() {
                assert_eq!(rate, 48_000);
            }
            received.extend(samples);
        }
        assert_eq!(received, input, "exact to the sample");
    }

    #[test]
    fn a_44k_stereo_session_keeps_the_pitch() {
        let (mut client, mut server) = negotiate(vec![AudioFormat::pcm(44_100, 2)]);
        assert_eq!(server.format(), Some(&AudioFormat::pcm(44_100, 2)));
        assert_eq!(client.frames_per_packet(), Some(882));
        let messages = client.send(&tone(500.0, 960));
        // 960 frames at 48 kHz are 882 at 44.1 kHz: one packet of 882 stereo frames, each
        // sample on both channels.
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].len(), 1 + 882 * 4);
        assert!(
            messages[1][1..].chunks_exact(4).all(|f| f[..2] == f[2..]),
            "left equals right"
        );
        let (rate, received) = deliver(&mut client, &mut server, &tone(500.0, 48_000));
        assert_eq!(rate, 44_100);
        assert!(
            received.len() >= 44_100 - 2 * 882 && received.len() <= 44_100,
            "{} samples",
            received.len()
        );
        let hz = hz(&received, rate);
        assert!((hz - 500.0).abs() < 3.0, "{hz} Hz");
    }

    #[test]
    fn the_server_can_change_the_format_during_capture() {
        let (mut client, mut server) = negotiate(vec![
            AudioFormat::pcm(48_000, 1),
            AudioFormat::pcm(16_000, 1),
        ]);
        assert_eq!(
            client.agreed_formats(),
            &[AudioFormat::pcm(48_000, 1), AudioFormat::pcm(16_000, 1)]
        );
        assert_eq!(server.change_format(7), Err(AudinError::NoSuchFormat(7)));
        let change = server.change_format(1).unwrap();
        let reply = client.on_message(&change[0]).unwrap();
        assert_eq!(
            reply,
            vec![vec![0x07, 1, 0, 0, 0]],
            "the client confirms the same index"
        );
        assert_eq!(client.frames_per_packet(), Some(320), "still 20 ms");
        server.on_message(&reply[0]).unwrap();
        assert_eq!(server.format(), Some(&AudioFormat::pcm(16_000, 1)));
        let (rate, received) = deliver(&mut client, &mut server, &tone(440.0, 48_000));
        assert_eq!(rate, 16_000);
        assert!((hz(&received, rate) - 440.0).abs() < 3.0);
    }

    /// The server's Sound Formats PDU offering `formats`, and the client's replies.
    fn offer(client: &mut AudinClient, formats: Vec<AudioFormat>, extra: Vec<u8>) -> Result<Vec<Vec<u8>>, AudinError> {
        client.on_message(&AudinPdu::Formats { formats, extra }.encode())
    }

    #[test]
    fn formats_that_are_not_pcm16_are_declined() {
        let mut adpcm = AudioFormat::pcm(22_050, 1);
        adpcm.tag = 0x0002;
        let mut client = AudinClient::new();
        client.on_message(&AudinPdu::Version(2).encode()).unwrap();
        let offered = vec![
            adpcm,
            AudioFormat::pcm(16_000, 1),
            AudioFormat::pcm(96_000, 2),
        ];
        let reply = offer(&mut client, offered, vec![]).unwrap();
        assert_eq!(reply[0], vec![DATA_INCOMING]);
        assert_eq!(
            AudinPdu::decode(&reply[1]).unwrap(),
            AudinPdu::Formats {
                formats: vec![AudioFormat::pcm(16_000, 1)],
                extra: vec![]
            }
        );
        // An open naming a format we did not list is refused; nothing is sent before open.
        let open = |i| {
            AudinPdu::Open {
                frames_per_packet: 320,
                initial_format: i,
                capture: AudioFormat::pcm(16_000, 1),
            }
            .encode()
        };
        assert_eq!(
            client.on_message(&open(1)),
            Err(AudinError::NoSuchFormat(1))
        );
        assert!(client.send(&[0; 960]).is_empty());
        assert_eq!(
            client.on_message(&open(0)).unwrap(),
            vec![
                AudinPdu::FormatChange(0).encode(),
                AudinPdu::OpenReply(0).encode()
            ]
        );
        assert_eq!(
            client.send(&[0; 960]).len(),
            2,
            "20 ms at 16 kHz is one packet of 320 frames"
        );
    }

    #[test]
    fn a_client_offers_only_what_it_was_built_to_produce() {
        let mut adpcm = AudioFormat::pcm(8_000, 1);
        adpcm.tag = 0x0002;
        let mut client = AudinClient::with_formats(vec![adpcm, AudioFormat::pcm(16_000, 1)]);
        let offered = vec![
            AudioFormat::pcm(48_000, 1),
            AudioFormat::pcm(16_000, 2),
            AudioFormat::pcm(16_000, 1),
        ];
        let reply = offer(&mut client, offered, vec![1, 2])
            .unwrap();
        assert_eq!(
            AudinPdu::decode(&reply[1]).unwrap(),
            AudinPdu::Formats {
                formats: vec![AudioFormat::pcm(16_000, 1)],
                extra: vec![]
            }
        );
        // A server that finds nothing it likes says so.
        let mut server = AudinServer::new(client_formats());
        let nothing = AudinPdu::Formats {
            formats: vec![],
            extra: vec![],
        }
        .encode();
        assert_eq!(server.on_message(&nothing), Err(AudinError::NoCommonFormat));
    }

    #[test]
    fn absurd_packet_sizes_become_20_ms() {
        for frames_per_packet in [0, 48_001, u32::MAX] {
            let mut client = AudinClient::new();
            client
                .on_message(
                    &AudinPdu::Formats {
                        formats: vec![AudioFormat::pcm(48_000, 1)],
                        extra: vec![],
                    }
                    .encode(),
                )
                .unwrap();
            let open = AudinPdu::Open {
                frames_per_packet,
                initial_format: 0,
                capture: AudioFormat::pcm(48_000, 1),
            };
            client.on_message(&open.encode()).unwrap();
            assert_eq!(client.frames_per_packet(), Some(960), "{frames_per_packet}");
        }
    }

    #[test]
    fn a_windows_format_list_is_read_as_the_specification_shows_it() {
        // [MS-RDPEAI] 4.1.3 (Server Sound Formats PDU, annotated dump): the first three of
        // Windows' 21 formats, NumFormats rewritten from 0x15 to 3 to end the PDU there.
        // cbSizeFormatsPacket is 0x80000000 (arbitrary from a server, ignored).
        #[rustfmt::skip]
        let bytes: Vec<u8> = vec![
            0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80,
            // PCM, 2 channels, 44,100 Hz, 176,400 B/s, align 4, 16 bits, cbSize 0
            0x01, 0x00, 0x02, 0x00, 0x44, 0xac, 0x00, 0x00, 0x10, 0xb1, 0x02, 0x00, 0x04, 0x00, 0x10, 0x00, 0x00, 0x00,
            // MS ADPCM (2), 2 channels, 44,100 Hz, align 2048, 4 bits, cbSize 32
            0x02, 0x00, 0x02, 0x00, 0x44, 0xac, 0x00, 0x00, 0x47, 0xad, 0x00, 0x00, 0x00, 0x08, 0x04, 0x00, 0x20, 0x00,
            0xf4, 0x07, 0x07, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00,
            0xc0, 0x00, 0x40, 0x00, 0xf0, 0x00, 0x00, 0x00, 0xcc, 0x01, 0x30, 0xff, 0x88, 0x01, 0x18, 0xff,
            // IMA ADPCM (0x11), 2 channels, 44,100 Hz, align 2048, 4 bits, cbSize 2
            0x11, 0x00, 0x02, 0x00, 0x44, 0xac, 0x00, 0x00, 0xdb, 0xac, 0x00, 0x00, 0x00, 0x08, 0x04, 0x00, 0x02, 0x00,
            0xf9, 0x07,
        ];
        let AudinPdu::Formats { formats, extra } = AudinPdu::decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(
            formats.iter().map(|f| f.tag).collect::<Vec<_>>(),
            vec![0x0001, 0x0002, 0x0011]
        );
        assert_eq!(formats[1].extra.len(), 32);
        assert!(extra.is_empty());
        // The client answers with the PCM format alone; cbSizeFormatsPacket is the PDU's
        // length (27, no ExtraData): what FreeRDP's audin_process_formats writes too.
        let reply = AudinClient::new().on_message(&bytes).unwrap();
        #[rustfmt::skip]
        let expected = vec![
            vec![0x05],
            vec![
                0x02, 0x01, 0x00, 0x00, 0x00, 0x1b, 0x00, 0x00, 0x00,
                0x01, 0x00, 0x02, 0x00, 0x44, 0xac, 0x00, 0x00, 0x10, 0xb1, 0x02, 0x00, 0x04, 0x00, 0x10, 0x00, 0x00, 0x00,
            ],
        ];
        assert_eq!(reply, expected);
    }

    #[test]
    fn pdus_have_the_layout_of_the_specification() {
        // [MS-RDPEAI] 2.2.2.1 Version PDU: MessageId 0x01, Version u32.
        assert_eq!(AudinPdu::Version(1).encode(), vec![0x01, 1, 0, 0, 0]);
        // 2.2.2.4 Open Reply: 0x04, Result u32; 2.2.2.5 Format Change: 0x07, NewFormat u32.
        assert_eq!(AudinPdu::OpenReply(0).encode(), vec![0x04, 0, 0, 0, 0]);
        assert_eq!(AudinPdu::FormatChange(3).encode(), vec![0x07, 3, 0, 0, 0]);
        // 2.2.3.1 Incoming Data: the id alone; 2.2.3.2 Data: the id, then the samples.
        assert_eq!(AudinPdu::DataIncoming.encode(), vec![0x05]);
        assert_eq!(AudinPdu::Data(vec![1, 2]).encode(), vec![0x06, 1, 2]);
        // 2.2.2.2 from a server with ExtraData: cbSizeFormatsPacket leaves it out.
        let formats = AudinPdu::Formats {
            formats: vec![AudioFormat::pcm(8_000, 1)],
            extra: vec![9, 9],
        };
        assert_eq!(formats.encode()[5..9], [27, 0, 0, 0]);
        assert_eq!(AudinPdu::decode(&formats.encode()), Ok(formats));
        // 2.2.2.3 Open: MessageId, FramesPerPacket, initialFormat, WAVEFORMATEX, here
        // WAVE_FORMAT_EXTENSIBLE with 22 bytes of extra data, as FreeRDP's server writes
        // it (audin_server_send_open: FramesPerPacket 441, 44.1 kHz stereo).
        let mut open = vec![0x03, 0xb9, 0x01, 0, 0, 2, 0, 0, 0];
        open.extend([
            0xfe, 0xff, 2, 0, 0x44, 0xac, 0, 0, 0x10, 0xb1, 2, 0, 4, 0, 16, 0, 22, 0,
        ]);
        open.extend([0u8; 22]);
        match AudinPdu::decode(&open).unwrap() {
            AudinPdu::Open {
                frames_per_packet: 441,
                initial_format: 2,
                capture,
            } => {
                assert_eq!(capture.tag, WAVE_FORMAT_EXTENSIBLE);
                assert_eq!(capture.extra.len(), 22);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(AudinPdu::decode(&open).unwrap().encode(), open);
    }

    #[test]
    fn truncated_and_trailing_bytes_are_refused() {
        let pdus = [
            AudinPdu::Version(2),
            AudinPdu::OpenReply(0),
            AudinPdu::FormatChange(1),
            AudinPdu::Formats {
                formats: vec![AudioFormat::pcm(8_000, 1)],
                extra: vec![],
            },
            AudinPdu::Open {
                frames_per_packet: 1,
                initial_format: 0,
                capture: AudioFormat::pcm(8_000, 1),
            },
        ];
        for pdu in pdus {
            let bytes = pdu.encode();
            assert_eq!(AudinPdu::decode(&bytes), Ok(pdu.clone()));
            for cut in 0..bytes.len() {
                assert!(
                    AudinPdu::decode(&bytes[..cut]).is_err(),
                    "{pdu:?} cut at {cut}"
                );
            }
        }
        assert_eq!(AudinPdu::decode(&[]), Err(AudinError::Truncated));
        assert_eq!(
            AudinPdu::decode(&[0x01, 1, 0, 0, 0, 9]),
            Err(AudinError::Trailing(1))
        );
        assert_eq!(AudinPdu::decode(&[0x05, 0]), Err(AudinError::Trailing(1)));
        assert_eq!(
            AudinPdu::decode(&[0x02, 0xff, 0xff, 0xff, 0xff]),
            Err(AudinError::TooManyFormats(u32::MAX))
        );
        assert_eq!(
            AudinPdu::decode(&[0x09]),
            Err(AudinError::UnknownMessage(0x09))
        );
        assert_eq!(
            AudinPdu::decode(&[0x00]),
            Err(AudinError::UnknownMessage(0x00))
        );
    }

    #[test]
    fn messages_out_of_order_are_refused() {
        let mut client = AudinClient::new();
        assert!(client
            .on_message(&AudinPdu::FormatChange(0).encode())
            .is_err());
        assert!(client
            .on_message(&AudinPdu::Data(vec![0; 4]).encode())
            .is_err());
        let mut server = AudinServer::new(client_formats());
        assert!(matches!(
            server.on_message(&AudinPdu::Data(vec![0; 4]).encode()),
            Err(AudinError::OutOfOrder(_))
        ));
        assert_eq!(
            server.on_message(&AudinPdu::OpenReply(5).encode()),
            Err(AudinError::OpenFailed(5))
        );
    }

    fn any_format() -> impl proptest::strategy::Strategy<Value = AudioFormat> {
        use proptest::prelude::*;
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(
                |(
                    tag,
                    channels,
                    samples_per_sec,
                    avg_bytes_per_sec,
                    block_align,
                    bits_per_sample,
                    extra,
                )| AudioFormat {
                    tag,
                    channels,
                    samples_per_sec,
                    avg_bytes_per_sec,
                    block_align,
                    bits_per_sample,
                    extra,
                },
            )
    }

    fn any_pdu() -> impl proptest::strategy::Strategy<Value = AudinPdu> {
        use proptest::prelude::*;
        prop_oneof![
            any::<u32>().prop_map(AudinPdu::Version),
            (
                proptest::collection::vec(any_format(), 0..5),
                proptest::collection::vec(any::<u8>(), 0..20)
            )
                .prop_map(|(formats, extra)| AudinPdu::Formats { formats, extra }),
            (any::<u32>(), any::<u32>(), any_format()).prop_map(
                |(frames_per_packet, initial_format, capture)| AudinPdu::Open {
                    frames_per_packet,
                    initial_format,
                    capture
                }
            ),
            any::<u32>().prop_map(AudinPdu::OpenReply),
            Just(AudinPdu::DataIncoming),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(AudinPdu::Data),
            any::<u32>().prop_map(AudinPdu::FormatChange),
        ]
    }

    proptest::proptest! {
        #[test]
        fn decoding_and_negotiating_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = AudinPdu::decode(&bytes);
            let _ = AudioFormat::decode(&bytes);
            let mut client = AudinClient::new();
            let _ = client.on_message(&bytes);
            let _ = client.send(&[1, 2, 3]);
            let mut server = AudinServer::new(client_formats());
            let _ = server.on_message(&bytes);
        }

        #[test]
        fn every_pdu_survives_a_round_trip(pdu in any_pdu()) {
            let bytes = pdu.encode();
            proptest::prop_assert_eq!(AudinPdu::decode(&bytes), Ok(pdu));
            for cut in 0..bytes.len() {
                let _ = AudinPdu::decode(&bytes[..cut]);
            }
        }

        #[test]
        fn a_negotiated_session_survives_any_messages(
            pdus in proptest::collection::vec(any_pdu(), 0..12),
            samples in proptest::collection::vec(proptest::num::i16::ANY, 0..2_000),
        ) {
            let (mut client, mut server) = negotiate(client_formats());
            for pdu in pdus {
                let bytes = pdu.encode();
                let _ = client.on_message(&bytes);
                let _ = server.on_message(&bytes);
                for m in client.send(&samples) {
                    let _ = server.on_message(&m);
                }
            }
        }
    }
}
