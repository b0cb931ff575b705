//! A private `redis-server` per test: on 127.0.0.1, a free port, in a temporary directory,
//! stopped (SIGKILL, then reaped) when dropped.
//!
//! On Linux a server also dies with the thread that started it (`PR_SET_PDEATHSIG`): a test
//! process that aborts, is killed or hits its watchdog leaves no server behind. Start (and
//! [`restart`](RedisServer::restart)) a server from a thread that outlives it — the test's own
//! thread, as usual.
//!
//! Needs the `redis-server` program on `PATH` (Debian: `apt-get install redis-server`); without
//! it [`RedisServer::start`] panics and says so: a missing server fails a test run, it never
//! skips it.
//!
//! ```
//! use uniconc_core::Lock as _;
//! use uniconc_redis::testing::RedisServer;
//!
//! let server = RedisServer::start(); // stopped when dropped
//! let conn = uniconc_redis::connect(&server.url())?;
//! let lock = conn.lock()?;
//! assert!(lock.try_lock().is_ok());
//! # Ok::<(), uniconc_core::Error>(())
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk: a restart starts empty.
    None,
    /// An append-only file written on every command (`appendfsync always`): a restart comes
    /// back with every acknowledged write.
    Aof,
}

/// A running `redis-server`, stopped and removed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    persistence: Persistence,
    password: Option<String>,
    also_on: Option<IpAddr>,
}

/// The path of `redis-server`, or a panic that says how to install it.
fn server_program() -> PathBuf {
    if let Ok(p) = std::env::var("UNICONC_REDIS_SERVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
    {
        let candidate = dir.join("redis-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "uniconc-redis tests need `redis-server` (not found on PATH, /usr/bin or /usr/sbin): \
         install it (Debian/Ubuntu: `apt-get install -y redis-server`; .ci/run does) or name it \
         in UNICONC_REDIS_SERVER"
    );
}

/// Makes the command's process receive SIGKILL when the thread that spawns it exits (the test
/// process aborting or being killed included), so that no server outlives its test.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;

    // SAFETY: getpid(2) has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // calls (prctl(2), getppid(2)); it allocates nothing on its success path and takes no lock.
    // The error it may return is built from a raw errno (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody will send the signal
            // (prctl(2) advises this check). Refuse to start rather than run orphaned.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Elsewhere, servers are stopped when their `RedisServer` is dropped, and only then.
#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a free port on 127.0.0.1");
    l.local_addr().expect("local address").port()
}

impl RedisServer {
    /// Starts a server without persistence and without a password.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed or does not come up within 10 s.
    pub fn start() -> Self {
        Self::start_with(Persistence::None, None)
    }

    /// Starts a server with the given persistence and, if `password` is given, `requirepass`.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(persistence: Persistence, password: Option<&str>) -> Self {
        Self::launched(persistence, password, None)
    }

    /// Starts a server without persistence and without a password that listens on `addr` as
    /// well as on 127.0.0.1, for clients on another host or network namespace
    /// ([`url_on`](Self::url_on)). `addr` must be an address of this host already.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start), and when the server cannot bind `addr`.
    pub fn start_also_on(addr: IpAddr) -> Self {
        Self::launched(Persistence::None, None, Some(addr))
    }

    /// A server in a new temporary directory, started.
    fn launched(persistence: Persistence, password: Option<&str>, also_on: Option<IpAddr>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("uniconc-redis-")
            .tempdir()
            .expect("creating a temporary directory for redis-server");
        let mut s = Self {
            child: None,
            port: 0,
            dir,
            persistence,
            password: password.map(str::to_owned),
            also_on,
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let program = server_program();
        // A port found free may be taken before the server binds it: try a few.
        for _ in 0..5 {
            let port = if self.port == 0 {
                free_port()
            } else {
                self.port
            };
            let mut cmd = Command::new(&program);
            cmd.arg("--port")
                .arg(port.to_string())
                .args(["--bind", "127.0.0.1"]);
            if let Some(addr) = self.also_on {
                cmd.arg(addr.to_string());
            }
            cmd.args(["--save", "", "--daemonize", "no"])
                .args(["--protected-mode", "no", "--loglevel", "warning"])
                .arg("--dir")
                .arg(self.dir.path())
                .arg("--logfile")
                .arg(self.dir.path().join("redis.log"));
            match self.persistence {
                Persistence::None => {
                    cmd.args(["--appendonly", "no"]);
                }
                Persistence::Aof => {
                    cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
                }
            }
            if let Some(pw) = &self.password {
                cmd.arg("--requirepass").arg(pw);
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            die_with_parent(&mut cmd);
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
            if self.wait_ready(port, &mut child) {
                self.port = port;
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            if self.port != 0 {
                // A restart on the same port: wait for it to be released, then retry it.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        panic!(
            "redis-server did not come up; its log: {}",
            std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
        );
    }

    fn wait_ready(&self, port: u16, child: &mut Child) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                eprintln!("redis-server on port {port} exited at start: {err}");
                return false;
            }
            if self.ping(port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn ping(&self, port: u16) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if let Some(pw) = &self.password {
            let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pw}\r\n", pw.len());
            if s.write_all(auth.as_bytes()).is_err() {
                return false;
            }
            let mut line = String::new();
            if BufReader::new(&s).read_line(&mut line).is_err() || !line.starts_with("+OK") {
                return false;
            }
        }
        if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("+PONG")
    }

    /// The URL to connect to (with the password, if any).
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The URL to connect to through `host` (an address the server listens on: 127.0.0.1, or
    /// the one given to [`start_also_on`](Self::start_also_on)).
    pub fn url_on(&self, host: IpAddr) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@{}", SocketAddr::new(host, self.port)),
            None => format!("redis://{}", SocketAddr::new(host, self.port)),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The server's working directory (its AOF and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL: nothing flushed beyond what its persistence already wrote)
    /// and starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Sends `signal` to the server (e.g. `libc::SIGSTOP`, `libc::SIGCONT`).
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child, not yet
        // reaped (we reap it only in `kill`), so it cannot name another process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How the waits of this process ended so far: a test's check that waiters are woken by the
/// releases they wait for instead of sleeping until the fallback poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WaitCounts {
    /// Naps ended by a wake-up (a notification on the object's channel).
    pub woken: u64,
    /// Naps that ran their whole fallback period ([`POLL`](crate::POLL)) without one.
    pub polled: u64,
}

/// How the blocking waits (lock, permit, event, receive, ...) of this process ended so far.
pub fn wait_counts() -> WaitCounts {
    let (woken, polled) = crate::wait::counts();
    WaitCounts { woken, polled }
}
