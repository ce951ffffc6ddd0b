//! Integration tests, compiled as one binary (one `mod` per area).

mod cli;
mod decision;
mod properties;
mod support;
mod validation;
