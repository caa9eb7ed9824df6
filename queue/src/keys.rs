use crate::JobState;

/// The Redis keys of one queue.
#[derive(Debug, Clone)]
pub struct Keys {
    /// `prefix:{queue}`: the hash tag keeps a queue in one cluster slot.
    pub base: String,
    pub stream: String,
    pub delayed: String,
    pub stats: String,
    pub workers: String,
}

impl Keys {
    /// Built on every enqueue: plain concatenation, not `format!`, which cost the enqueue
    /// API a measurable share of its time (callgrind).
    pub fn new(prefix: &str, queue: &str) -> Self {
        let mut base = String::with_capacity(prefix.len() + queue.len() + 3);
        base.push_str(prefix);
        base.push_str(":{");
        base.push_str(queue);
        base.push('}');
        let key = |suffix: &str| {
            let mut k = String::with_capacity(base.len() + suffix.len());
            k.push_str(&base);
            k.push_str(suffix);
            k
        };
        Self {
            stream: key(":stream"),
            delayed: key(":delayed"),
            stats: key(":stats"),
            workers: key(":workers"),
            base,
        }
    }

    /// The streams of the three priorities, high first.
    pub fn streams(&self) -> [String; 3] {
        [
            format!("{}:high", self.stream),
            self.stream.clone(),
            format!("{}:low", self.stream),
        ]
    }

    /// Present while the queue is paused.
    pub fn paused(&self) -> String {
        format!("{}:paused", self.base)
    }

    pub fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.base)
    }

    pub fn errors(&self, id: &str) -> String {
        format!("{}:err:{id}", self.base)
    }

    /// The index of the jobs in `state`: a sorted set of ids scored by enqueue time
    /// (waiting and running jobs) or finish time (finished ones).
    pub fn index(&self, state: JobState) -> String {
        format!("{}:idx:{}", self.base, state.as_str())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_share_one_hash_tag() {
        let k = super::Keys::new("ferry", "default");
        assert_eq!(k.stream, "ferry:{default}:stream");
        assert_eq!(k.job("x"), "ferry:{default}:job:x");
        for key in [&k.stream, &k.delayed, &k.stats, &k.workers] {
            assert!(key.contains("{default}"));
        }
    }
}
