//! `preflightd explain`: the tool to reach for when a browser says "blocked by CORS policy".

use std::process::ExitCode;

use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HOST, ORIGIN};
use http::{HeaderMap, HeaderValue, Method, Uri};
use preflightd::cors::{
    ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK, Decision, Outcome, Reason, Request, RuleStep, decide,
    explain, near_misses, prescribe,
};
use preflightd::policy::{self, AllowOrigin, Policy};
use preflightd::rules::{load_path, origin::parse_origin};

use super::ExplainArgs;

pub fn run(args: &ExplainArgs) -> ExitCode {
    let loaded = load_path(&args.rules);
    let Some(rules) = loaded.rules else {
        for diagnostic in loaded.errors() {
            eprintln!("{diagnostic}");
        }
        eprintln!(
            "{}: rules have errors; run `preflightd check`",
            args.rules.display()
        );
        return ExitCode::FAILURE;
    };
    let policy = match policy::compile(rules) {
        Ok(policy) => policy,
        Err(e) => {
            let file = std::sync::Arc::from(args.rules.display().to_string());
            eprintln!("{}", e.diagnostic(Some(file)));
            return ExitCode::FAILURE;
        }
    };
    let uri: Uri = match args.url.parse() {
        Ok(uri) => uri,
        Err(e) => {
            eprintln!("invalid --url {:?}: {e}", args.url);
            return ExitCode::from(2);
        }
    };
    let mut headers = HeaderMap::new();
    let mut set = |name, value: &str, what: &str| match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
            true
        }
        Err(_) => {
            eprintln!("invalid {what} {value:?}: not a valid header value");
            false
        }
    };
    let mut ok = set(ORIGIN, &args.origin, "--origin");
    ok &= set(ACCESS_CONTROL_REQUEST_METHOD, &args.method, "--method");
    if !args.headers.is_empty() {
        ok &= set(ACCESS_CONTROL_REQUEST_HEADERS, &args.headers, "--headers");
    }
    if let Some(authority) = uri.authority() {
        ok &= set(HOST, authority.as_str(), "--url host");
    }
    if args.private_network {
        ok &= set(
            ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK.clone(),
            "true",
            "private network",
        );
    }
    if !ok {
        return ExitCode::from(2);
    }
    let request = Request {
        method: &Method::OPTIONS,
        host: uri.authority().map(|a| a.as_str().as_bytes()),
        path: uri.path().as_bytes(),
        headers: &headers,
    };
    print!("{}", report(&policy, &request, args));
    if let Some(note) = origin_form(&policy, &request, &headers, args) {
        print!("{note}");
    }
    let passes = browser_proceeds(&policy, &request, args.credentials);
    if let Some(prescription) = prescribe(&policy, &request, args.credentials) {
        println!("\nfix: {prescription}");
    }
    if args.exit_code && !passes {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Whether a browser goes on to the actual request: the edge allows it (with credentials,
/// the answer carries them), or passes it to the upstream, which decides.
fn browser_proceeds(policy: &Policy, request: &Request<'_>, credentials: bool) -> bool {
    match decide(policy, request) {
        Decision::Answer(answer) => answer.lets_through(credentials),
        Decision::Forward | Decision::NotPreflight => true,
    }
}

/// For an `--origin` in a form no browser sends (CORS-CHECKLIST 3.1-3.2: lowercase, no
/// default port, no path or trailing slash), the form browsers send, and the decision for it.
fn origin_form(
    policy: &Policy,
    request: &Request<'_>,
    headers: &HeaderMap,
    args: &ExplainArgs,
) -> Option<String> {
    let canonical = match parse_origin(&args.origin) {
        Ok(pattern) => pattern.to_string(),
        Err(why) => {
            // The loader's message says how to write it: `...; write "https://shop.test"`.
            let (_, suggested) = why.rsplit_once("; write ")?;
            suggested.trim_matches('"').to_owned()
        }
    };
    if canonical == args.origin || canonical.contains('*') || canonical.starts_with("regex:") {
        return None;
    }
    let mut fixed = headers.clone();
    fixed.insert(ORIGIN, HeaderValue::from_str(&canonical).ok()?);
    let view = Request {
        headers: &fixed,
        ..*request
    };
    let verdict = match decide(policy, &view) {
        Decision::Answer(answer) => match (answer.outcome, answer.rule()) {
            (Outcome::Allowed, Some(rule)) => format!("allowed by rule {:?}", rule.name),
            (outcome, _) => format!("denied: {}", outcome.as_str()),
        },
        Decision::Forward => "forwarded to the upstream".to_owned(),
        Decision::NotPreflight => "not a preflight".to_owned(),
    };
    Some(format!(
        "\nnote: no browser sends the origin {:?}; browsers send {canonical:?} (with it: {verdict})\n",
        args.origin
    ))
}

fn report(policy: &Policy, request: &Request<'_>, args: &ExplainArgs) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let explanation = explain(policy, request);
    let _ = writeln!(out, "preflight: OPTIONS {}", args.url);
    for (name, value) in request.headers {
        let _ = writeln!(
            out,
            "  {name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    out.push('\n');
    if let Some(malformed) = explanation.malformed {
        let _ = writeln!(out, "malformed preflight: {malformed}");
    }
    for trace in &explanation.rules {
        let rule = &policy.rules[trace.rule];
        let source = &policy.source.rules[trace.rule];
        let why = match &trace.step {
            RuleStep::HostOutOfScope => format!(
                "scope: host {:?} is not in hosts [{}]",
                request
                    .host
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .unwrap_or_default(),
                rule.hosts
                    .iter()
                    .map(|h| format!("{:?}", h.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            RuleStep::PathOutOfScope => format!(
                "scope: path {:?} starts with none of paths {:?}",
                String::from_utf8_lossy(request.path),
                rule.paths
            ),
            RuleStep::OriginNotAllowed => format!(
                "origin: {:?} matches none of origins [{}]",
                args.origin,
                source
                    .origins
                    .iter()
                    .map(|o| format!("{:?}", o.pattern.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            RuleStep::MethodNotAllowed => format!(
                "method: {:?} is not in methods {:?} (methods compare case-sensitively; {})",
                args.method,
                rule.methods.written(),
                if rule.only_listed_methods {
                    "only_listed_methods: GET, HEAD and POST too must be listed"
                } else {
                    "GET, HEAD and POST are always allowed"
                }
            ),
            RuleStep::HeadersNotAllowed(names) => format!(
                "headers: {names:?} not in headers {:?}{}",
                rule.headers.written_all(),
                if rule.headers.any
                    && names
                        .iter()
                        .any(|n| !rule.headers.allows_header_name(n.as_bytes()))
                {
                    " (\"*\" never covers authorization: list it by name)"
                } else {
                    ""
                }
            ),
            RuleStep::Answers => "ANSWERS: scope, origin, method and headers all match".to_owned(),
            RuleStep::Shadowed => "would allow, but an earlier rule answers first".to_owned(),
        };
        let _ = writeln!(out, "rule {:?} ({}): {why}", rule.name, rule.location);
    }
    out.push('\n');
    match explanation.decision {
        Decision::NotPreflight => {
            let _ = writeln!(out, "not a preflight: proxied to the upstream untouched");
        }
        Decision::Forward => {
            let _ = writeln!(
                out,
                "no rule covers this URL and unmatched = \"forward\": proxied to the upstream"
            );
        }
        Decision::Answer(answer) => {
            let status = answer.status();
            let verdict = match (answer.outcome, answer.rule()) {
                (Outcome::Allowed, Some(rule)) => format!("allowed by rule {:?}", rule.name),
                (Outcome::Denied(reason), Some(rule)) => {
                    format!("denied: {} (closest rule {:?})", reason.as_str(), rule.name)
                }
                (outcome, _) => format!("denied: {}", outcome.as_str()),
            };
            let _ = writeln!(out, "answer: {status} ({verdict})");
            let mut headers = HeaderMap::new();
            answer.write_headers(request.headers, &mut headers);
            for (name, value) in &headers {
                let _ = writeln!(
                    out,
                    "  {name}: {}",
                    String::from_utf8_lossy(value.as_bytes())
                );
            }
            let body = answer.body();
            if !body.is_empty() {
                let _ = write!(out, "  body: {body}");
            }
            if let (Outcome::Allowed, Some(rule), true) =
                (answer.outcome, answer.rule(), args.credentials)
                && !rule.credentials
            {
                // Fetch: CORS check, step 7 (CORS-CHECKLIST 2.2-2.3): a credentialed request
                // needs `Access-Control-Allow-Credentials: true` and the origin echoed. The fix
                // (below) is one `check` accepts: never credentials on a `*` rule.
                let star = if rule.allow_origin == AllowOrigin::Star {
                    " and answers Access-Control-Allow-Origin: *"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "\nnote: the request uses credentials but rule {:?} has credentials = false{star}: \
                     the browser will block it",
                    rule.name
                );
            }
            if answer.outcome == Outcome::Denied(Reason::Origin) {
                for miss in near_misses(policy, &args.origin) {
                    let _ = writeln!(out, "\nnear miss: {miss}");
                }
            }
        }
    }
    out
}
