//! Arbitrary bytes as they could arrive on `podswitchd`'s socket.
//!
//! The input is read as a stream of length-prefixed frames with `read_frame::<_, Request>`
//! until the stream ends or a frame is refused, and also decoded whole as a bare JSON
//! `Request` (and `Response`, what the CLI decodes). Nothing may panic, and whatever decodes
//! must survive a round trip: encode it again, decode that, and get the same JSON back, so the
//! daemon and its peers agree on every message either of them accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use podswitch_proto::{read_frame, write_frame, FrameError, Request, Response};
use serde::{de::DeserializeOwned, Serialize};

fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    // Each successful frame consumes at least its 4-byte prefix, so this ends.
    loop {
        match read_frame::<_, Request>(&mut stream) {
            Ok(req) => {
                round_trip(&req);
                let mut wire = Vec::new();
                write_frame(&mut wire, &req).expect("a decoded request encodes");
                let again: Request = read_frame(&mut wire.as_slice()).expect("and decodes");
                assert_eq!(json(&again), json(&req), "framed round trip");
            }
            Err(FrameError::Decode(_)) => {} // a bad body; the next frame may still be good
            Err(FrameError::Closed | FrameError::TooLarge(_) | FrameError::Io(_)) => break,
        }
    }

    if let Ok(req) = serde_json::from_slice::<Request>(data) {
        round_trip(&req);
    }
    if let Ok(resp) = serde_json::from_slice::<Response>(data) {
        round_trip(&resp);
    }
});

fn json<T: Serialize>(msg: &T) -> serde_json::Value {
    serde_json::to_value(msg).expect("every message serializes")
}

/// Encodes `msg`, decodes the bytes as `T` again and compares the two as JSON values.
fn round_trip<T: Serialize + DeserializeOwned>(msg: &T) {
    let bytes = serde_json::to_vec(msg).expect("every message serializes");
    let back: T = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "re-decoding our own encoding failed: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(
        json(&back),
        json(msg),
        "JSON round trip changed the message"
    );
}
