//! The process's lifecycle: the first rules load must succeed, SIGTERM drains gracefully,
//! systemd is notified of ready / reloading / stopping.

use std::time::{Duration, Instant};

use crate::support::{Preflightd, RULES, Upstream, WAIT, send};

#[test]
fn the_first_load_must_succeed_or_the_process_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("bad.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"x\"\norigins = [\"https://a.example.com/\"]\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--rules",
        ])
        .arg(&rules)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:3:12: rule \"x\": invalid origin \"https://a.example.com/\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("rules not loaded; not starting"),
        "{stderr}"
    );
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let upstream = Upstream::start();
    let mut edge = Preflightd::start(RULES, Some(&upstream.url()), &["--shutdown-grace", "10s"]);
    let data = edge.data;
    let slow = std::thread::spawn(move || {
        send(
            data,
            "GET /slow?ms=1500 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
        )
    });
    // Wait until the upstream holds the request, then ask the edge to stop.
    let deadline = Instant::now() + WAIT;
    while upstream.log().is_empty() {
        assert!(
            Instant::now() < deadline,
            "slow request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    edge.process.signal("TERM");
    let response = slow.join().expect("slow thread");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "slow done\n")
    );
    assert_eq!(edge.process.wait_exit(), Some(0));
    edge.process.wait_for_line("\"shutting down\"");
    edge.process.wait_for_line("\"stopped\"");
}

#[test]
fn systemd_is_notified_of_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("mkdir");
    std::fs::write(rules_dir.join("rules.toml"), RULES).expect("write");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--no-watch",
            "--rules",
        ])
        .arg(&rules_dir)
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let receive = || {
        let mut buffer = [0u8; 256];
        let n = socket.recv(&mut buffer).expect("notification");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    assert_eq!(receive(), "READY=1");
    let signal = |name: &str| {
        std::process::Command::new("kill")
            .args([format!("-{name}"), child.id().to_string()])
            .status()
            .expect("kill");
    };
    signal("HUP");
    let reloading = receive();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(
        reloading["RELOADING=1\nMONOTONIC_USEC=".len()..]
            .parse::<u64>()
            .is_ok_and(|us| us > 0)
    );
    assert_eq!(receive(), "READY=1");
    signal("TERM");
    assert_eq!(receive(), "STOPPING=1");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn caps_that_do_not_fit_the_file_descriptor_limit_are_warned_about() {
    // 100 million connections never fit. The warning comes at startup, before the listeners
    // bind; a --listen address already taken then ends the run, so stderr can be read whole.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.toml"), RULES).expect("write rules");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args([
            "serve",
            "--listen",
            &address,
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--max-connections", "100000000", "--rules"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.contains("file descriptor limit"))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("--max-connections"), "{warning}");
    assert!(stderr.contains("cannot bind --listen"), "{stderr}");
}
