//! Integration tests, compiled as one binary (one `mod` per area).

mod access_log;
mod browser;
mod bucket_rules;
mod cases;
mod cli;
mod decision;
mod differential;
mod explain;
mod fast_path;
mod fill;
mod forwarding;
mod import;
mod lifecycle;
mod limits;
mod metrics;
mod preflights;
mod prometheus_text;
mod properties;
mod proxy;
mod reload;
mod shadow;
mod support;
mod tls;
mod upstream_failures;
mod upstream_faults;
mod validation;
