use super::*;

fn blank(w: u16, h: u16, rgb: [u8; 3]) -> Vec<u8> {
    (0..usize::from(w) * usize::from(h)).flat_map(|_| [rgb[0], rgb[1], rgb[2], 255]).collect()
}

fn decode_png(data: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(data));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn first_encode_sends_the_whole_desktop_then_nothing() {
    let (w, h) = (200, 130); // partial tiles at the right and bottom
    let frame = blank(w, h, [10, 20, 30]);
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    let regions = e.encode(&frame, 0).regions;
    let area: u32 = regions.iter().map(|r| u32::from(r.width) * u32::from(r.height)).sum();
    assert_eq!(area, u32::from(w) * u32::from(h));
    assert!(regions.iter().all(|r| r.codec == ImageCodec::Png));
    assert!(!e.has_damage());
    e.damage(0, 0, w, h);
    assert!(e.encode(&frame, 0).is_empty(), "unchanged pixels are not sent again");
    e.invalidate();
    assert_eq!(e.encode(&frame, 0).regions.len(), regions.len(), "after invalidate everything goes again");
}

#[test]
fn only_changed_pixels_are_sent_and_png_is_exact() {
    let (w, h) = (256, 128);
    let mut frame = blank(w, h, [255, 255, 255]);
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    e.encode(&frame, 0);
    // Draw a "character" in tile (2, 1).
    for y in 70..80 {
        for x in 140..146 {
            let i = (y * usize::from(w) + x) * 4;
            frame[i..i + 3].copy_from_slice(&[0, 0, 0]);
        }
    }
    e.damage(0, 0, w, h);
    let regions = e.encode(&frame, 0).regions;
    assert_eq!(regions.len(), 1);
    let r = &regions[0];
    // The character's box, not its 64-pixel tile.
    assert_eq!((r.x, r.y, r.width, r.height, r.codec), (140, 70, 6, 10, ImageCodec::Png));
    let (pw, ph, rgb) = decode_png(&r.data);
    assert_eq!((pw, ph), (6, 10));
    for y in 0..10usize {
        for x in 0..6usize {
            let src = ((y + 70) * usize::from(w) + x + 140) * 4;
            assert_eq!(&rgb[(y * 6 + x) * 3..][..3], &frame[src..src + 3], "pixel {x},{y}");
        }
    }
}

#[test]
fn a_change_across_tiles_is_one_box_and_a_lossy_tile_stays_lossy_until_covered() {
    let (w, h) = (256, 128);
    let mut frame = blank(w, h, [255, 255, 255]);
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    e.encode(&frame, 0);
    // A word across the border of tiles (0, 0) and (1, 0).
    for x in 60..70 {
        paint(&mut frame, w, x, 20, [0, 0, 0]);
    }
    e.damage(0, 0, w, h);
    let regions = e.encode(&frame, 0).regions;
    let boxes: Vec<_> = regions.iter().map(|r| (r.x, r.y, r.width, r.height)).collect();
    assert_eq!(boxes, vec![(60, 20, 10, 1)]);

    // A tile the browser holds approximately stays marked so when only part of it is
    // sent again losslessly, and is exact again once all of it is.
    e.lossy[0] = true;
    paint(&mut frame, w, 5, 5, [9, 9, 9]);
    e.damage(0, 0, w, h);
    e.encode(&frame, 0);
    assert!(e.lossy[0], "a 1-pixel image leaves the rest of the tile approximate");
    e.invalidate();
    e.encode(&frame, 0);
    assert!(!e.lossy[0], "the whole tile sent as PNG is exact");
}

#[test]
fn the_box_of_changed_pixels_takes_in_lines_between_its_top_and_bottom() {
    let (w, h) = (64, 64);
    let mut frame = blank(w, h, [255, 255, 255]);
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    e.encode(&frame, 0);
    // The top and bottom lines change in the middle; lines between them stretch the box
    // to the left and to the right.
    for (x, y) in [(30, 10), (33, 50), (2, 20), (60, 40)] {
        paint(&mut frame, w, x, y, [0, 0, 0]);
    }
    e.damage(0, 0, w, h);
    let regions = e.encode(&frame, 0).regions;
    assert_eq!(regions.len(), 1);
    let r = &regions[0];
    assert_eq!((r.x, r.y, r.width, r.height), (2, 10, 59, 41));
}

