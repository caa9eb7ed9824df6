/// A worker identity unique per process: host, pid and a random suffix, so replicas never
/// share a name and hide each other's death.
pub fn worker_id() -> String {
    let suffix: u32 = rand::random();
    format!("{}-{}-{suffix:08x}", host(), std::process::id())
}

/// This host's name, the first part of its workers' ids (`ferry healthcheck worker` looks
/// for it).
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn identities_differ_within_one_process() {
        assert_ne!(super::worker_id(), super::worker_id());
    }
}
