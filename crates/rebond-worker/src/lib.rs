//! The bounce worker: one process per session. It holds the RDP connection to the
//! workstation, the framebuffer and the display encoder, and speaks to the gateway
//! over its standard input and output ([`link`]).
//!
//! INVARIANT: the worker's only peers are the gateway (stdin/stdout) and its one
//! workstation; the credentials it receives live only in its memory.
//! INVARIANT: every uplink message is checked again by the worker's own
//! [`rebond_policy::UplinkFilter`] before it becomes RDP input.
//! INVARIANT: sound crosses the worker only decoded and re-encoded ([`sound`]).

pub use rebond_link as link;
mod run;
pub mod sound;
#[cfg(target_os = "linux")]
pub mod sandbox;

pub use run::{run, StartRequest, TrustSpec};

/// Debug builds only: `USER:ACTION` makes the worker of USER try a forbidden
/// [`sandbox::ForbiddenAction`] once connected, so tests can prove it is stopped.
pub const TEST_FAULT_VAR: &str = "REBOND_TEST_WORKER_FAULT";
