//! One round trip on podswitch-control's socket: connect, write one framed request, read one
//! framed response, under a timeout. [`Control`] abstracts it so the command logic can be tested
//! without a socket; [`UnixControl`] is the real thing.

use crate::result::{code, CniError};
use podswitch_proto::control::{ControlRequest, ControlRequestBody, ControlResponse};
use podswitch_proto::{read_frame, write_frame, FrameError};
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Something that answers control requests.
pub trait Control {
    /// Sends `body` to the control process at `socket` and waits at most `timeout` for each
    /// read or write of the exchange.
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
        let at = socket.to_path_buf();
        // A unix connect completes at once or fails at once (no handshake), so it needs no
        // timeout of its own; the reads and writes that follow do.
        let mut stream = UnixStream::connect(socket).map_err(|e| ClientError::connect(&at, e))?;
        let io_err = |e| ClientError::Io {
            socket: at.clone(),
            err: e,
        };
        stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
        stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
        let request = ControlRequest::new(body);
        write_frame(&mut stream, &request).map_err(|e| ClientError::frame(&at, timeout, e))?;
        read_frame(&mut stream).map_err(|e| ClientError::frame(&at, timeout, e))
    }
}

/// Why a round trip failed.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing accepts connections on the socket: the control process is not running.
    NotRunning {
        /// The socket path.
        socket: PathBuf,
        /// What connect said (no such file, connection refused).
        err: io::Error,
    },
    /// Connecting failed otherwise (permissions, a path that is not a socket, ...).
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// What connect said.
        err: io::Error,
    },
    /// The control process took longer than the timeout.
    Timeout {
        /// The socket path.
        socket: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
    /// The control process closed or reset the connection before answering.
    Hangup {
        /// The socket path.
        socket: PathBuf,
    },
    /// The socket failed some other way.
    Io {
        /// The socket path.
        socket: PathBuf,
        /// The failure.
        err: io::Error,
    },
    /// The answer was not a control response this plugin understands.
    Malformed {
        /// The socket path.
        socket: PathBuf,
        /// The decoding failure.
        err: FrameError,
    },
}

impl ClientError {
    fn connect(socket: &Path, err: io::Error) -> Self {
        let socket = socket.to_path_buf();
        match err.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning { socket, err }
            }
            _ => ClientError::Connect { socket, err },
        }
    }

    fn frame(socket: &Path, timeout: Duration, err: FrameError) -> Self {
        let socket = socket.to_path_buf();
        match err {
            FrameError::Closed => ClientError::Hangup { socket },
            FrameError::Io(e) => match e.kind() {
                // SO_RCVTIMEO/SO_SNDTIMEO expiry surfaces as EAGAIN (WouldBlock).
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    ClientError::Timeout { socket, timeout }
                }
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe => ClientError::Hangup { socket },
                _ => ClientError::Io { socket, err: e },
            },
            err @ (FrameError::Decode(_) | FrameError::TooLarge(_)) => {
                ClientError::Malformed { socket, err }
            }
        }
    }

    /// The CNI error the runtime sees. Transient conditions (control not up yet, busy,
    /// restarting) are code 11 so the runtime retries; a broken exchange is code 5.
    pub fn to_cni_error(&self) -> CniError {
        match self {
            ClientError::NotRunning { socket, err } => CniError::new(
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
            ClientError::Connect { socket, err } => CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "cannot connect to podswitch-control at {}; whether it runs is unknown \
                     (check the path and that the plugin runs as root)",
                    socket.display()
                ),
            )
            .with_details(err.to_string()),
            ClientError::Timeout { socket, timeout } => CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "podswitch-control at {} is running but did not answer within {} s",
                    socket.display(),
                    timeout.as_secs()
                ),
            ),
            ClientError::Hangup { socket } => CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "podswitch-control at {} closed the connection without answering \
                     (it may be restarting)",
                    socket.display()
                ),
            ),
            ClientError::Io { socket, err } => CniError::new(
                code::IO_FAILURE,
                format!(
                    "talking to podswitch-control at {} failed",
                    socket.display()
                ),
            )
            .with_details(err.to_string()),
            ClientError::Malformed { socket, err } => CniError::new(
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
    use std::os::unix::net::UnixListener;

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
        assert!(matches!(err, ClientError::Malformed { .. }), "{err:?}");
        assert_eq!(err.to_cni_error().code, code::IO_FAILURE);
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
