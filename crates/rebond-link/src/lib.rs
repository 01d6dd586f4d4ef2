//! The local channel between the gateway and a bounce worker: length-prefixed
//! frames on the worker's stdin and stdout. The framing is pure functions (fuzzed);
//! the async readers and writers only move bytes.
//!
//! Frame: `u32` little-endian length of what follows, then a kind byte, then the payload.

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Largest frame either side accepts (a full-screen image fits easily).
pub const MAX_FRAME: usize = 64 << 20;

/// Gateway to worker.
#[derive(Debug, PartialEq, Eq)]
pub enum ToWorker {
    /// JSON `rebond_worker::StartRequest`; carries the password, so it is zeroized after use.
    Start(Vec<u8>),
    /// One checked uplink message from the browser.
    Uplink(Vec<u8>),
    /// A browser socket is attached: send it the whole picture.
    Attach,
    /// The browser socket went away: keep the session, stop sending pictures.
    Detach,
    /// End the session politely and exit.
    Stop,
}

/// Worker to gateway: one downlink message for the browser.
pub type FromWorker = Vec<u8>;

mod kind {
    pub const START: u8 = 1;
    pub const UPLINK: u8 = 2;
    pub const ATTACH: u8 = 3;
    pub const DETACH: u8 = 4;
    pub const STOP: u8 = 5;
    pub const DOWNLINK: u8 = 0x10;
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("link closed")]
    Closed,
    #[error("link i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid link frame: {0}")]
    Invalid(&'static str),
}

/// Checks a frame's length prefix: the length of the kind byte and payload that follow.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, LinkError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(LinkError::Invalid("frame length"));
    }
    Ok(len)
}

/// The length prefix and kind byte of a frame carrying `payload_len` bytes.
pub fn frame_header(kind: u8, payload_len: usize) -> Result<[u8; 5], LinkError> {
    if payload_len >= MAX_FRAME {
        return Err(LinkError::Invalid("frame too long"));
    }
    let len = (payload_len as u32 + 1).to_le_bytes();
    Ok([len[0], len[1], len[2], len[3], kind])
}

/// Reads a frame body (kind byte, then payload) as a message to the worker.
pub fn parse_to_worker(mut body: Vec<u8>) -> Result<ToWorker, LinkError> {
    let kind = *body.first().ok_or(LinkError::Invalid("empty frame"))?;
    body.remove(0);
    let control = |msg: ToWorker| if body.is_empty() { Ok(msg) } else { Err(LinkError::Invalid("control frame with a payload")) };
    match kind {
        kind::START => Ok(ToWorker::Start(body)),
        kind::UPLINK => Ok(ToWorker::Uplink(body)),
        kind::ATTACH => control(ToWorker::Attach),
        kind::DETACH => control(ToWorker::Detach),
        kind::STOP => control(ToWorker::Stop),
        _ => Err(LinkError::Invalid("unknown kind")),
    }
}

/// Reads a frame body as a downlink message from the worker.
pub fn parse_from_worker(mut body: Vec<u8>) -> Result<FromWorker, LinkError> {
    match body.first() {
        Some(&kind::DOWNLINK) => {
            body.remove(0);
            Ok(body)
        }
        _ => Err(LinkError::Invalid("unknown kind")),
    }
}

/// The frame of a message to the worker, whole (for tests and fuzzing; the async
/// writer sends the same bytes without copying the payload).
pub fn encode_to_worker(msg: &ToWorker) -> Vec<u8> {
    let (kind, payload) = kind_and_payload(msg);
    let mut out = frame_header(kind, payload.len()).expect("payload within MAX_FRAME").to_vec();
    out.extend_from_slice(payload);
    out
}

fn kind_and_payload(msg: &ToWorker) -> (u8, &[u8]) {
    match msg {
        ToWorker::Start(p) => (kind::START, p),
        ToWorker::Uplink(p) => (kind::UPLINK, p),
        ToWorker::Attach => (kind::ATTACH, &[]),
        ToWorker::Detach => (kind::DETACH, &[]),
        ToWorker::Stop => (kind::STOP, &[]),
    }
}

