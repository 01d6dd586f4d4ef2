//! Sound formats and the audio-input channel, sans-IO.
//!
//! - [`format`](mod@format): the `AUDIO_FORMAT` structure (a WAVEFORMATEX and its extra data) that
//!   both sound channels use ([MS-RDPEA] 2.2.2.1.1, [MS-RDPEAI] 2.2.2.2).
//! - [`audin`]: the Audio Input Redirection Virtual Channel ([MS-RDPEAI], dynamic channel
//!   `AUDIO_INPUT`): its PDUs, the client the bounce worker runs ([`audin::AudinClient`],
//!   which delivers the person's microphone to the workstation) and the server the test
//!   workstation runs ([`audin::AudinServer`]). IronRDP publishes no crate for it.
//! - [`pcm`]: 16-bit PCM conversion (bytes and samples, channels) and a stateful
//!   resampler, for the microphone and for the workstation's sound (`rdpsnd`).
//!
//! No sockets, no clocks, no threads, no IronRDP: bytes in, bytes out. The caller
//! carries each returned message on the channel, in order.
//!
//! INVARIANT: decoding never panics, whatever the bytes (property-tested).
//! INVARIANT: only 16-bit PCM is produced or accepted; any other format is declined
//! during negotiation, so nothing but sound samples can cross.
//! INVARIANT: a stream resampled in blocks of any size equals the stream resampled
//! whole (no clicks at block boundaries).
//!
//! [MS-RDPEA]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpea/
//! [MS-RDPEAI]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpeai/

pub mod audin;
pub mod format;
pub mod pcm;
