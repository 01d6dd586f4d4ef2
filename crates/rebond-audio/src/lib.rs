//! Sound formats and the workstation's audio-input channel, sans-IO.
//!
//! - [`format`]: the `AUDIO_FORMAT` structure (WAVEFORMATEX) both sound channels use.
//! - [`audin`]: the Audio Input Redirection Virtual Channel ([MS-RDPEAI], dynamic channel
//!   `AUDIO_INPUT`): its PDUs, the client the bounce worker runs ([`audin::AudinClient`],
//!   which delivers the person's microphone to the workstation) and the server the test
//!   workstation runs ([`audin::AudinServer`]). IronRDP publishes no crate for it.
//! - [`pcm`]: 16-bit PCM conversion and a stateful resampler.
//!
//! No sockets, no clocks, no threads: bytes in, bytes out.
//!
//! INVARIANT: decoding never panics, whatever the bytes.
//! INVARIANT: only 16-bit PCM is produced or accepted; any other format is declined
//! during negotiation, so nothing but sound samples can cross.

pub mod audin;
pub mod format;
pub mod pcm;
