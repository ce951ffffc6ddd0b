//! preflightd: answers CORS preflights at the edge from a compiled rules file and passes
//! everything else to the upstream.
//!
//! The core (`rules`, `policy`, `cors`, `syntax`) does no network I/O and takes no clock: it
//! turns a rules file into an immutable [`policy::Policy`] and a request into a
//! [`cors::Decision`].

pub mod cors;
pub mod policy;
pub mod rules;
pub mod syntax;
