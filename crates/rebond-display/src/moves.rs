//! Finding what moved: a scrolled document or terminal, a dragged window.
//!
//! A changed tile whose new pixels are, exactly, pixels the browser already has
//! somewhere else (shifted by a vector) is sent as a move instead of an image. The
//! browser's picture is the encoder's shadow copy, so a tile is compared with the
//! shadow at its position plus a candidate vector. Candidates, cheapest first:
//! the vectors that matched recently (a scroll goes on at the same pace), a vertical
//! search of the tile's column (scrolling: a row of the tile looked up among the
//! column's rows, by hash), then a horizontal search along that row (a window dragged
//! sideways). Every candidate is verified pixel by pixel, so a hash collision can cost
//! time but never a wrong picture.

/// A shift from a tile to where its pixels are in the shadow copy.
pub(crate) type Vector = (i32, i32);

/// Vectors remembered from one frame to the next.
const RECENT: usize = 4;
/// Widest horizontal shift searched, in pixels.
const MAX_SIDEWAYS: i32 = 256;
/// Rows of a column that share a hash with a tile's row, at most, to verify.
const MAX_VERTICAL_CANDIDATES: usize = 8;
/// Tiles searched in vain, plus [`MISSES_PER_HIT`] per tile found, before a frame is
/// taken to be new content (video, a new page) and its other tiles are not searched:
/// keeps such frames cheap, and frames where some tiles move (a terminal whose lines
/// repeat, a scroll) searched throughout.
const SEARCH_BUDGET: usize = 8;
const MISSES_PER_HIT: usize = 4;

/// The desktop's geometry and pixels as the detector sees them.
pub(crate) struct View<'a> {
    pub width: u16,
    pub height: u16,
    pub cols: u16,
    /// The new picture, RGBA.
    pub frame: &'a [u8],
    /// What the browser has, RGBA.
    pub shadow: &'a [u8],
}

impl View<'_> {
    fn stride(&self) -> usize {
        usize::from(self.width) * 4
    }

    /// The rectangle of tile `idx`: x, y, width, height.
    pub(crate) fn tile_rect(&self, idx: usize) -> (usize, usize, usize, usize) {
        let tile = usize::from(crate::TILE);
        let (col, row) = (idx % usize::from(self.cols), idx / usize::from(self.cols));
        let (x, y) = (col * tile, row * tile);
        (x, y, tile.min(usize::from(self.width) - x), tile.min(usize::from(self.height) - y))
    }

    fn frame_row(&self, x: usize, y: usize, w: usize) -> &[u8] {
        &self.frame[y * self.stride() + x * 4..y * self.stride() + (x + w) * 4]
    }

    fn shadow_row(&self, x: usize, y: usize, w: usize) -> &[u8] {
        &self.shadow[y * self.stride() + x * 4..y * self.stride() + (x + w) * 4]
    }

    /// Whether the tile's new pixels are the shadow's pixels at the tile shifted by `v`.
    fn matches(&self, rect: (usize, usize, usize, usize), v: Vector) -> bool {
        let (x, y, w, h) = rect;
        let (sx, sy) = (x as i64 + i64::from(v.0), y as i64 + i64::from(v.1));
        if v == (0, 0) || sx < 0 || sy < 0 || sx as usize + w > usize::from(self.width) || sy as usize + h > usize::from(self.height) {
            return false;
        }
        let (sx, sy) = (sx as usize, sy as usize);
        (0..h).all(|r| self.frame_row(x, y + r, w) == self.shadow_row(sx, sy + r, w))
    }
}

/// Finds, for each changed tile, a vector under which it is pixels the browser has.
pub(crate) struct Detector {
    /// Vectors that matched recently, most recent first.
    recent: Vec<Vector>,
    /// Per column of tiles, a hash of each row of the shadow within that column,
    /// computed when first needed in a frame.
    column_hashes: Vec<Vec<u64>>,
}

impl Detector {
    pub(crate) fn new() -> Self {
        Self { recent: Vec::with_capacity(RECENT + 1), column_hashes: Vec::new() }
    }

