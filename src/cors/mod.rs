//! The preflight decision: `decide(&Policy, request) -> Decision`. No I/O, no clock, no lock,
//! no allocation on the allowed path apart from what the answer echoes.
//!
//! - `request`: the request as the decision sees it, and the bounded preflight parse;
//! - `checks`: one rule against one preflight (method, headers);
//! - `answer`: the status, headers and body of an answer the edge gives;
//! - `decide`: first match over the rules, and the denial reason when none answers;
//! - `explain`: the same decision traced rule by rule;
//! - `prescribe`: the smallest valid edit that allows a denied preflight, and near misses;
//! - `fill`: CORS headers for proxied responses (`actual_responses = "fill"`);
//! - `shadow`: an answer judged as a browser judges it, and the upstream's against the
//!   rules' (`mode = "shadow"`);
//! - `wire`: every answer of a policy pre-rendered as HTTP/1.1 bytes, for the fast path.

mod answer;
mod checks;
mod decide;
mod explain;
mod fill;
mod prescribe;
mod request;
pub mod shadow;
mod wire;

pub use answer::{Answer, FORWARDED_LABEL, FieldValue, Outcome, RESULT_LABELS, Reason};
pub use checks::header_allowed;
pub use decide::{Decision, decide};
pub use explain::{Explanation, RuleStep, RuleTrace, explain};
pub use fill::{Fill, fill_for};
pub use prescribe::{Edit, NearMiss, Prescription, near_misses, prescribe};
pub use request::{
    Fields, MAX_ORIGIN_BYTES, MAX_REQUEST_HEADER_NAMES, MAX_REQUEST_HEADERS_BYTES, Malformed,
    Preflight, Request, is_preflight, parse as parse_preflight,
};
pub use wire::{DATE_LEN, WireAnswers};
// The Private Network Access header names, where the decision's users look for them.
pub use crate::fetch::{
    ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK,
};