#[test]
fn photographic_regions_go_lossy_and_runs_merge() {
    let (w, h) = (512, 64);
    let mut frame = blank(w, h, [0, 0, 0]);
    // A colour gradient with noise in the left half: thousands of colours.
    for y in 0..64usize {
        for x in 0..256usize {
            let i = (y * usize::from(w) + x) * 4;
            frame[i..i + 3].copy_from_slice(&[x as u8, (y * 4) as u8, ((x * 7 + y * 13) % 256) as u8]);
        }
    }
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    let regions = e.encode(&frame, 0).regions;
    let kinds: Vec<_> = regions.iter().map(|r| (r.x, r.width, r.codec)).collect();
    assert_eq!(kinds, vec![(0, 256, ImageCodec::Jpeg), (256, 256, ImageCodec::Png)]);

    let mut lossless = Encoder::new(w, h, EncoderSettings { lossless_only: true, ..Default::default() });
    assert!(lossless.encode(&frame, 0).regions.iter().all(|r| r.codec == ImageCodec::Png));
}

fn png_depth(data: &[u8]) -> u8 {
    png::Decoder::new(std::io::Cursor::new(data)).read_info().unwrap().info().bit_depth as u8
}

/// Pixel `i` (0..) of the desktop coloured from a small set, so that a region's
/// colours can be counted.
fn paint(frame: &mut [u8], w: u16, x: usize, y: usize, rgb: [u8; 3]) {
    let i = (y * usize::from(w) + x) * 4;
    frame[i..i + 3].copy_from_slice(&rgb);
}

#[test]
fn text_in_few_colours_takes_few_bits_per_pixel_and_stays_exact() {
    let (w, h) = (128, 64);
    for (colours, depth) in [(2usize, 1u8), (4, 2), (16, 4), (17, 8)] {
        let mut frame = blank(w, h, [255, 255, 255]);
        for y in 0..usize::from(h) {
            for x in 0..usize::from(w) {
                let c = ((x * 7 + y * 3) % colours) as u8;
                paint(&mut frame, w, x, y, [c, c.wrapping_mul(3), 255 - c]);
            }
        }
        let mut e = Encoder::new(w, h, EncoderSettings::default());
        let f = e.encode(&frame, 0);
        assert_eq!(f.regions.len(), 1, "two tiles of one class make one image");
        assert_eq!(png_depth(&f.regions[0].data), depth, "{colours} colours");
        let mut page = Browser::new(w, h);
        page.apply(&f);
        assert_eq!(page.rgba, frame, "{colours} colours: exact");
    }
}

#[test]
fn a_screen_of_changed_text_goes_as_one_image() {
    let (w, h) = (1280, 800);
    let mut e = Encoder::new(w, h, EncoderSettings { detect_moves: false, ..Default::default() });
    let mut page = Browser::new(w, h);
    page.apply(&e.encode(&text_page(w, h, 0, 1), 0));
    let next = text_page(w, h, 100, 2);
    e.damage(0, 0, w, h);
    let f = e.encode(&next, 0);
    assert_eq!(f.regions.len(), 1);
    // The last three lines of pixels are blank on both pages: not sent.
    assert_eq!((f.regions[0].width, f.regions[0].height), (w, h - 3));
    page.apply(&f);
    assert!(page.rgba == next);
}

