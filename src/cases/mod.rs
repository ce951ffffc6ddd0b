//! Cases files: operators' own expectations of their rules, and the project's own preflight
//! vectors, in one format (README, *Testing your rules*). `preflightd test` and the
//! project's tests run them with this code, so the two can never drift.
//!
//! A case is one request a page would make (origin, method, header names, URL, credentials)
//! and what the edge must make of it: `allowed`, a denial reason, `credentials` (the edge
//! allows, but a browser blocks the credentialed request), `forward` or `not_preflight`;
//! optionally the rule named in the answer, its status and exact response headers.
//!
//! - `model`: the format as read ([`CasesFile`], [`Suite`], [`Case`], [`Expect`]);
//! - `parse`: a cases file's text to [`CasesFile`], every mistake at once with its
//!   `file:line:column`, as `rules::load` reports rules files;
//! - `repeat`: `REPEAT(text,N)`, so the vectors can state long hostile inputs exactly;
//! - `run`: decide each case's request with `cors::decide` on the compiled policy, render
//!   the answer's headers with the server's own code (`Answer::write_headers`), compare.
//!
//! Pure: no I/O (the command reads the files), no clock.

mod model;
mod parse;
mod repeat;
mod run;

pub use model::{Case, CaseRequest, CasesFile, DEFAULT_URL, Expect, Suite};
pub use parse::parse;
pub use repeat::{MAX_EXPANDED_BYTES, MAX_VALUE_BYTES};
pub use run::{Actual, ActualAnswer, Checked, Mismatch, Summary, check, report, run};
