//! The rules file as written: model, loading (file or directory), validation and lints.
//! Pure apart from reading the files; no clock, no network.

pub mod diagnostic;
pub mod load;
pub mod model;
pub mod origin;
pub mod toml_value;
mod validate;

pub use diagnostic::{Diagnostic, Location, Severity, Subject};
pub use load::{DEFAULT_MAX_RULES_BYTES, Loaded, Source, load_path, load_sources, read_sources};
pub use model::{
    ActualResponses, HostScope, Mode, OriginEntry, PreflightStatus, Rule, Rules, Settings,
    TokenList, Unmatched,
};
pub use origin::{HostOrigin, HostSpec, OriginPattern, PortSpec, RegexFacts};
pub use validate::check as validate_rules;