async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, LinkError> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(LinkError::Closed),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; frame_len(prefix)?];
    r.read_exact(&mut body).await?;
    Ok(body)
}

/// Payloads up to this size go out with their header in one write (a key, an
/// acknowledgement): the reader then wakes once per message, not once per part.
const ONE_WRITE: usize = 512;

async fn write_frame(w: &mut (impl AsyncWrite + Unpin), kind: u8, payload: &[u8]) -> Result<(), LinkError> {
    let header = frame_header(kind, payload.len())?;
    if payload.len() <= ONE_WRITE {
        let mut frame = [0u8; 5 + ONE_WRITE];
        frame[..5].copy_from_slice(&header);
        frame[5..5 + payload.len()].copy_from_slice(payload);
        let written = w.write_all(&frame[..5 + payload.len()]).await;
        zeroize::Zeroize::zeroize(&mut frame[..]); // a start request holds a password
        written?;
    } else {
        w.write_all(&header).await?;
        w.write_all(payload).await?;
    }
    Ok(())
}

pub async fn read_to_worker(r: &mut (impl AsyncRead + Unpin)) -> Result<ToWorker, LinkError> {
    parse_to_worker(read_frame(r).await?)
}

pub async fn write_to_worker(w: &mut (impl AsyncWrite + Unpin), msg: &ToWorker) -> Result<(), LinkError> {
    let (kind, payload) = kind_and_payload(msg);
    write_frame(w, kind, payload).await?;
    w.flush().await?;
    Ok(())
}

pub async fn read_from_worker(r: &mut (impl AsyncRead + Unpin)) -> Result<FromWorker, LinkError> {
    parse_from_worker(read_frame(r).await?)
}

/// Queues one downlink message; the caller flushes at the end of a frame.
pub async fn write_from_worker(w: &mut (impl AsyncWrite + Unpin), downlink: &[u8]) -> Result<(), LinkError> {
    write_frame(w, kind::DOWNLINK, downlink).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        for msg in [ToWorker::Start(b"{}".to_vec()), ToWorker::Uplink(vec![0x88]), ToWorker::Attach, ToWorker::Detach, ToWorker::Stop] {
            write_to_worker(&mut a, &msg).await.unwrap();
            assert_eq!(read_to_worker(&mut b).await.unwrap(), msg);
        }
        write_from_worker(&mut b, &[1, 2, 3]).await.unwrap();
        assert_eq!(read_from_worker(&mut a).await.unwrap(), vec![1, 2, 3]);
        drop(b);
        assert!(matches!(read_from_worker(&mut a).await, Err(LinkError::Closed)));
    }

    #[tokio::test]
    async fn a_small_message_is_one_write_and_a_large_one_arrives_whole() {
        use tokio::io::AsyncReadExt as _;
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let key = ToWorker::Uplink(vec![7; 12]);
        write_to_worker(&mut a, &key).await.unwrap();
        let mut got = [0u8; 64];
        let n = b.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], encode_to_worker(&key).as_slice(), "header and body in one read");
        let big = ToWorker::Uplink(vec![9; ONE_WRITE + 1]);
        write_to_worker(&mut a, &big).await.unwrap();
        assert_eq!(read_to_worker(&mut b).await.unwrap(), big);
    }

    #[tokio::test]
    async fn bad_frames_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&0u32.to_le_bytes()).await.unwrap();
        assert!(matches!(read_to_worker(&mut b).await, Err(LinkError::Invalid(_))));
        a.write_all(&2u32.to_le_bytes()).await.unwrap();
        a.write_all(&[0x77, 0]).await.unwrap();
        assert!(matches!(read_to_worker(&mut b).await, Err(LinkError::Invalid(_))));
    }
}
