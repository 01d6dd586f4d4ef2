//! rebond-testkit
