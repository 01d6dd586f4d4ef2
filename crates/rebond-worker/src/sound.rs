//! Sound in the worker: the workstation's sound becomes Opus for the page, the page's
//! Opus becomes PCM for the workstation.
//!
//! INVARIANT: sound is decoded and re-encoded here in both directions, so neither side
//! can pass anything but sound through the worker; a packet that does not decode as
//! Opus is dropped and counted, never forwarded.
//!
//! No sockets and no clocks: the main loop passes the time in.

use rebond_audio::pcm::Resampler;
use rebond_wire::{Downlink, SOUND_FRAME_SAMPLES, SOUND_SAMPLE_RATE};

/// Largest Opus packet we produce (20 ms at up to 128 kbit/s fits in 320 bytes).
const MAX_PACKET: usize = 400;
/// Most audio one microphone packet may carry: Opus allows 120 ms.
const MAX_PACKET_SAMPLES: usize = 5_760;
/// How far the microphone may run ahead of real time before packets are dropped.
const MICROPHONE_AHEAD_MS: u64 = 200;

/// Bitrates the administrator may choose, bits per second.
pub const BITRATE_RANGE: std::ops::RangeInclusive<u32> = 6_000..=128_000;

/// The workstation's sound, to 20 ms Opus packets for the page.
pub struct Speaker {
    encoder: opus::Encoder,
    /// Resampling to 48 kHz, for the rate the workstation plays at.
    resampler: Option<(u32, Resampler)>,
    pending: Vec<i16>,
    fresh: bool,
}

impl Speaker {
    pub fn new(bitrate: u32) -> Result<Self, String> {
        let mut encoder = opus::Encoder::new(SOUND_SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)
            .map_err(|e| format!("cannot start the Opus encoder: {e}"))?;
        let bitrate = bitrate.clamp(*BITRATE_RANGE.start(), *BITRATE_RANGE.end());
        encoder.set_bitrate(opus::Bitrate::Bits(bitrate as i32)).map_err(|e| e.to_string())?;
        // Complexity 5 costs half the CPU of 10 for a difference nobody hears on a call.
        encoder.set_complexity(5).map_err(|e| e.to_string())?;
        Ok(Self { encoder, resampler: None, pending: Vec::with_capacity(2 * SOUND_FRAME_SAMPLES), fresh: true })
    }

    /// Sound the workstation played: mono samples at `rate`. Returns the packets ready.
    pub fn push(&mut self, rate: u32, samples: &[i16]) -> Vec<Downlink> {
        if rate == SOUND_SAMPLE_RATE {
            self.pending.extend_from_slice(samples);
        } else {
            if self.resampler.as_ref().is_none_or(|(r, _)| *r != rate) {
                self.resampler = Some((rate, Resampler::new(rate, SOUND_SAMPLE_RATE)));
            }
            let (_, resampler) = self.resampler.as_mut().expect("set above");
            resampler.process(samples, &mut self.pending);
        }
        let mut out = Vec::new();
        while self.pending.len() >= SOUND_FRAME_SAMPLES {
            let frame: Vec<i16> = self.pending.drain(..SOUND_FRAME_SAMPLES).collect();
            out.extend(self.encode(&frame));
        }
        out
    }

    /// The workstation stopped playing: what is left goes out padded with silence, and
    /// the next packet starts a new stream.
    pub fn close(&mut self) -> Vec<Downlink> {
        let mut out = Vec::new();
        if !self.pending.is_empty() {
            let mut frame = std::mem::take(&mut self.pending);
            frame.resize(SOUND_FRAME_SAMPLES, 0);
            out.extend(self.encode(&frame));
        }
        self.fresh = true;
        self.resampler = None;
        out
    }

    fn encode(&mut self, frame: &[i16]) -> Option<Downlink> {
        match self.encoder.encode_vec(frame, MAX_PACKET) {
            Ok(packet) => Some(Downlink::Speaker { fresh: std::mem::replace(&mut self.fresh, false), packet }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode the workstation's sound");
                None
            }
        }
    }
}

/// The page's microphone: Opus packets to 48 kHz mono PCM, paced to real time.
pub struct Microphone {
    decoder: opus::Decoder,
    pcm: Vec<i16>,
    /// Samples accepted since `started_ms`, to keep a page from sending faster than
    /// a microphone records.
    accepted: u64,
    started_ms: Option<u64>,
    pub dropped: u64,
}

/// Why a microphone packet was not delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Not Opus: logged once by the caller and counted.
    Undecodable(String),
    /// More sound than real time allows.
    TooFast,
}

impl Microphone {
    pub fn new() -> Result<Self, String> {
        let decoder = opus::Decoder::new(SOUND_SAMPLE_RATE, opus::Channels::Mono)
            .map_err(|e| format!("cannot start the Opus decoder: {e}"))?;
        Ok(Self { decoder, pcm: vec![0; MAX_PACKET_SAMPLES], accepted: 0, started_ms: None, dropped: 0 })
    }

