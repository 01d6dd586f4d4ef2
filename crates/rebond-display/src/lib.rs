//! From framebuffer to browser images: damage tracking on a tile grid, skipping
//! tiles that did not really change, and a per-region choice of codec.
//!
//! Sans-IO: takes RGBA pixels, returns [`rebond_wire::Move`]s (a scroll, a dragged
//! window: pixels the browser already has, drawn from where they were) and
//! [`rebond_wire::Downlink::Tile`] payloads.
//! Lossless PNG (palette-indexed) for text and user interface, where few colours
//! appear; JPEG only for regions rich in colour (photographs, video), where it pays.
//!
//! Tiles that come back (a window brought to the front again) are drawn from the
//! page's tile cache ([`cache`]) instead of being sent again.
//!
//! INVARIANT: after `encode`, the encoder's shadow copy equals the framebuffer on
//! every tile it sent, moved or drew from the cache, and the browser's picture equals
//! the shadow exactly on every tile not marked lossy (sent as PNG, moved from such
//! tiles only, or drawn from the cache, which holds exact tiles only), unless two
//! different tiles' 128-bit seeded hashes are equal.

use rebond_wire::{CacheRect, ImageCodec, Move, TILE_CACHE_SLOTS};

mod cache;
mod moves;
pub mod pacing;

/// Side of a damage tile, in pixels (the page's cache keeps tiles of this side).
pub const TILE: u16 = 64;
const _: () = assert!(TILE == rebond_wire::CACHED_TILE_SIDE);
/// Above this many distinct colours a tile counts as photographic.
pub const PALETTE_LIMIT: usize = 256;

/// One image for the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRegion {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
    pub codec: ImageCodec,
    pub data: Vec<u8>,
}

/// Settings an operator or a policy may tune.
#[derive(Debug, Clone, Copy)]
pub struct EncoderSettings {
    /// JPEG quality for photographic regions, 1..=100.
    pub jpeg_quality: u8,
    /// Never use a lossy codec.
    pub lossless_only: bool,
    /// Send scrolls and moved windows as moves of what the browser has.
    pub detect_moves: bool,
    /// Let the page keep tiles and draw them again when they come back (see `cache`).
    pub tile_cache: bool,
    /// Seeds the tile cache's hash; the caller draws it at random for each session.
    pub cache_seed: u64,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self { jpeg_quality: 80, lossless_only: false, detect_moves: true, tile_cache: true, cache_seed: 0 }
    }
}

/// Tracks what the browser has and turns damage into moves and images.
pub struct Encoder {
    width: u16,
    height: u16,
    cols: u16,
    rows: u16,
    /// What the browser shows, as far as we sent it (RGBA).
    shadow: Vec<u8>,
    dirty: Vec<bool>,
    /// Tiles that must be sent even if the shadow matches (browser lost its picture).
    forced: Vec<bool>,
    /// Tiles the browser holds only approximately (sent lossy, or moved from such a tile).
    lossy: Vec<bool>,
    moves: moves::Detector,
    cache: cache::TileCache,
    /// When each tile's pixels last changed (the caller's clock, milliseconds).
    since_ms: Vec<u64>,
    settings: EncoderSettings,
}

/// A tile that stayed this long on screen is kept in the page's cache when something
/// covers it: a person looked at it, it may come back.
pub const KEEP_AFTER_MS: u64 = 500;
/// A tile is looked up in the page's cache only if it had stayed this long unchanged.
pub const LOOK_UP_AFTER_MS: u64 = 250;

/// What one call to [`Encoder::encode`] sends, in this order: what the page keeps in
/// its cache of the picture it has, the moves, the tiles drawn from the cache, the images.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// Kept by the page before it draws the frame (see [`rebond_wire::Downlink::CacheStores`]).
    pub cache_stores: Vec<CacheRect>,
    /// Drawn from the picture as it stood before this frame (see [`rebond_wire::Move`]).
    pub moves: Vec<Move>,
    /// Drawn from the page's cache (see [`rebond_wire::Downlink::CacheDraws`]).
    pub cache_draws: Vec<CacheRect>,
    pub regions: Vec<EncodedRegion>,
}

