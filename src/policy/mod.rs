//! `compile(rules) -> Policy`: the immutable snapshot the request path reads.
//!
//! Everything that depends only on the rules is done here, once per (re)load: the origin
//! automata, the scopes, and every response header value rendered as an `http::HeaderValue`
//! (cloning one is a reference-count increment, not a copy). The server holds the `Policy`
//! in an `ArcSwap` and shares it with every worker thread without a lock.

mod origin_matcher;

use http::HeaderValue;

use crate::rules::{
    ActualResponses, HostScope, Location, OriginPattern, Rules, Settings, Unmatched,
};
use crate::rules::{Rule, TokenList};
pub use origin_matcher::OriginMatcher;

#[derive(Debug)]
pub struct Policy {
    pub rules: Vec<CompiledRule>,
    pub origins: OriginMatcher,
    /// The rules as loaded: settings, and the rules as written for `/rules` and `explain`.
    pub source: Rules,
    /// True when some rule has neither `hosts` nor `paths`: every request is in scope.
    unscoped_rule: bool,
    /// The distinct (hosts, paths) scopes, to tell `no_rule` from `origin` without walking
    /// every rule.
    scopes: Vec<(Vec<HostScope>, Vec<String>)>,
    pub(crate) vary: HeaderValue,
    pub(crate) cache_control_allowed: HeaderValue,
}

/// What `Access-Control-Allow-Origin` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowOrigin {
    /// `*`: an `origins = ["*"]` rule without credentials.
    Star,
    /// The request's origin, echoed (CORS-CHECKLIST 2.2).
    Echo,
}

/// What `Access-Control-Allow-Methods` or `-Headers` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// Nothing to list: the header is left out.
    Omit,
    /// The rule's list, rendered once.
    Value(HeaderValue),
    /// A `*` list with credentials: `*` is literal to browsers then (CORS-CHECKLIST 2.11),
    /// so what was requested is echoed.
    Echo,
}

#[derive(Debug)]
pub struct CompiledRule {
    pub name: String,
    pub location: Location,
    pub hosts: Vec<HostScope>,
    pub paths: Vec<String>,
    pub methods: TokenList,
    pub headers: TokenList,
    pub credentials: bool,
    pub private_network: bool,
    pub allow_origin: AllowOrigin,
    pub allow_methods: AllowList,
    pub allow_headers: AllowList,
    pub max_age: HeaderValue,
    /// `Access-Control-Expose-Headers` for filled actual responses.
    pub expose: Option<HeaderValue>,
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

/// Why a valid rule set could not be compiled (only the regex automaton can be too large).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError(pub String);

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CompileError {}

fn header_value(text: String) -> Result<HeaderValue, CompileError> {
    HeaderValue::try_from(text.as_str())
        .map_err(|_| CompileError(format!("cannot render header value {text:?}")))
}

fn list_value(list: &TokenList, credentials: bool) -> Result<AllowList, CompileError> {
    if list.any && credentials {
        return Ok(AllowList::Echo);
    }
    let written = list.written();
    if written.is_empty() {
        return Ok(AllowList::Omit);
    }
    Ok(AllowList::Value(header_value(written.join(", "))?))
}

pub fn compile(rules: Rules) -> Result<Policy, CompileError> {
    let origins = OriginMatcher::build(&rules.rules).map_err(CompileError)?;
    let compiled = rules
        .rules
        .iter()
        .map(compile_rule)
        .collect::<Result<Vec<_>, _>>()?;
    // CORS-CHECKLIST 4.2: Vary on every preflight answer, allowed or denied, so a shared cache
    // never serves one origin's answer to another.
    let mut vary =
        String::from("Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
    if compiled.iter().any(|r| r.private_network) {
        vary.push_str(", Access-Control-Request-Private-Network");
    }
    let cache_control_allowed = match rules.settings.cdn_max_age {
        0 => "no-store".to_owned(),
        seconds => format!("public, max-age={seconds}"),
    };
    let unscoped_rule = compiled
        .iter()
        .any(|r| r.hosts.is_empty() && r.paths.is_empty());
    let mut scopes: Vec<(Vec<HostScope>, Vec<String>)> = Vec::new();
    for rule in &compiled {
        let scope = (rule.hosts.clone(), rule.paths.clone());
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    Ok(Policy {
        rules: compiled,
        origins,
        source: rules,
        unscoped_rule,
        scopes,
        vary: header_value(vary)?,
        cache_control_allowed: header_value(cache_control_allowed)?,
    })
}

fn compile_rule(rule: &Rule) -> Result<CompiledRule, CompileError> {
    let has_star = rule.origins.iter().any(|o| o.pattern == OriginPattern::Any);
    let expose = rule.expose.written();
    Ok(CompiledRule {
        name: rule.name.clone(),
        location: rule.location.clone(),
        hosts: rule.hosts.clone(),
        paths: rule.paths.clone(),
        methods: rule.methods.clone(),
        headers: rule.headers.clone(),
        credentials: rule.credentials,
        private_network: rule.private_network,
        // CORS-CHECKLIST 2.3: never `*` with credentials (validation refuses that pairing).
        allow_origin: if has_star && !rule.credentials {
            AllowOrigin::Star
        } else {
            AllowOrigin::Echo
        },
        allow_methods: list_value(&rule.methods, rule.credentials)?,
        allow_headers: list_value(&rule.headers, rule.credentials)?,
        max_age: HeaderValue::from(rule.max_age),
        expose: if expose.is_empty() {
            None
        } else {
            Some(header_value(expose.join(", "))?)
        },
    })
}

impl Policy {
    /// Whether any rule's scope covers `host` (port removed) and `path`.
    #[inline]
    pub fn any_scope_covers(&self, host: Option<&[u8]>, path: &[u8]) -> bool {
        self.unscoped_rule
            || self
                .scopes
                .iter()
                .any(|(hosts, paths)| scope_covers(hosts, paths, host, path))
    }

    pub fn settings(&self) -> &Settings {
        &self.source.settings
    }

    pub fn forwards_unmatched(&self) -> bool {
        self.source.settings.unmatched == Unmatched::Forward
    }

    pub fn fills_actual_responses(&self) -> bool {
        self.source.settings.actual_responses == ActualResponses::Fill
    }

    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }
}
