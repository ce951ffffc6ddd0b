//! Integration tests, compiled as one binary (one `mod` per area).

mod browser;
mod cli;
mod decision;
mod harness;
mod prometheus_text;
mod properties;
mod reload;
mod server;
mod support;
mod validation;
