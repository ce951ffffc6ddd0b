//! Hot reload against the running binary (DESIGN 6): each change must flip the answer within
//! a bounded time, a bad push must change nothing, and requests must never fail or see a mix
//! of two policies.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Preflightd, Upstream, WAIT, preflight, send};

fn rules(origin: &str, max_age: u32) -> String {
    format!(
        "[[rule]]\nname = \"web\"\norigins = [\"{origin}\"]\nmethods = [\"PUT\"]\nmax_age = {max_age}\n"
    )
}

const A: &str = "https://a.example.com";
const B: &str = "https://b.example.com";

fn status(edge: &Preflightd, origin: &str) -> u16 {
    send(
        edge.data,
        &preflight("/", "api.example.com", origin, "PUT", ""),
    )
    .status
}

/// Waits until `origin` gets `want`; panics after `WAIT`.
fn until(edge: &Preflightd, origin: &str, want: u16) -> Duration {
    let started = Instant::now();
    while started.elapsed() < WAIT {
        if status(edge, origin) == want {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{origin} never got {want} within {WAIT:?}");
}

/// Waits until a metric sample reaches `want`.
fn until_metric(edge: &Preflightd, series: &str, want: f64) {
    let started = Instant::now();
    while started.elapsed() < WAIT {
        if edge.metric(series) >= want {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{series} never reached {want}: {}", edge.metric(series));
}

const WATCHING: &[&str] = &["--reload-debounce", "100ms", "--reload-poll", "1h"];

fn start(text: &str) -> Preflightd {
    Preflightd::start(text, None, WATCHING)
}

#[test]
fn an_in_place_write_is_applied() {
    let edge = start(&rules(A, 100));
    assert_eq!((status(&edge, A), status(&edge, B)), (204, 403));
    std::fs::write(edge.rules_dir().join("rules.toml"), rules(B, 200)).expect("write");
    until(&edge, B, 204);
    assert_eq!(status(&edge, A), 403);
    assert_eq!(
        edge.metric("preflightd_rules_reloads_total{result=\"success\",trigger=\"watch\"}"),
        1.0
    );
}

#[test]
fn an_editor_style_write_to_temp_and_rename_is_applied() {
    let edge = start(&rules(A, 100));
    let dir = edge.rules_dir();
    for (origin, other) in [(B, A), (A, B), (B, A)] {
        // Editors write a sibling file and rename it over the original.
        std::fs::write(dir.join(".rules.toml.swp"), rules(origin, 100)).expect("write temp");
        std::fs::rename(dir.join(".rules.toml.swp"), dir.join("rules.toml")).expect("rename");
        until(&edge, origin, 204);
        assert_eq!(status(&edge, other), 403);
    }
}

/// Publishes `content` the way the kubelet updates a ConfigMap volume: a new timestamped
/// directory, a `..data_tmp` symlink to it renamed over `..data`, the old directory removed.
fn kubelet_publish(dir: &Path, version: usize, content: &str) {
    use std::os::unix::fs::symlink;
    let name = format!("..2026_11_21_00_00_{version:02}.000000001");
    std::fs::create_dir(dir.join(&name)).expect("mkdir version");
    std::fs::write(dir.join(&name).join("rules.toml"), content).expect("write version");
    let old = std::fs::read_link(dir.join("..data")).ok();
    symlink(&name, dir.join("..data_tmp")).expect("symlink");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).expect("remove old version");
    }
    if std::fs::symlink_metadata(dir.join("rules.toml")).is_err() {
        symlink("..data/rules.toml", dir.join("rules.toml")).expect("link rules.toml");
    }
}

#[test]
fn the_kubernetes_configmap_symlink_swap_is_applied_every_time() {
    let edge = Preflightd::start_with_setup(
        |dir| kubelet_publish(dir, 0, &rules(A, 100)),
        None,
        WATCHING,
    );
    assert_eq!(status(&edge, A), 204);
    for version in 1..=4 {
        let (origin, other) = if version % 2 == 1 { (B, A) } else { (A, B) };
        kubelet_publish(&edge.rules_dir(), version, &rules(origin, 100));
        until(&edge, origin, 204);
        assert_eq!(status(&edge, other), 403, "version {version}");
    }
}

#[test]
fn a_deleted_file_keeps_the_policy_until_it_is_recreated() {
    let edge = start(&rules(A, 100));
    std::fs::remove_file(edge.rules_dir().join("rules.toml")).expect("remove");
    until_metric(
        &edge,
        "preflightd_rules_reloads_total{result=\"failure\",trigger=\"watch\"}",
        1.0,
    );
    assert_eq!(edge.metric("preflightd_rules_last_reload_successful"), 0.0);
    assert_eq!(
        status(&edge, A),
        204,
        "the last good policy keeps answering"
    );
    std::fs::write(edge.rules_dir().join("rules.toml"), rules(B, 100)).expect("recreate");
    until(&edge, B, 204);
    assert_eq!(edge.metric("preflightd_rules_last_reload_successful"), 1.0);
}

#[test]
fn one_file_of_a_directory_changes() {
    let edge = Preflightd::start_with_setup(
        |dir| {
            std::fs::write(dir.join("10-a.toml"), rules(A, 100)).expect("write");
            std::fs::write(
                dir.join("20-c.toml"),
                rules("https://c.example.com", 100).replace("\"web\"", "\"c\""),
            )
            .expect("write");
        },
        None,
        WATCHING,
    );
    assert_eq!(status(&edge, "https://c.example.com"), 204);
    std::fs::write(
        edge.rules_dir().join("20-c.toml"),
        rules(B, 100).replace("\"web\"", "\"c\""),
    )
    .expect("write");
    until(&edge, B, 204);
    assert_eq!(status(&edge, "https://c.example.com"), 403);
    assert_eq!(status(&edge, A), 204, "the unchanged file still applies");
}

#[test]
fn a_burst_of_fifty_writes_is_debounced_and_the_last_one_wins() {
    let edge = start(&rules(A, 100));
    let file = edge.rules_dir().join("rules.toml");
    for i in 0..50 {
        let origin = format!("https://burst{i}.example.com");
        std::fs::write(&file, rules(&origin, 100)).expect("write");
        std::thread::sleep(Duration::from_millis(1));
    }
    until(&edge, "https://burst49.example.com", 204);
    // Let any straggling reload finish, then count compiles.
    std::thread::sleep(Duration::from_millis(400));
    let reloads =
        edge.metric("preflightd_rules_reloads_total{result=\"success\",trigger=\"watch\"}");
    assert!(
        (1.0..=3.0).contains(&reloads),
        "{reloads} compiles for one burst"
    );
    assert_eq!(status(&edge, "https://burst48.example.com"), 403);
}

#[test]
fn an_invalid_push_keeps_the_old_policy_and_the_next_valid_push_applies() {
    let edge = start(&rules(A, 100));
    let file = edge.rules_dir().join("rules.toml");
    std::fs::write(
        &file,
        "[[rule]]\nname = \"web\"\norigins = [\"https://b.example.com/\"]\n",
    )
    .expect("write");
    until_metric(
        &edge,
        "preflightd_rules_reloads_total{result=\"failure\",trigger=\"watch\"}",
        1.0,
    );
    assert_eq!(edge.metric("preflightd_rules_last_reload_successful"), 0.0);
    assert_eq!((status(&edge, A), status(&edge, B)), (204, 403));
    edge.process
        .wait_for_line("rules.toml:3:12: rule \\\"web\\\": invalid origin");
    std::fs::write(&file, rules(B, 100)).expect("write");
    until(&edge, B, 204);
    assert_eq!(edge.metric("preflightd_rules_last_reload_successful"), 1.0);
}

#[test]
fn sighup_applies_a_change_with_the_watcher_disabled() {
    let mut edge = Preflightd::start(&rules(A, 100), None, &["--no-watch", "--reload-poll", "1h"]);
    std::fs::write(edge.rules_dir().join("rules.toml"), rules(B, 100)).expect("write");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(&edge, B), 403, "nothing watches, nothing polls yet");
    edge.process.signal("HUP");
    until(&edge, B, 204);
    assert_eq!(
        edge.metric("preflightd_rules_reloads_total{result=\"success\",trigger=\"signal\"}"),
        1.0
    );
    edge.process.signal("TERM");
    assert_eq!(edge.process.wait_exit(), Some(0));
}

#[test]
fn the_periodic_recheck_applies_a_change_with_the_watcher_disabled() {
    let edge = Preflightd::start(
        &rules(A, 100),
        None,
        &["--no-watch", "--reload-poll", "300ms"],
    );
    std::fs::write(edge.rules_dir().join("rules.toml"), rules(B, 100)).expect("write");
    let took = until(&edge, B, 204);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // The next tick finds nothing new: counted as unchanged, nothing recompiled.
    until_metric(
        &edge,
        "preflightd_rules_reloads_total{result=\"unchanged\",trigger=\"poll\"}",
        1.0,
    );
    assert_eq!(
        edge.metric("preflightd_rules_reloads_total{result=\"success\",trigger=\"poll\"}"),
        1.0
    );
}

/// Checks one preflight answer against the two policies: allowed with exactly the headers of
/// the version that allows this origin, or denied with none. Anything else is a failure.
fn consistent(response: &crate::support::RawResponse, origin: &str) -> Result<(), String> {
    let max_age = if origin == A { "100" } else { "200" };
    match response.status {
        204 if response.header("access-control-allow-origin") == Some(origin)
            && response.header("access-control-max-age") == Some(max_age)
            && response.header("access-control-allow-methods") == Some("PUT") =>
        {
            Ok(())
        }
        403 if response.header("access-control-allow-origin").is_none()
            && response.text() == "CORS preflight denied: origin not allowed\n" =>
        {
            Ok(())
        }
        _ => Err(format!("inconsistent answer for {origin}: {response:?}")),
    }
}

#[test]
fn under_load_a_hundred_rewrites_fail_no_request_and_never_mix_policies() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(
        &rules(A, 100),
        Some(&upstream.url()),
        &["--reload-debounce", "5ms", "--reload-poll", "1h"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let seen_b = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, answered, seen_b) = (
                Arc::clone(&stop),
                Arc::clone(&answered),
                Arc::clone(&seen_b),
            );
            let data = edge.data;
            std::thread::spawn(move || -> Result<(), String> {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < WAIT {
                    for origin in [A, B] {
                        let response =
                            send(data, &preflight("/", "api.example.com", origin, "PUT", ""));
                        consistent(&response, origin)?;
                        if origin == B && response.status == 204 {
                            seen_b.store(true, Ordering::Relaxed);
                        }
                    }
                    let proxied = send(
                        data,
                        "GET /small HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
                    );
                    if proxied.status != 200 || proxied.text() != "hello, world\n" {
                        return Err(format!("proxied request failed: {proxied:?}"));
                    }
                    answered.fetch_add(3, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let file = edge.rules_dir().join("rules.toml");
    for i in 0..100 {
        let content = match i % 3 {
            0 => rules(B, 200),
            1 => "[[rule]]\nname = \"broken\"\norigins = []\n".to_owned(),
            _ => rules(A, 100),
        };
        std::fs::write(&file, content).expect("write");
        std::thread::sleep(Duration::from_millis(15));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client
            .join()
            .expect("client thread")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let total = answered.load(Ordering::Relaxed);
    assert!(
        total > 300,
        "only {total} requests answered during the rewrites"
    );
    assert!(
        seen_b.load(Ordering::Relaxed),
        "the B policy was never observed"
    );
    assert!(
        edge.metric("preflightd_rules_reloads_total{result=\"success\",trigger=\"watch\"}") >= 5.0
    );
    assert!(
        edge.metric("preflightd_rules_reloads_total{result=\"failure\",trigger=\"watch\"}") >= 1.0
    );
}

#[test]
fn a_recovery_to_the_active_content_and_an_unchanged_sighup_each_log_one_info_line() {
    let edge = start(&rules(A, 100));
    let file = edge.rules_dir().join("rules.toml");
    // SIGHUP with nothing changed: one info line, no compile.
    edge.process.signal("HUP");
    let line = edge.process.wait_for_line("SIGHUP: rules unchanged");
    assert!(line.contains("\"level\":\"INFO\""), "{line}");
    // A bad push, then the old content back: the hash is the active one's, so nothing is
    // compiled, but the recovery is said once.
    std::fs::write(&file, "[[rule]]\nname = \"web\"\norigins = [\"nope\"]\n").expect("write");
    until_metric(
        &edge,
        "preflightd_rules_reloads_total{result=\"failure\",trigger=\"watch\"}",
        1.0,
    );
    assert_eq!(edge.metric("preflightd_rules_last_reload_successful"), 0.0);
    std::fs::write(&file, rules(A, 100)).expect("write");
    let line = edge
        .process
        .wait_for_line("rules are back to the active policy");
    assert!(line.contains("\"level\":\"INFO\""), "{line}");
    assert_eq!(edge.metric("preflightd_rules_last_reload_successful"), 1.0);
    assert_eq!(status(&edge, A), 204);
}

/// Limits the child's address space (`RLIMIT_AS`), as a container's memory limit would.
fn address_space_limit(command: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn a_nested_regex_push_is_refused_and_the_server_lives_on_under_a_1_gib_address_space() {
    let mut edge = Preflightd::start_with_command(
        |dir| std::fs::write(dir.join("rules.toml"), rules(A, 100)).expect("write"),
        None,
        WATCHING,
        |command| address_space_limit(command, 1 << 30),
    );
    // 72 bytes of regex whose Thompson NFA would need gigabytes (10^7 copies of `a`).
    std::fs::write(
        edge.rules_dir().join("rules.toml"),
        "[[rule]]\nname = \"web\"\nmethods = [\"PUT\"]\norigins = [\"regex:https://(((((((a{10}){10}){10}){10}){10}){10}){10})\"]\n",
    )
    .expect("write");
    until_metric(
        &edge,
        "preflightd_rules_reloads_total{result=\"failure\",trigger=\"watch\"}",
        1.0,
    );
    let line = edge
        .process
        .wait_for_line("rules.toml:4:12: rule \\\"web\\\": invalid origin");
    assert!(line.contains("too large an automaton"), "{line}");
    assert_eq!(status(&edge, A), 204, "the last good policy answers");
    assert!(edge.process.child.try_wait().expect("try_wait").is_none());
}

/// Replaces `b.toml` of a two-file rules directory by something that cannot be read as a
/// file; the reload must fail naming it, and `b`'s rules must keep answering.
fn an_unreadable_entry_fails_the_reload(what: &str, replace: impl FnOnce(&Path)) {
    let edge = Preflightd::start_with_setup(
        |dir| {
            std::fs::write(
                dir.join("a.toml"),
                rules(A, 100).replace("\"web\"", "\"a\""),
            )
            .expect("write");
            std::fs::write(
                dir.join("b.toml"),
                rules(B, 100).replace("\"web\"", "\"b\""),
            )
            .expect("write");
        },
        None,
        WATCHING,
    );
    assert_eq!((status(&edge, A), status(&edge, B)), (204, 204));
    let b = edge.rules_dir().join("b.toml");
    std::fs::remove_file(&b).expect("remove b.toml");
    replace(&b);
    until_metric(
        &edge,
        "preflightd_rules_reloads_total{result=\"failure\",trigger=\"watch\"}",
        1.0,
    );
    let line = edge.process.wait_for_line("b.toml: cannot read");
    assert!(line.contains(what), "{what}: {line}");
    assert_eq!(edge.metric("preflightd_rules_last_reload_successful"), 0.0);
    assert_eq!((status(&edge, A), status(&edge, B)), (204, 204), "{what}");
}

#[test]
fn a_directory_named_like_a_rules_file_fails_the_reload() {
    an_unreadable_entry_fails_the_reload("a directory", |b| {
        std::fs::create_dir(b).expect("mkdir");
    });
}

#[test]
fn a_dangling_symlink_fails_the_reload() {
    an_unreadable_entry_fails_the_reload("dangling", |b| {
        std::os::unix::fs::symlink(b.with_file_name("gone.toml"), b).expect("symlink");
    });
}

#[test]
fn a_symlink_loop_fails_the_reload() {
    an_unreadable_entry_fails_the_reload("symlink loop", |b| {
        std::os::unix::fs::symlink(b, b).expect("symlink");
    });
}

#[test]
fn a_fifo_fails_the_reload_without_blocking_it() {
    an_unreadable_entry_fails_the_reload("a FIFO", |b| {
        let status = std::process::Command::new("mkfifo")
            .arg(b)
            .status()
            .expect("mkfifo");
        assert!(status.success());
    });
}

#[test]
fn a_link_to_a_device_fails_the_reload() {
    an_unreadable_entry_fails_the_reload("a device", |b| {
        std::os::unix::fs::symlink("/dev/zero", b).expect("symlink");
    });
}

#[test]
fn the_metric_series_of_a_rule_no_longer_loaded_are_removed() {
    let edge = start(&rules(A, 100));
    assert_eq!(status(&edge, A), 204);
    assert_eq!(status(&edge, B), 403);
    let series = "preflightd_preflight_requests_total{result=\"allowed\",rule=\"web\"}";
    assert_eq!(edge.metric(series), 1.0);
    // The same policy under another rule name: "web" is gone, its series with it.
    std::fs::write(
        edge.rules_dir().join("rules.toml"),
        rules(A, 100).replace("\"web\"", "\"web2\""),
    )
    .expect("write");
    until_metric(
        &edge,
        "preflightd_rules_reloads_total{result=\"success\",trigger=\"watch\"}",
        1.0,
    );
    assert_eq!(status(&edge, A), 204);
    let metrics = edge.metrics();
    assert!(!metrics.contains("rule=\"web\""), "{metrics}");
    assert!(
        metrics.contains("preflightd_preflight_requests_total{result=\"allowed\",rule=\"web2\"} 1"),
        "{metrics}"
    );
    // Series of the rule-less results stay.
    assert!(metrics.contains("rule=\"(none)\""), "{metrics}");
}
