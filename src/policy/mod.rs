//! `compile(rules) -> Policy`: the immutable snapshot the request path reads.
//!
//! Everything that depends only on the rules is done here, once per (re)load: the origin
//! automata, the scopes, and every response header value rendered as an `http::HeaderValue`
//! (cloning one is a reference-count increment, not a copy). The server holds the `Policy`
//! in an `ArcSwap` and shares it with every worker thread without a lock.

mod allow_list;
mod allow_origin;
mod cache_control;
mod expose_headers;
mod groups;
mod header_value;
mod max_age;
mod origin_matcher;
mod scope_index;
pub mod vary;

use std::sync::Arc;

use crate::rules::{
    ActualResponses, Diagnostic, HostScope, Location, Mode, Rule, Rules, Settings, Subject,
    TokenList, Unmatched,
};
pub use allow_list::AllowList;
pub use allow_origin::AllowOrigin;
pub use cache_control::CacheControl;
pub use expose_headers::ExposeHeaders;
pub use header_value::HeaderValueError;
pub use max_age::MaxAge;
pub use origin_matcher::{MatcherError, OriginMatcher};
pub use scope_index::ScopeIndex;
pub use vary::PreflightVary;

#[derive(Debug)]
pub struct Policy {
    pub rules: Vec<CompiledRule>,
    pub origins: OriginMatcher,
    /// The rules as loaded: settings, and the rules as written for `/rules` and `explain`.
    pub source: Rules,
    /// The distinct scopes, indexed: which rules a request is in scope of, without walking
    /// the rules.
    scopes: ScopeIndex,
    pub vary: PreflightVary,
    pub cache_control: CacheControl,
}

#[derive(Debug)]
pub struct CompiledRule {
    pub name: String,
    pub location: Location,
    pub hosts: Vec<HostScope>,
    pub paths: Vec<String>,
    pub methods: TokenList,
    /// GET, HEAD and POST pass only when listed (`only_listed_methods`).
    pub only_listed_methods: bool,
    pub headers: TokenList,
    pub credentials: bool,
    pub private_network: bool,
    pub allow_origin: AllowOrigin,
    pub allow_methods: AllowList,
    pub allow_headers: AllowList,
    pub max_age: MaxAge,
    /// `Access-Control-Expose-Headers` for filled actual responses.
    pub expose: ExposeHeaders,
}

impl CompiledRule {
    /// Whether this rule's scope covers a request for `host` (port already removed) and `path`.
    #[inline]
    pub fn scope_covers(&self, host: Option<&[u8]>, path: &[u8]) -> bool {
        scope_covers(&self.hosts, &self.paths, host, path)
    }
}

#[inline]
fn scope_covers(hosts: &[HostScope], paths: &[String], host: Option<&[u8]>, path: &[u8]) -> bool {
    let host_ok = hosts.is_empty() || host.is_some_and(|h| hosts.iter().any(|s| s.covers(h)));
    host_ok && (paths.is_empty() || paths.iter().any(|p| path.starts_with(p.as_bytes())))
}

/// Why a valid rule set could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// The origin automata could not be built (too many rules, or regexes too large together).
    Matcher(MatcherError),
    /// A rule's response header could not be rendered.
    HeaderValue {
        rule: String,
        location: Location,
        error: HeaderValueError,
    },
}

impl CompileError {
    /// The error as a diagnostic with its place: the rule and line when there is one, else
    /// `file` (the rule set's first file) as a whole.
    pub fn diagnostic(&self, file: Option<Arc<str>>) -> Diagnostic {
        let whole = || Location::file(file.clone().unwrap_or_else(|| Arc::from("(rules)")));
        match self {
            CompileError::Matcher(error) => {
                let location = error.location().cloned().unwrap_or_else(whole);
                Diagnostic::error(location, Subject::File, error.to_string())
            }
            CompileError::HeaderValue {
                rule,
                location,
                error,
            } => Diagnostic::error(
                location.clone(),
                Subject::Rule(rule.clone()),
                format!("cannot render {} value {:?}", error.field, error.value),
            ),
        }
    }
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.diagnostic(None))
    }
}

impl std::error::Error for CompileError {}

