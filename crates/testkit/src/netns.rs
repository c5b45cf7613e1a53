//! Network segments for tests: a network namespace the test makes, joined to the root
//! namespace by a veth pair, with a host address that exists only inside it.
//!
//! ```text
//!  root namespace                          namespace cw-<pid>-<n>
//!  10.A.N.1/30  (veth cw<pid>r<n>) ─────── 10.A.N.2/30 (veth)
//!  unreachable 10.A.(128+N).0/24           lo: 127.0.0.1, 10.A.(128+N).10/24 (the host)
//! ```
//!
//! The root side (`10.A.N.1`) is where the CA's agent listener (and, for clients run in
//! the segment, its ACME listener) binds. The host address is where in-segment servers
//! listen; the root namespace has an `unreachable` route for its subnet while the segment
//! lives, so nothing in the root namespace can send a packet towards it (or, through the
//! machine's default route, out of the machine). The namespace has no default route: from
//! inside, only the segment's own addresses and the root side of the veth answer.
//!
//! Servers run inside with [`Segment::spawn_in`] (a thread that joined the namespace with
//! `setns`, running a current-thread tokio runtime); programs with [`Segment::command`]
//! (`ip netns exec`). Everything is removed on drop; leftovers of processes that died
//! without dropping (names `cw-<pid>-…`, routes with protocol [`ROUTE_PROTO`]) are removed
//! when the next segment is made.
//!
//! Making namespaces needs root: [`can_make_segments`] says why not, for a clean skip.

use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Once};
use std::thread;
use std::time::Duration;

use crate::process::{require_binary, run_bounded};

/// The routing protocol number our `unreachable` routes carry (to find leftovers).
pub const ROUTE_PROTO: u8 = 199;

/// How long one `ip` command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long work handed to the namespace thread may take to come back.
pub const SPAWN_IN_TIMEOUT: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Whether this process can make segments: `Err` with the reason (not root) otherwise.
/// Tests skip with that message; on CI (root) they run.
pub fn can_make_segments() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("network-namespace tests need root (ip netns, veth pairs): skipped".into());
    }
    require_binary("ip");
    Ok(())
}

