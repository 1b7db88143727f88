//! Fake destinations for the exporter's tests and the benchmark: in-process servers that speak a
//! destination's real wire format and enforce its rules, and record what they accepted. None of
//! them is part of the exporter or its demo. See docs/architecture.md, "How we test".

pub mod hook;
pub mod loki;
pub mod search;
pub mod syslog;
