//! The dev server's data cannot be corrupted by a second `dev.sh`: DynamoDB Local is started on a
//! data directory only by the one process that holds its lock (`scripts/lib.sh`
//! `start_dynamodb_local`, which `dev.sh` calls). Two processes on one SQLite file gave duplicate
//! seqs and `UNIQUE constraint failed`.

use std::net::TcpListener;
use std::process::Command;

use crate::common::endpoint;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a port").port()
}

/// `start_dynamodb_local PORT DIR` in a shell of its own: whether it started, its stdout and stderr.
fn start(port: u16, dir: &std::path::Path) -> (bool, String, String) {
    let script =
        format!("source scripts/lib.sh && start_dynamodb_local {port} '{}' && echo $DDB_LOCAL_PID", dir.display());
    let output = Command::new("bash")
        .args(["-c", &script])
        .current_dir(kit::dynamodb_local::workspace_root())
        .output()
        .expect("run bash");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[test]
fn a_second_dynamodb_local_on_the_same_data_directory_refuses_and_the_first_keeps_it() {
    endpoint(); // DynamoDB Local is installed (the suite's own instance)
    let dir = std::env::temp_dir().join(format!("ddb-lock-{}", uuid::Uuid::new_v4().simple()));
    let first_port = free_port();
    let second_port = std::iter::repeat_with(free_port).find(|port| *port != first_port).unwrap_or(first_port);
    let (started, pid, _) = start(first_port, &dir);
    assert!(started, "the first start on a fresh directory works");
    let kill = |pid: &str| Command::new("kill").arg(pid).status().map(|status| status.success());
    let (second, _, said) = start(second_port, &dir);
    assert!(!second, "a second DynamoDB Local on the same directory refuses");
    assert!(
        said.contains("in use by another DynamoDB Local") && said.contains(&format!("port {first_port}")),
        "{said}"
    );
    assert!(TcpListener::bind(("127.0.0.1", second_port)).is_ok(), "nothing listens on the refused port");
    assert_eq!(kill(&pid).ok(), Some(true), "the first one ran (pid {pid})");
    // Once the first is gone, the directory is free again.
    let mut third = (false, String::new(), String::new());
    for _ in 0..50 {
        third = start(free_port(), &dir);
        if third.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(third.0, "the lock outlived its process: {}", third.2);
    let _ = kill(&third.1);
    let _ = std::fs::remove_dir_all(&dir);
}
