//! Integration tests, compiled as one binary (one `mod` per area).

mod access_log;
mod browser;
mod cli;
mod decision;
mod differential;
mod fast_path;
mod fill;
mod forwarding;
mod lifecycle;
mod limits;
mod metrics;
mod preflights;
mod prometheus_text;
mod properties;
mod proxy;
mod reload;
mod support;
mod tls;
mod upstream_failures;
mod upstream_faults;
mod validation;
