//! Child processes of tests, handled one way: [`spawn`] starts a child that dies with the
//! thread that started it (`PR_SET_PDEATHSIG`), and the returned [`ChildGuard`] stops it
//! (SIGTERM, then SIGKILL after a grace period) and reaps it when dropped, so neither a
//! failing test nor a killed test binary leaves a peer behind. Every wait is bounded.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a stopped child may take to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A child process that is stopped and reaped on drop (see [`ChildGuard::terminate`]).
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Sends `signal` to the child (unless it has been reaped already).
    pub fn signal(&mut self, signal: Signal) {
        if let Ok(None) = self.0.try_wait() {
            send_signal(self.0.id(), signal);
        }
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(&mut self.0, timeout)
    }

    /// SIGTERM, then SIGKILL if the child has not exited within `grace`; reaps it. Returns
    /// the exit status when it exited of its own or on SIGTERM.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.0.try_wait() {
            return Some(status);
        }
        send_signal(self.0.id(), Signal::TERM);
        if let Some(status) = self.wait_timeout(grace) {
            return Some(status);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.terminate(STOP_GRACE);
    }
}

pub use rustix::process::Signal;

/// Sends `signal` to process `pid` (best effort: it may have exited).
pub fn send_signal(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Spawns `cmd` so that it gets SIGKILL when the thread that spawned it exits (the test,
/// or the whole test binary for [`on_immortal_thread`]); the guard stops it on drop.
#[allow(unsafe_code)]
pub fn spawn(cmd: &mut Command) -> ChildGuard {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    ChildGuard(cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")))
}

/// Runs `f` on a thread that lives as long as the test binary, so children [`spawn`]ed
/// there (shared fixtures kept in statics, which are never dropped) live exactly as long
/// as the test binary.
pub fn on_immortal_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let value = f();
        tx.send(value).ok();
        loop {
            thread::park();
        }
    });
    rx.recv().expect("fixture thread")
}

/// Owns several started processes of a test; every one still running when the guard
/// drops is stopped like a [`ChildGuard`].
#[derive(Debug, Default)]
pub struct ProcessGuard {
    children: Vec<ChildGuard>,
}

impl ProcessGuard {
    /// Takes `child` into the guard; returns its index for [`ProcessGuard::get`].
    pub fn push(&mut self, child: ChildGuard) -> usize {
        self.children.push(child);
        self.children.len() - 1
    }

    /// The child at `index`.
    pub fn get(&mut self, index: usize) -> &mut ChildGuard {
        &mut self.children[index]
    }
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Fails the test with a clear message if `bin` is not on PATH.
pub fn require_binary(bin: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "test peer `{bin}` is not installed (scripts/test installs it with apt-get)"
    );
}

/// Reads a pipe to the end on a thread of its own (so a chatty child never blocks).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs `cmd` to completion (stdin empty, stdout and stderr captured), stopping it after
/// `timeout`. Panics if it cannot start or times out (with everything it printed).
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let out = drain(child.0.stdout.take());
    let err = drain(child.0.stderr.take());
    let status = match child.wait_timeout(timeout) {
        Some(status) => Some(status),
        None => {
            child.terminate(STOP_GRACE);
            None
        }
    };
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "timed out after {timeout:?}: {shown}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Runs `cmd` bounded and panics unless it exits 0; returns its output. `context` is
/// appended to the failure message.
pub fn run_ok(what: &str, cmd: &mut Command, timeout: Duration, context: &str) -> Output {
    let shown = format!("{cmd:?}");
    let out = run_bounded(cmd, timeout);
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {shown}\n--- stdout\n{}\n--- stderr\n{}\n{context}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}