#[test]
fn tiles_whose_colours_together_overflow_the_palette_are_split_and_stay_lossless() {
    // Four tiles of 200 colours each, all different: each tile fits a palette, a row
    // of two does not.
    let (w, h) = (128, 128);
    let mut frame = blank(w, h, [0, 0, 0]);
    for y in 0..usize::from(h) {
        for x in 0..usize::from(w) {
            let tile = (y / 64) * 2 + x / 64;
            let c = ((x % 64) + (y % 64) * 64) % 200;
            paint(&mut frame, w, x, y, [c as u8, tile as u8 * 50, 7]);
        }
    }
    let mut e = Encoder::new(w, h, EncoderSettings { lossless_only: false, ..Default::default() });
    let f = e.encode(&frame, 0);
    assert_eq!(f.regions.len(), 4, "one image per tile");
    assert!(f.regions.iter().all(|r| r.codec == ImageCodec::Png && png_depth(&r.data) == 8));
    let mut page = Browser::new(w, h);
    page.apply(&f);
    assert_eq!(page.rgba, frame);
}

#[test]
fn damage_outside_the_desktop_is_ignored() {
    let mut e = Encoder::new(100, 100, EncoderSettings::default());
    e.encode(&blank(100, 100, [1, 2, 3]), 0);
    e.damage(500, 500, 600, 600);
    e.damage(50, 50, 40, 40);
    assert!(!e.has_damage());
}

/// The browser's side: draws moves (from the picture before them), tiles it kept, and
/// PNG regions, then keeps the tiles it is told to.
struct Browser {
    width: u16,
    rgba: Vec<u8>,
    /// Per slot: width, height and RGBA pixels.
    cache: Vec<Option<(u16, u16, Vec<u8>)>>,
}

impl Browser {
    fn new(w: u16, h: u16) -> Self {
        Self { width: w, rgba: vec![0; usize::from(w) * usize::from(h) * 4], cache: vec![None; usize::from(rebond_wire::TILE_CACHE_SLOTS)] }
    }

    fn draw_cached(&mut self, c: &CacheRect) {
        let stride = usize::from(self.width) * 4;
        for t in c.tiles() {
            let (w, h, px) = self.cache[usize::from(t.slot)].as_ref().expect("a draw names a kept slot");
            assert_eq!((*w, *h), (t.width, t.height), "a slot is drawn at the size it was kept");
            for row in 0..usize::from(*h) {
                let at = (usize::from(t.y) + row) * stride + usize::from(t.x) * 4;
                self.rgba[at..at + usize::from(*w) * 4].copy_from_slice(&px[row * usize::from(*w) * 4..(row + 1) * usize::from(*w) * 4]);
            }
        }
    }

    fn keep(&mut self, k: &CacheRect) {
        let stride = usize::from(self.width) * 4;
        for t in k.tiles() {
            let px = (0..usize::from(t.height))
                .flat_map(|row| {
                    let at = (usize::from(t.y) + row) * stride + usize::from(t.x) * 4;
                    self.rgba[at..at + usize::from(t.width) * 4].to_vec()
                })
                .collect();
            self.cache[usize::from(t.slot)] = Some((t.width, t.height, px));
        }
    }

    fn apply(&mut self, f: &EncodedFrame) {
        for k in &f.cache_stores {
            self.keep(k);
        }
        let stride = usize::from(self.width) * 4;
        let before = self.rgba.clone();
        for m in &f.moves {
            for r in 0..usize::from(m.height) {
                let s = (usize::from(m.src_y) + r) * stride + usize::from(m.src_x) * 4;
                let d = (usize::from(m.y) + r) * stride + usize::from(m.x) * 4;
                let n = usize::from(m.width) * 4;
                self.rgba[d..d + n].copy_from_slice(&before[s..s + n]);
            }
        }
        for d in &f.cache_draws {
            self.draw_cached(d);
        }
        for region in &f.regions {
            assert_eq!(region.codec, ImageCodec::Png, "these pictures are few-colour");
            let (w, _, rgb) = decode_png(&region.data);
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                let (col, row) = (i % w as usize, i / w as usize);
                let d = (usize::from(region.y) + row) * stride + (usize::from(region.x) + col) * 4;
                self.rgba[d..d + 3].copy_from_slice(px);
                self.rgba[d + 3] = 255;
            }
        }
    }
}

