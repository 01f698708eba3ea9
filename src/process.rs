//! Facts about this process that the server reports and the benchmark client reads
//! (`shoal bench --server` measures the server's CPU per query through `/metrics`).

/// CPU seconds (user + system, all threads) this process has used, from `/proc/self/stat`;
/// `None` where there is no procfs. `shoal bench --server` reads it around a measurement to
/// report the server's CPU per query, which the shared cores make more telling than QPS.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces): state is
    // field 3, utime and stime are fields 14 and 15, in clock ticks.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ, which Linux fixes at 100 for every architecture's user-space ABI.
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_cpu_time_is_read_and_grows() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let before = super::cpu_seconds().expect("readable /proc/self/stat");
        // Spin until 50 ms of CPU time show up (however busy the machine is), or fail.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut x = 0u64;
        let after = loop {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
            let now = super::cpu_seconds().unwrap();
            if now >= before + 0.05 || std::time::Instant::now() > deadline {
                break now;
            }
        };
        assert!(after >= before + 0.05, "{before} -> {after}");
    }
}