/// Runs `ip args…` bounded; panics with its output on failure.
fn ip(args: &[&str]) -> String {
    let out = run_bounded(Command::new("ip").args(args), IP_TIMEOUT);
    assert!(
        out.status.success(),
        "ip {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ip args…` bounded, ignoring failure (cleanup of what may be gone already).
fn ip_quiet(args: &[&str]) -> bool {
    run_bounded(Command::new("ip").args(args), IP_TIMEOUT)
        .status
        .success()
}

/// The second octet of this process's addresses (10.A.x.x), from the pid.
fn octet_for(pid: u32) -> u8 {
    16 + (pid % 224) as u8
}

fn alive(pid: u32) -> bool {
    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in `cw-<pid>-<n>`.
fn ns_pid(name: &str) -> Option<u32> {
    name.strip_prefix("cw-")?.split('-').next()?.parse().ok()
}

/// The pid in `cw<pid>r<n>` / `cw<pid>n<n>`.
fn veth_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("cw")?;
    let end = rest.find(['r', 'n'])?;
    rest[..end].parse().ok()
}

/// Names of all namespaces (`ip netns list` prints `NAME (id: N)`).
fn namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Removes what dead processes left behind; with `also_mine`, also what carries this
/// process's pid (an earlier process with the same pid: run once, before the first
/// segment).
fn remove_leftovers(also_mine: bool) {
    let me = std::process::id();
    let stale = |pid: u32| !alive(pid) || (also_mine && pid == me);
    let mut live_octets = std::collections::BTreeSet::new();
    if !also_mine {
        live_octets.insert(octet_for(me));
    }
    for ns in namespaces() {
        let Some(pid) = ns_pid(&ns) else { continue };
        if stale(pid) {
            ip_quiet(&["netns", "del", &ns]);
        } else {
            live_octets.insert(octet_for(pid));
        }
    }
    for line in ip(&["-o", "link", "show"]).lines() {
        // "7: cw123r0@if6: <BROADCAST,…"
        let Some(name) = line
            .split(':')
            .nth(1)
            .map(|n| n.trim().split('@').next().unwrap_or(""))
        else {
            continue;
        };
        if veth_pid(name).is_some_and(stale) {
            ip_quiet(&["link", "del", name]);
        }
    }
    let proto = ROUTE_PROTO.to_string();
    for line in ip(&["route", "show", "proto", &proto]).lines() {
        // "unreachable 10.A.B.0/24 scope link"
        let Some(dst) = line.split_whitespace().find(|w| w.starts_with("10.")) else {
            continue;
        };
        let a = dst.split('.').nth(1).and_then(|a| a.parse::<u8>().ok());
        if a.is_some_and(|a| !live_octets.contains(&a)) {
            ip_quiet(&["route", "del", "unreachable", dst, "proto", &proto]);
        }
    }
}

/// A network segment: a namespace with a host address the root namespace cannot reach,
/// and a veth pair to the root namespace. Removed on drop (also on panic).
pub struct Segment {
    /// The namespace's name (`cw-<pid>-<n>`).
    pub name: String,
    /// The root namespace's end of the veth pair (`10.A.N.1`): what the segment reaches.
    pub root_addr: Ipv4Addr,
    /// The namespace's end of the veth pair (`10.A.N.2`).
    pub ns_addr: Ipv4Addr,
    /// The segment's host address (`10.A.(128+N).10`), only inside the namespace.
    pub host_addr: Ipv4Addr,
    /// The host subnet (`10.A.(128+N).0/24`), `unreachable` in the root namespace.
    pub host_subnet: String,
    veth_root: String,
    jobs: Option<mpsc::Sender<Job>>,
    thread_done: Option<mpsc::Receiver<()>>,
}

impl Segment {
    /// Makes a new segment (needs root: check [`can_make_segments`] first).
    pub fn new() -> Self {
        static CLEAN: Once = Once::new();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        can_make_segments().unwrap_or_else(|why| panic!("{why}"));
        CLEAN.call_once(|| remove_leftovers(true));
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 64, "at most 64 segments per test process");
        let a = octet_for(pid);
        let b = n as u8;
        let name = format!("cw-{pid}-{n}");
        let veth_root = format!("cw{pid}r{n}");
        let veth_ns = format!("cw{pid}n{n}");
        let root_addr = Ipv4Addr::new(10, a, b, 1);
        let ns_addr = Ipv4Addr::new(10, a, b, 2);
        let host_addr = Ipv4Addr::new(10, a, 128 + b, 10);
        let host_subnet = format!("10.{a}.{}.0/24", 128 + b);
        // From here on, Drop removes whatever was made.
        let mut seg = Segment {
            name: name.clone(),
            root_addr,
            ns_addr,
            host_addr,
            host_subnet: host_subnet.clone(),
            veth_root: veth_root.clone(),
            jobs: None,
            thread_done: None,
        };
        let proto = ROUTE_PROTO.to_string();
        // The safety net first: nothing in the root namespace routes to the host subnet.
        ip(&["route", "add", "unreachable", &host_subnet, "proto", &proto]);
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&[
            "link", "add", &veth_root, "type", "veth", "peer", "name", &veth_ns, "netns", &name,
        ]);
        ip(&["addr", "add", &format!("{root_addr}/30"), "dev", &veth_root]);
        ip(&["link", "set", &veth_root, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_addr}/30"),
            "dev",
            &veth_ns,
        ]);
        ip(&["-n", &name, "link", "set", &veth_ns, "up"]);
        // The host address on lo inside (no dummy module needed): local to the namespace.
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{host_addr}/24"),
            "dev",
            "lo",
        ]);
        seg.start_thread();
        seg
    }

    /// The thread that joined the namespace and runs its tokio runtime.
    fn start_thread(&mut self) {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let path = format!("/run/netns/{}", self.name);
        thread::Builder::new()
            .name(format!("netns {}", self.name))
            .spawn(move || {
                let joined = std::fs::File::open(&path)
                    .map_err(|e| format!("open {path}: {e}"))
                    .and_then(|f| {
                        rustix::thread::move_into_link_name_space(
                            std::os::fd::AsFd::as_fd(&f),
                            Some(rustix::thread::LinkNameSpaceType::Network),
                        )
                        .map_err(|e| format!("setns {path}: {e}"))
                    });
                let failed = joined.is_err();
                ready_tx.send(joined).ok();
                if failed {
                    return;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime in the namespace");
                let (async_tx, mut async_rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
                // Jobs arrive on a std channel; a forwarder hands them to the runtime.
                thread::spawn(move || {
                    while let Ok(job) = rx.recv() {
                        if async_tx.send(job).is_err() {
                            return;
                        }
                    }
                });
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    while let Some(job) = async_rx.recv().await {
                        tokio::task::spawn_local(job());
                    }
                });
                drop(local);
                drop(rt);
                done_tx.send(()).ok();
            })
            .expect("spawn the namespace thread");
        match ready_rx.recv_timeout(SPAWN_IN_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!("{why}"),
            Err(e) => panic!("namespace thread of {}: {e}", self.name),
        }
        self.jobs = Some(jobs);
        self.thread_done = Some(done_rx);
    }

    /// Runs `f()` inside the namespace (on its runtime) and returns what it returns: bind
    /// servers there (`TestDns::start`, responders). Tasks they spawn keep running there
    /// until the segment drops. Panics if it takes longer than [`SPAWN_IN_TIMEOUT`].
    pub fn spawn_in<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                tx.send(f().await).ok();
            })
        });
        self.jobs
            .as_ref()
            .expect("namespace thread")
            .send(job)
            .expect("namespace thread alive");
        rx.recv_timeout(SPAWN_IN_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "work in namespace {} did not finish in {SPAWN_IN_TIMEOUT:?}: {e}",
                self.name
            )
        })
    }

    /// `program` run inside the namespace (`ip netns exec NAME program`); add arguments
    /// and spawn it with [`crate::process::spawn`] or [`crate::process::run_bounded`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// `cmd` (program, arguments, environment and working directory) run inside the
    /// namespace instead: for the testkit's prepared peer commands (certbot, lego).
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut inside = self.command(cmd.get_program());
        inside.args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => inside.env(key, v),
                None => inside.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            inside.current_dir(dir);
        }
        inside
    }
}