/// A page of "text": rows of few-colour noise that differ from line to line, the
/// way a terminal or document does, `lines` lines of 13 pixels from line `first`.
fn text_page(w: u16, h: u16, first: usize, seed: u64) -> Vec<u8> {
    let mut out = blank(w, h, [255, 255, 255]);
    for y in 0..usize::from(h) {
        let line = first + y / 13;
        for x in 0..usize::from(w) {
            let v = (line as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed ^ ((x as u64 / 6) << 32) ^ ((y % 13) as u64);
            let ink = v.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 61 == 0;
            if ink && y % 13 > 2 {
                let i = (y * usize::from(w) + x) * 4;
                out[i..i + 3].copy_from_slice(&[0, 0, 0]);
            }
        }
    }
    out
}

fn sent_area(f: &EncodedFrame) -> u32 {
    f.regions.iter().map(|r| u32::from(r.width) * u32::from(r.height)).sum()
}

#[test]
fn a_scroll_is_sent_as_a_move_and_the_new_lines_only() {
    let (w, h) = (640, 480);
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    let mut browser = Browser::new(w, h);
    browser.apply(&e.encode(&text_page(w, h, 0, 1), 0));
    // Three lines scroll up (39 pixels).
    let next = text_page(w, h, 3, 1);
    e.damage(0, 0, w, h);
    let f = e.encode(&next, 0);
    browser.apply(&f);
    assert!(browser.rgba == next, "the browser's picture is exact");
    assert!(!f.moves.is_empty());
    assert!(f.moves.iter().all(|m| m.src_y == m.y + 39 && m.src_x == m.x), "{:?}", f.moves);
    assert!(f.moves.len() <= 2, "tiles merge into few rectangles: {:?}", f.moves);
    assert!(sent_area(&f) <= u32::from(w) * 64 * 2, "only the bottom tiles go as images, not {} pixels", sent_area(&f));
}

#[test]
fn a_window_dragged_sideways_is_moved() {
    let (w, h) = (512, 320);
    let window = text_page(192, 192, 0, 7);
    let place = |dx: usize| {
        let mut f = blank(w, h, [40, 90, 160]);
        for y in 0..192 {
            let d = ((64 + y) * usize::from(w) + 40 + dx) * 4;
            f[d..d + 192 * 4].copy_from_slice(&window[y * 192 * 4..(y + 1) * 192 * 4]);
        }
        f
    };
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    let mut browser = Browser::new(w, h);
    browser.apply(&e.encode(&place(0), 0));
    for step in 1..4 {
        let next = place(step * 48);
        e.damage(0, 0, w, h);
        let f = e.encode(&next, 0);
        browser.apply(&f);
        assert!(browser.rgba == next, "step {step}: the browser's picture is exact");
        assert!(f.moves.iter().any(|m| m.src_x + 48 == m.x && m.src_y == m.y), "step {step}: {:?}", f.moves);
    }
}

#[test]
fn a_keystroke_is_an_image_and_no_search() {
    let (w, h) = (256, 128);
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    let page = text_page(w, h, 0, 3);
    e.encode(&page, 0);
    let mut next = page.clone();
    next[(70 * 256 + 10) * 4..][..12].fill(0);
    e.damage(0, 0, w, h);
    let f = e.encode(&next, 0);
    assert!(f.moves.is_empty());
    assert_eq!(f.regions.len(), 1);
}

#[test]
fn moves_are_off_when_asked() {
    let (w, h) = (640, 480);
    let mut e = Encoder::new(w, h, EncoderSettings { detect_moves: false, ..Default::default() });
    e.encode(&text_page(w, h, 0, 1), 0);
    e.damage(0, 0, w, h);
    let f = e.encode(&text_page(w, h, 3, 1), 0);
    assert!(f.moves.is_empty());
}

#[test]
fn pixels_moved_from_a_lossy_tile_stay_marked_lossy() {
    let (w, h) = (256, 256);
    let mut photo = blank(w, h, [255, 255, 255]);
    for y in 0..128usize {
        for x in 0..256usize {
            let i = (y * 256 + x) * 4;
            photo[i..i + 3].copy_from_slice(&[x as u8, (y * 2) as u8, ((x * 7 + y * 13) % 256) as u8]);
        }
    }
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    e.encode(&photo, 0);
    assert!(e.lossy[0], "the photograph went as JPEG");
    // The photograph scrolls down by 64 pixels.
    let mut next = blank(w, h, [255, 255, 255]);
    next[64 * 256 * 4..192 * 256 * 4].copy_from_slice(&photo[..128 * 256 * 4]);
    e.damage(0, 0, w, h);
    let f = e.encode(&next, 0);
    assert!(!f.moves.is_empty(), "moved, not sent again");
    let cols = 4;
    assert!((0..cols).all(|c| e.lossy[cols + c] && e.lossy[2 * cols + c]), "the moved tiles are approximate");
    assert!((0..cols).all(|c| !e.lossy[c]), "the white tiles sent as PNG are exact");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// Whatever scrolls and drags happen, the browser's picture ends exact.
        #[test]
        fn the_browser_stays_exact(steps in prop::collection::vec((0usize..40, -3i32..4, 0u64..3, 0u64..1_500), 1..8)) {
            let (w, h) = (320, 200);
            let mut e = Encoder::new(w, h, EncoderSettings::default());
            let mut browser = Browser::new(w, h);
            browser.apply(&e.encode(&text_page(w, h, 0, 0), 0));
            let mut now = 0;
            for (first, shift, seed, wait) in steps {
                // Pages come back (few seeds and lines), some after long enough to be kept.
                now += wait;
                let mut next = text_page(w, h, first, seed);
                // Part of the page also shifts sideways, like a window being dragged.
                if shift != 0 {
                    let dx = (shift * 16).unsigned_abs() as usize;
                    for y in 64..128usize {
                        let row = &mut next[y * usize::from(w) * 4..(y + 1) * usize::from(w) * 4];
                        if shift > 0 { row.rotate_right(dx * 4) } else { row.rotate_left(dx * 4) }
                    }
                }
                e.damage(0, 0, w, h);
                browser.apply(&e.encode(&next, now));
                prop_assert!(browser.rgba == next);
            }
        }
    }
}

