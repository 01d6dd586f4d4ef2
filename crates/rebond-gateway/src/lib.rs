//! rebond-gateway
