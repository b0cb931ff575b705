//! A worker agent on another "machine": its own network namespace, reaching the test's private
//! redis-server over a veth pair (the host end in the test's namespace). The pool stays in the
//! test's namespace; tasks report the inode of their network namespace, so the test sees where
//! they ran.
//!
//! Needs root and `ip` (iproute2). Without them, or where `ip netns add` is not permitted (an
//! unprivileged container), each test prints `SKIPPED: <why>` and passes; any other failure of
//! the setup fails the test. Namespaces, links and processes are torn down by drop guards, also
//! when a test fails; a namespace left by a test process that was killed (watchdog abort) is
//! removed by the next run.

mod common;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{ROLE_ENV, Watchdog, role, scale};
use uniconc_core::{Pool as _, TaskHandle as _};
use uniconc_redis::pool::Pool;
use uniconc_redis::testing::RedisServer;

/// The inode of the calling process's network namespace.
fn netns_inode() -> u64 {
    std::fs::metadata("/proc/self/ns/net")
        .expect("reading /proc/self/ns/net")
        .ino()
}

uniconc_core::task! {
    /// `x` and the inode of the network namespace the task ran in.
    fn where_am_i(x: u64) -> (u64, u64) { (x, netns_inode()) }
}

uniconc_core::task! {
    /// Appends `start` to the file at `path`, sleeps `ms`, appends `end`; returns the inode of
    /// the network namespace it ran in.
    fn marked_nap(path: String, ms: u64) -> u64 {
        append(&path, "start");
        std::thread::sleep(Duration::from_millis(ms));
        append(&path, "end");
        netns_inode()
    }
}

fn append(path: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("opening the marker file");
    writeln!(f, "{line}").expect("writing the marker file");
}

fn count(path: &Path, line: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == line)
        .count()
}