impl EncodedFrame {
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.cache_draws.is_empty() && self.regions.is_empty()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Palette,
    Rich,
}

/// Move detection is tried only when at least this many tiles changed: a keystroke
/// changes one or two, and searching would cost it CPU for nothing.
const MIN_TILES_FOR_MOVES: usize = 3;

impl Encoder {
    pub fn new(width: u16, height: u16, settings: EncoderSettings) -> Self {
        let mut e = Self {
            width: 0,
            height: 0,
            cols: 0,
            rows: 0,
            shadow: Vec::new(),
            dirty: Vec::new(),
            forced: Vec::new(),
            lossy: Vec::new(),
            moves: moves::Detector::new(),
            cache: cache::TileCache::new(settings.cache_seed),
            since_ms: Vec::new(),
            settings,
        };
        e.resize(width, height);
        e
    }

    pub fn width(&self) -> u16 {
        self.width
    }

    pub fn height(&self) -> u16 {
        self.height
    }

    /// A new desktop size: the browser starts from a blank canvas.
    pub fn resize(&mut self, width: u16, height: u16) {
        self.width = width;
        self.height = height;
        self.cols = width.div_ceil(TILE);
        self.rows = height.div_ceil(TILE);
        let tiles = usize::from(self.cols) * usize::from(self.rows);
        self.shadow = vec![0; usize::from(width) * usize::from(height) * 4];
        self.dirty = vec![true; tiles];
        self.forced = vec![true; tiles];
        self.lossy = vec![false; tiles];
        self.since_ms = vec![0; tiles];
        self.cache.clear();
    }

    /// The browser lost its picture (a new page, a reconnect): send everything; what
    /// the page kept is not counted on either.
    pub fn invalidate(&mut self) {
        self.dirty.fill(true);
        self.forced.fill(true);
        self.cache.clear();
    }

    /// Marks a rectangle (exclusive right/bottom) as possibly changed.
    pub fn damage(&mut self, x: u16, y: u16, right: u16, bottom: u16) {
        let right = right.min(self.width);
        let bottom = bottom.min(self.height);
        if x >= right || y >= bottom {
            return;
        }
        for row in y / TILE..bottom.div_ceil(TILE) {
            for col in x / TILE..right.div_ceil(TILE) {
                self.dirty[usize::from(row) * usize::from(self.cols) + usize::from(col)] = true;
            }
        }
    }

    /// The picture the browser has, as far as the encoder sent it (RGBA; exact where
    /// it was sent losslessly).
    pub fn picture(&self) -> &[u8] {
        &self.shadow
    }

    pub fn has_damage(&self) -> bool {
        self.dirty.iter().any(|d| *d)
    }

