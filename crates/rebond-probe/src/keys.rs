//! `--type` text to key events: US-layout scancodes for printable ASCII, and
//! `{Name}` for special keys (`{Enter}`, `{Tab}`, `{Esc}`, `{Backspace}`, `{Up}`…);
//! `{Wait 2000}` pauses the typing (milliseconds), as a person reading does.

/// One key press or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEvent {
    pub scancode: u8,
    pub extended: bool,
    pub down: bool,
}

const SHIFT: u8 = 0x2a;

/// (scancode, shifted) for a printable ASCII character on a US keyboard.
fn ascii(c: char) -> Option<(u8, bool)> {
    const ROWS: [(&str, &str, u8); 4] = [
        ("`1234567890-=", "~!@#$%^&*()_+", 0x29),
        ("qwertyuiop[]\\", "QWERTYUIOP{}|", 0x10),
        ("asdfghjkl;'", "ASDFGHJKL:\"", 0x1e),
        ("zxcvbnm,./", "ZXCVBNM<>?", 0x2c),
    ];
    if c == ' ' {
        return Some((0x39, false));
    }
    for (plain, shifted, first) in ROWS {
        for (set, shift) in [(plain, false), (shifted, true)] {
            if let Some(i) = set.chars().position(|x| x == c) {
                let code = match (first, i) {
                    (0x29, 0) => 0x29,
                    (0x29, i) => 0x01 + i as u8, // 1 is 0x02
                    (0x10, 12) => 0x2b,          // backslash
                    (f, i) => f + i as u8,
                };
                return Some((code, shift));
            }
        }
    }
    None
}

fn named(name: &str) -> Option<(u8, bool)> {
    Some(match name.to_ascii_lowercase().as_str() {
        "enter" | "return" => (0x1c, false),
        "tab" => (0x0f, false),
        "esc" | "escape" => (0x01, false),
        "backspace" => (0x0e, false),
        "space" => (0x39, false),
        "up" => (0x48, true),
        "down" => (0x50, true),
        "left" => (0x4b, true),
        "right" => (0x4d, true),
        "home" => (0x47, true),
        "end" => (0x4f, true),
        "pageup" => (0x49, true),
        "pagedown" => (0x51, true),
        "delete" | "del" => (0x53, true),
        "ctrl" => (0x1d, false),
        "alt" => (0x38, false),
        "altgr" => (0x38, true),
        "shift" => (SHIFT, false),
        f if f.starts_with('f') && f.len() <= 3 => {
            let n: u8 = f[1..].parse().ok()?;
            match n {
                1..=10 => (0x3a + n, false),
                11 => (0x57, false),
                12 => (0x58, false),
                _ => return None,
            }
        }
        _ => return None,
    })
}

fn tap(out: &mut Vec<KeyEvent>, (scancode, extended): (u8, bool)) {
    out.push(KeyEvent { scancode, extended, down: true });
    out.push(KeyEvent { scancode, extended, down: false });
}

/// One step of a `--type` script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStep {
    Key(KeyEvent),
    /// No key for this many milliseconds.
    Wait(u64),
}

/// Parses `--type` text that has no pause in it. `{Ctrl+c}` presses modifiers around a key.
pub fn parse_keys(text: &str) -> anyhow::Result<Vec<KeyEvent>> {
    parse_script(text)?
        .into_iter()
        .map(|step| match step {
            KeyStep::Key(k) => Ok(k),
            KeyStep::Wait(_) => Err(anyhow::anyhow!("{{Wait}} is for typing scripts only")),
        })
        .collect()
}

/// Parses `--type` text: keys, and `{Wait MS}` pauses.
pub fn parse_script(text: &str) -> anyhow::Result<Vec<KeyStep>> {
    let mut out = Vec::new();
    let mut keys = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '{' {
            let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
            if let Some(ms) = name.strip_prefix("Wait ") {
                let ms = ms.trim().parse().map_err(|_| anyhow::anyhow!("{{Wait MS}} takes milliseconds, not {ms:?}"))?;
                out.extend(keys.drain(..).map(KeyStep::Key));
                out.push(KeyStep::Wait(ms));
                continue;
            }
            let out = &mut keys;
            let parts: Vec<&str> = name.split('+').collect();
            let (last, mods) = parts.split_last().expect("split yields one part at least");
            let key = named(last)
                .or_else(|| last.chars().next().filter(|_| last.chars().count() == 1).and_then(ascii).map(|(s, _)| (s, false)))
                .ok_or_else(|| anyhow::anyhow!("unknown key name {{{name}}}"))?;
            let mods: Vec<(u8, bool)> =
                mods.iter().map(|m| named(m).ok_or_else(|| anyhow::anyhow!("unknown modifier {m}"))).collect::<Result<_, _>>()?;
            for m in &mods {
                out.push(KeyEvent { scancode: m.0, extended: m.1, down: true });
            }
            tap(out, key);
            for m in mods.iter().rev() {
                out.push(KeyEvent { scancode: m.0, extended: m.1, down: false });
            }
        } else {
            let out = &mut keys;
            let (code, shift) = ascii(c).ok_or_else(|| anyhow::anyhow!("cannot type {c:?}: use ASCII or {{Name}}"))?;
            if shift {
                out.push(KeyEvent { scancode: SHIFT, extended: false, down: true });
            }
            tap(out, (code, false));
            if shift {
                out.push(KeyEvent { scancode: SHIFT, extended: false, down: false });
            }
        }
    }
    out.extend(keys.into_iter().map(KeyStep::Key));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downs(text: &str) -> Vec<u8> {
        parse_keys(text).unwrap().iter().filter(|k| k.down).map(|k| k.scancode).collect()
    }

    #[test]
    fn text_and_names() {
        assert_eq!(downs("a1 "), vec![0x1e, 0x02, 0x39]);
        assert_eq!(downs("0-="), vec![0x0b, 0x0c, 0x0d]);
        assert_eq!(downs("A"), vec![0x2a, 0x1e]);
        assert_eq!(downs("/\\"), vec![0x35, 0x2b]);
        assert_eq!(downs("{Enter}{F12}"), vec![0x1c, 0x58]);
        assert_eq!(downs("{Ctrl+c}"), vec![0x1d, 0x2e]);
        let all = parse_keys("{Ctrl+c}").unwrap();
        assert_eq!(all.last(), Some(&KeyEvent { scancode: 0x1d, extended: false, down: false }));
        assert!(parse_keys("{Nope}").is_err());
        assert!(parse_keys("é").is_err());
    }

    #[test]
    fn pauses_between_keys() {
        let steps = parse_script("a{Wait 1500}b").unwrap();
        let a = KeyEvent { scancode: 0x1e, extended: false, down: true };
        assert_eq!(steps.len(), 5);
        assert_eq!(steps[0], KeyStep::Key(a));
        assert_eq!(steps[2], KeyStep::Wait(1500));
        assert!(parse_script("{Wait soon}").is_err());
        assert!(parse_keys("a{Wait 10}").is_err(), "only the probe pauses");
    }
}
