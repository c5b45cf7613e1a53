//! CPU time of the processes under test, from `/proc` (Linux): the server (`--server-pid`)
//! and its database (`--db-pid`, or every process of a user with `--db-user postgres`).
//!
//! A sample is taken when the measured phase starts and when it ends; the difference,
//! divided by the flows that ended with a certificate, is the CPU per issuance. On a
//! machine shared with the load generator that figure holds where throughput does not.
//!
//! - A process's CPU is `utime + stime` of `/proc/PID/stat` (every thread of it).
//! - For a user's processes (PostgreSQL: the postmaster and one backend per connection)
//!   `cutime + cstime` count too: a backend that exits during the run is reaped by the
//!   postmaster, whose children's time then grows by the backend's whole time, while the
//!   first sample held the part it had used by then. Summed over every process of the
//!   user at both ends, the difference is what the user's processes used in between,
//!   whether they lived through the run, started in it or ended in it.

use std::collections::BTreeMap;

/// What to sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuTargets {
    /// The server process.
    pub server_pid: Option<u32>,
    /// Database processes, each counted alone (`utime + stime`).
    pub db_pids: Vec<u32>,
    /// Every process of this user (with its reaped children's time), e.g. `postgres`.
    pub db_user: Option<String>,
    /// With `db_user`: only the user's processes whose command line (a PostgreSQL
    /// process's title, e.g. `postgres: postgres DBNAME 127.0.0.1(5000) idle`) contains
    /// one of these, each counted alone: the backends of one database and the shared
    /// writers, without the other databases' work on a shared server.
    pub db_match: Vec<String>,
}

impl CpuTargets {
    /// Whether any database process is sampled.
    pub fn has_db(&self) -> bool {
        !self.db_pids.is_empty() || self.db_user.is_some()
    }
}

/// CPU seconds used so far (`None`: not sampled, or `/proc` is not readable).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSample {
    /// The server process.
    pub server: Option<f64>,
    /// The database processes together.
    pub db: Option<f64>,
    /// This process (the load generator).
    pub bench: Option<f64>,
}

impl CpuSample {
    /// Samples `targets` now.
    pub fn take(targets: &CpuTargets) -> Self {
        let tick = clock_ticks_per_sec();
        let secs = |ticks: u64| ticks as f64 / tick;
        let server = targets
            .server_pid
            .and_then(|pid| process_ticks(pid, false))
            .map(secs);
        let db = if targets.has_db() {
            let mut total = 0;
            let mut any = false;
            for pid in &targets.db_pids {
                if let Some(t) = process_ticks(*pid, false) {
                    total += t;
                    any = true;
                }
            }
            if let Some(user) = &targets.db_user {
                if let Some(uid) = uid_of(user) {
                    for pid in pids_of_uid(uid) {
                        if targets.db_pids.contains(&pid) {
                            continue;
                        }
                        // Filtered, a process counts alone: the postmaster's reaped
                        // children are every database's.
                        let all = targets.db_match.is_empty();
                        if !all && !cmdline_matches(pid, &targets.db_match) {
                            continue;
                        }
                        if let Some(t) = process_ticks(pid, all) {
                            total += t;
                            any = true;
                        }
                    }
                }
            }
            any.then(|| secs(total))
        } else {
            None
        };
        let bench = process_ticks(std::process::id(), false).map(secs);
        Self { server, db, bench }
    }

    /// CPU milliseconds per issuance between `self` (the start) and `end`.
    pub fn per_issuance(&self, end: &Self, issuances: u64) -> CpuPerIssuance {
        let per = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if issuances > 0 => {
                Some((b - a).max(0.0) * 1000.0 / issuances as f64)
            }
            _ => None,
        };
        CpuPerIssuance {
            server_ms: per(self.server, end.server),
            db_ms: per(self.db, end.db),
            bench_ms: per(self.bench, end.bench),
        }
    }
}

/// CPU milliseconds per successful issuance over the measured phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuPerIssuance {
    /// The server process.
    pub server_ms: Option<f64>,
    /// The database processes.
    pub db_ms: Option<f64>,
    /// The load generator.
    pub bench_ms: Option<f64>,
}

/// `utime + stime` (and, with `children`, `cutime + cstime`) of `pid`, in clock ticks.
pub fn process_ticks(pid: u32, children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat, children)
}

/// The CPU fields of a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so fields are counted from
/// the last `)`.
fn parse_stat_ticks(stat: &str, children: bool) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt,
    // cminflt, majflt, cmajflt, utime (14), stime, cutime, cstime (17).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let own = field(14)? + field(15)?;
    Some(if children {
        own + field(16)? + field(17)?
    } else {
        own
    })
}

/// Whether the command line of `pid` contains one of `needles`.
fn cmdline_matches(pid: u32, needles: &[String]) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let line = String::from_utf8_lossy(&raw).replace('\0', " ");
    needles.iter().any(|n| line.contains(n.as_str()))
}

/// The uid of a user name, from `/etc/passwd`.
fn uid_of(user: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut parts = line.split(':');
        (parts.next()? == user).then_some(())?;
        parts.nth(1)?.parse().ok()
    })
}

/// Every process whose real uid is `uid`.
fn pids_of_uid(uid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let real = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok());
        if real == Some(uid) {
            pids.push(pid);
        }
    }
    pids
}

/// Clock ticks per second (`AT_CLKTCK` of this process's auxiliary vector; 100, the
/// kernel's usual `USER_HZ`, if it cannot be read).
fn clock_ticks_per_sec() -> f64 {
    const AT_CLKTCK: u64 = 17;
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 100.0;
    };
    let words: BTreeMap<u64, u64> = auxv
        .chunks_exact(16)
        .map(|pair| {
            let (k, v) = pair.split_at(8);
            (
                u64::from_ne_bytes(k.try_into().expect("8 bytes")),
                u64::from_ne_bytes(v.try_into().expect("8 bytes")),
            )
        })
        .collect();
    match words.get(&AT_CLKTCK) {
        Some(&hz) if hz > 0 => hz as f64,
        _ => 100.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (post gres: (x) idle) S 1 2 3 4 5 6 7 8 9 10 110 20 3 4 20 0 1 0";
        assert_eq!(parse_stat_ticks(line, false), Some(130));
        assert_eq!(parse_stat_ticks(line, true), Some(137));
        assert_eq!(parse_stat_ticks("garbage", false), None);
    }

    #[test]
    fn this_process_is_sampled() {
        let mine = CpuTargets {
            server_pid: Some(std::process::id()),
            db_pids: vec![std::process::id()],
            db_user: None,
            db_match: Vec::new(),
        };
        let start = CpuSample::take(&mine);
        assert!(start.server.is_some() && start.db.is_some() && start.bench.is_some());
        // Burn a little CPU so that the end is not before the start.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let end = CpuSample::take(&mine);
        let per = start.per_issuance(&end, 1);
        assert!(per.server_ms.unwrap() >= 0.0);
        assert_eq!(CpuSample::default().per_issuance(&end, 1).server_ms, None);
        assert!(uid_of("root") == Some(0) || uid_of("root").is_none());
        assert!(clock_ticks_per_sec() > 0.0);
        let me = std::process::id();
        assert!(!cmdline_matches(
            me,
            &["no such command line at all".into()]
        ));
        assert!(!cmdline_matches(me, &[]));
    }
}
