//! The bounce worker: one process per session. It holds the RDP connection to the
//! workstation, the framebuffer and the display encoder, and speaks to the gateway
//! over its standard input and output ([`link`]).
//!
//! INVARIANT: the worker's only peers are the gateway (stdin/stdout) and its one
//! workstation; the credentials it receives live only in its memory.
//! INVARIANT: every uplink message is checked again by the worker's own
//! [`rebond_policy::UplinkFilter`] before it becomes RDP input.

pub mod link;
mod run;

pub use run::{run, StartRequest, TrustSpec};
