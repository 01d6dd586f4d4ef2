//! The probe's picture of the desktop, drawn from the tiles it receives.

use std::path::Path;

use anyhow::Context as _;
use rebond_wire::ImageCodec;

/// RGBA pixels of the desktop as the browser would show them, and the tiles the page
/// keeps (its tile cache, by slot: width, height, RGBA).
#[derive(Default)]
pub struct Framebuffer {
    pub width: u16,
    pub height: u16,
    pub rgba: Vec<u8>,
    kept: Vec<Option<(u16, u16, Vec<u8>)>>,
}

impl Framebuffer {
    pub fn resize(&mut self, width: u16, height: u16) {
        self.width = width;
        self.height = height;
        self.rgba = [0, 0, 0, 255].repeat(usize::from(width) * usize::from(height));
    }

    pub fn draw(&mut self, x: u16, y: u16, w: u16, h: u16, codec: ImageCodec, data: &[u8]) -> anyhow::Result<()> {
        let rgb = match codec {
            ImageCodec::Png => decode_png(data)?,
            ImageCodec::Jpeg => {
                let mut dec = zune_jpeg::JpegDecoder::new_with_options(
                    data,
                    zune_jpeg::zune_core::options::DecoderOptions::default()
                        .jpeg_set_out_colorspace(zune_jpeg::zune_core::colorspace::ColorSpace::RGB),
                );
                dec.decode().map_err(|e| anyhow::anyhow!("invalid JPEG tile: {e:?}"))?
            }
        };
        anyhow::ensure!(rgb.len() == usize::from(w) * usize::from(h) * 3, "tile size does not match its header");
        anyhow::ensure!(x + w <= self.width && y + h <= self.height, "tile outside the desktop");
        let stride = usize::from(self.width) * 4;
        for row in 0..usize::from(h) {
            for col in 0..usize::from(w) {
                let s = (row * usize::from(w) + col) * 3;
                let d = (usize::from(y) + row) * stride + (usize::from(x) + col) * 4;
                self.rgba[d..d + 3].copy_from_slice(&rgb[s..s + 3]);
            }
        }
        Ok(())
    }

    /// Draws moved rectangles, every source read from the picture before any of them.
    pub fn apply_moves(&mut self, moves: &[rebond_wire::Move]) -> anyhow::Result<()> {
        let before = self.rgba.clone();
        let stride = usize::from(self.width) * 4;
        for m in moves {
            let fits = |x: u16, y: u16| u32::from(x) + u32::from(m.width) <= u32::from(self.width) && u32::from(y) + u32::from(m.height) <= u32::from(self.height);
            anyhow::ensure!(fits(m.src_x, m.src_y) && fits(m.x, m.y), "move outside the desktop");
            let n = usize::from(m.width) * 4;
            for row in 0..usize::from(m.height) {
                let s = (usize::from(m.src_y) + row) * stride + usize::from(m.src_x) * 4;
                let d = (usize::from(m.y) + row) * stride + usize::from(m.x) * 4;
                self.rgba[d..d + n].copy_from_slice(&before[s..s + n]);
            }
        }
        Ok(())
    }

    /// Draws kept tiles again (`Downlink::CacheDraws`).
    pub fn draw_kept(&mut self, rects: &[rebond_wire::CacheRect]) -> anyhow::Result<()> {
        let stride = usize::from(self.width) * 4;
        for c in rects {
            anyhow::ensure!(self.fits(c), "cache draw outside the desktop");
            for t in c.tiles() {
                let Some(Some((w, h, px))) = self.kept.get(usize::from(t.slot)) else {
                    anyhow::bail!("a cache draw names slot {}, which holds nothing", t.slot);
                };
                anyhow::ensure!((*w, *h) == (t.width, t.height), "slot {} holds a tile of another size", t.slot);
                let n = usize::from(t.width) * 4;
                for row in 0..usize::from(t.height) {
                    let at = (usize::from(t.y) + row) * stride + usize::from(t.x) * 4;
                    self.rgba[at..at + n].copy_from_slice(&px[row * n..(row + 1) * n]);
                }
            }
        }
        Ok(())
    }

    /// Keeps tiles of the picture (`Downlink::CacheStores`).
    pub fn keep(&mut self, rects: &[rebond_wire::CacheRect]) -> anyhow::Result<()> {
        self.kept.resize(usize::from(rebond_wire::TILE_CACHE_SLOTS), None);
        let stride = usize::from(self.width) * 4;
        for c in rects {
            anyhow::ensure!(self.fits(c), "cache store outside the desktop");
            for t in c.tiles() {
                let n = usize::from(t.width) * 4;
                let px = (0..usize::from(t.height))
                    .flat_map(|row| {
                        let at = (usize::from(t.y) + row) * stride + usize::from(t.x) * 4;
                        self.rgba[at..at + n].iter().copied()
                    })
                    .collect();
                self.kept[usize::from(t.slot)] = Some((t.width, t.height, px));
            }
        }
        Ok(())
    }

    fn fits(&self, c: &rebond_wire::CacheRect) -> bool {
        u32::from(c.x) + u32::from(c.width) <= u32::from(self.width) && u32::from(c.y) + u32::from(c.height) <= u32::from(self.height)
    }

    pub fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), u32::from(self.width), u32::from(self.height));
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()?.write_image_data(&self.rgba)?;
        Ok(())
    }
}

/// Decodes a PNG tile to RGB.
fn decode_png(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(data));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().context("invalid PNG tile")?;
    let mut buf = vec![0; reader.output_buffer_size().context("PNG too large")?];
    let info = reader.next_frame(&mut buf).context("invalid PNG tile")?;
    buf.truncate(info.buffer_size());
    Ok(match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        other => anyhow::bail!("unexpected PNG colour type {other:?}"),
    })
}
