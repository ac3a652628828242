//! TLS handshakes per second against a server's TLS port: `CONCURRENCY` connections at a time,
//! each a TCP connect and a full TLS handshake (no session resumption), then a close, for
//! `SECS` seconds. Prints the handshakes completed, per second, and their latency.
//!
//! ```text
//! cargo run --release -p net --example handshakes -- 127.0.0.1:7443 cert.pem 64 10
//! ```
//!
//! `scripts/transports.sh` runs it and measures the server's CPU meanwhile.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use net::tls::{self, TlsConnector, Trust};
use tokio::net::TcpStream;

fn usage() -> ! {
    eprintln!("usage: handshakes ADDR:PORT CA.pem [CONCURRENCY] [SECS]");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(addr), Some(ca)) = (args.first(), args.get(1)) else {
        usage()
    };
    let addr: SocketAddr = addr.parse().unwrap_or_else(|_| usage());
    let concurrency: usize = args
        .get(2)
        .map_or(Ok(64), |a| a.parse())
        .unwrap_or_else(|_| usage());
    let secs: u64 = args
        .get(3)
        .map_or(Ok(10), |a| a.parse())
        .unwrap_or_else(|_| usage());
    let config = tls::client_config(&Trust::CaFile(PathBuf::from(ca))).unwrap_or_else(|e| {
        eprintln!("handshakes: {e}");
        std::process::exit(2);
    });
    let connector = TlsConnector::from(config);
    let name = tls::server_name(&addr.ip().to_string()).expect("an IP address is a name");
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let micros = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (connector, name) = (connector.clone(), name.clone());
            let (done, failed, micros) = (done.clone(), failed.clone(), micros.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let at = Instant::now();
                    let handshake = async {
                        let stream = TcpStream::connect(addr).await?;
                        stream.set_nodelay(true)?;
                        connector.connect(name.clone(), stream).await
                    };
                    match tokio::time::timeout(Duration::from_secs(10), handshake).await {
                        Ok(Ok(_stream)) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            micros.fetch_add(at.elapsed().as_micros() as u64, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let took = started.elapsed().as_secs_f64();
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let mean_ms = micros.load(Ordering::Relaxed) as f64 / done.max(1) as f64 / 1000.0;
    println!(
        "{done} TLS handshakes in {took:.1} s: {:.0}/s, mean {mean_ms:.1} ms each, {failed} failed ({concurrency} at a time)",
        done as f64 / took
    );
}