    /// Encodes every dirty tile whose pixels differ from what the browser has: as a
    /// move where the browser already has its pixels elsewhere, as an image otherwise.
    ///
    /// `frame` is the whole desktop, RGBA, `width * height * 4` bytes.
    /// `now_ms` is the caller's clock (milliseconds, never going back): it tells which
    /// tiles stayed on screen long enough to be worth keeping in the page's cache.
    pub fn encode(&mut self, frame: &[u8], now_ms: u64) -> EncodedFrame {
        assert_eq!(frame.len(), self.shadow.len(), "frame does not match the desktop size");
        // Per changed tile, the box its images cover: only the pixels that differ from
        // what the browser has (all of the tile when the browser lost it), so a keystroke
        // sends its character, not its 64-pixel tile, and a page of a document the
        // digits of its line numbers that changed.
        let mut boxes: Vec<Option<PixelBox>> = vec![None; self.dirty.len()];
        let mut forced_any = false;
        for (idx, b) in boxes.iter_mut().enumerate() {
            if std::mem::take(&mut self.dirty[idx]) {
                let forced = std::mem::take(&mut self.forced[idx]);
                forced_any |= forced;
                *b = if forced { Some(self.tile_box(idx)) } else { self.changed_box(frame, idx) };
            }
        }
        let changed: Vec<bool> = boxes.iter().map(Option::is_some).collect();
        let count = changed.iter().filter(|c| **c).count();
        // After a lost picture the browser has nothing to move from.
        let vectors = if self.settings.detect_moves && !forced_any && count >= MIN_TILES_FOR_MOVES {
            let view = moves::View { width: self.width, height: self.height, cols: self.cols, frame, shadow: &self.shadow };
            self.moves.detect(&view, &changed)
        } else {
            vec![None; changed.len()]
        };
        // What the page keeps before this frame covers it, then the tiles whose new
        // pixels the page holds in its cache (after those stores, as the page does them;
        // moves go first: they cost less).
        let cache_stores = if self.settings.tile_cache && !forced_any { self.keep_covered(&changed, now_ms) } else { Vec::new() };
        let mut cached: Vec<Option<u16>> = vec![None; changed.len()];
        for idx in 0..changed.len() {
            // A tile that changes all the time (a flood, a video, the one being typed in)
            // is not a window coming back: it is not looked up, which keeps the cache's
            // cost out of floods.
            let still = now_ms.saturating_sub(self.since_ms[idx]) >= LOOK_UP_AFTER_MS;
            if self.settings.tile_cache && changed[idx] && vectors[idx].is_none() && still {
                let hash = self.tile_hash(Some(frame), idx);
                // The slot after the left neighbour's first, if it holds these pixels too:
                // a window comes back in the order it was kept, one rectangle, even where
                // it has many tiles alike (a blank margin).
                let left = (idx % usize::from(self.cols) > 0).then(|| cached[idx - 1]).flatten();
                let next = left.map(|s| (s + 1) % TILE_CACHE_SLOTS).filter(|s| self.cache.holds(*s, hash));
                cached[idx] = next.or_else(|| self.cache.find(hash));
            }
        }
        for (idx, since) in self.since_ms.iter_mut().enumerate() {
            if changed[idx] {
                *since = now_ms;
            }
        }
        // Lossiness follows the pixels: a tile moved from an approximate one is
        // approximate; the cache holds exact tiles only.
        let lossy_after: Vec<bool> = (0..changed.len())
            .map(|idx| match (vectors[idx], cached[idx]) {
                (Some(v), _) => self.source_is_lossy(idx, v),
                (None, Some(_)) => false,
                (None, None) => self.lossy[idx],
            })
            .collect();
        self.lossy = lossy_after;
        for idx in (0..changed.len()).filter(|i| changed[*i]) {
            self.copy_tile(frame, idx);
        }
        let moves = self
            .merge_tiles(|idx| vectors[idx])
            .into_iter()
            .map(|(r, v)| {
                let (x, y, width, height) = self.pixels_of(r);
                Move { src_x: (i32::from(x) + v.0) as u16, src_y: (i32::from(y) + v.1) as u16, x, y, width, height }
            })
            .collect();
        let cache_draws = self.merge_draws(&cached);
        let classes: Vec<Option<Class>> = (0..changed.len())
            .map(|idx| {
                let (col, row) = (idx as u16 % self.cols, idx as u16 / self.cols);
                (changed[idx] && vectors[idx].is_none() && cached[idx].is_none()).then(|| self.classify(frame, col, row))
            })
            .collect();
        let mut regions = Vec::new();
        for (r, class) in self.merge_tiles(|idx| classes[idx]) {
            self.encode_rect(frame, r, class, &boxes, &mut regions);
        }
        EncodedFrame { cache_stores, moves, cache_draws, regions }
    }

    /// The hash of tile `idx`'s pixels in `frame`, or in the shadow copy (what the
    /// browser has) when `frame` is `None`.
    fn tile_hash(&mut self, frame: Option<&[u8]>, idx: usize) -> cache::TileHash {
        let (_, _, w, h) = self.tile_rect(idx as u16 % self.cols, idx as u16 / self.cols);
        let spans = self.tile_spans(idx);
        match frame {
            Some(frame) => self.cache.hash(w as u16, h as u16, spans.map(|span| &frame[span])),
            None => self.cache.hash(w as u16, h as u16, spans.map(|span| &self.shadow[span])),
        }
    }

