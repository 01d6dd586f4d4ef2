//! Keystrokes far faster than a person types: text pasted, or injected by a rogue
//! USB device or a script on the home PC, disguised as typing.
//!
//! Sans-IO: the caller gives the time of each key press (milliseconds, any origin).
//! The rule looks at the last [`WINDOW`] character key presses: if they came at more
//! than [`MAX_KEYS_PER_SECOND`] on average, it is not a person typing. A person at
//! 150 words per minute averages 12–13 keys per second, with bursts of rollover; a
//! paste arrives at hundreds.

use std::collections::VecDeque;

/// Key presses the rule averages over.
pub const WINDOW: usize = 24;
/// Above this average rate over the window, it is not a person.
pub const MAX_KEYS_PER_SECOND: f64 = 30.0;

/// What the policy does about injected typing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TypingPolicy {
    /// Let it through; record it.
    Log,
    /// Let it through at a person's pace.
    #[default]
    Slow,
    /// End the session.
    Block,
}

/// The verdict on one key press.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Typing {
    /// A person typing.
    Human,
    /// Injected typing detected (first time in a burst: `first`), at `keys_per_second`.
    Injected { keys_per_second: f64, first: bool },
}

#[derive(Debug, Clone, Default)]
pub struct TypingGuard {
    presses: VecDeque<u64>,
    in_burst: bool,
}

/// Whether a scancode is a character key (letters, digits, punctuation, space):
/// modifiers, arrows and function keys are not text.
pub fn is_character_key(scancode: u8, extended: bool) -> bool {
    !extended && matches!(scancode, 0x02..=0x0d | 0x10..=0x1b | 0x1e..=0x29 | 0x2b..=0x35 | 0x39 | 0x56)
}

impl TypingGuard {
    /// A character key was pressed at `now_ms`.
    pub fn press(&mut self, now_ms: u64) -> Typing {
        self.presses.push_back(now_ms);
        if self.presses.len() > WINDOW {
            self.presses.pop_front();
        }
        if self.presses.len() < WINDOW {
            return Typing::Human;
        }
        let span_ms = now_ms.saturating_sub(self.presses[0]).max(1);
        let keys_per_second = (WINDOW - 1) as f64 * 1000.0 / span_ms as f64;
        if keys_per_second > MAX_KEYS_PER_SECOND {
            let first = !self.in_burst;
            self.in_burst = true;
            Typing::Injected { keys_per_second, first }
        } else {
            self.in_burst = false;
            Typing::Human
        }
    }

    /// Under [`TypingPolicy::Slow`]: how long to hold the next key so that the rate
    /// stays that of a person.
    pub fn delay_ms(&self) -> u64 {
        (1000.0 / MAX_KEYS_PER_SECOND * 1.2) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burst() -> Vec<u64> {
        include_str!("../../../fixtures/typing-150wpm-burst.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.trim().parse().unwrap())
            .collect()
    }

    #[test]
    fn a_fast_typist_at_150_wpm_passes() {
        let times = burst();
        let wpm = (times.len() as f64 / 5.0) / (*times.last().unwrap() as f64 / 60_000.0);
        assert!(wpm >= 150.0, "the fixture is a 150 wpm burst ({wpm:.0})");
        let mut g = TypingGuard::default();
        let false_positives = times.iter().filter(|t| g.press(**t) != Typing::Human).count();
        assert_eq!(false_positives, 0);
    }

    #[test]
    fn a_paste_is_caught_within_a_window() {
        let mut g = TypingGuard::default();
        let verdicts: Vec<Typing> = (0..100).map(|i| g.press(10_000 + i * 5)).collect();
        let first = verdicts.iter().position(|v| *v != Typing::Human).unwrap();
        assert_eq!(first, WINDOW - 1);
        assert!(matches!(verdicts[first], Typing::Injected { first: true, keys_per_second } if keys_per_second > 150.0));
        assert!(matches!(verdicts[first + 1], Typing::Injected { first: false, .. }));
        // After a pause, a person typing again is a person.
        let later: Vec<Typing> = (0..WINDOW as u64).map(|i| g.press(60_000 + i * 90)).collect();
        assert_eq!(*later.last().unwrap(), Typing::Human);
    }

    #[test]
    fn character_keys() {
        assert!(is_character_key(0x1e, false)); // A
        assert!(is_character_key(0x39, false)); // space
        assert!(!is_character_key(0x1d, false)); // Ctrl
        assert!(!is_character_key(0x48, true)); // Up
        assert!(!is_character_key(0x1c, false)); // Enter
    }
}