#[test]
fn a_window_brought_back_is_drawn_from_the_cache() {
    let (w, h) = (1280, 800);
    let (mail, letter) = (text_page(w, h, 0, 11), text_page(w, h, 500, 12));
    let mut e = Encoder::new(w, h, EncoderSettings { cache_seed: 42, ..Default::default() });
    let mut browser = Browser::new(w, h);
    browser.apply(&e.encode(&mail, 0));
    // A second later the letter comes to the front: the page keeps the mail first.
    e.damage(0, 0, w, h);
    let first = e.encode(&letter, 1_000);
    browser.apply(&first);
    assert!(first.cache_draws.is_empty() && !first.regions.is_empty(), "the letter is new");
    assert_eq!(first.cache_stores.len(), 1, "the mail kept as one rectangle of tiles: {:?}", first.cache_stores);
    // Back to the mail, then to the letter: every tile comes from the cache.
    for (at, page, name) in [(2_000, &mail, "mail"), (3_000, &letter, "letter")] {
        e.damage(0, 0, w, h);
        let f = e.encode(page, at);
        browser.apply(&f);
        assert!(browser.rgba == *page, "{name}: the browser's picture is exact");
        assert!(f.regions.is_empty(), "{name}: no image, {} sent", f.regions.len());
        let tiles: usize = f.cache_draws.iter().map(|c| c.tiles().count()).sum();
        assert!(tiles >= 200, "{name}: {tiles} tiles drawn from the cache");
        assert!(f.cache_draws.len() <= 2, "{name}: drawn as {} rectangles: {:?}", f.cache_draws.len(), f.cache_draws);
    }
}

