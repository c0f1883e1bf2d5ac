//! What the tools need from the operating system: the open-file limit, a process's resident
//! memory (`VmRSS` in `/proc/PID/status`) and its CPU time (`/proc/PID/stat`), Linux.

/// Raises this process's soft `RLIMIT_NOFILE` towards `wanted` (at most the hard limit) and
/// returns the soft limit now in force. 10,000 connections need about 10,100 descriptors on
/// each side; raise the hard limit with `ulimit -Hn` (as root) or `LimitNOFILE=` if it is lower.
pub fn raise_nofile(wanted: u64) -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(wanted)
}

/// Resident set size of process `pid` in KiB, from `/proc/PID/status`.
pub fn vm_rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss_kib(&status).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no VmRSS line in /proc/{pid}/status"),
        )
    })
}

/// The `VmRSS:` value (KiB) of a `/proc/PID/status` text.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on every Linux ABI).
pub const USER_HZ: f64 = 100.0;

/// CPU time (user + system) process `pid` has used so far, in seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_seconds(&stat).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/stat"),
        )
    })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line, in seconds. The command
/// name (field 2) is in parentheses and may contain spaces: fields are counted after its `)`.
pub fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let text = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t2\n";
        assert_eq!(parse_vm_rss_kib(text), Some(1234));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
        let own = vm_rss_kib(std::process::id()).expect("own status");
        assert!(own > 0);
    }

    #[test]
    fn reads_cpu_time() {
        // Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime ...
        let line = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 1";
        assert_eq!(parse_cpu_seconds(line), Some(3.25));
        assert_eq!(parse_cpu_seconds("4242 (x) S 1"), None);
        assert!(cpu_seconds(std::process::id()).is_ok());
    }
}
