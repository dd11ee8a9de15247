//! One request, one response over a daemon's unix socket (podswitchd's or podswitch-control's),
//! with errors that say what to do.
//!
//! The connection is opened per command: the CLI asks one thing and exits, so there is nothing
//! to keep open. Both daemons frame messages the same way; only the message types and the
//! names in the errors differ. An error response is a normal answer here; `commands` turns it
//! into the CLI's error.

use anyhow::{anyhow, Result};
use podswitch_proto::client::{self, ClientError};
use podswitch_proto::control::{ControlRequest, ControlRequestBody, ControlResponse};
use podswitch_proto::{Request, RequestBody, Response};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::time::Duration;

pub use podswitch_proto::client::os_error_text;

/// How long to wait for the daemon's answer. An apply that creates taps takes milliseconds;
/// this bound only keeps a wedged daemon from hanging a script forever.
pub const ANSWER_TIMEOUT_SECS: u64 = 30;

/// The daemon at the other end of a socket, as errors name it.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The process's name.
    pub name: &'static str,
    /// The podswitchctl flag that points at its socket.
    pub flag: &'static str,
}

/// `podswitchd`, at `--socket`.
pub const DATAPLANE: Peer = Peer {
    name: "podswitchd",
    flag: "--socket",
};

/// `podswitch-control`, at `--control-socket`.
pub const CONTROL: Peer = Peer {
    name: "podswitch-control",
    flag: "--control-socket",
};

/// Connects to podswitchd at `socket`, sends `body` and returns its answer.
pub fn request(socket: &Path, body: RequestBody) -> Result<Response> {
    round_trip(DATAPLANE, socket, &Request::new(body))
}

/// Connects to podswitch-control at `socket`, sends `body` and returns its answer.
pub fn control_request(socket: &Path, body: ControlRequestBody) -> Result<ControlResponse> {
    round_trip(CONTROL, socket, &ControlRequest::new(body))
}

fn timeout() -> Duration {
    Duration::from_secs(ANSWER_TIMEOUT_SECS)
}

fn round_trip<Q: Serialize, A: DeserializeOwned>(peer: Peer, socket: &Path, req: &Q) -> Result<A> {
    client::request(peer.name, socket, timeout(), req).map_err(|e| describe(peer, e))
}

/// Writes `req` on `stream` and reads the one response from `peer` (the tests' way in,
/// over a socket pair).
#[cfg(test)]
fn exchange<S: std::io::Read + std::io::Write, Q: Serialize, A: DeserializeOwned>(
    peer: Peer,
    mut stream: S,
    req: &Q,
) -> Result<A> {
    client::exchange(&mut stream, peer.name, Path::new("-"), timeout(), req)
        .map_err(|e| describe(peer, e))
}

/// The CLI's words for a failed round trip: what happened, and what the operator can do.
fn describe(peer: Peer, e: ClientError) -> anyhow::Error {
    let name = peer.name;
    match e {
        ClientError::NotRunning { socket, err, .. } | ClientError::Connect { socket, err, .. } => {
            anyhow!(
                "cannot connect to {name} at {}: {} — is {name} running? ({} to point elsewhere)",
                socket.display(),
                os_error_text(&err),
                peer.flag
            )
        }
        ClientError::Permission { socket, .. } => anyhow!(
            "cannot connect to {name} at {}: Permission denied — the socket is root-only; \
             run podswitchctl as root",
            socket.display()
        ),
        ClientError::Timeout { .. } => {
            anyhow!("{name} did not answer within {ANSWER_TIMEOUT_SECS} s")
        }
        ClientError::Hangup { .. } => anyhow!("{name} closed the connection without answering"),
        ClientError::Io { err, .. } => {
            anyhow!("talking to {name}: {}", os_error_text(&err))
        }
        ClientError::Protocol { err, .. } => anyhow!(
            "reading {name}'s answer: the answer is not a response this podswitchctl \
             understands ({err}); are podswitchctl and {name} from the same release?"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_proto::PROTOCOL_VERSION;
    use podswitch_proto::{read_frame, write_frame};
    use std::os::unix::net::UnixStream;

    #[test]
    fn request_and_response_travel_as_frames() {
        let (client, mut server) = UnixStream::pair().unwrap();
        let daemon = std::thread::spawn(move || {
            let req: Request = read_frame(&mut server).unwrap();
            write_frame(&mut server, &Response::Applied { generation: 9 }).unwrap();
            req
        });
        let resp: Response =
            exchange(DATAPLANE, client, &Request::new(RequestBody::Routes)).unwrap();
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
        let err = exchange::<_, _, Response>(DATAPLANE, client, &Request::new(RequestBody::Status))
            .unwrap_err();
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

    #[test]
    fn control_requests_carry_the_version_and_errors_name_podswitch_control() {
        let (client, mut server) = UnixStream::pair().unwrap();
        let control = std::thread::spawn(move || {
            let req: ControlRequest = read_frame(&mut server).unwrap();
            write_frame(&mut server, &ControlResponse::Detached).unwrap();
            req
        });
        let resp: ControlResponse = exchange(
            CONTROL,
            client,
            &ControlRequest::new(ControlRequestBody::Pods),
        )
        .unwrap();
        assert!(matches!(resp, ControlResponse::Detached), "{resp:?}");
        let req = control.join().unwrap();
        assert_eq!(req.version, PROTOCOL_VERSION);
        assert!(matches!(req.body, ControlRequestBody::Pods));

        let path = Path::new("/nonexistent/podswitch/control.sock");
        let err = control_request(path, ControlRequestBody::Status)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "cannot connect to podswitch-control at /nonexistent/podswitch/control.sock: \
             No such file or directory — is podswitch-control running? \
             (--control-socket to point elsewhere)"
        );
    }
}
