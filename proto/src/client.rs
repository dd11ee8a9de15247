//! The client side of both sockets, shared by `podswitchctl`, `podswitch-cni` and
//! `podswitch-control` (towards `podswitchd`): connect with a timeout, send one framed request,
//! read one framed response, and say precisely what failed.
//!
//! Everything is bounded by one timeout: the connect (a unix `connect()` waits while the
//! daemon's listen backlog is full, as when it is out of file descriptors), each write and
//! each read. An error response from the daemon is a normal answer here; what it means is the
//! caller's business.

use crate::framing::{read_frame, write_frame, FrameError};
use serde::{de::DeserializeOwned, Serialize};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a round trip failed. Every variant names the daemon and its socket.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing accepts connections on the socket (no socket file, or nobody listening).
    #[error("{peer} is not running: {} at {}", not_running_text(.err), .socket.display())]
    NotRunning {
        /// The daemon's name.
        peer: &'static str,
        /// The socket path.
        socket: PathBuf,
        /// What connect said.
        err: io::Error,
    },
    /// The socket is root-only (mode 0600) and the caller is not root.
    #[error("permission denied on {peer}'s socket {}: it is root-only; run as root", .socket.display())]
    Permission {
        /// The daemon's name.
        peer: &'static str,
        /// The socket path.
        socket: PathBuf,
    },
    /// Connecting failed otherwise (a path that is not a socket, too many files open, ...).
    #[error("cannot connect to {peer} at {}: {}", .socket.display(), os_error_text(.err))]
    Connect {
        /// The daemon's name.
        peer: &'static str,
        /// The socket path.
        socket: PathBuf,
        /// What connect said.
        err: io::Error,
    },
    /// The daemon did not accept, take the request, or answer within the timeout.
    #[error("{peer} at {} did not answer within {} s", .socket.display(), .timeout.as_secs_f64())]
    Timeout {
        /// The daemon's name.
        peer: &'static str,
        /// The socket path.
        socket: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
    /// The daemon closed or reset the connection before answering.
    #[error("{peer} at {} closed the connection without answering", .socket.display())]
    Hangup {
        /// The daemon's name.
        peer: &'static str,
        /// The socket path.
        socket: PathBuf,
    },
    /// The socket failed some other way.
    #[error("talking to {peer} at {}: {}", .socket.display(), os_error_text(.err))]
    Io {
        /// The daemon's name.
        peer: &'static str,
        /// The socket path.
        socket: PathBuf,
        /// The failure.
        err: io::Error,
    },
    /// The answer is not a message this client understands (a different release?).
    #[error(
        "{peer} at {} sent an answer this client cannot read ({err}); are both from the same \
         release?",
        .socket.display()
    )]
    Protocol {
        /// The daemon's name.
        peer: &'static str,
        /// The socket path.
        socket: PathBuf,
        /// The framing or decoding failure.
        err: FrameError,
    },
}

impl ClientError {
    /// The socket the failure concerns.
    pub fn socket(&self) -> &Path {
        match self {
            ClientError::NotRunning { socket, .. }
            | ClientError::Permission { socket, .. }
            | ClientError::Connect { socket, .. }
            | ClientError::Timeout { socket, .. }
            | ClientError::Hangup { socket, .. }
            | ClientError::Io { socket, .. }
            | ClientError::Protocol { socket, .. } => socket,
        }
    }

    /// Whether the failure happened before the daemon could have seen the request (so
    /// retrying cannot apply anything twice).
    pub fn before_request(&self) -> bool {
        matches!(
            self,
            ClientError::NotRunning { .. }
                | ClientError::Permission { .. }
                | ClientError::Connect { .. }
        )
    }
}

fn not_running_text(err: &io::Error) -> &'static str {
    if err.kind() == io::ErrorKind::NotFound {
        "there is no socket"
    } else {
        "nothing accepts connections on the socket"
    }
}

/// The OS's text for an error without Rust's " (os error N)" suffix, which means nothing to
/// an operator.
pub fn os_error_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// A connection to one daemon's socket, opened on first use and kept for the next request.
#[derive(Debug)]
pub struct Client {
    peer: &'static str,
    socket: PathBuf,
    timeout: Duration,
    conn: Option<UnixStream>,
}

