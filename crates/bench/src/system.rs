//! What the tools need from the operating system: the open-file limit and a process's
//! resident memory (`VmRSS` in `/proc/PID/status`, Linux).

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
}
