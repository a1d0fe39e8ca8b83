//! NFQUEUE delay benchmark: `cargo bench -p ordeal-faults --bench netem` (root, or user
//! namespaces allowed). Two node namespaces on a bridge; node 2 delays what it receives from
//! node 1 by the requested amount; a TCP ping-pong from node 1 measures the round trip with and
//! without the delay. The delay adds to one direction only, so the added median round trip is
//! the measured link delay.

use ordeal_faults::net::{self, Network};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn in_ns(path: &std::path::Path) {
    let ns = std::fs::File::open(path).expect("namespace");
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Round trips of one byte between node 1 and node 2, in ms.
fn ping_pong(net: &Network, rounds: usize) -> Vec<f64> {
    let server_ns = net.ns_path(2).expect("node 2");
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        in_ns(&server_ns);
        let l = TcpListener::bind((net::node_ip(2), 9000)).expect("listen");
        tx.send(()).expect("ready");
        let (mut s, _) = l.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).is_ok() {
            if s.write_all(&b).is_err() {
                break;
            }
        }
    });
    rx.recv().expect("server ready");
    let client_ns = net.ns_path(1).expect("node 1");
    let rtts = std::thread::spawn(move || {
        in_ns(&client_ns);
        let mut s = TcpStream::connect((net::node_ip(2), 9000)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut out = Vec::with_capacity(rounds);
        let mut b = [7u8; 1];
        for _ in 0..rounds {
            let t = Instant::now();
            s.write_all(&b).expect("send");
            s.read_exact(&mut b).expect("echo");
            out.push(t.elapsed().as_secs_f64() * 1e3);
        }
        out
    })
    .join()
    .expect("client");
    server.join().expect("server");
    rtts
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(why) = net::unavailable() {
        println!("skipped: network namespaces are not available here: {why}");
        return;
    }
    net::enter_private_network().expect("private network");
    let net = Network::create("bench", &[1, 2]).expect("topology");
    let jitter: u64 = std::env::var("ORDEAL_BENCH_JITTER_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let base = median(ping_pong(&net, 200));
    println!(
        "| requested delay (jitter {jitter} ms) | round trips | median RTT | added (measured delay) | error |\n|---|---|---|---|---|"
    );
    println!("| none | 200 | {base:.2} ms | | |");
    for ms in [20u64, 50, 100] {
        net.delay(&[2], Duration::from_millis(ms), Duration::from_millis(jitter)).expect("delay");
        let rounds = (4000 / ms) as usize;
        let rtts = ping_pong(&net, rounds);
        net.heal().expect("heal");
        let m = median(rtts);
        let added = m - base;
        println!(
            "| {ms} ms | {rounds} | {m:.2} ms | **{added:.2} ms** | {:+.1}% |",
            (added - ms as f64) / ms as f64 * 100.0
        );
    }
}
