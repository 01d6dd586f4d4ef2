//! Test tones: a beep generator (the sound test workstation plays it, and a WAV of it
//! feeds Chromium's fake microphone) and the analysis the sound tests run on what came
//! through: level, frequency, onsets.
//!
//! Levels are dBFS with a full-scale sine at 0 dBFS (peak convention): a sine of
//! amplitude `A` (as a fraction of 32768) is `20·log10(A)` dBFS, whatever the function.

use std::f64::consts::PI;
use std::path::Path;

/// The lowest level any function here reports (silence), instead of minus infinity.
pub const FLOOR_DBFS: f32 = -200.0;

/// A beep pattern: `beep_ms` of a sine at `hz`, then `gap_ms` of silence, repeated.
/// The sine's phase runs on through the gaps (one continuous oscillator, gated), so
/// every block joins the next without a click.
#[derive(Debug, Clone)]
pub struct Beeps {
    rate: u32,
    amplitude: f64,
    step: f64,
    phase: f64,
    /// Samples in one beep, and in one beep plus gap.
    on: u64,
    period: u64,
    /// Samples generated so far.
    n: u64,
}

impl Beeps {
    pub fn new(rate: u32, hz: f32, level_dbfs: f32, beep_ms: u32, gap_ms: u32) -> Self {
        let on = u64::from(rate) * u64::from(beep_ms) / 1000;
        let period = (u64::from(rate) * u64::from(beep_ms + gap_ms) / 1000).max(1);
        Self {
            rate,
            amplitude: 32767.0 * 10f64.powf(f64::from(level_dbfs) / 20.0),
            step: 2.0 * PI * f64::from(hz) / f64::from(rate),
            phase: 0.0,
            on,
            period,
            n: 0,
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Samples generated so far.
    pub fn position(&self) -> u64 {
        self.n
    }

    /// The next `count` samples, and the offsets (into them) where a beep starts.
    pub fn next_block(&mut self, count: usize) -> (Vec<i16>, Vec<usize>) {
        let mut samples = Vec::with_capacity(count);
        let mut onsets = Vec::new();
        for i in 0..count {
            let k = self.n % self.period;
            if k == 0 && self.on > 0 {
                onsets.push(i);
            }
            let v = if k < self.on { self.amplitude * self.phase.sin() } else { 0.0 };
            samples.push(v.round().clamp(-32768.0, 32767.0) as i16);
            self.phase += self.step;
            if self.phase >= 2.0 * PI {
                self.phase -= 2.0 * PI;
            }
            self.n += 1;
        }
        (samples, onsets)
    }
}

/// RMS level of `samples`, dBFS (a full-scale sine is 0 dBFS, so a full-scale square
/// wave is +3). [`FLOOR_DBFS`] for silence or no samples.
pub fn rms_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return FLOOR_DBFS;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / samples.len() as f64).sqrt() / 32768.0;
    // A sine's RMS is its amplitude / sqrt(2): +3.01 dB puts a sine at its peak level.
    to_db(rms * std::f64::consts::SQRT_2)
}

/// Level of the component at `hz` in `samples`, dBFS (Goertzel over a Hann window:
/// a sine of amplitude `A` at `hz` reads `20·log10(A)`; other frequencies a bin or
/// more away read far lower).
pub fn goertzel_dbfs(samples: &[i16], rate: u32, hz: f32) -> f32 {
    let n = samples.len();
    if n < 2 || rate == 0 {
        return FLOOR_DBFS;
    }
    let w = 2.0 * PI * f64::from(hz) / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2, mut wsum) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &x) in samples.iter().enumerate() {
        let hann = 0.5 - 0.5 * (2.0 * PI * i as f64 / (n - 1) as f64).cos();
        wsum += hann;
        let s0 = f64::from(x) / 32768.0 * hann + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    to_db(2.0 * power.sqrt() / wsum)
}

/// The strongest frequency between 100 and 4000 Hz, to 1 Hz: a 10 Hz scan of the power
/// averaged over 50 ms pieces (wide enough peaks for a 10 Hz grid), then a 1 Hz scan
/// around the best over the first second. `None` for silence (nothing above -90 dBFS).
pub fn dominant_hz(samples: &[i16], rate: u32) -> Option<f32> {
    let samples = &samples[..samples.len().min(rate as usize)];
    let piece = (rate as usize / 20).max(2);
    let averaged = |hz: f32| {
        let chunks: Vec<&[i16]> = samples.chunks(piece).filter(|c| c.len() == piece).collect();
        if chunks.is_empty() {
            return goertzel_dbfs(samples, rate, hz);
        }
        let power: f64 = chunks.iter().map(|c| 10f64.powf(f64::from(goertzel_dbfs(c, rate, hz)) / 10.0)).sum();
        to_db((power / chunks.len() as f64).sqrt())
    };
    let best = |freqs: &mut dyn Iterator<Item = u32>, level: &dyn Fn(f32) -> f32| {
        freqs.map(|f| (f, level(f as f32))).max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((0, FLOOR_DBFS))
    };
    let (coarse, level) = best(&mut (100..=4000).step_by(10), &averaged);
    if level < -90.0 {
        return None;
    }
    let (fine, _) = best(&mut (coarse.saturating_sub(10)..=coarse + 10), &|hz| goertzel_dbfs(samples, rate, hz));
    Some(fine as f32)
}

