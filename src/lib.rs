//! preflightd: answers CORS preflights at the edge from a compiled rules file and passes
//! everything else to the upstream.
//!
//! The core (`syntax`, `fetch`, `rules`, `policy`, `cors`, `cases`, `import`) does no
//! network I/O and takes no clock: it turns a rules file into an immutable
//! [`policy::Policy`] and a request into a [`cors::Decision`], runs operators' expectations
//! ([`cases`]) against a policy, and turns a bucket's CORS configuration into rules
//! ([`import`]). The shell around it holds the sockets, the files, the signals and the
//! metrics; arrows point inward, and no module uses a module that uses it
//! (`scripts/module_cycles.py` checks this in CI):
//!
//! - `metrics`: the Prometheus families; `throttle`: rate-limited warnings; `tally`: a
//!   fixed-size, lock-free count of distinct keys;
//! - `shadow`: shadow mode's comparisons, counters and table of mismatches;
//! - `access_log`: one line per request, queued to a writer thread (its `line` is pure);
//! - `conn`: one client connection from accept to close (caps, clocks, the watchdog);
//! - `live`: the one owner of the live policy (snapshot, publish, readiness);
//! - `reload`: the first load and every reload, and what triggers them;
//! - `proxy`: the upstream side;
//! - `server`: the data listener's accept loop and request handler;
//! - `admin`: the admin listener;
//! - `sd_notify`: systemd readiness notifications;
//! - `app`: the composition root that builds and runs all of it from one `ServeConfig`.

// Core.
pub mod cases;
pub mod cors;
pub mod fetch;
pub mod import;
pub mod policy;
pub mod rules;
pub mod syntax;

// Shell.
pub mod access_log;
pub mod admin;
pub mod app;
pub mod conn;
pub mod live;
pub mod metrics;
pub mod proxy;
pub mod proxy_protocol;
pub mod reload;
pub mod sd_notify;
pub mod server;
pub mod shadow;
pub mod tally;
pub mod throttle;
pub mod tls;