impl Default for Segment {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Stop the runtime inside first (its sockets close with it).
        self.jobs.take();
        if let Some(done) = self.thread_done.take() {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
        ip_quiet(&["netns", "del", &self.name]);
        ip_quiet(&["link", "del", &self.veth_root]);
        let proto = ROUTE_PROTO.to_string();
        ip_quiet(&[
            "route",
            "del",
            "unreachable",
            &self.host_subnet,
            "proto",
            &proto,
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Instant;

    fn segment() -> Option<Segment> {
        match can_make_segments() {
            Ok(()) => Some(Segment::new()),
            Err(why) => {
                eprintln!("{why}");
                None
            }
        }
    }

    /// A TCP server inside that answers "hello" to each connection, on `addr`.
    fn hello_server(seg: &Segment, addr: SocketAddr) {
        seg.spawn_in(move || async move {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = listener.accept().await {
                    use tokio::io::AsyncWriteExt;
                    let _ = s.write_all(b"hello").await;
                }
            });
        });
    }

    #[test]
    fn netns_servers_inside_answer_inside_and_the_host_is_unreachable_from_root() {
        let Some(seg) = segment() else { return };
        let host = SocketAddr::from((seg.host_addr, 8080));
        hello_server(&seg, host);
        // Reachable from inside (a connection made on the namespace thread).
        let inside = seg.spawn_in(move || async move {
            use tokio::io::AsyncReadExt;
            let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).await.unwrap();
            text
        });
        assert_eq!(inside, "hello");
        // ... and from a program run inside.
        let out = run_bounded(
            seg.command("bash")
                .arg("-c")
                .arg(format!("exec 3<>/dev/tcp/{}/8080; cat <&3", seg.host_addr)),
            Duration::from_secs(10),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello", "{out:?}");

        // Not from the root namespace: the route is `unreachable`, so connect fails at
        // once and no packet is sent anywhere.
        let route = ip(&["route", "show", &seg.host_subnet]);
        assert!(route.starts_with("unreachable"), "{route}");
        let get = run_bounded(
            Command::new("ip").args(["route", "get", &seg.host_addr.to_string()]),
            IP_TIMEOUT,
        );
        assert!(
            !get.status.success()
                && String::from_utf8_lossy(&get.stderr).contains("No route to host"),
            "the kernel has a route to {}: {get:?}",
            seg.host_addr
        );
        let started = Instant::now();
        let err = TcpStream::connect_timeout(&host, Duration::from_secs(5)).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "connect took {:?}",
            started.elapsed()
        );
        assert!(
            matches!(
                err.kind(),
                ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable
            ),
            "{err:?}"
        );
        // Nothing but the segment's own addresses and the veth are routed inside.
        let routes = ip(&["-n", &seg.name, "route", "show"]);
        assert!(!routes.contains("default"), "{routes}");
    }

