//! End-to-end tests: the real `rebond` binary between real workstations (FreeRDP's
//! shadow server, xrdp), the probe, and headless Chromium. `scripts/test` installs
//! the packages; the tests start and stop every server themselves.

mod active_directory;
mod audit;
mod browser;
mod choices;
mod cluster;
mod common;
mod deployment;
mod networks;
mod operations;
mod pixels_only;
mod refusals;
mod sandbox;
mod second_factor;
mod session;
mod sound;
mod wake;
mod web_front;
