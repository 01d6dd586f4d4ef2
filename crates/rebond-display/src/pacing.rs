//! When the next frame may go. A workstation may draw one picture as many updates
//! (xrdp sends a full-screen picture in pieces) or change faster than any screen
//! shows: frames then go at most once per interval, each with everything drawn
//! meanwhile. The first change after a quiet spell goes at once, so a keystroke
//! waits for nothing.
//!
//! Sans-IO: the caller reads its clock and passes milliseconds.

/// The shortest time between two frames by default: 60 frames per second, a screen's
/// own refresh rate.
pub const MIN_FRAME_INTERVAL_MS: u64 = 16;

#[derive(Debug, Clone)]
pub struct FramePacer {
    interval_ms: u64,
    last_sent_ms: Option<u64>,
}

impl FramePacer {
    pub const fn new(interval_ms: u64) -> Self {
        Self { interval_ms, last_sent_ms: None }
    }

    /// `None` when a frame may go now; otherwise the time before which it may not.
    pub fn not_before(&self, now_ms: u64) -> Option<u64> {
        let earliest = self.last_sent_ms? + self.interval_ms;
        (now_ms < earliest).then_some(earliest)
    }

    /// A frame went at `now_ms`.
    pub fn sent(&mut self, now_ms: u64) {
        self.last_sent_ms = Some(now_ms);
    }
}

impl Default for FramePacer {
    fn default() -> Self {
        Self::new(MIN_FRAME_INTERVAL_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_frame_and_one_after_a_quiet_spell_go_at_once() {
        let mut p = FramePacer::default();
        assert_eq!(p.not_before(1_000), None);
        p.sent(1_000);
        assert_eq!(p.not_before(1_000 + MIN_FRAME_INTERVAL_MS), None);
        assert_eq!(p.not_before(5_000), None);
    }

    #[test]
    fn pieces_drawn_within_an_interval_wait_for_its_end() {
        let mut p = FramePacer::new(16);
        p.sent(100);
        for now in [100, 101, 110, 115] {
            assert_eq!(p.not_before(now), Some(116), "at {now}");
        }
        p.sent(116);
        assert_eq!(p.not_before(120), Some(132));
    }
}
