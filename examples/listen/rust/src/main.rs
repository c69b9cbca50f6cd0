//! A Rust web app that takes its listening socket from pm3: descriptor 3 through the
//! `listenfd` crate (which checks LISTEN_PID and LISTEN_FDS), or binds 127.0.0.1:$PORT when
//! started by hand. One tiny HTTP answer per connection; on SIGTERM the default action ends the
//! process (a real server would stop accepting and finish its requests first).

use std::io::{Read, Write};
use std::net::TcpListener;

fn main() -> std::io::Result<()> {
    let mut fds = listenfd::ListenFd::from_env();
    let listener = match fds.take_tcp_listener(0)? {
        Some(l) => l,
        None => {
            let port = std::env::var("PORT").unwrap_or_else(|_| "8082".into());
            TcpListener::bind(format!("127.0.0.1:{port}"))?
        }
    };
    println!("pid {} serving on {}", std::process::id(), listener.local_addr()?);
    for conn in listener.incoming() {
        let mut conn = match conn {
            Ok(c) => c,
            Err(_) => continue,
        };
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let body = format!("hello from pid {}\n", std::process::id());
        let _ = write!(conn, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    }
    Ok(())
}
