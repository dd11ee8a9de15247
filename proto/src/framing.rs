//! Length-prefixed frames: `u32` big-endian length, then the JSON body.

use serde::{de::DeserializeOwned, Serialize};
use std::io::{self, Read, Write};

/// Largest body a peer may send. Larger frames are refused before any allocation.
///
/// Sized for the largest configuration control sends in one replace transaction (atomic: the
/// dataplane publishes all of it or none): issue 14's 10k Service ports with 100k endpoints
/// measured 13.9 MB of JSON with short names (~140 bytes per endpoint with its target
/// `namespace/pod`), and real pod names are longer (~60 more bytes per endpoint: ~20 MB); 10k
/// pod ports (~350 bytes each) and their policies (4.3 MB for 10k policies over 10k pods)
/// come on top. 64 MiB holds that twice over; the server's shared budget for large frames
/// (`server::ServerConfig::in_flight_budget`) is one such frame at a time.
pub const MAX_FRAME_LEN: u32 = 64 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly between frames.
    #[error("connection closed")]
    Closed,
    /// The length prefix announced more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge(u64),
    /// The body was not valid JSON for the expected message.
    #[error("malformed message: {0}")]
    Decode(#[from] serde_json::Error),
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// Writes `msg` as one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(msg)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n <= MAX_FRAME_LEN)
        .ok_or(FrameError::TooLarge(body.len() as u64))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&body)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame and decodes it as `T`.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let body = read_frame_bytes(r)?;
    Ok(serde_json::from_slice(&body)?)
}

/// Reads one frame's body without decoding it.
pub fn read_frame_bytes<R: Read>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len_buf = [0u8; 4];
    match r.read_exact(&mut len_buf) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len_buf);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len.into()));
    }
    // Read as the bytes arrive rather than allocating the announced length up front: a peer
    // that announces 16 MiB and sends nothing costs nothing.
    let mut body = Vec::new();
    r.take(u64::from(len)).read_to_end(&mut body)?;
    if body.len() < len as usize {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(&wire[..4], &[0, 0, 0, 7]);
        let back: Vec<u32> = read_frame(&mut wire.as_slice()).unwrap();
        assert_eq!(back, vec![1, 2, 3]);
    }

    #[test]
    fn oversized_length_is_refused_without_reading_the_body() {
        let wire = (MAX_FRAME_LEN + 1).to_be_bytes();
        let err = read_frame::<_, u32>(&mut wire.as_slice()).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(_)), "{err}");
    }

    #[test]
    fn eof_between_frames_is_closed_and_mid_frame_is_io() {
        assert!(matches!(
            read_frame::<_, u32>(&mut [].as_slice()),
            Err(FrameError::Closed)
        ));
        let wire = [0u8, 0, 0, 9, b'1'];
        assert!(matches!(
            read_frame::<_, u32>(&mut wire.as_slice()),
            Err(FrameError::Io(_))
        ));
    }

    #[test]
    fn garbage_body_is_a_decode_error() {
        let wire = [0u8, 0, 0, 3, b'{', b'{', b'x'];
        assert!(matches!(
            read_frame::<_, u32>(&mut wire.as_slice()),
            Err(FrameError::Decode(_))
        ));
    }
}
