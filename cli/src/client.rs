//! One request, one response over podswitchd's unix socket, with errors that say what to do.
//!
//! The connection is opened per command: the CLI asks one thing and exits, so there is nothing
//! to keep open. A [`Response::Error`] is a normal answer here; `commands` turns it into the
//! CLI's error.

use anyhow::{anyhow, Context, Result};
use podswitch_proto::{read_frame, write_frame, FrameError, Request, RequestBody, Response};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long to wait for the daemon's answer. An apply that creates taps takes milliseconds;
/// this bound only keeps a wedged daemon from hanging a script forever.
pub const ANSWER_TIMEOUT_SECS: u64 = 30;

/// Connects to the daemon at `socket`, sends `body` and returns its answer.
pub fn request(socket: &Path, body: RequestBody) -> Result<Response> {
    let stream = connect(socket)?;
    let timeout = Some(Duration::from_secs(ANSWER_TIMEOUT_SECS));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .context("setting the socket timeout")?;
    exchange(stream, &Request::new(body))
}

fn connect(socket: &Path) -> Result<UnixStream> {
    UnixStream::connect(socket).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::PermissionDenied => "the socket is root-only; run podswitchctl as root",
            _ => "is podswitchd running? (--socket to point elsewhere)",
        };
        anyhow!(
            "cannot connect to podswitchd at {}: {} — {hint}",
            socket.display(),
            os_error_text(&e)
        )
    })
}

/// Writes `req` on `stream` and reads the one response.
pub fn exchange<S: Read + Write>(mut stream: S, req: &Request) -> Result<Response> {
    write_frame(&mut stream, req).map_err(|e| describe(e, "sending the request to podswitchd"))?;
    read_frame(&mut stream).map_err(|e| describe(e, "reading podswitchd's answer"))
}

fn describe(e: FrameError, doing: &str) -> anyhow::Error {
    match e {
        FrameError::Closed => anyhow!("podswitchd closed the connection without answering"),
        FrameError::Decode(e) => anyhow!(
            "{doing}: the answer is not a response this podswitchctl understands ({e}); \
             are podswitchctl and podswitchd from the same release?"
        ),
        FrameError::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            anyhow!("{doing}: podswitchd did not answer within {ANSWER_TIMEOUT_SECS} s")
        }
        FrameError::Io(e) => anyhow!("{doing}: {}", os_error_text(&e)),
        e @ FrameError::TooLarge(_) => anyhow!("{doing}: {e}"),
    }
}

/// The OS's text for an error without Rust's " (os error N)" suffix, which means nothing to an
/// operator.
pub fn os_error_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_proto::PROTOCOL_VERSION;
    use std::os::unix::net::UnixStream;

    #[test]
    fn request_and_response_travel_as_frames() {
        let (client, mut server) = UnixStream::pair().unwrap();
        let daemon = std::thread::spawn(move || {
            let req: Request = read_frame(&mut server).unwrap();
            write_frame(&mut server, &Response::Applied { generation: 9 }).unwrap();
            req
        });
        let resp = exchange(client, &Request::new(RequestBody::Routes)).unwrap();
        assert!(
            matches!(resp, Response::Applied { generation: 9 }),
            "{resp:?}"
        );
        let req = daemon.join().unwrap();
        assert_eq!(req.version, PROTOCOL_VERSION);
        assert!(matches!(req.body, RequestBody::Routes));
    }

    #[test]
    fn daemon_hanging_up_is_reported_as_no_answer() {
        let (client, mut server) = UnixStream::pair().unwrap();
        let daemon = std::thread::spawn(move || {
            let _: Request = read_frame(&mut server).unwrap();
        });
        let err = exchange(client, &Request::new(RequestBody::Status)).unwrap_err();
        daemon.join().unwrap();
        assert_eq!(
            err.to_string(),
            "podswitchd closed the connection without answering"
        );
    }

    #[test]
    fn missing_socket_names_the_path_and_what_to_do() {
        let path = Path::new("/nonexistent/podswitch/dataplane.sock");
        let err = request(path, RequestBody::Status).unwrap_err().to_string();
        assert_eq!(
            err,
            "cannot connect to podswitchd at /nonexistent/podswitch/dataplane.sock: \
             No such file or directory — is podswitchd running? (--socket to point elsewhere)"
        );
    }
}
