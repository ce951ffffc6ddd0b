//! sd_notify(3) for `Type=notify` systemd units: `READY=1` once serving, `RELOADING=1` (with
//! `MONOTONIC_USEC`) while the rules reload, then `READY=1` again, `STOPPING=1` on shutdown.
//! One datagram to the socket named by `$NOTIFY_SOCKET`; without that variable (not under
//! systemd) nothing is sent. A failure is logged, never fatal.

use std::os::unix::net::UnixDatagram;

pub fn ready() {
    send("READY=1");
}

pub fn stopping() {
    send("STOPPING=1");
}

/// A reload started; `ready()` ends it.
pub fn reloading() {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = u128::try_from(now.tv_sec).unwrap_or(0) * 1_000_000
        + u128::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
    send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|socket| {
        match path.as_encoded_bytes().strip_prefix(b"@") {
            // An abstract socket (Linux), written `@name`.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &address)
            }
            None => socket.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}
