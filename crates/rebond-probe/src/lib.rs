//! rebond-probe
