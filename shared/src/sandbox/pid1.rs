//! `apna sandboxd` as a container's PID 1.
//!
//! The kernel hands PID 1 every orphan of the container to reap and gives it
//! no default signal actions. Commands leave orphans (a build's background
//! children, killed with their process group after the shell exits; Vite's
//! helpers when it restarts), and tokio reaps only the children it spawned:
//! reaping everything from the same process would steal their exit statuses.
//! So, like tini, PID 1 starts the same command line again as its only child
//! and does nothing but forward signals to it and reap whatever exits.

use std::sync::atomic::{AtomicI32, Ordering};

/// The child's pid, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Signals a container runtime or a person sends that the child should get.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and touches no memory of ours.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Whether this process is PID 1 of its PID namespace (a container's first process).
pub fn is_init() -> bool {
    std::process::id() == 1
}

/// Starts this process's own command line again as a child, forwards
/// signals to it, reaps every process that exits, and returns the child's
/// exit code (128 + the signal when a signal ended it).
pub fn run_as_init() -> std::io::Result<i32> {
    let exe = std::env::current_exe()?;
    let child = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .spawn()?;
    let child_pid =
        i32::try_from(child.id()).map_err(|_| std::io::Error::other("child pid out of range"))?;
    CHILD.store(child_pid, Ordering::SeqCst);
    for sig in FORWARDED {
        // SAFETY: installs a handler that only calls kill(2); `forward` has
        // the signature signal(2) expects.
        unsafe {
            libc::signal(
                sig,
                forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid(2) with a valid pointer to a c_int.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == child_pid {
            return Ok(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                1
            });
        }
        if pid == -1 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(err);
            }
        }
    }
}
