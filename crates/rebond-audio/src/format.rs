//! `AUDIO_FORMAT` ([MS-RDPEA] 2.2.2.1.1, the same layout in [MS-RDPEAI] 2.2.2.2): a
//! WAVEFORMATEX followed by `cbSize` bytes of extra data. Integers are little-endian:
//!
//! ```text
//! wFormatTag u16 | nChannels u16 | nSamplesPerSec u32 | nAvgBytesPerSec u32 |
//! nBlockAlign u16 | wBitsPerSample u16 | cbSize u16 | extra [cbSize bytes]
//! ```
//!
//! [MS-RDPEA]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpea/
//! [MS-RDPEAI]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpeai/

use crate::audin::{AudinError, Reader};

/// `WAVE_FORMAT_PCM`.
pub const WAVE_FORMAT_PCM: u16 = 0x0001;

/// `WAVE_FORMAT_EXTENSIBLE`: what Windows puts in an Open PDU's capture format.
pub const WAVE_FORMAT_EXTENSIBLE: u16 = 0xfffe;

/// The fixed part of an `AUDIO_FORMAT`, before the extra data.
pub const FIXED_LEN: usize = 18;

/// One sound format, as both sound channels carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFormat {
    pub tag: u16,
    pub channels: u16,
    pub samples_per_sec: u32,
    pub avg_bytes_per_sec: u32,
    pub block_align: u16,
    pub bits_per_sample: u16,
    pub extra: Vec<u8>,
}

impl AudioFormat {
    /// 16-bit PCM at `rate` with `channels`.
    pub fn pcm(rate: u32, channels: u16) -> Self {
        let block_align = channels.saturating_mul(2);
        Self {
            tag: WAVE_FORMAT_PCM,
            channels,
            samples_per_sec: rate,
            avg_bytes_per_sec: rate.saturating_mul(u32::from(block_align)),
            block_align,
            bits_per_sample: 16,
            extra: Vec::new(),
        }
    }

    /// 16-bit PCM, mono or stereo, 8 to 48 kHz: what Rebond produces and accepts.
    pub fn is_pcm16(&self) -> bool {
        self.tag == WAVE_FORMAT_PCM
            && self.bits_per_sample == 16
            && (1..=2).contains(&self.channels)
            && (8_000..=48_000).contains(&self.samples_per_sec)
            && self.block_align == self.channels * 2
    }

    /// The length of [`AudioFormat::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN + self.extra.len()
    }

    /// Appends the format to `out`. `cbSize` is the length of `extra`, which must fit a
    /// u16 (longer extra data is cut to 65,535 bytes so the bytes stay consistent).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let extra = &self.extra[..self.extra.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&self.tag.to_le_bytes());
        out.extend_from_slice(&self.channels.to_le_bytes());
        out.extend_from_slice(&self.samples_per_sec.to_le_bytes());
        out.extend_from_slice(&self.avg_bytes_per_sec.to_le_bytes());
        out.extend_from_slice(&self.block_align.to_le_bytes());
        out.extend_from_slice(&self.bits_per_sample.to_le_bytes());
        out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        out.extend_from_slice(extra);
    }

    /// Exactly one format: `bytes` must hold the fixed part, then `cbSize` bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, AudinError> {
        let mut r = Reader::new(bytes);
        let format = Self::read(&mut r)?;
        r.finish()?;
        Ok(format)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, AudinError> {
        let tag = r.u16()?;
        let channels = r.u16()?;
        let samples_per_sec = r.u32()?;
        let avg_bytes_per_sec = r.u32()?;
        let block_align = r.u16()?;
        let bits_per_sample = r.u16()?;
        let size = r.u16()?;
        let extra = r.bytes(usize::from(size))?.to_vec();
        Ok(Self {
            tag,
            channels,
            samples_per_sec,
            avg_bytes_per_sec,
            block_align,
            bits_per_sample,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm_44k_stereo_has_the_layout_windows_sends() {
        // The first format of [MS-RDPEAI] 4.1.3 (Server Sound Formats PDU, Windows):
        // PCM, 2 channels, 44,100 Hz, 176,400 bytes/s, block align 4, 16 bits, cbSize 0.
        let bytes = [
            1, 0, 2, 0, 0x44, 0xac, 0, 0, 0x10, 0xb1, 2, 0, 4, 0, 16, 0, 0, 0,
        ];
        let format = AudioFormat::pcm(44_100, 2);
        let mut out = Vec::new();
        format.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(AudioFormat::decode(&bytes), Ok(format.clone()));
        assert!(format.is_pcm16());
    }

    #[test]
    fn extra_data_follows_cb_size() {
        // The third format of the same dump: IMA ADPCM (0x11), cbSize 2, extra f9 07.
        let bytes = [
            0x11, 0, 2, 0, 0x44, 0xac, 0, 0, 0xdb, 0xac, 0, 0, 0, 8, 4, 0, 2, 0, 0xf9, 7,
        ];
        let format = AudioFormat::decode(&bytes).unwrap();
        assert_eq!(
            (format.tag, format.channels, format.samples_per_sec),
            (0x11, 2, 44_100)
        );
        assert_eq!(format.extra, vec![0xf9, 7]);
        assert!(!format.is_pcm16());
        let mut out = Vec::new();
        format.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(
            AudioFormat::decode(&bytes[..19]),
            Err(AudinError::Truncated)
        );
        assert_eq!(
            AudioFormat::decode(&[bytes.as_slice(), &[0]].concat()),
            Err(AudinError::Trailing(1))
        );
    }

    #[test]
    fn only_16_bit_pcm_mono_or_stereo_at_8_to_48_khz_counts() {
        assert!(AudioFormat::pcm(8_000, 1).is_pcm16());
        assert!(AudioFormat::pcm(48_000, 2).is_pcm16());
        assert!(!AudioFormat::pcm(96_000, 2).is_pcm16());
        assert!(!AudioFormat::pcm(48_000, 6).is_pcm16());
        let mut eight_bit = AudioFormat::pcm(22_050, 1);
        eight_bit.bits_per_sample = 8;
        eight_bit.block_align = 1;
        assert!(!eight_bit.is_pcm16());
        let mut odd_align = AudioFormat::pcm(48_000, 2);
        odd_align.block_align = 2;
        assert!(!odd_align.is_pcm16());
        // Absurd values do not overflow.
        assert!(!AudioFormat::pcm(u32::MAX, u16::MAX).is_pcm16());
    }
}
