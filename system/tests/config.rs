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
