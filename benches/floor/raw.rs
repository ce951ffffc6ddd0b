//! The floor: a tokio server with no HTTP library that answers every request head (up to
//! "\r\n\r\n") with canned bytes. What a server costs when it does nothing but the kernel's
//! TCP work and tokio's scheduling. Used by benches/load/run.py, not by preflightd.
//!   floor_raw ADDR RESPONSE_FILE [WORKERS]

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(address), Some(file)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: floor_raw ADDR RESPONSE_FILE [WORKERS]");
        std::process::exit(2);
    };
    let workers = args.get(3).and_then(|w| w.parse().ok()).unwrap_or(1);
    let response: Arc<[u8]> = match std::fs::read(file) {
        Ok(bytes) => bytes.into(),
        Err(e) => {
            eprintln!("{file}: {e}");
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(address).await.expect("bind");
        println!("listening {}", listener.local_addr().expect("addr"));
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let response = Arc::clone(&response);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 16 * 1024];
                let mut filled = 0;
                loop {
                    let Ok(n) = stream.read(&mut buffer[filled..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    filled += n;
                    // Answer every complete request head in the buffer (pipelining-safe).
                    let mut start = 0;
                    let mut out = Vec::new();
                    while let Some(end) = buffer[start..filled]
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                    {
                        out.extend_from_slice(&response);
                        start += end + 4;
                    }
                    buffer.copy_within(start..filled, 0);
                    filled -= start;
                    if filled == buffer.len() {
                        return;
                    }
                    if !out.is_empty() && stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