/// Waits (polling) until `cond` holds; the test's watchdog catches a hang.
fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Tests fork and change links: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `ip args…`; its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip args…` and panics, saying why, if it fails.
fn ip_ok(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

/// The prefix of the namespaces these tests create: `uc-<pid>-<k>`.
const NS_PREFIX: &str = "uc-";

/// The prefix of the host ends of their veth pairs: `uch<pid>x<k>`.
const HOST_IF_PREFIX: &str = "uch";

/// The pid in a name `<prefix><pid><sep>…` of this module's namespaces and links.
fn pid_in(name: &str, prefix: &str, sep: char) -> Option<u32> {
    name.strip_prefix(prefix)?.split(sep).next()?.parse().ok()
}

/// Whether process `pid` is gone.
fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what a test process killed before its guards ran left behind: namespaces
/// `uc-<pid>-<k>`, and host ends `uch<pid>x<k>` (deleted with their namespace only once the
/// last process inside has ended).
fn sweep_stale() {
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            if pid_in(name, NS_PREFIX, '-').is_some_and(gone) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // `<index>: <name>@<peer>: <flags> …`
            let Some(name) = line.split(": ").nth(1).and_then(|n| n.split('@').next()) else {
                continue;
            };
            if pid_in(name, HOST_IF_PREFIX, 'x').is_some_and(gone) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

/// A network namespace joined to this one by a veth pair: `host` is the address of the host
/// end (in the test's namespace); the end inside has the other address of the /30. Deleting
/// the namespace (on drop) deletes the pair once no process is left inside; the host end is
/// deleted explicitly too, so the pair goes at once.
struct Netns {
    name: String,
    host_if: String,
    host: Ipv4Addr,
}

impl Netns {
    /// Creates the namespace and the pair, both ends up (and `lo` inside). `Err` with the
    /// reason when the machine does not permit it (the caller skips); panics on any other
    /// failure.
    fn create() -> Result<Self, String> {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(
                "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)".into(),
            );
        }
        match Command::new("ip").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => return Err(format!("`ip -V` failed ({})", o.status)),
            Err(e) => return Err(format!("`ip` (iproute2) not runnable: {e}")),
        }
        sweep_stale();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // Relaxed: only the value matters, a unique number per namespace of this process.
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("{NS_PREFIX}{pid}-{k}");
        let (host, peer) = free_subnet(pid, k);
        if let Err(e) = ip(&["netns", "add", &name]) {
            if e.contains("Operation not permitted") || e.contains("Permission denied") {
                return Err(format!("`ip netns add` is not permitted here: {e}"));
            }
            panic!("{e}");
        }
        // From here on the guard owns what exists, so a panic below tears it down.
        let mut ns = Netns {
            name,
            host_if: format!("{HOST_IF_PREFIX}{pid}x{k}"),
            host,
        };
        let peer_if = format!("ucp{pid}x{k}");
        ns.host_if.truncate(15); // IFNAMSIZ - 1
        let peer_if = &peer_if[..peer_if.len().min(15)];
        ip_ok(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            peer_if,
        ]);
        ip_ok(&["link", "set", peer_if, "netns", &ns.name]);
        ip_ok(&["addr", "add", &format!("{host}/30"), "dev", &ns.host_if]);
        ip_ok(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip_ok(&all);
        };
        inside(&["addr", "add", &format!("{peer}/30"), "dev", peer_if]);
        inside(&["link", "set", peer_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        // The test's namespace is the gateway: every address of it is reachable from inside.
        inside(&["route", "add", "default", "via", &host.to_string()]);
        Ok(ns)
    }

    /// The inode of the namespace (as `/proc/<pid>/ns/net` of a process inside shows it).
    fn inode(&self) -> u64 {
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .expect("the namespace's file")
            .ino()
    }

    /// Cuts the link (a network partition) or restores it.
    fn set_link(&self, up: bool) {
        ip_ok(&["link", "set", &self.host_if, if up { "up" } else { "down" }]);
    }

    /// This test binary, run inside the namespace as the agent role (see [`agent_role`]), in a
    /// process group of its own.
    fn spawn_agent(&self, url: &str, queue: &str, lease_ms: u64) -> AgentProc {
        AgentProc::spawn(Some(&self.name), url, queue, lease_ms)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("tearing down: {e}");
        }
        // Normally gone with the namespace; an error here just says so.
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

/// A /30 of 10.213.0.0/16 that no interface of this namespace uses: (host end, inside end).
fn free_subnet(pid: u32, k: u32) -> (Ipv4Addr, Ipv4Addr) {
    let used = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let start = pid.wrapping_mul(7).wrapping_add(k) % 16384;
    for i in 0..16384 {
        let net = (start + i) % 16384; // one of 16384 subnets of 4 addresses
        let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + net * 4;
        let (host, peer) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        if !used.contains(&format!(" {host}/")) && !used.contains(&format!(" {peer}/")) {
            return (host, peer);
        }
    }
    panic!("no free /30 in 10.213.0.0/16");
}

/// A child re-running this binary as a worker agent (inside a namespace, or here), in a
/// process group of its own so that killing the group kills its worker processes too.
struct AgentProc(Child);

impl AgentProc {
    fn spawn(netns: Option<&str>, url: &str, queue: &str, lease_ms: u64) -> Self {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut cmd = match netns {
            // `ip netns exec` execs the program (no fork): the child is the agent itself.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let child = cmd
            .args(["agent_role", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, format!("agent|{url}|{queue}|{lease_ms}"))
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("re-running the test binary");
        AgentProc(child)
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("pid fits");
        // SAFETY: kill(2) has no memory-safety preconditions; the group is the child's own
        // (not reaped yet, so its id names no other group).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// The worker agent role: runs only when re-run by [`AgentProc::spawn`].
#[test]
fn agent_role() {
    let Some(r) = role() else { return };
    assert_eq!(r[0], "agent");
    // Die with the test that started us, even when its watchdog aborts it (no drop runs).
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let lease = Duration::from_millis(r[3].parse().expect("lease ms"));
    let res = uniconc_redis::pool::worker(&r[1])
        .queue(&r[2])
        .workers(1)
        .lease(lease)
        .run();
    panic!("the agent ended: {res:?}");
}

/// The namespace, or `None` after printing why the test is skipped.
fn netns_or_skip() -> Option<Netns> {
    match Netns::create() {
        Ok(ns) => Some(ns),
        Err(why) => {
            println!("SKIPPED: {why}");
            None
        }
    }
}

/// A pool with no agent of its own, on `server` through 127.0.0.1.
fn remote_pool(server: &RedisServer, queue: &str) -> Pool {
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    Pool::configure()
        .connection(&conn)
        .queue(queue)
        .workers(0)
        .build()
        .unwrap()
}

#[test]
fn an_agent_in_its_own_network_namespace_runs_every_task_once() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(120));
    let Some(ns) = netns_or_skip() else { return };
    let server = RedisServer::start_also_on(IpAddr::V4(ns.host));
    let url = server.url_on(IpAddr::V4(ns.host));
    let pool = remote_pool(&server, "netns");
    let _agent = ns.spawn_agent(&url, "netns", 1000);
    let here = netns_inode();

    let n = 200 * scale() as u64;
    let out = pool.map_task::<where_am_i>(0..n).unwrap();
    // In order, each result once, each from the agent across the veth pair.
    assert_eq!(out.len(), usize::try_from(n).unwrap());
    let there = ns.inode();
    assert_ne!(there, here);
    for (i, (x, ino)) in out.iter().enumerate() {
        assert_eq!(*x, i as u64, "{out:?}");
        assert_eq!(*ino, there, "task {i} ran in another namespace");
    }
    let mut h = pool.submit_task::<where_am_i>(n).unwrap();
    assert_eq!(h.wait_deadline(None), Ok((n, there)));
    assert_eq!(h.deliveries(), Some(1));
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.reported, stats.redelivered),
        (n + 1, n + 1, 0)
    );
    assert_eq!(stats.duplicates, 0, "a result reported twice: {stats:?}");
}

#[test]
fn a_partitioned_agents_task_is_redelivered_and_its_late_result_dropped() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(180));
    let Some(ns) = netns_or_skip() else { return };
    let server = RedisServer::start_also_on(IpAddr::V4(ns.host));
    let url = server.url_on(IpAddr::V4(ns.host));
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let marks_s = marks.to_str().unwrap().to_owned();
    let pool = remote_pool(&server, "partition");
    let here = netns_inode();
    // The agent across the veth pair, with a short lease so that a partition outlives it.
    let _far = ns.spawn_agent(&url, "partition", 500);

    // The first task shows where the agent runs, and that it is up.
    let mut first = pool
        .submit_task::<marked_nap>((marks_s.clone(), 0))
        .unwrap();
    let there = ns.inode();
    assert_ne!(there, here);
    assert_eq!(
        first.wait_deadline(None),
        Ok(there),
        "not run across the pair"
    );
    assert_eq!(count(&marks, "end"), 1);

    // A long task; cut the link once the far agent runs it.
    let mut h = pool
        .submit_task::<marked_nap>((marks_s.clone(), 3000))
        .unwrap();
    until(|| count(&marks, "start") == 2);
    ns.set_link(false);
    // Its heartbeat lapses behind the partition: a local agent takes the task again.
    let near = AgentProc::spawn(None, &server.url(), "partition", 500);
    until(|| count(&marks, "start") == 3);
    // The local agent's result is the one reported, while the far agent is still cut off.
    assert_eq!(h.wait_deadline(None), Ok(here), "{:?}", pool.stats());
    assert_eq!(h.deliveries(), Some(2));

    // The far agent finished too (the file is not behind the partition) and records its
    // result once the link is back: it arrives, and is dropped as a duplicate.
    until(|| count(&marks, "end") == 3);
    ns.set_link(true);
    until(|| pool.stats().duplicates == 1);
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.reported, stats.redelivered),
        (2, 2, 1),
        "{stats:?}"
    );

    // The far agent serves again after the partition: with the local agent gone, its tasks
    // run across the pair.
    drop(near);
    let mut after = pool.submit_task::<marked_nap>((marks_s, 0)).unwrap();
    assert_eq!(after.wait_deadline(None), Ok(there));
    assert_eq!(pool.stats().duplicates, 1, "{:?}", pool.stats());
}

#[test]
fn a_sigkilled_agents_task_is_redelivered_to_an_agent_on_another_namespace() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(120));
    let Some(ns_a) = netns_or_skip() else { return };
    let Some(ns_b) = netns_or_skip() else { return };
    assert_ne!(ns_a.host, ns_b.host);
    let server = RedisServer::start_also_on(IpAddr::V4(ns_a.host));
    // Both "machines" reach the server at the same address: through their own pair and the
    // test's namespace as their gateway.
    let url = server.url_on(IpAddr::V4(ns_a.host));
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let marks_s = marks.to_str().unwrap().to_owned();
    let pool = remote_pool(&server, "killed");
    let a = ns_a.spawn_agent(&url, "killed", 500);
    let mut h = pool
        .submit_task::<marked_nap>((marks_s.clone(), 3000))
        .unwrap();
    until(|| count(&marks, "start") == 1);
    drop(a); // SIGKILL to the agent and its worker processes
    let _b = ns_b.spawn_agent(&url, "killed", 500);
    assert_eq!(h.wait_deadline(None), Ok(ns_b.inode()));
    assert_eq!(h.deliveries(), Some(2));
    assert_eq!((count(&marks, "start"), count(&marks, "end")), (2, 1));
    let stats = pool.stats();
    assert_eq!(
        (stats.reported, stats.redelivered, stats.duplicates),
        (1, 1, 0)
    );
}