    /// What the page keeps before this frame covers it: the tiles about to change that
    /// it holds exactly and that stayed on screen for [`KEEP_AFTER_MS`] (a window about
    /// to be covered, not a flood or a scroll) and are not kept already, as rectangles
    /// whose tiles go, row by row, to consecutive slots (tiles alike each get their own,
    /// so that the window comes back as the same rectangles).
    fn keep_covered(&mut self, changed: &[bool], now_ms: u64) -> Vec<CacheRect> {
        let mut hashes: Vec<Option<cache::TileHash>> = vec![None; changed.len()];
        for (idx, hash) in hashes.iter_mut().enumerate() {
            let worth = changed[idx] && !self.lossy[idx] && now_ms.saturating_sub(self.since_ms[idx]) >= KEEP_AFTER_MS;
            if worth {
                *hash = Some(self.tile_hash(None, idx)).filter(|h| self.cache.find(*h).is_none());
            }
        }
        let keep: Vec<bool> = hashes.iter().map(Option::is_some).collect();
        let mut stores = Vec::new();
        for (r, ()) in self.merge_tiles(|idx| keep[idx].then_some(())) {
            let (x, y, width, height) = self.pixels_of(r);
            let store = CacheRect { slot: self.cache.next_slot(), x, y, width, height };
            // The page puts the tiles in slots in this order (rebond-wire says how).
            for t in store.tiles() {
                let idx = usize::from(t.y / TILE) * usize::from(self.cols) + usize::from(t.x / TILE);
                let slot = self.cache.store(hashes[idx].expect("kept tiles have a hash"));
                debug_assert_eq!(slot, t.slot);
            }
            stores.push(store);
        }
        stores
    }

    fn tile_rect(&self, col: u16, row: u16) -> (usize, usize, usize, usize) {
        let x = usize::from(col * TILE);
        let y = usize::from(row * TILE);
        let w = usize::from(TILE.min(self.width - col * TILE));
        let h = usize::from(TILE.min(self.height - row * TILE));
        (x, y, w, h)
    }