impl Client {
    /// A client of `peer` (its name in messages) at `socket`; nothing is connected yet.
    /// `timeout` bounds the connect and every read and write.
    pub fn new(peer: &'static str, socket: &Path, timeout: Duration) -> Self {
        Self {
            peer,
            socket: socket.to_path_buf(),
            timeout,
            conn: None,
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `req` and reads the one response. A kept connection that turns out broken (the
    /// daemon restarted, or closed it as idle) is replaced once, transparently.
    pub fn call<Q: Serialize, A: DeserializeOwned>(&mut self, req: &Q) -> Result<A, ClientError> {
        let reused = self.conn.is_some();
        match self.call_once(req) {
            Err(ClientError::Hangup { .. } | ClientError::Io { .. }) if reused => {
                self.call_once(req)
            }
            other => other,
        }
    }

    fn call_once<Q: Serialize, A: DeserializeOwned>(&mut self, req: &Q) -> Result<A, ClientError> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => connect(self.peer, &self.socket, self.timeout)?,
        };
        let answer = exchange(&mut conn, self.peer, &self.socket, self.timeout, req)?;
        // Only a connection that completed an exchange is in step for the next one.
        self.conn = Some(conn);
        Ok(answer)
    }
}

/// One request on a fresh connection: connect, send `req`, read the response.
pub fn request<Q: Serialize, A: DeserializeOwned>(
    peer: &'static str,
    socket: &Path,
    timeout: Duration,
    req: &Q,
) -> Result<A, ClientError> {
    Client::new(peer, socket, timeout).call(req)
}

/// Connects to `socket`, giving up after `timeout` (the kernel makes a connect wait while
/// the listener's backlog is full; the send timeout bounds that wait), and sets `timeout` on
/// the connection's reads and writes.
pub fn connect(
    peer: &'static str,
    socket: &Path,
    timeout: Duration,
) -> Result<UnixStream, ClientError> {
    let failed = |err: io::Error| connect_error(peer, socket, timeout, err);
    let addr = socket2::SockAddr::unix(socket).map_err(failed)?;
    let sock =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).map_err(failed)?;
    sock.set_write_timeout(Some(timeout)).map_err(failed)?;
    sock.set_read_timeout(Some(timeout)).map_err(failed)?;
    sock.connect(&addr).map_err(failed)?;
    Ok(UnixStream::from(std::os::fd::OwnedFd::from(sock)))
}

fn connect_error(
    peer: &'static str,
    socket: &Path,
    timeout: Duration,
    err: io::Error,
) -> ClientError {
    let socket = socket.to_path_buf();
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning { peer, socket, err }
        }
        io::ErrorKind::PermissionDenied => ClientError::Permission { peer, socket },
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
            peer,
            socket,
            timeout,
        },
        _ => ClientError::Connect { peer, socket, err },
    }
}

/// Writes `req` on `stream` and reads the one response, with errors naming `peer` at
/// `socket`. `timeout` is what the stream's timeouts were set to (for the message).
pub fn exchange<S: Read + Write, Q: Serialize, A: DeserializeOwned>(
    stream: &mut S,
    peer: &'static str,
    socket: &Path,
    timeout: Duration,
    req: &Q,
) -> Result<A, ClientError> {
    let failed = |err| frame_error(peer, socket, timeout, err);
    write_frame(stream, req).map_err(failed)?;
    read_frame(stream).map_err(failed)
}

fn frame_error(
    peer: &'static str,
    socket: &Path,
    timeout: Duration,
    err: FrameError,
) -> ClientError {
    let socket = socket.to_path_buf();
    match err {
        FrameError::Closed => ClientError::Hangup { peer, socket },
        FrameError::Io(err) => match err.kind() {
            // SO_RCVTIMEO/SO_SNDTIMEO expiry surfaces as EAGAIN (WouldBlock).
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                peer,
                socket,
                timeout,
            },
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => ClientError::Hangup { peer, socket },
            _ => ClientError::Io { peer, socket, err },
        },
        err @ (FrameError::Decode(_) | FrameError::TooLarge(_)) => {
            ClientError::Protocol { peer, socket, err }
        }
    }
}

#[cfg(test)]
mod tests;
