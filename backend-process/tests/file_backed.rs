//! File-backed arrays and regions: a forked child's writes, an unrelated program (this test
//! binary re-run in a role, see `child_role`) reading and writing the same file, the data
//! outliving its creator, the documented byte layout, every refusal of a bad file (wrong type,
//! version, byte order, size, a symbolic link, not a regular file), a holder killed with the
//! lock, and a lock word left by an earlier boot.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uniconc::prelude::*;
use uniconc::process::{Array, FileRegion};
use uniconc::{ErrorKind, LockError};

const LIMIT: Duration = Duration::from_secs(120);
const ROLE: &str = "UNICONC_FILE_ROLE";

/// A fresh directory for one test; removed with what is in it when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("uniconc-file-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }

    fn join(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child program, killed if the test ends before it.
struct Program(Child);

impl Drop for Program {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts this test binary in `role` on `path` (see `child_role`), stdout piped.
fn start(role: &str, path: &Path) -> Program {
    Program(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
            .env(ROLE, format!("{role} {}", path.display()))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a child program"),
    )
}

/// Waits for `p` (watchdog: `LIMIT`); true if it succeeded.
fn finish(mut p: Program) -> bool {
    let start = Instant::now();
    loop {
        if let Some(status) = p.0.try_wait().unwrap() {
            return status.success();
        }
        assert!(
            start.elapsed() < LIMIT,
            "watchdog: child program still running"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `f` on a thread; fails the test if it has not returned after `LIMIT`.
fn watchdog<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("watchdog: still running after {LIMIT:?}"))
}

/// Elements per array: 1000 times `UNICONC_STRESS_SCALE`.
fn elements() -> usize {
    1000 * common::scale() as usize
}

/// The roles the tests start this binary in. Without the variable: nothing (a normal run).
#[test]
fn child_role() {
    let Ok(spec) = std::env::var(ROLE) else {
        return;
    };
    let (role, path) = spec.split_once(' ').unwrap();
    match role {
        "create" => {
            // Creates the array, fills it, flushes and exits: the data must outlive us.
            let a = Array::<u64>::create_file(path, elements()).unwrap();
            for (i, x) in a.lock().unwrap().iter_mut().enumerate() {
                *x = i as u64 * 3;
            }
            a.flush().unwrap();
        }
        "check-and-add" => {
            // Checks what the parent and its forked child wrote, then adds 1 to each element.
            let a = Array::<u64>::open_file(path).unwrap();
            assert_eq!(a.len(), elements());
            let mut g = a.lock().unwrap();
            for (i, x) in g.iter_mut().enumerate() {
                assert_eq!(*x, i as u64 * 3 + 1, "element {i}");
                *x += 1;
            }
            drop(g);
            a.flush().unwrap();
        }
        "hold" => {
            // Takes the lock and waits to be killed (a watchdog ends it after LIMIT).
            let a = Array::<u64>::open_file(path).unwrap();
            let g = a.lock().unwrap();
            println!("locked");
            std::thread::sleep(LIMIT);
            drop(g);
        }
        "region-write" => {
            let r = FileRegion::open(path).unwrap();
            r.write_at(1, b"child").unwrap();
            r.flush().unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn an_array_file_is_shared_by_a_forked_child_and_an_unrelated_program_and_outlives_both() {
    let _f = common::fork_lock();
    let dir = Dir::new("shared");
    let path = dir.join("data.u64");
    // An unrelated program creates the file and exits.
    assert!(finish(start("create", &path)));
    // We open what it left; a forked child writes to it.
    let a = Array::<u64>::open_file(&path).unwrap();
    assert_eq!(a.len(), elements());
    let child = uniconc::process::spawn({
        let a = a.clone();
        move || {
            for x in a.lock().unwrap().iter_mut() {
                *x += 1;
            }
            a.flush().is_ok()
        }
    })
    .unwrap();
    assert!(child.join().unwrap());
    // Another unrelated program checks both writes and adds its own.
    assert!(finish(start("check-and-add", &path)));
    let want: Vec<u64> = (0..elements() as u64).map(|i| i * 3 + 2).collect();
    assert_eq!(a.to_vec(), want);
    drop(a);
    // Reopened after every handle is gone, and read as plain bytes at offset 4096.
    assert_eq!(Array::<u64>::open_file(&path).unwrap().to_vec(), want);
    let bytes = std::fs::read(&path).unwrap();
    let from_file: Vec<u64> = bytes[4096..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(from_file, want);
}

#[test]
fn the_file_layout_is_the_documented_one() {
    let dir = Dir::new("layout");
    let path = dir.join("a.u32");
    let a = Array::<u32>::create_file(&path, 5).unwrap();
    a.set(0, 0xdead_beef).unwrap();
    a.set(4, 7).unwrap();
    a.flush().unwrap();
    let b = std::fs::read(&path).unwrap();
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(b.len(), 4096 + 5 * 4);
    assert_eq!(&b[0..8], b"uniconcA"); // magic
    assert_eq!(u32_at(8), 1); // layout version
    assert_eq!(u32_at(12), 0x0102_0304); // byte order mark
    assert_eq!(u64_at(16), 4096); // data offset
    assert_eq!(u64_at(24), 5); // length
    assert_eq!(u64_at(32), 4); // element size
    assert_eq!(u64_at(40), 4); // element alignment
    assert_eq!(u32_at(48), 3); // type name length
    assert_eq!(&b[56..59], b"u32"); // type name
    // The elements, as numpy's `np.memmap(path, dtype="<u4", offset=4096)` reads them.
    let data: Vec<u32> = b[4096..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(data, [0xdead_beef, 0, 0, 0, 7]);
    // Another program: Python's own `mmap` and `struct`, where a python3 is installed.
    let script = "import mmap, struct, sys\n\
                  f = open(sys.argv[1], 'rb')\n\
                  m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n\
                  n = struct.unpack_from('<Q', m, 24)[0]\n\
                  print(m[0:8].decode(), n, *struct.unpack_from('<%dI' % n, m, 4096))\n";
    if let Ok(out) = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
    {
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.trim(),
            format!("uniconcA 5 {} 0 0 0 7", 0xdead_beefu32)
        );
    }
}

#[test]
fn a_bad_file_is_a_clear_error() {
    let dir = Dir::new("bad");
    let path = dir.join("a.u32");
    drop(Array::<u32>::create_file(&path, 16).unwrap());
    let kind = |p: &Path| Array::<u32>::open_file(p).unwrap_err().kind();
    // Another element type: another name and size, or the same size under another name.
    assert_eq!(
        Array::<u64>::open_file(&path).unwrap_err().kind(),
        ErrorKind::Incompatible
    );
    assert_eq!(
        Array::<i32>::open_file(&path).unwrap_err().kind(),
        ErrorKind::Incompatible
    );
    // A patched copy of a good file, for each header field.
    let good = std::fs::read(&path).unwrap();
    let patched = |tag: &str, off: usize, bytes: &[u8]| {
        let p = dir.join(tag);
        let mut b = good.clone();
        b[off..off + bytes.len()].copy_from_slice(bytes);
        std::fs::write(&p, b).unwrap();
        p
    };
    for (tag, off, bytes) in [
        ("magic", 0, &b"notmine!"[..]),
        ("version", 8, &2u32.to_le_bytes()[..]),
        ("order", 12, &0x0403_0201u32.to_le_bytes()[..]),
        ("offset", 16, &8192u64.to_le_bytes()[..]),
        ("len", 24, &17u64.to_le_bytes()[..]),
        ("huge-len", 24, &u64::MAX.to_le_bytes()[..]),
        ("size", 32, &8u64.to_le_bytes()[..]),
    ] {
        let e = Array::<u32>::open_file(patched(tag, off, bytes)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Incompatible, "{tag}: {e}");
    }
    // Truncated, extended, shorter than a header, empty.
    for (tag, len) in [
        ("short", 4096 + 15 * 4),
        ("long", 4096 + 17 * 4),
        ("tiny", 100),
        ("empty", 0),
    ] {
        let p = dir.join(tag);
        std::fs::copy(&path, &p).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len)
            .unwrap();
        assert_eq!(kind(&p), ErrorKind::Incompatible, "{tag}");
    }
    // A symbolic link to a good file, a directory, nothing.
    let link = dir.join("link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert_eq!(kind(&link), ErrorKind::InvalidArgument);
    assert_eq!(kind(&dir.0), ErrorKind::InvalidArgument);
    assert_eq!(kind(&dir.join("none")), ErrorKind::NotFound);
    // Creating never overwrites, not even through a link; the file is intact after.
    assert_eq!(
        Array::<u32>::create_file(&path, 3).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        Array::<u32>::create_file(&link, 3).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(std::fs::read(&path).unwrap(), good);
    assert_eq!(Array::<u32>::open_file(&path).unwrap().len(), 16);
    // No temporary file is left behind by the failed creates.
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("uniconc~")), "{names:?}");
}

#[test]
fn a_program_killed_holding_the_lock_is_reported_as_owner_died() {
    let dir = Dir::new("died");
    let path = dir.join("a.u64");
    let a = Array::<u64>::create_file(&path, 4).unwrap();
    let mut p = start("hold", &path);
    let out = p.0.stdout.take().unwrap();
    let locked = watchdog(move || {
        BufReader::new(out)
            .lines()
            .any(|l| l.unwrap().ends_with("locked"))
    });
    assert!(locked, "the holder ended without taking the lock");
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    let died = watchdog(move || matches!(a.lock(), Err(LockError::OwnerDied(_))));
    assert!(died);
}

#[test]
#[cfg(target_os = "linux")]
fn a_lock_word_left_by_an_earlier_boot_is_cleared_on_open() {
    let dir = Dir::new("boot");
    let path = dir.join("a.u64");
    drop(Array::<u64>::create_file(&path, 4).unwrap());
    // As a file that lived through a reboot: the lock's boot (offset 1024) is another one,
    // and its word (offset 1032) holds a pid that is alive in this boot (ours).
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&0x1234_5678u64.to_ne_bytes(), 1024).unwrap();
    f.write_all_at(&std::process::id().to_ne_bytes(), 1032)
        .unwrap();
    drop(f);
    let a = Array::<u64>::open_file(&path).unwrap();
    // Without the clearing, this waits forever on a holder that looks alive.
    let clean = watchdog(move || a.lock().is_ok());
    assert!(clean);
}

#[test]
fn a_file_region_maps_any_regular_file() {
    let _f = common::fork_lock();
    let dir = Dir::new("region");
    let path = dir.join("raw.bin");
    std::fs::write(&path, b"0123456789abcdefghij").unwrap();
    let r = FileRegion::open(&path).unwrap();
    assert_eq!(r.len(), 20);
    // A forked child and an unrelated program write; the file holds both after a flush.
    let child = uniconc::process::spawn({
        let r = r.clone();
        move || r.write_at(12, b"forked").is_ok() && r.flush().is_ok()
    })
    .unwrap();
    assert!(child.join().unwrap());
    assert!(finish(start("region-write", &path)));
    r.flush().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"0child6789abforkedij");
    let mut buf = [0u8; 20];
    r.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"0child6789abforkedij");
    // Out of range: an error, nothing read or written.
    let mut small = [b'x'; 4];
    assert_eq!(
        r.read_at(18, &mut small).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(small, [b'x'; 4]);
    assert_eq!(
        r.write_at(usize::MAX, b"a").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"0child6789abforkedij");
    // Long unaligned copies go through whole words and bytes alike.
    let big = FileRegion::create(dir.join("big.bin"), 4096 + 3).unwrap();
    let data: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
    big.write_at(3, &data).unwrap();
    let mut back = vec![0u8; 4000];
    big.read_at(3, &mut back).unwrap();
    assert_eq!(back, data);
    // Refused: an existing path to create, an empty file, a link, a directory.
    let kind = |p: &Path| FileRegion::open(p).unwrap_err().kind();
    assert_eq!(
        FileRegion::create(&path, 4).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    std::fs::write(dir.join("empty"), b"").unwrap();
    assert_eq!(kind(&dir.join("empty")), ErrorKind::InvalidArgument);
    std::os::unix::fs::symlink(&path, dir.join("link")).unwrap();
    assert_eq!(kind(&dir.join("link")), ErrorKind::InvalidArgument);
    assert_eq!(kind(&dir.0), ErrorKind::InvalidArgument);
    assert_eq!(
        FileRegion::create(dir.join("zero"), 0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}
