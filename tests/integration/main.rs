//! Integration tests, compiled as one binary (one `mod` per area).

mod cli;
mod decision;
mod harness;
mod prometheus_text;
mod properties;
mod server;
mod support;
mod validation;