    /// The byte ranges of tile `idx`'s lines in a frame.
    fn tile_spans(&self, idx: usize) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
        let (x, y, w, h) = self.tile_rect(idx as u16 % self.cols, idx as u16 / self.cols);
        let stride = usize::from(self.width) * 4;
        (y..y + h).map(move |line| line * stride + x * 4..line * stride + (x + w) * 4)
    }

    /// The whole of tile `idx`, in pixels.
    fn tile_box(&self, idx: usize) -> PixelBox {
        let (x, y, w, h) = self.tile_rect(idx as u16 % self.cols, idx as u16 / self.cols);
        PixelBox { left: x as u16, top: y as u16, right: (x + w) as u16, bottom: (y + h) as u16 }
    }

    /// The box of tile `idx`'s pixels that differ from what the browser has; `None`
    /// when none do.
    ///
    /// Cheap where a tile changed all over (a flood): the first and last differing lines
    /// give the top and bottom, and the lines between are looked at only in the columns
    /// the box does not cover yet, which is none once it is as wide as the tile.
    fn changed_box(&self, frame: &[u8], idx: usize) -> Option<PixelBox> {
        let tile = self.tile_box(idx);
        let (width, height) = (usize::from(tile.right - tile.left), usize::from(tile.bottom - tile.top));
        let stride = usize::from(self.width) * 4;
        // Line `i` of the tile, as the browser has it and as it is now.
        let line = |i: usize| {
            let start = (usize::from(tile.top) + i) * stride + usize::from(tile.left) * 4;
            (&self.shadow[start..start + width * 4], &frame[start..start + width * 4])
        };
        let differs = |i: usize| {
            let (old, new) = line(i);
            old != new
        };
        let top = (0..height).find(|&i| differs(i))?;
        let bottom = (top..height).rev().find(|&i| differs(i)).expect("the top line differs");
        // The first and last differing pixel of line `i` within pixels `from..to`.
        let pixel = |p: &[u8]| u32::from_ne_bytes(p.try_into().expect("chunks of four"));
        let extent = |i: usize, from: usize, to: usize| -> Option<(usize, usize)> {
            let (old, new) = line(i);
            let (old, new) = (&old[from * 4..to * 4], &new[from * 4..to * 4]);
            if old == new {
                return None;
            }
            let differs = |(a, b): (&[u8], &[u8])| pixel(a) != pixel(b);
            let pairs = || old.chunks_exact(4).zip(new.chunks_exact(4));
            let first = pairs().position(differs).expect("the pixels differ");
            let last = pairs().rev().position(differs).expect("the pixels differ");
            Some((from + first, to - last))
        };
        let (mut left, mut right) = extent(top, 0, width).expect("the top line differs");
        for i in (top + 1..=bottom).rev() {
            if left == 0 && right == width {
                break;
            }
            if let Some((l, _)) = extent(i, 0, left) {
                left = l;
            }
            if let Some((_, r)) = extent(i, right, width) {
                right = r;
            }
        }
        let at = |v: usize| v as u16;
        Some(PixelBox { left: tile.left + at(left), top: tile.top + at(top), right: tile.left + at(right), bottom: tile.top + at(bottom) + 1 })
    }

    fn copy_tile(&mut self, frame: &[u8], idx: usize) {
        for span in self.tile_spans(idx) {
            self.shadow[span.clone()].copy_from_slice(&frame[span]);
        }
    }

    /// Whether any tile under the source of tile `idx` moved by `v` is approximate.
    fn source_is_lossy(&self, idx: usize, v: moves::Vector) -> bool {
        let (x, y, w, h) = self.tile_rect(idx as u16 % self.cols, idx as u16 / self.cols);
        let (sx, sy) = ((x as i32 + v.0) as usize, (y as i32 + v.1) as usize);
        let t = usize::from(TILE);
        (sy / t..=(sy + h - 1) / t).any(|r| (sx / t..=(sx + w - 1) / t).any(|c| self.lossy[r * usize::from(self.cols) + c]))
    }

    /// The tiles drawn from the cache as few rectangles, each of tiles in consecutive
    /// slots (row by row, as [`CacheRect::tiles`] reads them): a window kept as one
    /// rectangle comes back as one.
    fn merge_draws(&self, cached: &[Option<u16>]) -> Vec<CacheRect> {
        let after = |slot: u16, n: u16| ((u32::from(slot) + u32::from(n)) % u32::from(TILE_CACHE_SLOTS)) as u16;
        self.merge(|idx| cached[idx], |run, first, slot| after(first, run.cols) == slot, |above, first, _, next| {
            after(first, above.rows * above.cols) == next
        })
        .into_iter()
        .map(|(r, slot)| {
            let (x, y, width, height) = self.pixels_of(r);
            CacheRect { slot, x, y, width, height }
        })
        .collect()
    }

    /// Tiles that share a key, as few rectangles: runs along a row, then runs of rows
    /// with the same span. Rectangles are in tiles; keys compare moved tiles by vector
    /// and images by class.
    fn merge_tiles<K: Copy + Eq>(&self, key: impl Fn(usize) -> Option<K>) -> Vec<(TileRect, K)> {
        self.merge(key, |_, run_key, k| run_key == k, |_, above_key, _, k| above_key == k)
    }

    /// Tiles with a key, as few rectangles: runs along a row (a tile joins the run to
    /// its left when `along(run, run's key, its key)`), then runs of rows with the same
    /// span (a run joins the rectangle above when `below(above, its key, run, run's key)`).
    /// A rectangle keeps the key of its first tile.
    fn merge<K: Copy>(
        &self,
        key: impl Fn(usize) -> Option<K>,
        along: impl Fn(&TileRect, K, K) -> bool,
        below: impl Fn(&TileRect, K, &TileRect, K) -> bool,
    ) -> Vec<(TileRect, K)> {
        let mut done: Vec<(TileRect, K)> = Vec::new();
        let mut open: Vec<(TileRect, K)> = Vec::new();
        for row in 0..self.rows {
            let mut this_row: Vec<(TileRect, K)> = Vec::new();
            for col in 0..self.cols {
                let Some(k) = key(usize::from(row) * usize::from(self.cols) + usize::from(col)) else { continue };
                match this_row.last_mut() {
                    Some((r, rk)) if r.col + r.cols == col && along(r, *rk, k) => r.cols += 1,
                    _ => this_row.push((TileRect { col, row, cols: 1, rows: 1 }, k)),
                }
            }
            let mut next_open = Vec::new();
            for (r, k) in this_row {
                let joins = |(o, ok): &(TileRect, K)| o.col == r.col && o.cols == r.cols && o.row + o.rows == r.row && below(o, *ok, &r, k);
                match open.iter().position(joins) {
                    Some(i) => {
                        let (mut o, ok) = open.swap_remove(i);
                        o.rows += 1;
                        next_open.push((o, ok));
                    }
                    None => next_open.push((r, k)),
                }
            }
            done.append(&mut open);
            open = next_open;
        }
        done.append(&mut open);
        done
    }

    /// A rectangle of tiles in pixels: x, y, width, height (the last column and row
    /// may be narrower than a tile).
    fn pixels_of(&self, r: TileRect) -> (u16, u16, u16, u16) {
        let (x, y) = (r.col * TILE, r.row * TILE);
        (x, y, (r.cols * TILE).min(self.width - x), (r.rows * TILE).min(self.height - y))
    }

    fn classify(&self, frame: &[u8], col: u16, row: u16) -> Class {
        if self.settings.lossless_only {
            return Class::Palette;
        }
        let (x, y, w, h) = self.tile_rect(col, row);
        let stride = usize::from(self.width) * 4;
        let mut seen = Palette::new();
        for line in y..y + h {
            for px in frame[line * stride + x * 4..line * stride + (x + w) * 4].chunks_exact(4) {
                if seen.index_of(rgb(px)).is_none() {
                    return Class::Rich;
                }
            }
        }
        Class::Palette
    }

    /// Images for a rectangle of tiles of one class: one image where it can. A
    /// rectangle of palette tiles whose colours together overflow the palette is split
    /// into its rows, and a row into its tiles.
    fn encode_rect(&mut self, frame: &[u8], r: TileRect, class: Class, boxes: &[Option<PixelBox>], out: &mut Vec<EncodedRegion>) {
        let tiles = || (r.row..r.row + r.rows).flat_map(move |row| (r.col..r.col + r.cols).map(move |col| (col, row)));
        let index = |(col, row): (u16, u16)| usize::from(row) * usize::from(self.cols) + usize::from(col);
        // Only the changed pixels (every tile of the rectangle changed).
        let crop = tiles().filter_map(|t| boxes[index(t)]).reduce(PixelBox::union).expect("a rectangle of changed tiles");
        let (x, y, width, height) = (crop.left, crop.top, crop.right - crop.left, crop.bottom - crop.top);
        let (codec, data) = match class {
            Class::Rich => (ImageCodec::Jpeg, encode_jpeg(frame, self.width, x, y, width, height, self.settings.jpeg_quality)),
            Class::Palette => match encode_indexed_png(frame, self.width, x, y, width, height) {
                Some(png) => (ImageCodec::Png, png),
                None if r.rows > 1 => {
                    for row in r.row..r.row + r.rows {
                        self.encode_rect(frame, TileRect { row, rows: 1, ..r }, class, boxes, out);
                    }
                    return;
                }
                None if r.cols > 1 => {
                    for col in r.col..r.col + r.cols {
                        self.encode_rect(frame, TileRect { col, cols: 1, ..r }, class, boxes, out);
                    }
                    return;
                }
                None => (ImageCodec::Png, encode_png(frame, self.width, x, y, width, height)),
            },
        };
        // Marked once, for the rectangle that was sent (not again for a split one's parts).
        // A tile sent losslessly is exact again only if the image covered all of it.
        for t in tiles() {
            let i = index(t);
            self.lossy[i] = match class {
                Class::Rich => true,
                Class::Palette => self.lossy[i] && !crop.contains(self.tile_box(i)),
            };
        }
        out.push(EncodedRegion { x, y, width, height, codec, data });
    }
}

