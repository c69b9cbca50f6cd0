//! The managed process of the health-check CPU benchmark (bench/supervision.sh): a tiny TCP
//! listener, so `health_check = "tcp://127.0.0.1:${PORT}"` has something real to connect to.
//!
//!     PORT=4000 tcp_listener
//!
//! Binds 127.0.0.1:$PORT (pm3's `increment_var = "PORT"` gives each instance its own port),
//! then accepts connections and closes them at once, forever. It writes nothing and uses no CPU
//! between connections; a std Rust binary, so 100 copies cost a few MiB, not 100 interpreters.
//!
//! Compile: rustc -O -o target/bench/tcp_listener bench/tcp_listener.rs

use std::net::TcpListener;

fn main() {
    let port: u16 = match std::env::var("PORT").ok().and_then(|p| p.trim().parse().ok()) {
        Some(p) => p,
        None => {
            eprintln!("tcp_listener: PORT is not set to a port number");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tcp_listener: cannot bind 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    for conn in listener.incoming() {
        drop(conn);
    }
}
