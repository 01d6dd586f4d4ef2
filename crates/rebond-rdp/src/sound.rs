//! The workstation's sound channels, when the person's policy allows them: its sound
//! output ([MS-RDPEA], the `rdpsnd` static channel, IronRDP's client) and its sound
//! input ([MS-RDPEAI], the `AUDIO_INPUT` dynamic channel: IronRDP has no client for
//! it, so ours wraps the sans-IO [`rebond_audio::audin::AudinClient`]).
//!
//! Both carry PCM only: the worker decodes and re-encodes everything that crosses.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use ironrdp_core::{Encode, EncodeResult, WriteCursor};
use ironrdp_dvc::{DvcClientProcessor, DvcEncode, DvcMessage, DvcProcessor};
use ironrdp_pdu::PduResult;
use ironrdp_rdpsnd::client::RdpsndClientHandler;
use ironrdp_rdpsnd::pdu::{AudioFormat, PitchPdu, VolumePdu, WaveFormat};
use rebond_audio::audin::AudinClient;

/// Which sound channels to open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoundChannels {
    /// The workstation's sound plays in the browser.
    pub speaker: bool,
    /// The browser's microphone reaches the workstation.
    pub microphone: bool,
}

/// Sound the workstation played, as the worker takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeakerSound {
    /// Mono samples at `rate`.
    Samples { rate: u32, samples: Vec<i16> },
    /// The workstation stopped playing.
    Closed,
}

/// Where the `rdpsnd` handler leaves what it received, until the session takes it.
pub type SpeakerQueue = Arc<Mutex<Vec<SpeakerSound>>>;

/// Receives the workstation's sound: PCM, 16 bits, mono or stereo, 8 to 48 kHz (what
/// Windows offers; anything else is declined during negotiation).
#[derive(Debug)]
pub struct SpeakerTap {
    queue: SpeakerQueue,
}

impl SpeakerTap {
    pub fn new() -> (Self, SpeakerQueue) {
        let queue = SpeakerQueue::default();
        (Self { queue: queue.clone() }, queue)
    }

    fn usable(f: &AudioFormat) -> bool {
        f.format == WaveFormat::PCM
            && f.bits_per_sample == 16
            && (1..=2).contains(&f.n_channels)
            && (8_000..=48_000).contains(&f.n_samples_per_sec)
    }
}

impl RdpsndClientHandler for SpeakerTap {
    fn get_formats(&self) -> &[AudioFormat] {
        &[]
    }

    /// The workstation's PCM formats, 48 kHz first (no resampling), then by rate, mono
    /// before stereo (half the bytes on the office network, and a call is mono).
    fn choose_formats(&self, server_formats: &[AudioFormat]) -> Vec<AudioFormat> {
        let mut usable: Vec<AudioFormat> = server_formats.iter().filter(|f| Self::usable(f)).cloned().collect();
        usable.sort_by_key(|f| (f.n_samples_per_sec != 48_000, std::cmp::Reverse(f.n_samples_per_sec), f.n_channels));
        tracing::info!(offered = server_formats.len(), usable = usable.len(), "the workstation offered its sound formats");
        usable
    }

    fn wave(&mut self, format: &AudioFormat, _ts: u32, data: Cow<'_, [u8]>) {
        if !Self::usable(format) {
            return;
        }
        let samples = rebond_audio::pcm::mono_from_le_bytes(&data, format.n_channels);
        if let Ok(mut q) = self.queue.lock() {
            q.push(SpeakerSound::Samples { rate: format.n_samples_per_sec, samples });
        }
    }

    fn set_volume(&mut self, _volume: VolumePdu) {}

    fn set_pitch(&mut self, _pitch: PitchPdu) {}

    fn close(&mut self) {
        if let Ok(mut q) = self.queue.lock() {
            q.push(SpeakerSound::Closed);
        }
    }
}

/// The `AUDIO_INPUT` dynamic channel, client side.
pub struct MicrophoneChannel {
    client: AudinClient,
    /// A message the workstation sent that we do not understand is logged once.
    warned: bool,
}

impl MicrophoneChannel {
    pub fn new() -> Self {
        Self { client: AudinClient::new(), warned: false }
    }

    /// Messages carrying 48 kHz mono samples to the workstation, once it opened the
    /// device; nothing before.
    pub fn send(&mut self, samples: &[i16]) -> Vec<DvcMessage> {
        dvc_messages(self.client.send(samples))
    }

    pub fn is_open(&self) -> bool {
        self.client.is_open()
    }
}

impl Default for MicrophoneChannel {
    fn default() -> Self {
        Self::new()
    }
}

ironrdp_core::impl_as_any!(MicrophoneChannel);

impl DvcProcessor for MicrophoneChannel {
    fn channel_name(&self) -> &str {
        rebond_policy::AUDIO_INPUT
    }

    fn start(&mut self, _channel_id: u32) -> PduResult<Vec<DvcMessage>> {
        Ok(Vec::new()) // the workstation speaks first (its version)
    }

    fn process(&mut self, _channel_id: u32, payload: &[u8]) -> PduResult<Vec<DvcMessage>> {
        let was_open = self.client.is_open();
        match self.client.on_message(payload) {
            Ok(replies) => {
                if let (false, Some(f)) = (was_open, self.client.format()) {
                    tracing::info!(rate = f.samples_per_sec, channels = f.channels, "the workstation opened its microphone");
                }
                Ok(dvc_messages(replies))
            }
            // Only the microphone is at stake: the message is ignored and the session goes on.
            Err(e) => {
                if !std::mem::replace(&mut self.warned, true) {
                    tracing::warn!(error = %e, "the workstation sent an audio-input message we cannot use; ignored");
                }
                Ok(Vec::new())
            }
        }
    }
}

impl DvcClientProcessor for MicrophoneChannel {}

/// Already encoded channel messages (from a sans-IO state machine), for IronRDP's
/// dynamic channel layer.
pub fn dvc_messages(messages: Vec<Vec<u8>>) -> Vec<DvcMessage> {
    messages.into_iter().map(|m| Box::new(RawMessage(m)) as DvcMessage).collect()
}

/// An already encoded channel message.
struct RawMessage(Vec<u8>);

impl Encode for RawMessage {
    fn encode(&self, dst: &mut WriteCursor<'_>) -> EncodeResult<()> {
        ironrdp_core::ensure_size!(in: dst, size: self.0.len());
        dst.write_slice(&self.0);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "AUDIO_INPUT message"
    }

    fn size(&self) -> usize {
        self.0.len()
    }
}

impl DvcEncode for RawMessage {}

#[cfg(test)]
mod tests {
    use ironrdp_dvc::DvcProcessor as _;

    use super::*;

    #[test]
    fn a_message_the_microphone_channel_cannot_use_is_ignored_not_fatal() {
        let mut channel = MicrophoneChannel::new();
        assert!(channel.process(1, &[0x09, 1, 2]).unwrap().is_empty(), "unknown message id");
        assert!(channel.process(1, &[]).unwrap().is_empty(), "empty message");
        // The channel still negotiates afterwards.
        assert_eq!(channel.process(1, &rebond_audio::audin::AudinPdu::Version(2).encode()).unwrap().len(), 1);
    }
}