/// Where sounds start: the index of each sample whose magnitude reaches
/// `threshold_dbfs` (a peak level) after at least `min_gap_ms` with none that loud.
pub fn onsets(samples: &[i16], rate: u32, threshold_dbfs: f32, min_gap_ms: u32) -> Vec<usize> {
    let threshold = 32768.0 * 10f64.powf(f64::from(threshold_dbfs) / 20.0);
    let gap = (u64::from(rate) * u64::from(min_gap_ms) / 1000) as usize;
    let mut out = Vec::new();
    let mut last_loud: Option<usize> = None;
    for (i, &s) in samples.iter().enumerate() {
        if f64::from(s).abs() >= threshold {
            if last_loud.is_none_or(|l| i - l > gap) {
                out.push(i);
            }
            last_loud = Some(i);
        }
    }
    out
}

/// Writes a 16-bit mono WAV file of [`Beeps`] (for Chromium's
/// `--use-file-for-fake-audio-capture`).
pub fn write_beeps_wav(
    path: &Path,
    rate: u32,
    hz: f32,
    level_dbfs: f32,
    beep_ms: u32,
    gap_ms: u32,
    seconds: f32,
) -> std::io::Result<()> {
    let count = (rate as f32 * seconds).round() as usize;
    let (samples, _) = Beeps::new(rate, hz, level_dbfs, beep_ms, gap_ms).next_block(count);
    write_wav(path, rate, &samples)
}

/// Writes 16-bit mono PCM samples as a WAV file.
pub fn write_wav(path: &Path, rate: u32, samples: &[i16]) -> std::io::Result<()> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, out)
}

fn to_db(amplitude: f64) -> f32 {
    if amplitude <= 0.0 {
        return FLOOR_DBFS;
    }
    ((20.0 * amplitude.log10()) as f32).max(FLOOR_DBFS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, dbfs: f64, n: usize) -> Vec<i16> {
        let a = 32767.0 * 10f64.powf(dbfs / 20.0);
        (0..n).map(|i| (a * (2.0 * PI * hz * i as f64 / f64::from(rate)).sin()).round() as i16).collect()
    }

    #[test]
    fn rms_of_a_sine_reads_its_peak_level() {
        assert!((rms_dbfs(&sine(48_000, 440.0, -12.0, 48_000)) + 12.0).abs() < 0.1);
        assert!((rms_dbfs(&sine(48_000, 1000.0, 0.0, 4_800)) - 0.0).abs() < 0.1);
        assert_eq!(rms_dbfs(&[0; 100]), FLOOR_DBFS);
        assert_eq!(rms_dbfs(&[]), FLOOR_DBFS);
    }

    #[test]
    fn goertzel_measures_the_tone_and_rejects_others() {
        let s = sine(48_000, 660.0, -12.0, 9_600);
        let at = goertzel_dbfs(&s, 48_000, 660.0);
        assert!((at + 12.0).abs() < 0.3, "{at}");
        let off = goertzel_dbfs(&s, 48_000, 1000.0);
        assert!(off < -60.0, "{off}");
        // Two tones: each reads its own level.
        let mix: Vec<i16> =
            sine(44_100, 500.0, -20.0, 8_820).iter().zip(sine(44_100, 2000.0, -10.0, 8_820)).map(|(a, b)| a + b).collect();
        assert!((goertzel_dbfs(&mix, 44_100, 500.0) + 20.0).abs() < 0.3);
        assert!((goertzel_dbfs(&mix, 44_100, 2000.0) + 10.0).abs() < 0.3);
    }

    #[test]
    fn dominant_frequency_of_tones_and_silence() {
        assert_eq!(dominant_hz(&sine(48_000, 660.0, -12.0, 24_000), 48_000), Some(660.0));
        assert_eq!(dominant_hz(&sine(16_000, 1234.0, -30.0, 16_000), 16_000), Some(1234.0));
        assert_eq!(dominant_hz(&[0; 4_800], 48_000), None);
    }

    #[test]
    fn onsets_of_a_beep_pattern() {
        let rate = 48_000;
        let (mut s, expected) = Beeps::new(rate, 660.0, -12.0, 100, 400).next_block(rate as usize * 2);
        // Leading silence shifts every onset.
        let lead = 1_000;
        s.splice(0..0, std::iter::repeat_n(0, lead));
        let found = onsets(&s, rate, -40.0, 50);
        assert_eq!(found.len(), 4);
        assert_eq!(expected, vec![0, 24_000, 48_000, 72_000]);
        for (f, e) in found.iter().zip(&expected) {
            // The first samples of a sine starting at phase 0 are tiny: within 0.2 ms.
            assert!(f - (e + lead) < 10, "{f} vs {e}");
        }
        assert!(onsets(&[0; 1000], rate, -40.0, 50).is_empty());
    }

    #[test]
    fn beeps_keep_a_continuous_phase_and_their_level() {
        let mut b = Beeps::new(48_000, 1000.0, -6.0, 1000, 0);
        let (a, _) = b.next_block(960);
        let (c, _) = b.next_block(960);
        let joined: Vec<i16> = a.iter().chain(&c).copied().collect();
        let whole = Beeps::new(48_000, 1000.0, -6.0, 1000, 0).next_block(1920).0;
        assert_eq!(joined, whole);
        assert!((rms_dbfs(&whole) + 6.0).abs() < 0.1);
        assert_eq!(b.position(), 1920);
    }

    #[test]
    fn wav_file_round_trip() {
        let dir = crate::temp_dir("tone-wav");
        let path = dir.join("beeps.wav");
        write_beeps_wav(&path, 48_000, 660.0, -12.0, 200, 300, 1.0).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 48_000);
        assert_eq!(u32::from_le_bytes(bytes[40..44].try_into().unwrap()), 96_000);
        let samples: Vec<i16> = bytes[44..].chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
        assert_eq!(samples.len(), 48_000);
        assert_eq!(onsets(&samples, 48_000, -40.0, 100), vec![1, 24_001]);
        assert_eq!(dominant_hz(&samples[..9_600], 48_000), Some(660.0));
        let _ = std::fs::remove_dir_all(dir);
    }
}
