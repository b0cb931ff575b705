//! The test-server harness: a server dies with the test process that started it.

mod common;

use std::io::BufReader;
use std::time::Duration;

use common::Watchdog;
use uniconc_redis::testing::RedisServer;

/// Whether process `pid` has terminated (gone, or a zombie nobody has reaped yet).
fn terminated(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_server_dies_with_the_test_process_that_aborts() {
    if common::role().is_some() {
        // The child: start a server, say its pid, abort without dropping it.
        let server = RedisServer::start();
        println!("server-pid {}", server.pid());
        std::process::abort();
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let mut child =
        common::spawn_role_piped("a_server_dies_with_the_test_process_that_aborts", "abort");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let pid: u32 = common::read_tagged(&mut out, "server-pid ")
        .trim()
        .parse()
        .expect("the child printed its server's pid");
    let status = child.wait().expect("waiting for the child");
    assert!(!status.success(), "the child aborted");
    // Killed by the kernel when its parent died; poll until it is (the watchdog bounds this).
    while !terminated(pid) {
        std::thread::sleep(Duration::from_millis(20));
    }
}
