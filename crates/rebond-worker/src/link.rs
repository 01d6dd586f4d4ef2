//! The local channel between the gateway and a bounce worker: length-prefixed
//! frames on the worker's stdin and stdout.
//!
//! Frame: `u32` little-endian length of what follows, then a kind byte, then the payload.

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Largest frame either side accepts (a full-screen image fits easily).
pub const MAX_FRAME: usize = 64 << 20;

/// Gateway to worker.
#[derive(Debug, PartialEq, Eq)]
pub enum ToWorker {
    /// JSON [`crate::StartRequest`]; carries the password, so it is zeroized after use.
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

async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<(u8, Vec<u8>), LinkError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(LinkError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(LinkError::Invalid("frame length"));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    let kind = buf.remove(0);
    Ok((kind, buf))
}

async fn write_frame(w: &mut (impl AsyncWrite + Unpin), kind: u8, payload: &[u8]) -> Result<(), LinkError> {
    let len = u32::try_from(payload.len() + 1).map_err(|_| LinkError::Invalid("frame too long"))?;
    w.write_all(&len.to_le_bytes()).await?;
    w.write_all(&[kind]).await?;
    w.write_all(payload).await?;
    Ok(())
}

pub async fn read_to_worker(r: &mut (impl AsyncRead + Unpin)) -> Result<ToWorker, LinkError> {
    let (kind, payload) = read_frame(r).await?;
    Ok(match kind {
        kind::START => ToWorker::Start(payload),
        kind::UPLINK => ToWorker::Uplink(payload),
        kind::ATTACH => ToWorker::Attach,
        kind::DETACH => ToWorker::Detach,
        kind::STOP => ToWorker::Stop,
        _ => return Err(LinkError::Invalid("unknown kind")),
    })
}

pub async fn write_to_worker(w: &mut (impl AsyncWrite + Unpin), msg: &ToWorker) -> Result<(), LinkError> {
    match msg {
        ToWorker::Start(p) => write_frame(w, kind::START, p).await?,
        ToWorker::Uplink(p) => write_frame(w, kind::UPLINK, p).await?,
        ToWorker::Attach => write_frame(w, kind::ATTACH, &[]).await?,
        ToWorker::Detach => write_frame(w, kind::DETACH, &[]).await?,
        ToWorker::Stop => write_frame(w, kind::STOP, &[]).await?,
    }
    w.flush().await?;
    Ok(())
}

pub async fn read_from_worker(r: &mut (impl AsyncRead + Unpin)) -> Result<FromWorker, LinkError> {
    match read_frame(r).await? {
        (kind::DOWNLINK, payload) => Ok(payload),
        _ => Err(LinkError::Invalid("unknown kind")),
    }
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
    async fn bad_frames_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&0u32.to_le_bytes()).await.unwrap();
        assert!(matches!(read_to_worker(&mut b).await, Err(LinkError::Invalid(_))));
        a.write_all(&2u32.to_le_bytes()).await.unwrap();
        a.write_all(&[0x77, 0]).await.unwrap();
        assert!(matches!(read_to_worker(&mut b).await, Err(LinkError::Invalid(_))));
    }
}