/// A rectangle in pixels (right and bottom exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PixelBox {
    left: u16,
    top: u16,
    right: u16,
    bottom: u16,
}

impl PixelBox {
    fn union(self, o: Self) -> Self {
        Self { left: self.left.min(o.left), top: self.top.min(o.top), right: self.right.max(o.right), bottom: self.bottom.max(o.bottom) }
    }

    fn contains(self, o: Self) -> bool {
        self.left <= o.left && self.top <= o.top && self.right >= o.right && self.bottom >= o.bottom
    }
}

/// A rectangle on the tile grid, in tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TileRect {
    col: u16,
    row: u16,
    cols: u16,
    rows: u16,
}

/// The colours of a region, up to [`PALETTE_LIMIT`], each with its index. Text and UI
/// come in runs of one colour, so the last colour is checked first; the others are in a
/// small open-addressed table (this lookup is the encoder's inner loop: a general hash
/// map made it 57 % of a worker's time on a terminal flood).
struct Palette {
    colours: Vec<u32>,
    /// Index + 1 of the colour in `colours`, 0 for an empty slot.
    slots: [u16; Self::SLOTS],
    last: (u32, u8),
}

impl Palette {
    const SLOTS: usize = 1024;

    fn new() -> Self {
        Self { colours: Vec::with_capacity(PALETTE_LIMIT), slots: [0; Self::SLOTS], last: (u32::MAX, 0) }
    }

