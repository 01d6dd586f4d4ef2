//! `AUDIO_FORMAT` ([MS-RDPEA] 2.2.2.1.1, the same layout in [MS-RDPEAI] 2.2.2.2): a
//! WAVEFORMATEX followed by `cbSize` bytes of extra data.

use crate::audin::{AudinError, Reader};

/// `WAVE_FORMAT_PCM`.
pub const WAVE_FORMAT_PCM: u16 = 0x0001;

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
        let block_align = channels * 2;
        Self {
            tag: WAVE_FORMAT_PCM,
            channels,
            samples_per_sec: rate,
            avg_bytes_per_sec: rate * u32::from(block_align),
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

    pub fn encoded_len(&self) -> usize {
        18 + self.extra.len()
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tag.to_le_bytes());
        out.extend_from_slice(&self.channels.to_le_bytes());
        out.extend_from_slice(&self.samples_per_sec.to_le_bytes());
        out.extend_from_slice(&self.avg_bytes_per_sec.to_le_bytes());
        out.extend_from_slice(&self.block_align.to_le_bytes());
        out.extend_from_slice(&self.bits_per_sample.to_le_bytes());
        out.extend_from_slice(&(self.extra.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.extra);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, AudinError> {
        let tag = r.u16()?;
        let channels = r.u16()?;
        let samples_per_sec = r.u32()?;
        let avg_bytes_per_sec = r.u32()?;
        let block_align = r.u16()?;
        let bits_per_sample = r.u16()?;
        let size = r.u16()?;
        let extra = r.bytes(usize::from(size))?.to_vec();
        Ok(Self { tag, channels, samples_per_sec, avg_bytes_per_sec, block_align, bits_per_sample, extra })
    }
}