#[test]
fn what_changes_every_frame_is_not_kept() {
    // A flood: a new screen every 66 ms. Nothing stays long enough to be kept.
    let (w, h) = (640, 480);
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    for frame in 0..20u64 {
        e.damage(0, 0, w, h);
        let f = e.encode(&text_page(w, h, frame as usize * 50, frame), frame * 66);
        assert!(f.cache_stores.is_empty(), "frame {frame} kept {:?}", f.cache_stores);
    }
}

#[test]
fn the_cache_is_off_when_asked() {
    let (w, h) = (320, 200);
    let mut e = Encoder::new(w, h, EncoderSettings { tile_cache: false, ..Default::default() });
    for (at, seed) in [(0, 1), (1_000, 2), (2_000, 1)] {
        e.damage(0, 0, w, h);
        let f = e.encode(&text_page(w, h, 0, seed), at);
        assert!(f.cache_draws.is_empty() && f.cache_stores.is_empty());
    }
}

#[test]
fn slots_reused_for_newer_tiles_are_never_drawn_stale() {
    // 20 tiles a screen, a screen a second: 70 different screens go round the 1024
    // slots, then the first ones come back; whatever the cache still holds, the browser
    // stays exact.
    let (w, h) = (320, 200);
    let mut e = Encoder::new(w, h, EncoderSettings { detect_moves: false, cache_seed: 3, ..Default::default() });
    let mut browser = Browser::new(w, h);
    let mut drawn = 0;
    for (i, seed) in (0..70).chain(0..10).chain(60..70).enumerate() {
        let page = text_page(w, h, seed as usize * 7, seed);
        e.damage(0, 0, w, h);
        let f = e.encode(&page, i as u64 * 1_000);
        browser.apply(&f);
        assert!(browser.rgba == page, "screen {seed}: the browser's picture is exact");
        drawn += f.cache_draws.iter().map(|c| c.tiles().count()).sum::<usize>();
    }
    assert!(drawn >= 10 * 20, "the last screens came from the cache ({drawn} tiles)");
}

#[test]
fn a_new_page_starts_with_an_empty_cache() {
    let (w, h) = (320, 200);
    let (a, b) = (text_page(w, h, 0, 1), text_page(w, h, 0, 2));
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    e.encode(&a, 0);
    e.damage(0, 0, w, h);
    assert!(!e.encode(&b, 1_000).cache_stores.is_empty(), "the page kept the first picture");
    e.invalidate();
    e.encode(&b, 2_000);
    e.damage(0, 0, w, h);
    let f = e.encode(&a, 3_000);
    assert!(f.cache_draws.is_empty(), "the new page never kept the first picture");
}

#[test]
fn a_window_with_a_blank_margin_comes_back_as_few_rectangles() {
    // Text on the left, a blank right half: a hundred tiles alike.
    let (w, h) = (1280, 800);
    let half = |seed: u64, rgb: [u8; 3]| {
        let text = text_page(w, h, 0, seed);
        let mut page = blank(w, h, rgb);
        for y in 0..usize::from(h) {
            let row = y * usize::from(w) * 4;
            page[row..row + 640 * 4].copy_from_slice(&text[row..row + 640 * 4]);
        }
        page
    };
    let (mail, letter) = (half(1, [255, 255, 255]), half(2, [238, 243, 255]));
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    let mut browser = Browser::new(w, h);
    for (at, page) in [(0, &mail), (1_000, &letter), (2_000, &mail), (3_000, &letter)] {
        e.damage(0, 0, w, h);
        let f = e.encode(page, at);
        browser.apply(&f);
        assert!(browser.rgba == *page, "at {at}: the browser's picture is exact");
        if at >= 2_000 {
            assert!(f.regions.is_empty(), "at {at}: {} images", f.regions.len());
            assert!(f.cache_draws.len() <= 2, "at {at}: {} rectangles", f.cache_draws.len());
        }
    }
}
