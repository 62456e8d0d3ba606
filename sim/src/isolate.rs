//! Runs one simulation in a forked child process and brings its result back over a
//! pipe (postcard-encoded: a run's history and trace lines are JSON text, which JSON
//! would escape again). Why: tokio seeds each thread's internal RNG (which picks the wake shard of a
//! `tokio::sync::watch` receiver and the branch order of an unbiased `select!`) from a
//! process-wide counter, so a second run of the same seed in the same process can
//! schedule differently. A child forked from a parent that never touches that RNG
//! starts from the same counter every time, and its fresh thread draws everything else
//! from the seeded simulator.
//!
//! A child that gives no result within its wall-clock limit is killed (an alarm it set
//! itself) and the run reported as hung, so a simulation that stops making progress (a
//! deadlock, a loop that never yields) fails its run instead of stalling a sweep. No
//! retries.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// This process's resource usage so far (in a forked child, since the fork); `None` if
/// the kernel does not say.
fn own_usage() -> Option<libc::rusage> {
    // SAFETY: an all-zero `rusage` is a valid value for getrusage(2) to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid out-pointer for the duration of the call.
    (unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0).then_some(usage)
}

/// CPU time (user + system) this process has used so far, ms; in a forked child, since
/// the fork. 0 if the kernel does not say.
pub fn own_cpu_ms() -> u64 {
    let Some(usage) = own_usage() else {
        return 0;
    };
    let ms = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1000 + u64::try_from(t.tv_usec).unwrap_or(0) / 1000
    };
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// Minor page faults (memory first touched, each one zeroed by the kernel) this process
/// has taken so far; in a forked child, since the fork. 0 if the kernel does not say.
pub fn own_minor_faults() -> u64 {
    own_usage().map_or(0, |u| u64::try_from(u.ru_minflt).unwrap_or(0))
}

/// The child's write buffer on the result pipe.
const PIPE_BUFFER_BYTES: usize = 64 * 1024;

/// Runs `f` on a fresh thread of a forked child and returns its value; an error if the
/// child died, or gave no result within `wall_limit` (whole seconds, at least one).
///
/// The parent must not use tokio's thread RNG itself (it does not run the simulator).
pub fn in_child<T, F>(wall_limit: Duration, f: F) -> Result<T, String>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid two-element array for pipe(2) to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe(2) succeeded, so both descriptors are open and owned only here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child only spawns a thread, runs `f`, writes to the pipe and calls
    // `_exit`; it never returns into the caller's stack.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    let limit_s = wall_limit.as_secs().max(1);
    if pid == 0 {
        // SIGALRM's default action ends the process; nothing in a run handles it.
        // SAFETY: alarm(2) only arms this process's timer.
        unsafe { libc::alarm(u32::try_from(limit_s).unwrap_or(u32::MAX)) };
        drop(read_end);
        let mut out = std::fs::File::from(write_end);
        let body = std::thread::Builder::new()
            .name("sim-run".to_owned())
            .spawn(f)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                t.join()
                    .map_err(|_| "the simulation thread panicked".to_owned())
            });
        // The result goes straight into the pipe through a small buffer: encoded into
        // one vector first, a run's history and logs took megabytes of fresh memory.
        let code = match body {
            Ok(value) => {
                let mut pipe = std::io::BufWriter::with_capacity(PIPE_BUFFER_BYTES, &mut out);
                let encoded = postcard::to_io(&value, &mut pipe).is_ok();
                if encoded && pipe.flush().is_ok() {
                    0
                } else {
                    1
                }
            }
            Err(e) => {
                let _ = out.write_all(e.as_bytes());
                1
            }
        };
        drop(out);
        // SAFETY: ends the child without running the parent's destructors or atexit.
        unsafe { libc::_exit(code) };
    }
    drop(write_end);
    let mut bytes = Vec::new();
    let read = std::fs::File::from(read_end).read_to_end(&mut bytes);
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    if waited != pid {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    read.map_err(|e| format!("reading the child's result: {e}"))?;
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGALRM {
        return Err(format!(
            "the run hung: no result within {limit_s} s of wall time, so it was killed"
        ));
    }
    let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !exited_ok {
        let text = String::from_utf8_lossy(&bytes);
        return Err(format!(
            "the simulation process failed (status {status}): {text}"
        ));
    }
    postcard::from_bytes(&bytes).map_err(|e| format!("the child's result is not readable: {e}"))
}