    /// The vector of each tile in `changed` that moved; `None` for the others.
    /// Tiles not in `changed` are `None`.
    pub(crate) fn detect(&mut self, view: &View<'_>, changed: &[bool]) -> Vec<Option<Vector>> {
        self.column_hashes.iter_mut().for_each(Vec::clear);
        self.column_hashes.resize(usize::from(view.cols), Vec::new());
        let mut found = vec![None; changed.len()];
        let (mut misses, mut hits) = (0, 0);
        for (idx, _) in changed.iter().enumerate().filter(|(_, c)| **c) {
            let rect = view.tile_rect(idx);
            if let Some(v) = self.recent.iter().copied().find(|v| view.matches(rect, *v)) {
                found[idx] = Some(v);
                self.remember(v);
                continue;
            }
            if misses >= SEARCH_BUDGET + MISSES_PER_HIT * hits {
                continue;
            }
            // A tile of one colour matches anywhere: only a recent vector may move it.
            let Some(row) = signature_row(view, rect) else { continue };
            match self.search_vertically(view, idx, rect, row).or_else(|| search_sideways(view, rect, row)) {
                Some(v) => {
                    found[idx] = Some(v);
                    self.remember(v);
                    hits += 1;
                }
                None => misses += 1,
            }
        }
        found
    }

    fn remember(&mut self, v: Vector) {
        if self.recent.first() == Some(&v) {
            return;
        }
        self.recent.retain(|r| *r != v);
        self.recent.insert(0, v);
        self.recent.truncate(RECENT);
    }

    /// Looks the tile's signature row up among the rows of the shadow in the same
    /// column, nearest first.
    fn search_vertically(&mut self, view: &View<'_>, idx: usize, rect: (usize, usize, usize, usize), row: usize) -> Option<Vector> {
        let (x, y, w, _) = rect;
        let col = idx % usize::from(view.cols);
        let hashes = &mut self.column_hashes[col];
        if hashes.is_empty() {
            hashes.extend((0..usize::from(view.height)).map(|sy| row_hash(view.shadow_row(x, sy, w))));
        }
        let wanted = row_hash(view.frame_row(x, y + row, w));
        let mut candidates: Vec<i32> = hashes
            .iter()
            .enumerate()
            .filter(|(sy, h)| **h == wanted && *sy != y + row)
            .map(|(sy, _)| sy as i32 - (y + row) as i32)
            .collect();
        candidates.sort_by_key(|dy| dy.abs());
        candidates.into_iter().take(MAX_VERTICAL_CANDIDATES).map(|dy| (0, dy)).find(|v| view.matches(rect, *v))
    }
}

/// Looks the tile's signature row up along the same row of the shadow, nearest first.
fn search_sideways(view: &View<'_>, rect: (usize, usize, usize, usize), row: usize) -> Option<Vector> {
    let (x, y, w, _) = rect;
    let wanted = view.frame_row(x, y + row, w);
    let max_x = (usize::from(view.width) - w) as i32;
    (1..=MAX_SIDEWAYS)
        .flat_map(|d| [-d, d])
        .filter(|dx| (0..=max_x).contains(&(x as i32 + dx)))
        .map(|dx| (dx, 0))
        .find(|v| view.shadow_row((x as i32 + v.0) as usize, y + row, w) == wanted && view.matches(rect, *v))
}

/// The first row of the tile that is not of one colour: it pins the tile down.
fn signature_row(view: &View<'_>, rect: (usize, usize, usize, usize)) -> Option<usize> {
    let (x, y, w, h) = rect;
    (0..h).find(|r| {
        let px = view.frame_row(x, y + r, w);
        px.chunks_exact(4).any(|p| p != &px[..4])
    })
}

/// A fast hash of a row of pixels (FxHash's mixing, eight bytes at a time). Equal
/// hashes are only candidates: every match is verified against the pixels.
fn row_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut chunks = bytes.chunks_exact(8);
    let mut h = 0u64;
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().expect("chunks of eight"))).wrapping_mul(K);
    }
    for b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(*b)).wrapping_mul(K);
    }
    h
}