    /// The colour's index; `None` once a region has more than [`PALETTE_LIMIT`] colours.
    fn index_of(&mut self, colour: u32) -> Option<u8> {
        if colour == self.last.0 {
            return Some(self.last.1);
        }
        let mut slot = (colour.wrapping_mul(0x9E37_79B1) >> 22) as usize;
        loop {
            match self.slots[slot] {
                0 => {
                    if self.colours.len() == PALETTE_LIMIT {
                        return None;
                    }
                    self.colours.push(colour);
                    self.slots[slot] = self.colours.len() as u16;
                    let index = (self.colours.len() - 1) as u8;
                    self.last = (colour, index);
                    return Some(index);
                }
                i if self.colours[usize::from(i) - 1] == colour => {
                    let index = (i - 1) as u8;
                    self.last = (colour, index);
                    return Some(index);
                }
                _ => slot = (slot + 1) % Self::SLOTS,
            }
        }
    }
}

fn rgb(px: &[u8]) -> u32 {
    u32::from(px[0]) << 16 | u32::from(px[1]) << 8 | u32::from(px[2])
}

fn crop_rgb(frame: &[u8], stride_px: u16, x: u16, y: u16, w: u16, h: u16) -> impl Iterator<Item = &[u8]> {
    let stride = usize::from(stride_px) * 4;
    (usize::from(y)..usize::from(y + h)).flat_map(move |line| {
        frame[line * stride + usize::from(x) * 4..line * stride + usize::from(x + w) * 4].chunks_exact(4)
    })
}

/// Regions of at least this many pixels (two tiles) are compressed harder: they are
/// what floods the link (a scrolling terminal), while a keystroke's tile or two is
/// encoded fast (office work is CPU-bound, not link-bound). Measured in
/// docs/performance.md: terminal flood 310 → 194 kB/s for +5 % of a core.
const LARGE_REGION: u32 = 2 * 64 * 64;

/// Lossless: palette-indexed when the region has few colours, RGB otherwise.
pub fn encode_png(frame: &[u8], stride_px: u16, x: u16, y: u16, w: u16, h: u16) -> Vec<u8> {
    encode_indexed_png(frame, stride_px, x, y, w, h).unwrap_or_else(|| {
        let rgb: Vec<u8> = crop_rgb(frame, stride_px, x, y, w, h).flat_map(|px| [px[0], px[1], px[2]]).collect();
        write_png(w, h, png::ColorType::Rgb, png::BitDepth::Eight, None, &rgb)
    })
}

