//! Counters for operators, exposed in Prometheus' text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the key-to-frame latency buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    key_to_frame: Mutex<Histogram>,
    sign_ins: Mutex<BTreeMap<&'static str, u64>>,
    pub sessions_started: AtomicU64,
    pub bytes_to_browsers: AtomicU64,
    pub bytes_from_browsers: AtomicU64,
    pub worker_crashes: AtomicU64,
    pub sandbox_violations: AtomicU64,
    pub uplink_violations: AtomicU64,
    pub injected_typing: AtomicU64,
}

impl Metrics {
    /// Counts a sign-in by outcome (`accepted` or an error code's name).
    pub fn sign_in(&self, outcome: &'static str) {
        *self.sign_ins.lock().unwrap().entry(outcome).or_default() += 1;
    }

    /// A key went up and the first frame after it went down `seconds` later.
    pub fn key_to_frame(&self, seconds: f64) {
        let mut h = self.key_to_frame.lock().unwrap();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The exposition text. `sessions` and `capacity` are gauges read at scrape time.
    pub fn render(&self, sessions: usize, capacity: usize, draining: bool) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        };
        gauge(&mut out, "rebond_sessions", "Sessions on this node (one bounce worker each).", sessions as u64);
        gauge(&mut out, "rebond_session_capacity", "Sessions this node accepts at most.", capacity as u64);
        gauge(&mut out, "rebond_draining", "1 while the node drains before stopping.", u64::from(draining));
        counter(&mut out, "rebond_sessions_started_total", "Bounce workers started.", &self.sessions_started);
        counter(&mut out, "rebond_bytes_to_browsers_total", "Bytes sent to pages over session sockets.", &self.bytes_to_browsers);
        counter(&mut out, "rebond_bytes_from_browsers_total", "Bytes received from pages over session sockets.", &self.bytes_from_browsers);
        counter(&mut out, "rebond_worker_crashes_total", "Bounce workers that ended without a reason.", &self.worker_crashes);
        counter(&mut out, "rebond_sandbox_violations_total", "Bounce workers stopped by their sandbox.", &self.sandbox_violations);
        counter(&mut out, "rebond_uplink_violations_total", "Sessions closed for a forbidden uplink message.", &self.uplink_violations);
        counter(&mut out, "rebond_injected_typing_total", "Bursts of keystrokes faster than a person types.", &self.injected_typing);
        let _ = writeln!(out, "# HELP rebond_sign_ins_total Sign-in attempts by outcome.\n# TYPE rebond_sign_ins_total counter");
        for (outcome, n) in self.sign_ins.lock().unwrap().iter() {
            let _ = writeln!(out, "rebond_sign_ins_total{{outcome=\"{outcome}\"}} {n}");
        }
        let h = self.key_to_frame.lock().unwrap();
        let name = "rebond_key_to_frame_seconds";
        let _ = writeln!(out, "# HELP {name} From a key received from the page to the next frame sent to it.\n# TYPE {name} histogram");
        for (bound, n) in LATENCY_BUCKETS.iter().zip(h.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}", h.count, h.sum, h.count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let m = Metrics::default();
        m.sign_in("accepted");
        m.sign_in("bad_credentials");
        m.sign_in("accepted");
        Metrics::add(&m.bytes_to_browsers, 1500);
        let text = m.render(3, 100, false);
        assert!(text.contains("rebond_sessions 3\n"));
        assert!(text.contains("rebond_sign_ins_total{outcome=\"accepted\"} 2\n"));
        assert!(text.contains("rebond_sign_ins_total{outcome=\"bad_credentials\"} 1\n"));
        assert!(text.contains("rebond_bytes_to_browsers_total 1500\n"));
        assert!(text.contains("# TYPE rebond_worker_crashes_total counter\n"));
        m.key_to_frame(0.015);
        m.key_to_frame(0.3);
        let text = m.render(0, 1, false);
        assert!(text.contains("rebond_key_to_frame_seconds_bucket{le=\"0.01\"} 0\n"), "{text}");
        assert!(text.contains("rebond_key_to_frame_seconds_bucket{le=\"0.02\"} 1\n"));
        assert!(text.contains("rebond_key_to_frame_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("rebond_key_to_frame_seconds_bucket{le=\"+Inf\"} 2\nrebond_key_to_frame_seconds_sum 0.315\n"));
    }
}
