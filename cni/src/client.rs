//! One round trip on podswitch-control's socket: connect, write one framed request, read one
//! framed response, under a timeout. [`Control`] abstracts it so the command logic can be tested
//! without a socket; [`UnixControl`] is the real thing.

use crate::result::{code, CniError};
use podswitch_proto::client;
pub use podswitch_proto::client::ClientError;
use podswitch_proto::control::{ControlRequest, ControlRequestBody, ControlResponse};
use std::io;
use std::path::Path;
use std::time::Duration;

/// The name errors give the other end.
pub const PEER: &str = "podswitch-control";

/// Something that answers control requests.
pub trait Control {
    /// Sends `body` to the control process at `socket` and waits at most `timeout` for the
    /// connect and for each read or write of the exchange.
    fn round_trip(
        &mut self,
        socket: &Path,
        body: ControlRequestBody,
        timeout: Duration,
    ) -> Result<ControlResponse, ClientError>;
}

/// The control process over its unix socket, one connection per request.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnixControl;

impl Control for UnixControl {
    fn round_trip(
        &mut self,
        socket: &Path,
        body: ControlRequestBody,
        timeout: Duration,
    ) -> Result<ControlResponse, ClientError> {
        client::request(PEER, socket, timeout, &ControlRequest::new(body))
    }
}

/// The CNI error the runtime sees for a failed round trip.
pub trait ToCniError {
    /// Transient conditions (control not up yet, busy, restarting) are code 11 so the
    /// runtime retries; a broken exchange is code 5.
    fn to_cni_error(&self) -> CniError;
}

impl ToCniError for ClientError {
    fn to_cni_error(&self) -> CniError {
        match self {
            ClientError::NotRunning { socket, err, .. } => CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "podswitch-control is not running: {} at {} (start podswitch-control, or \
                     point controlSocket in the network config at its socket)",
                    if err.kind() == io::ErrorKind::NotFound {
                        "there is no socket"
                    } else {
                        "nothing accepts connections on the socket"
                    },
                    socket.display()
                ),
            )
            .with_details(err.to_string()),
            ClientError::Permission { socket, .. } => CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "permission denied on podswitch-control's socket {}: it is root-only, and \
                     the plugin must run as root",
                    socket.display()
                ),
            ),
            ClientError::Connect { socket, err, .. } => CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "cannot connect to podswitch-control at {}; whether it runs is unknown \
                     (check the path and that the plugin runs as root)",
                    socket.display()
                ),
            )
            .with_details(err.to_string()),
            ClientError::Timeout {
                socket, timeout, ..
            } => CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "podswitch-control at {} is running but did not answer within {} s",
                    socket.display(),
                    timeout.as_secs()
                ),
            ),
            ClientError::Hangup { socket, .. } => CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "podswitch-control at {} closed the connection without answering \
                     (it may be restarting)",
                    socket.display()
                ),
            ),
            ClientError::Io { socket, err, .. } => CniError::new(
                code::IO_FAILURE,
                format!(
                    "talking to podswitch-control at {} failed",
                    socket.display()
                ),
            )
            .with_details(err.to_string()),
            ClientError::Protocol { socket, err, .. } => CniError::new(
                code::IO_FAILURE,
                format!(
                    "podswitch-control at {} sent an answer this plugin cannot read; are \
                     podswitch-cni and podswitch-control the same release?",
                    socket.display()
                ),
            )
            .with_details(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_proto::{read_frame, write_frame};
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    fn temp_socket(test: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("podswitch-cni-{}-{test}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn short() -> Duration {
        Duration::from_millis(200)
    }

    #[test]
    fn missing_socket_is_not_running_and_code_11() {
        let path = temp_socket("missing");
        let err = UnixControl
            .round_trip(&path, ControlRequestBody::Status, short())
            .unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
        let cni = err.to_cni_error();
        assert_eq!(cni.code, code::TRY_AGAIN_LATER);
        assert!(
            cni.msg.contains("is not running") && cni.msg.contains(path.to_str().unwrap()),
            "{cni}"
        );
    }

    #[test]
    fn stale_socket_without_listener_is_not_running() {
        let path = temp_socket("stale");
        drop(UnixListener::bind(&path).unwrap());
        let err = UnixControl
            .round_trip(&path, ControlRequestBody::Status, short())
            .unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
        assert!(
            err.to_cni_error().msg.contains("nothing accepts"),
            "{err:?}"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn silent_control_times_out_with_code_11() {
        let path = temp_socket("silent");
        let listener = UnixListener::bind(&path).unwrap();
        let holder = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(600));
            drop(conn);
        });
        let err = UnixControl
            .round_trip(&path, ControlRequestBody::Status, short())
            .unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert_eq!(err.to_cni_error().code, code::TRY_AGAIN_LATER);
        holder.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn hangup_before_answer_is_code_11_and_garbage_is_code_5() {
        let path = temp_socket("hangup");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let _: ControlRequest = read_frame(&mut conn).unwrap();
            drop(conn);
            let (mut conn, _) = listener.accept().unwrap();
            let _: ControlRequest = read_frame(&mut conn).unwrap();
            write_frame(&mut conn, &serde_json::json!({"response": "no_such_thing"})).unwrap();
        });
        let err = UnixControl
            .round_trip(&path, ControlRequestBody::Status, Duration::from_secs(5))
            .unwrap_err();
        assert!(matches!(err, ClientError::Hangup { .. }), "{err:?}");
        let err = UnixControl
            .round_trip(&path, ControlRequestBody::Status, Duration::from_secs(5))
            .unwrap_err();
        assert!(matches!(err, ClientError::Protocol { .. }), "{err:?}");
        assert_eq!(err.to_cni_error().code, code::IO_FAILURE);
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
