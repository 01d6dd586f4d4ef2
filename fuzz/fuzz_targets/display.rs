//! The worker's glue on the workstation side: damage rectangles and desktop sizes come
//! from the workstation, pixels from its bitmap updates. Whatever they are, the encoder
//! never panics, every move and region lies inside the desktop, every region decodes to
//! its declared size, in lossless mode the browser's picture (tiles kept as told, then
//! moves, kept tiles and images applied) is always the encoder's, and a full refresh
//! reproduces the desktop exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rebond_display::{Encoder, EncoderSettings};
use rebond_wire::ImageCodec;

fn decode_png(data: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(data));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().expect("our PNG decodes");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("our PNG decodes");
    assert_eq!((info.width, info.height), (u32::from(w), u32::from(h)));
    let channels = info.color_type.samples();
    buf.truncate(info.buffer_size());
    // Back to RGB triples.
    buf.chunks(channels).flat_map(|p| if channels >= 3 { [p[0], p[1], p[2]] } else { [p[0], p[0], p[0]] }).collect()
}

fn apply(canvas: &mut [u8], stride: u16, r: &rebond_display::EncodedRegion) {
    let rgb = decode_png(&r.data, r.width, r.height);
    for row in 0..usize::from(r.height) {
        for col in 0..usize::from(r.width) {
            let dst = ((usize::from(r.y) + row) * usize::from(stride) + usize::from(r.x) + col) * 4;
            let src = (row * usize::from(r.width) + col) * 3;
            canvas[dst..dst + 3].copy_from_slice(&rgb[src..src + 3]);
        }
    }
}

fn apply_moves(canvas: &mut [u8], stride: u16, moves: &[rebond_wire::Move], w: u16, h: u16) {
    let before = canvas.to_vec();
    for m in moves {
        assert!(m.width > 0 && m.height > 0);
        for (x, y) in [(m.x, m.y), (m.src_x, m.src_y)] {
            assert!(u32::from(x) + u32::from(m.width) <= u32::from(w) && u32::from(y) + u32::from(m.height) <= u32::from(h));
        }
        for row in 0..usize::from(m.height) {
            let s = ((usize::from(m.src_y) + row) * usize::from(stride) + usize::from(m.src_x)) * 4;
            let d = ((usize::from(m.y) + row) * usize::from(stride) + usize::from(m.x)) * 4;
            let n = usize::from(m.width) * 4;
            canvas[d..d + n].copy_from_slice(&before[s..s + n]);
        }
    }
}

/// The page's tile cache: per slot, width, height and RGBA.
type Kept = Vec<Option<(u16, u16, Vec<u8>)>>;

fn draw_kept(canvas: &mut [u8], stride: u16, kept: &Kept, rects: &[rebond_wire::CacheRect], w: u16, h: u16) {
    for c in rects {
        assert!(u32::from(c.x) + u32::from(c.width) <= u32::from(w) && u32::from(c.y) + u32::from(c.height) <= u32::from(h));
        for t in c.tiles() {
            let (tw, th, px) = kept[usize::from(t.slot)].as_ref().expect("a draw names a kept slot");
            assert_eq!((*tw, *th), (t.width, t.height), "a slot is drawn at the size it was kept");
            let n = usize::from(*tw) * 4;
            for row in 0..usize::from(*th) {
                let at = ((usize::from(t.y) + row) * usize::from(stride) + usize::from(t.x)) * 4;
                canvas[at..at + n].copy_from_slice(&px[row * n..(row + 1) * n]);
            }
        }
    }
}

fn keep(canvas: &[u8], stride: u16, kept: &mut Kept, rects: &[rebond_wire::CacheRect], w: u16, h: u16) {
    for k in rects {
        assert!(u32::from(k.x) + u32::from(k.width) <= u32::from(w) && u32::from(k.y) + u32::from(k.height) <= u32::from(h));
        for t in k.tiles() {
            let n = usize::from(t.width) * 4;
            let px = (0..usize::from(t.height))
                .flat_map(|row| {
                    let at = ((usize::from(t.y) + row) * usize::from(stride) + usize::from(t.x)) * 4;
                    canvas[at..at + n].to_vec()
                })
                .collect();
            kept[usize::from(t.slot)] = Some((t.width, t.height, px));
        }
    }
}

fn same_rgb(a: &[u8], b: &[u8]) -> bool {
    a.chunks(4).zip(b.chunks(4)).all(|(a, b)| a[..3] == b[..3])
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let side = |b: u8| 1 + u16::from(b) % 160;
    let (mut w, mut h) = (side(data[0]), side(data[1]));
    let lossless = data[2] & 1 == 1;
    let mut enc = Encoder::new(w, h, EncoderSettings { lossless_only: lossless, ..EncoderSettings::default() });
    let mut frame = vec![0u8; usize::from(w) * usize::from(h) * 4];
    let mut canvas = frame.clone();
    let mut kept: Kept = vec![None; usize::from(rebond_wire::TILE_CACHE_SLOTS)];
    // The worker's clock: each encode moves it on by up to two seconds.
    let mut now = 0u64;
    for op in data[3..].chunks(9) {
        if op.len() < 9 {
            break;
        }
        let n = |i: usize| u16::from_le_bytes([op[i], op[i + 1]]);
        match op[0] % 5 {
            0 => enc.damage(n(1), n(3), n(5), n(7)),
            1 => {
                // The workstation draws: a run of bytes somewhere in the framebuffer.
                let at = usize::from(n(1)) * 4 % frame.len();
                let end = (at + usize::from(op[3]) * 4).min(frame.len());
                for (i, b) in frame[at..end].iter_mut().enumerate() {
                    *b = op[4 + i % 5];
                }
            }
            2 => {
                (w, h) = (side(op[1]), side(op[2]));
                enc.resize(w, h);
                frame = vec![0; usize::from(w) * usize::from(h) * 4];
                canvas = frame.clone();
            }
            3 | 4 => {
                if op[0] % 5 == 4 {
                    enc.invalidate();
                }
                now += u64::from(op[1]) * 8;
                let encoded = enc.encode(&frame, now);
                keep(&canvas, w, &mut kept, &encoded.cache_stores, w, h);
                apply_moves(&mut canvas, w, &encoded.moves, w, h);
                draw_kept(&mut canvas, w, &kept, &encoded.cache_draws, w, h);
                for r in &encoded.regions {
                    assert!(r.width > 0 && r.height > 0);
                    assert!(u32::from(r.x) + u32::from(r.width) <= u32::from(w));
                    assert!(u32::from(r.y) + u32::from(r.height) <= u32::from(h));
                    if r.codec == ImageCodec::Png {
                        apply(&mut canvas, w, r);
                    } else {
                        assert!(!lossless, "JPEG in lossless mode");
                    }
                }
                if lossless {
                    assert!(same_rgb(enc.picture(), &canvas), "the browser has what the encoder thinks it has");
                }
                if lossless && op[0] % 5 == 4 {
                    assert!(same_rgb(&frame, &canvas), "a full refresh reproduces the desktop");
                }
            }
            _ => unreachable!(),
        }
    }
});
