//! Benchmarks live in `benches/benches/`; this library holds what several of them share.

/// Runs the Python peer `python/<script>` of this package and returns what it printed, or
/// `None` (saying why on stderr) when `python3` is missing or the script fails: a bench then
/// reports its own figures without the peer's ratio.
pub fn run_python(script: &str) -> Option<String> {
    let path = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = match std::process::Command::new("python3").arg(&path).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("python peer not run ({path}): {e}");
            return None;
        }
    };
    if !out.status.success() {
        eprintln!(
            "python peer failed ({path}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}