    /// Decodes one packet received at `now_ms` (any monotonic clock, milliseconds).
    pub fn decode(&mut self, packet: &[u8], now_ms: u64) -> Result<&[i16], Dropped> {
        // An empty packet would make libopus invent sound (loss concealment).
        if packet.is_empty() {
            self.dropped += 1;
            return Err(Dropped::Undecodable("empty packet".into()));
        }
        let n = match self.decoder.decode(packet, &mut self.pcm, false) {
            Ok(n) => n,
            Err(e) => {
                self.dropped += 1;
                return Err(Dropped::Undecodable(e.to_string()));
            }
        };
        let rate = u64::from(SOUND_SAMPLE_RATE) / 1000;
        let started = *self.started_ms.get_or_insert(now_ms);
        let allowed = (now_ms - started + MICROPHONE_AHEAD_MS) * rate;
        let real_time = (now_ms - started) * rate;
        if self.accepted + n as u64 > allowed {
            self.dropped += 1;
            return Err(Dropped::TooFast);
        }
        // After a pause (microphone muted), pacing restarts from now.
        self.accepted = self.accepted.max(real_time.saturating_sub(MICROPHONE_AHEAD_MS * rate)) + n as u64;
        Ok(&self.pcm[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, rate: u32, n: usize) -> Vec<i16> {
        (0..n).map(|i| (8000.0 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin()) as i16).collect()
    }

    fn packets(out: Vec<Downlink>) -> Vec<(bool, Vec<u8>)> {
        out.into_iter()
            .map(|m| match m {
                Downlink::Speaker { fresh, packet } => (fresh, packet),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn speaker_sound_round_trips_through_opus_at_voice_bitrate() {
        let mut speaker = Speaker::new(24_000).unwrap();
        let mut mic = Microphone::new().unwrap();
        // One second at 44.1 kHz, delivered in uneven blocks as a workstation would.
        let input = tone(440.0, 44_100, 44_100);
        let mut out = Vec::new();
        for block in input.chunks(1_234) {
            out.extend(packets(speaker.push(44_100, block)));
        }
        out.extend(packets(speaker.close()));
        assert!(out[0].0 && out[1..].iter().all(|(fresh, _)| !fresh), "only the first packet is fresh");
        assert!((49..=51).contains(&out.len()), "{} packets of 20 ms for one second", out.len());
        let bytes: usize = out.iter().map(|(_, p)| p.len()).sum();
        assert!(bytes <= 24_000 / 8 * 11 / 10, "{bytes} bytes for one second at 24 kbit/s");
        let mut decoded = Vec::new();
        for (i, (_, p)) in out.iter().enumerate() {
            decoded.extend_from_slice(mic.decode(p, i as u64 * 20).unwrap());
        }
        // The tone survives: most energy at 440 Hz, by zero crossings over the middle.
        let middle = &decoded[12_000..36_000];
        let crossings = middle.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        let hz = crossings as f32 / 2.0 / 0.5;
        assert!((hz - 440.0).abs() < 10.0, "{hz} Hz");
    }

    #[test]
    fn a_new_stream_after_close_is_fresh() {
        let mut speaker = Speaker::new(32_000).unwrap();
        assert!(packets(speaker.push(48_000, &tone(300.0, 48_000, 960)))[0].0);
        speaker.close();
        assert!(packets(speaker.push(48_000, &tone(300.0, 48_000, 960)))[0].0);
    }

    #[test]
    fn the_microphone_drops_what_is_not_opus_and_what_is_faster_than_real_time() {
        let mut speaker = Speaker::new(24_000).unwrap();
        let mut mic = Microphone::new().unwrap();
        // An empty packet is not sound; 0x03 announces a frame count that is missing.
        assert!(matches!(mic.decode(&[], 0), Err(Dropped::Undecodable(_))));
        assert!(matches!(mic.decode(&[0x03], 0), Err(Dropped::Undecodable(_))));
        let packet = packets(speaker.push(48_000, &tone(500.0, 48_000, 960))).remove(0).1;
        // 10 packets (200 ms) at once are fine, the next ones are too fast.
        for _ in 0..10 {
            assert!(mic.decode(&packet, 1_000).is_ok());
        }
        assert_eq!(mic.decode(&packet, 1_000), Err(Dropped::TooFast));
        // Time passes: sound is accepted again.
        assert!(mic.decode(&packet, 1_100).is_ok());
        // After a long pause (muted), a burst is again allowed its 200 ms.
        for _ in 0..10 {
            assert!(mic.decode(&packet, 60_000).is_ok());
        }
        assert_eq!(mic.dropped, 3);
    }
}
