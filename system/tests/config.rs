//! A node started with settings that cannot work says what is wrong, once, and exits 254.

use ordeal_system::launch::find_binary;
use std::process::Command;

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
    // A node listens once it has opened (and claimed) its directory.
    let listening = |node: &mut std::process::Child| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(node.try_wait().unwrap().is_none(), "node 1 exited");
            assert!(std::time::Instant::now() < deadline, "node 1 never listened");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let mut node = serve(1).stderr(std::process::Stdio::null()).spawn().unwrap();
    listening(&mut node);
    node.kill().unwrap();
    node.wait().unwrap();
    let out = serve(2).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{stderr}");
    assert!(stderr.contains("belongs to node 1, not node 2"), "{stderr}");
    // Its own node still opens it.
    let mut again = serve(1).stderr(std::process::Stdio::null()).spawn().unwrap();
    listening(&mut again);
    again.kill().unwrap();
    again.wait().unwrap();
}
