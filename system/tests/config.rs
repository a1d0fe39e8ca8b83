//! A node started with settings that cannot work says what is wrong, once, and exits 254.

use ordeal_system::launch::find_binary;
use std::process::Command;
use std::time::{Duration, Instant};

fn serve(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let binary = find_binary().expect("ordeal-broker is built beside the tests");
    let out = Command::new(binary)
        .args(["serve", "--listen=127.0.0.1:0", &format!("--data-dir={}", dir.path().display())])
        .args(args)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_settings_exit_254_with_one_message() {
    for (args, expected) in [
        (&["--id=1", "--peers=1=notanaddr"][..], "is not HOST:PORT"),
        (&["--id=1", "--peers=1=127.0.0.1:0"][..], "is not HOST:PORT"),
        (&["--id=2", "--peers=1=127.0.0.1:7001"][..], "does not list this node's id 2"),
        (&["--id=1", "--peers=1=127.0.0.1:7001", "--groups=0"][..], "--groups"),
    ] {
        let (code, stderr) = serve(args);
        assert_eq!(code, Some(254), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.matches(expected).count(), 1, "said once: {stderr}");
    }
}

#[test]
fn issue_17_a_data_directory_refuses_another_nodes_id() {
    let dir = tempfile::tempdir().unwrap();
    let binary = find_binary().expect("ordeal-broker is built beside the tests");
    let data = format!("--data-dir={}", dir.path().display());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let serve = |id: u64| {
        let mut c = Command::new(&binary);
        c.args(["serve", &format!("--id={id}"), &format!("--listen=127.0.0.1:{port}"), &data])
            .arg(format!("--peers={id}=127.0.0.1:{port}"));
        c
    };
    // A node says it started once it has opened (and claimed) its directory: an event of its
    // own, where a connection to the port could be answered by another process that took it.
    let logs = tempfile::tempdir().unwrap();
    let started = |id: u64, name: &str| {
        let log = logs.path().join(name);
        let mut node = serve(id).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let up = loop {
            if std::fs::read_to_string(&log).unwrap_or_default().contains("node started") {
                break Ok(());
            }
            if node.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break Err(std::fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Stopped whatever happened, so that a failure leaves no process behind.
        let _ = node.kill();
        node.wait().unwrap();
        if let Err(said) = up {
            panic!("node {id} did not start: {said}");
        }
    };
    started(1, "first");
    // Bounded: a node that wrongly accepted the directory would run on.
    let mut other = serve(2).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while other.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            other.kill().unwrap();
            panic!("node 2 kept running on node 1's directory");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = other.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{stderr}");
    assert!(stderr.contains("belongs to node 1, not node 2"), "{stderr}");
    // Its own node still opens it.
    started(1, "again");
}
