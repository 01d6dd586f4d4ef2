//! rebond-directory
