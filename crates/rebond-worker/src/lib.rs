//! rebond-worker
