//! What every example shares: the command line (`--backend process|thread|tokio`, `--size N`,
//! `--quick`), the `on_backend!` switch that runs a generic `fn run<B: Backend>` on the backend
//! named at run time, and small timing helpers.
//!
//! Each example keeps its real work in a `pub fn run<B: Backend>(...)` so that
//! `tests/examples.rs` can call exactly that code, with small sizes, on every enabled backend.

#![allow(dead_code)] // each example uses a different part of this module

use std::time::{Duration, Instant};

/// The error type of the examples: anything, as long as it can cross threads.
pub(crate) type DynError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result of an example's `run`.
pub(crate) type DynResult<T> = Result<T, DynError>;

/// The backends compiled into this build, in the order `uniconc::Default` prefers them.
pub(crate) fn enabled_backends() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(all(feature = "process", unix)) {
        v.push("process");
    }
    if cfg!(feature = "tokio") {
        v.push("tokio");
    }
    if cfg!(feature = "thread") {
        v.push("thread");
    }
    if cfg!(all(feature = "redis", unix)) {
        v.push("redis");
    }
    v
}

/// The name of `uniconc::Default`, if any backend is enabled.
pub(crate) fn default_backend() -> Option<&'static str> {
    enabled_backends().first().copied()
}

/// The error for a backend name this build cannot run.
pub(crate) fn unknown_backend(name: &str) -> DynError {
    let known = ["process", "thread", "tokio", "redis"];
    if known.contains(&name) {
        format!(
            "the `{name}` backend is not enabled in this build (enabled: {:?}); \
             rebuild with `--features {name}` or `--features full`",
            enabled_backends()
        )
        .into()
    } else {
        format!("unknown backend `{name}`: pick one of process, thread, tokio, redis").into()
    }
}

/// Runs the generic function `$f::<B>(args...)` with `B` the backend named by `$name` (a
/// `&str`), or returns an error naming what is enabled. Evaluates to `$f`'s result, which must be
/// a `DynResult<_>`. (Textually scoped: declare `#[macro_use] mod common;` first.)
macro_rules! on_backend {
    ($name:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $name {
            #[cfg(all(feature = "process", unix))]
            "process" => $f::<uniconc::Process>($($arg),*),
            #[cfg(feature = "tokio")]
            "tokio" => $f::<uniconc::Tokio>($($arg),*),
            #[cfg(feature = "thread")]
            "thread" => $f::<uniconc::Thread>($($arg),*),
            #[cfg(all(feature = "redis", unix))]
            "redis" => $f::<uniconc::Redis>($($arg),*),
            other => {
                // Touch the arguments so a build without that backend has no unused variable.
                $(let _ = &$arg;)*
                Err(common::unknown_backend(other))
            }
        }
    };
}

/// The parsed command line of an example.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    /// `--backend NAME` (default: `uniconc::Default`'s).
    pub(crate) backend: Option<String>,
    /// `--size N` or the `UNICONC_EXAMPLE_SIZE` environment variable.
    pub(crate) size: Option<usize>,
    /// `--quick`: small sizes, for a fast run.
    pub(crate) quick: bool,
    /// `--no-python` (compare only): skip the Python column.
    pub(crate) no_python: bool,
    /// `--out PATH` (compare only): where to write the chart.
    pub(crate) out: Option<String>,
}

impl Args {
    /// Parses `std::env::args()`; prints the usage and exits on `--help` or a bad argument.
    pub(crate) fn parse(about: &str) -> Self {
        match Self::parse_from(std::env::args().skip(1)) {
            Ok(Some(args)) => args,
            Ok(None) => {
                println!("{about}\n\n{}", usage());
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("error: {e}\n\n{}", usage());
                std::process::exit(2);
            }
        }
    }

    /// Parses `args`; `Ok(None)` for `--help`.
    pub(crate) fn parse_from(args: impl IntoIterator<Item = String>) -> DynResult<Option<Self>> {
        let mut out = Args {
            backend: None,
            size: None,
            quick: false,
            no_python: false,
            out: None,
        };
        if let Ok(s) = std::env::var("UNICONC_EXAMPLE_SIZE") {
            out.size = Some(
                s.parse()
                    .map_err(|e| format!("UNICONC_EXAMPLE_SIZE={s}: {e}"))?,
            );
        }
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
                None => (a.clone(), None),
            };
            let mut value = |name: &str| -> DynResult<String> {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("{name} needs a value").into())
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--backend" | "-b" => out.backend = Some(value("--backend")?),
                "--size" | "-n" => {
                    let v = value("--size")?;
                    out.size = Some(v.parse().map_err(|e| format!("--size {v}: {e}"))?);
                }
                "--quick" => out.quick = true,
                "--no-python" => out.no_python = true,
                "--out" => out.out = Some(value("--out")?),
                other => return Err(format!("unknown argument `{other}`").into()),
            }
        }
        Ok(Some(out))
    }

    /// The backend to run on: `--backend`, else `uniconc::Default`'s, else an error saying that
    /// no backend is enabled.
    pub(crate) fn backend(&self) -> DynResult<String> {
        match (&self.backend, default_backend()) {
            (Some(b), _) => Ok(b.clone()),
            (None, Some(d)) => Ok(d.to_owned()),
            (None, None) => Err("no backend is enabled in this build: \
                                 rebuild with `--features thread`, `process`, `tokio` or `full`"
                .into()),
        }
    }

    /// `--size`, else `quick` if `--quick`, else `full`.
    pub(crate) fn size_or(&self, full: usize, quick: usize) -> usize {
        self.size.unwrap_or(if self.quick { quick } else { full })
    }
}

fn usage() -> String {
    format!(
        "options:\n  --backend process|thread|tokio   which execution unit (default: {})\n  \
         --size N                         problem size (also UNICONC_EXAMPLE_SIZE)\n  \
         --quick                          small sizes\n  -h, --help",
        default_backend().unwrap_or("none enabled")
    )
}

/// Runs `f` and returns its result with the wall time it took.
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// A duration for humans: `812 ns`, `3.41 µs`, `12.0 ms`, `1.52 s`.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-6 {
        format!("{:.0} ns", s * 1e9)
    } else if s < 1e-3 {
        format!("{:.2} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// The main of every example: parses the command line, runs `body` with it, and on an error
/// prints it and exits with status 1.
pub(crate) fn main_with(about: &str, body: impl FnOnce(&Args) -> DynResult<()>) {
    let args = Args::parse(about);
    if args.backend.is_none() && default_backend().is_none() {
        println!("{about}: no backend is enabled in this build, nothing to run.");
        println!("Rebuild with `--features thread`, `process`, `tokio` or `full`.");
        return;
    }
    if let Err(e) = body(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
