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
    let regions = e.encode(&frame);
    let area: u32 = regions.iter().map(|r| u32::from(r.width) * u32::from(r.height)).sum();
    assert_eq!(area, u32::from(w) * u32::from(h));
    assert!(regions.iter().all(|r| r.codec == ImageCodec::Png));
    assert!(!e.has_damage());
    e.damage(0, 0, w, h);
    assert!(e.encode(&frame).is_empty(), "unchanged pixels are not sent again");
    e.invalidate();
    assert_eq!(e.encode(&frame).len(), regions.len(), "after invalidate everything goes again");
}

#[test]
fn only_changed_tiles_are_sent_and_png_is_exact() {
    let (w, h) = (256, 128);
    let mut frame = blank(w, h, [255, 255, 255]);
    let mut e = Encoder::new(w, h, EncoderSettings::default());
    e.encode(&frame);
    // Draw a "character" in tile (2, 1).
    for y in 70..80 {
        for x in 140..146 {
            let i = (y * usize::from(w) + x) * 4;
            frame[i..i + 3].copy_from_slice(&[0, 0, 0]);
        }
    }
    e.damage(0, 0, w, h);
    let regions = e.encode(&frame);
    assert_eq!(regions.len(), 1);
    let r = &regions[0];
    assert_eq!((r.x, r.y, r.width, r.height, r.codec), (128, 64, 64, 64, ImageCodec::Png));
    let (pw, ph, rgb) = decode_png(&r.data);
    assert_eq!((pw, ph), (64, 64));
    for y in 0..64usize {
        for x in 0..64usize {
            let src = ((y + 64) * usize::from(w) + x + 128) * 4;
            assert_eq!(&rgb[(y * 64 + x) * 3..][..3], &frame[src..src + 3], "pixel {x},{y}");
        }
    }
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
    let regions = e.encode(&frame);
    let kinds: Vec<_> = regions.iter().map(|r| (r.x, r.width, r.codec)).collect();
    assert_eq!(kinds, vec![(0, 256, ImageCodec::Jpeg), (256, 256, ImageCodec::Png)]);

    let mut lossless = Encoder::new(w, h, EncoderSettings { lossless_only: true, ..Default::default() });
    assert!(lossless.encode(&frame).iter().all(|r| r.codec == ImageCodec::Png));
}

#[test]
fn damage_outside_the_desktop_is_ignored() {
    let mut e = Encoder::new(100, 100, EncoderSettings::default());
    e.encode(&blank(100, 100, [1, 2, 3]));
    e.damage(500, 500, 600, 600);
    e.damage(50, 50, 40, 40);
    assert!(!e.has_damage());
}