/// Lossless and palette-indexed, with as few bits per pixel as the colours allow;
/// `None` when the region has more than [`PALETTE_LIMIT`] colours.
pub fn encode_indexed_png(frame: &[u8], stride_px: u16, x: u16, y: u16, w: u16, h: u16) -> Option<Vec<u8>> {
    let mut palette = Palette::new();
    let mut indexed = Vec::with_capacity(usize::from(w) * usize::from(h));
    for px in crop_rgb(frame, stride_px, x, y, w, h) {
        indexed.push(palette.index_of(rgb(px))?);
    }
    let colours: Vec<u8> = palette.colours.iter().flat_map(|c| [(c >> 16) as u8, (c >> 8) as u8, *c as u8]).collect();
    let bits = index_bits(palette.colours.len());
    Some(write_png(w, h, png::ColorType::Indexed, bits, Some(colours), &pack_indexes(indexed, usize::from(w), bits)))
}

/// Writes a PNG of prepared rows: harder compression for large regions, and no row
/// filter for palette indexes, which are not magnitudes (predicting one from its
/// neighbours only scrambles the runs deflate finds).
fn write_png(w: u16, h: u16, colour: png::ColorType, depth: png::BitDepth, palette: Option<Vec<u8>>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, u32::from(w), u32::from(h));
    let large = u32::from(w) * u32::from(h) >= LARGE_REGION;
    enc.set_deflate_compression(if large { png::DeflateCompression::Level(6) } else { png::DeflateCompression::FdeflateUltraFast });
    enc.set_color(colour);
    enc.set_depth(depth);
    match palette {
        Some(p) => {
            enc.set_palette(p);
            enc.set_filter(png::Filter::NoFilter);
        }
        None => enc.set_filter(png::Filter::Adaptive),
    }
    let mut writer = enc.write_header().expect("writing to a Vec cannot fail");
    writer.write_image_data(data).expect("image data matches the header");
    writer.finish().expect("writing to a Vec cannot fail");
    out
}

/// The fewest bits per index PNG allows for a palette of `colours` entries: text in
/// two colours takes one bit a pixel, an eighth of the bytes to compress.
fn index_bits(colours: usize) -> png::BitDepth {
    match colours {
        0..=2 => png::BitDepth::One,
        3..=4 => png::BitDepth::Two,
        5..=16 => png::BitDepth::Four,
        _ => png::BitDepth::Eight,
    }
}

/// Packs one byte per index into PNG rows of `bits`-bit indexes, leftmost pixel in
/// the high bits, each row padded to a whole byte.
fn pack_indexes(indexed: Vec<u8>, width: usize, bits: png::BitDepth) -> Vec<u8> {
    let bits = bits as usize;
    if bits == 8 {
        return indexed;
    }
    let per_byte = 8 / bits;
    let mut packed = Vec::with_capacity(indexed.len().div_ceil(width) * width.div_ceil(per_byte));
    for row in indexed.chunks(width) {
        for group in row.chunks(per_byte) {
            let byte = group.iter().enumerate().fold(0u8, |b, (i, &v)| b | v << (8 - bits * (i + 1)));
            packed.push(byte);
        }
    }
    packed
}

/// Lossy, for photographic regions.
pub fn encode_jpeg(frame: &[u8], stride_px: u16, x: u16, y: u16, w: u16, h: u16, quality: u8) -> Vec<u8> {
    let rgb: Vec<u8> = crop_rgb(frame, stride_px, x, y, w, h).flat_map(|px| [px[0], px[1], px[2]]).collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
        .encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .expect("JPEG of a valid size into a Vec cannot fail");
    out
}

/// A pointer shape as an RGBA PNG.
pub fn encode_rgba_png(rgba: &[u8], width: u16, height: u16) -> Vec<u8> {
    write_png(width, height, png::ColorType::Rgba, png::BitDepth::Eight, None, rgba)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod palette_tests {
    use super::*;

    #[test]
    fn indexes_are_stable_and_the_limit_holds() {
        let mut p = Palette::new();
        for c in 0..PALETTE_LIMIT as u32 {
            assert_eq!(p.index_of(c * 7919), Some(c as u8));
        }
        for c in (0..PALETTE_LIMIT as u32).rev() {
            assert_eq!(p.index_of(c * 7919), Some(c as u8), "found again");
        }
        assert_eq!(p.index_of(u32::MAX - 1), None, "the 257th colour");
        assert_eq!(p.index_of(5 * 7919), Some(5));
    }
}
