//! Flow control: how many frames may be on their way to the page, and when the page
//! acknowledges them.
//!
//! The worker sends a frame only while fewer than [`FRAMES_IN_FLIGHT`] are
//! unacknowledged; acknowledgements are cumulative (`FrameAck { seq }` covers every
//! frame up to `seq`). A page that acknowledged every frame would cost, for each one,
//! a message up, a wake-up of the gateway and one of the worker, which is a fifth of
//! what a typing session costs them. So the page acknowledges a frame only when the
//! worker has no room left for another ([`FrameAcks`]): the worker never waits on an
//! acknowledgement the page holds back, and a session that draws now and then (typing)
//! sends one acknowledgement every [`FRAMES_IN_FLIGHT`] frames.

/// Frames the worker may have sent that the page has not acknowledged.
pub const FRAMES_IN_FLIGHT: u32 = 2;

/// When the page acknowledges the frames it has drawn (the probe uses it; `web/app.js`
/// mirrors it). One per socket: the worker numbers frames from 1 on each attach.
#[derive(Debug, Default, Clone)]
pub struct FrameAcks {
    /// The last frame acknowledged.
    acked: u32,
}

impl FrameAcks {
    /// Frame `seq` is drawn: the acknowledgement to send now, if any.
    ///
    /// INVARIANT: once this returns, the frames drawn and not acknowledged are fewer
    /// than [`FRAMES_IN_FLIGHT`], so the worker still has room to send.
    pub fn drawn(&mut self, seq: u32) -> Option<u32> {
        if seq <= self.acked {
            // The numbering started again (the worker was told of a new page).
            self.acked = 0;
        }
        (seq - self.acked >= FRAMES_IN_FLIGHT).then(|| {
            self.acked = seq;
            seq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker's side of the rule: it may send while fewer than FRAMES_IN_FLIGHT
    /// frames are unacknowledged.
    fn worker_may_send(sent: u32, acked: u32) -> bool {
        sent - acked < FRAMES_IN_FLIGHT
    }

    #[test]
    fn every_other_frame_is_acknowledged() {
        let mut acks = FrameAcks::default();
        let sent: Vec<Option<u32>> = (1..=6).map(|seq| acks.drawn(seq)).collect();
        assert_eq!(sent, [None, Some(2), None, Some(4), None, Some(6)]);
    }

    #[test]
    fn the_worker_never_waits_on_a_held_acknowledgement() {
        // Whatever the page has drawn, the worker (which knows only what the page sent)
        // has room for the next frame once the page has drawn everything it was sent.
        let mut acks = FrameAcks::default();
        let mut acked_at_worker = 0;
        for seq in 1..=100 {
            assert!(worker_may_send(seq - 1, acked_at_worker), "frame {seq} would wait");
            if let Some(a) = acks.drawn(seq) {
                acked_at_worker = a;
            }
        }
    }

    #[test]
    fn numbering_that_starts_again_starts_the_count_again() {
        let mut acks = FrameAcks::default();
        assert_eq!(acks.drawn(1), None);
        assert_eq!(acks.drawn(2), Some(2));
        // A new attach: the worker numbers from 1 again.
        assert_eq!(acks.drawn(1), None);
        assert_eq!(acks.drawn(2), Some(2));
    }
}