pub fn compile(rules: Rules) -> Result<Policy, CompileError> {
    let origins = OriginMatcher::build(&rules.rules).map_err(CompileError::Matcher)?;
    let compiled = rules
        .rules
        .iter()
        .map(|rule| {
            compile_rule(rule).map_err(|error| CompileError::HeaderValue {
                rule: rule.name.clone(),
                location: rule.location.clone(),
                error,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let whole = |error| CompileError::HeaderValue {
        rule: String::new(),
        location: rules
            .rules
            .first()
            .map(|r| Location::file(Arc::clone(&r.location.file)))
            .unwrap_or_else(|| Location::file(Arc::from("(rules)"))),
        error,
    };
    let vary = PreflightVary::compile(compiled.iter().any(|r| r.private_network)).map_err(whole)?;
    let cache_control = CacheControl::compile(rules.settings.cdn_max_age).map_err(whole)?;
    let scopes = ScopeIndex::build(
        compiled
            .iter()
            .map(|r| (r.hosts.as_slice(), r.paths.as_slice())),
    )
    .map_err(|reason| CompileError::Matcher(MatcherError::HostEntries { reason }))?;
    Ok(Policy {
        rules: compiled,
        origins,
        source: rules,
        scopes,
        vary,
        cache_control,
    })
}

fn compile_rule(rule: &Rule) -> Result<CompiledRule, HeaderValueError> {
    Ok(CompiledRule {
        name: rule.name.clone(),
        location: rule.location.clone(),
        hosts: rule.hosts.clone(),
        paths: rule.paths.clone(),
        methods: rule.methods.clone(),
        only_listed_methods: rule.only_listed_methods,
        headers: rule.headers.clone(),
        credentials: rule.credentials,
        private_network: rule.private_network,
        allow_origin: AllowOrigin::compile(rule),
        allow_methods: AllowList::compile(
            &rule.methods,
            rule.credentials,
            "Access-Control-Allow-Methods",
        )?,
        allow_headers: AllowList::compile(
            &rule.headers,
            rule.credentials,
            "Access-Control-Allow-Headers",
        )?,
        max_age: MaxAge::compile(rule.max_age),
        expose: ExposeHeaders::compile(&rule.expose)?,
    })
}

impl Policy {
    /// Whether any rule's scope covers `host` (port removed) and `path`.
    #[inline]
    pub fn any_scope_covers(&self, host: Option<&[u8]>, path: &[u8]) -> bool {
        self.scopes.any_covers(host, path)
    }

    /// Calls `found` with every rule that has an origin entry matching `origin` and whose
    /// scope covers `host` (port removed) and `path`, in no particular order (a rule may be
    /// reported more than once). Flat in the number of rules: an entry that many rules share
    /// is intersected with the rules in scope instead of being walked.
    #[inline]
    pub fn for_each_candidate(
        &self,
        origin: &[u8],
        host: Option<&[u8]>,
        path: &[u8],
        mut found: impl FnMut(usize),
    ) {
        /// Groups up to this size are walked; larger ones are probed from the scope side.
        const WALK: usize = 16;
        self.origins.for_each_group(origin, |group| {
            if group.len() <= WALK {
                for &index in group {
                    let index = index as usize;
                    if self.rules[index].scope_covers(host, path) {
                        found(index);
                    }
                }
                return;
            }
            self.scopes.for_each_covering(host, path, |in_scope| {
                let (small, large) = if in_scope.len() <= group.len() {
                    (in_scope, group)
                } else {
                    (group, in_scope)
                };
                for &index in small {
                    if large.binary_search(&index).is_ok() {
                        found(index as usize);
                    }
                }
                false
            });
        });
    }

    pub fn settings(&self) -> &Settings {
        &self.source.settings
    }

    pub fn forwards_unmatched(&self) -> bool {
        self.source.settings.unmatched == Unmatched::Forward
    }

    /// `mode = "shadow"`: the upstream answers preflights, the rules are only compared.
    pub fn shadows(&self) -> bool {
        self.source.settings.mode == Mode::Shadow
    }

    pub fn fills_actual_responses(&self) -> bool {
        self.source.settings.actual_responses == ActualResponses::Fill
    }

    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }
}