    #[test]
    fn netns_the_root_side_is_reachable_from_inside() {
        let Some(seg) = segment() else { return };
        let listener = std::net::TcpListener::bind((seg.root_addr, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, peer) = listener.accept().unwrap();
            s.write_all(b"root").unwrap();
            peer
        });
        let text = seg.spawn_in(move || async move {
            use tokio::io::AsyncReadExt;
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).await.unwrap();
            text
        });
        assert_eq!(text, "root");
        let peer = server.join().unwrap();
        assert_eq!(peer.ip(), std::net::IpAddr::V4(seg.ns_addr));
        // The namespace's own loopback is its own: a server on 127.0.0.1 inside is not
        // the root's.
        let port = crate::port::free_port();
        hello_server(&seg, SocketAddr::from(([127, 0, 0, 1], port)));
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        let out = run_bounded(
            seg.command("bash")
                .arg("-c")
                .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}; cat <&3")),
            Duration::from_secs(10),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello");
    }

    #[test]
    fn netns_cleanup_leaves_nothing() {
        let Some(seg) = segment() else { return };
        let (name, veth, subnet) = (
            seg.name.clone(),
            seg.veth_root.clone(),
            seg.host_subnet.clone(),
        );
        hello_server(&seg, SocketAddr::from((seg.host_addr, 8081)));
        assert!(namespaces().contains(&name));
        drop(seg);
        assert!(!namespaces().contains(&name), "namespace {name} left");
        let links = ip(&["-o", "link", "show"]);
        assert!(!links.contains(&veth), "veth {veth} left: {links}");
        let routes = ip(&["route", "show"]);
        assert!(!routes.contains(&subnet), "route {subnet} left: {routes}");
    }

    #[test]
    fn netns_leftovers_of_dead_processes_are_removed() {
        if segment().is_none() {
            return;
        }
        // A pid above pid_max belongs to no process.
        let dead: u32 = 4_194_305;
        let a = octet_for(dead);
        let ns = format!("cw-{dead}-0");
        let subnet = format!("10.{a}.250.0/24");
        let proto = ROUTE_PROTO.to_string();
        ip(&["netns", "add", &ns]);
        ip(&["route", "add", "unreachable", &subnet, "proto", &proto]);
        remove_leftovers(false);
        assert!(!namespaces().contains(&ns), "leftover namespace {ns} kept");
        let routes = ip(&["route", "show"]);
        if a != octet_for(std::process::id()) {
            assert!(!routes.contains(&subnet), "leftover route kept: {routes}");
        } else {
            ip_quiet(&["route", "del", "unreachable", &subnet, "proto", &proto]);
        }
    }
}
