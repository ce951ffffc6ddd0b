//! preflightd: answers CORS preflights at the edge from a compiled rules file and passes
//! everything else to the upstream.
//!
//! The core (`rules`, `policy`, `cors`, `syntax`) does no network I/O and takes no clock: it
//! turns a rules file into an immutable [`policy::Policy`] and a request into a
//! [`cors::Decision`]. The shell (`server`, `proxy`, `reload`, `admin`, `metrics`) holds the
//! sockets, the files, the signals and the metrics around it; arrows point inward.

// Core.
pub mod cors;
pub mod policy;
pub mod rules;
pub mod syntax;

// Shell.
pub mod admin;
pub mod metrics;
pub mod notify;
pub mod proxy;
pub mod reload;
pub mod server;
