//! 16-bit PCM: bytes to samples, channels to mono and back, and a resampler.
//!
//! Samples are signed 16-bit, little-endian on the wire, channels interleaved
//! (left, right, left, right...), as WAVE_FORMAT_PCM carries them.

/// Little-endian 16-bit samples. A trailing odd byte is ignored.
pub fn samples_from_le_bytes(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]))
        .collect()
}

/// Samples as little-endian bytes, appended to `out`.
pub fn le_bytes_from_samples(samples: &[i16], out: &mut Vec<u8>) {
    out.reserve(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

/// Interleaved samples with `channels` channels, as mono (the channels averaged). A
/// trailing partial frame is ignored; 0 channels counts as 1.
pub fn mono_from_interleaved(samples: &[i16], channels: u16) -> Vec<i16> {
    let channels = usize::from(channels.max(1));
    samples
        .chunks_exact(channels)
        .map(|frame| (frame.iter().map(|&s| i32::from(s)).sum::<i32>() / channels as i32) as i16)
        .collect()
}

/// Mono samples as interleaved ones, the sample repeated on each of `channels`.
pub fn interleaved_from_mono(samples: &[i16], channels: u16) -> Vec<i16> {
    samples
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, usize::from(channels)))
        .collect()
}

/// Little-endian interleaved 16-bit samples with `channels` channels, as mono (the
/// channels averaged). A trailing partial frame is ignored.
pub fn mono_from_le_bytes(bytes: &[u8], channels: u16) -> Vec<i16> {
    let channels = usize::from(channels.max(1));
    bytes
        .chunks_exact(2 * channels)
        .map(|frame| {
            let sum: i32 = frame
                .chunks_exact(2)
                .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
                .sum();
            (sum / channels as i32) as i16
        })
        .collect()
}

/// Mono samples as little-endian interleaved bytes, the sample repeated on each channel.
pub fn le_bytes_from_mono(samples: &[i16], channels: u16, out: &mut Vec<u8>) {
    out.reserve(samples.len() * 2 * usize::from(channels));
    for s in samples {
        for _ in 0..channels {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
}

/// Linear-interpolation resampler for one channel. Keeps its position and the last
/// sample between calls, so a stream cut into blocks of any size resamples exactly as
/// it would whole (positions are exact fractions, no rounding drift). Good for voice.
#[derive(Debug, Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    /// Position of the next output sample in input samples, times `to`, counted from
    /// the last sample of the previous block (index 0 of `[last, block...]`).
    position: u64,
    last: i16,
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Self {
        let (from, to) = (from.max(1), to.max(1));
        Self {
            from,
            to,
            position: u64::from(to),
            last: 0,
        }
    }

    pub fn from_rate(&self) -> u32 {
        self.from
    }

    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Resamples `input`, appending to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.from == self.to {
            out.extend_from_slice(input);
            return;
        }
        if input.is_empty() {
            return;
        }
        let (from, to) = (u64::from(self.from), u64::from(self.to));
        let end = input.len() as u64 * to;
        out.reserve((end / from) as usize + 1);
        while self.position < end {
            let i = (self.position / to) as usize;
            let frac = (self.position % to) as f64 / to as f64;
            let a = if i == 0 { self.last } else { input[i - 1] };
            let b = input[i];
            out.push((f64::from(a) + (f64::from(b) - f64::from(a)) * frac).round() as i16);
            self.position += from;
        }
        self.position -= end;
        self.last = input[input.len() - 1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (10_000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    fn zero_crossings(s: &[i16]) -> usize {
        s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    #[test]
    fn stereo_bytes_average_to_mono_and_back() {
        let bytes = [0x10, 0x00, 0x30, 0x00, 0xff, 0xff, 0x01, 0x00, 0x07];
        assert_eq!(mono_from_le_bytes(&bytes, 2), vec![0x20, 0]);
        let mut out = Vec::new();
        le_bytes_from_mono(&[1, -2], 2, &mut out);
        assert_eq!(out, vec![1, 0, 1, 0, 0xfe, 0xff, 0xfe, 0xff]);
    }

    #[test]
    fn resampling_keeps_the_pitch_and_the_length_whatever_the_blocks() {
        for (from, to) in [
            (44_100, 48_000),
            (48_000, 16_000),
            (8_000, 48_000),
            (48_000, 44_100),
        ] {
            let input = tone(440.0, from, from as usize); // one second
            let mut whole = Vec::new();
            Resampler::new(from, to).process(&input, &mut whole);
            let mut blocks = Vec::new();
            let mut r = Resampler::new(from, to);
            for b in input.chunks(333) {
                r.process(b, &mut blocks);
            }
            assert_eq!(whole, blocks, "{from} -> {to}: blocks change nothing");
            // Up to one input sample's worth waits for the next block.
            let slack = i64::from(to / from) + 1;
            assert!(
                (whole.len() as i64 - i64::from(to)).abs() <= slack,
                "{from} -> {to}: {} samples",
                whole.len()
            );
            let hz = zero_crossings(&whole) as f64 / 2.0;
            assert!((hz - 440.0).abs() <= 2.0, "{from} -> {to}: {hz} Hz");
        }
    }

    #[test]
    fn samples_and_channels_convert_both_ways() {
        let mut bytes = Vec::new();
        le_bytes_from_samples(&[1, -2, i16::MAX, i16::MIN], &mut bytes);
        assert_eq!(bytes, vec![1, 0, 0xfe, 0xff, 0xff, 0x7f, 0x00, 0x80]);
        assert_eq!(
            samples_from_le_bytes(&bytes),
            vec![1, -2, i16::MAX, i16::MIN]
        );
        assert_eq!(
            samples_from_le_bytes(&[1, 0, 9]),
            vec![1],
            "an odd byte is ignored"
        );
        let stereo = interleaved_from_mono(&[5, -7], 2);
        assert_eq!(stereo, vec![5, 5, -7, -7]);
        assert_eq!(mono_from_interleaved(&stereo, 2), vec![5, -7]);
        assert_eq!(
            mono_from_interleaved(&[i16::MAX, i16::MAX, i16::MIN, i16::MIN], 2),
            vec![i16::MAX, i16::MIN]
        );
        assert_eq!(
            mono_from_interleaved(&[4, 2, 9], 0),
            vec![4, 2, 9],
            "0 channels counts as 1"
        );
        // The byte forms agree with the sample forms.
        let mut bytes = Vec::new();
        le_bytes_from_mono(&[5, -7], 2, &mut bytes);
        assert_eq!(samples_from_le_bytes(&bytes), stereo);
        assert_eq!(mono_from_le_bytes(&bytes, 2), vec![5, -7]);
    }

    #[test]
    fn block_boundaries_make_no_click() {
        // A slow ramp resampled in blocks of one sample: every step stays small.
        let ramp: Vec<i16> = (0..4_410).map(|i| (i * 7) as i16).collect();
        let mut r = Resampler::new(44_100, 48_000);
        let mut out = Vec::new();
        for s in &ramp {
            r.process(std::slice::from_ref(s), &mut out);
        }
        assert_eq!(out[0], 0);
        assert!(
            out.windows(2).all(|w| (0..=7).contains(&(w[1] - w[0]))),
            "monotonic, no jump"
        );
    }

    #[test]
    fn same_rate_is_a_copy() {
        let mut out = Vec::new();
        Resampler::new(48_000, 48_000).process(&[1, 2, 3], &mut out);
        assert_eq!(out, vec![1, 2, 3]);
    }
}
