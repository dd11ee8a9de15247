//! The connection to `podswitchd`: the three requests control needs, behind a trait so the
//! sync layer and the CNI handlers can be tested against an in-memory dataplane.
//!
//! [`SocketDataplane`] speaks the framed protocol of `docs/protocol.md` through
//! `podswitch_proto::client`: it connects lazily, keeps the connection for the next request,
//! and drops it on any socket or framing error; a request that fails on a *reused* connection
//! is retried once on a fresh one, because the usual cause is a `podswitchd` that restarted
//! since or closed the connection as idle (replaying a replace transaction with a generation
//! is idempotent, so the retry is safe for `apply` too).

use podswitch_proto::client::{Client, ClientError};
use podswitch_proto::{
    FrameError, PortInfo, Request, RequestBody, Response, Status, Transaction, MAX_FRAME_LEN,
    PROTOCOL_VERSION,
};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// How long a request may take before `podswitchd` counts as unreachable. An `apply` creates
/// and moves tap devices (a few ms each), so this is generous.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A request to the dataplane failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataplaneError {
    /// No connection, or it broke, or no answer in time.
    #[error("podswitchd at {path} is not reachable: {reason}")]
    Unreachable {
        /// Its socket.
        path: String,
        /// What failed.
        reason: String,
    },
    /// `podswitchd` answered with an error (for `apply`: nothing changed there).
    #[error("podswitchd at {path} refused the request: {message}")]
    Refused {
        /// Its socket.
        path: String,
        /// Its message.
        message: String,
    },
    /// A message was larger than the protocol allows (`podswitch_proto::MAX_FRAME_LEN`):
    /// nothing was sent, or the answer was not read.
    #[error(
        "a {request} message to or from podswitchd at {path} is {bytes} bytes, over the \
         protocol's limit of {limit} bytes: the configuration is larger than podswitch supports"
    )]
    TooLarge {
        /// Its socket.
        path: String,
        /// The request kind.
        request: &'static str,
        /// The message's size.
        bytes: u64,
        /// The limit.
        limit: u32,
    },
    /// `podswitchd` answered something this version does not expect.
    #[error(
        "podswitchd at {path} answered {answer} to a {request} request: is it a different version?"
    )]
    Unexpected {
        /// Its socket.
        path: String,
        /// The request kind.
        request: &'static str,
        /// The response kind.
        answer: String,
    },
}

/// What control asks of `podswitchd`.
pub trait Dataplane: Send {
    /// Generation, node, sizes.
    fn status(&mut self) -> Result<Status, DataplaneError>;
    /// Applies a transaction; returns the generation the tables now carry.
    fn apply(&mut self, tx: &Transaction) -> Result<u64, DataplaneError>;
    /// The ports as the daemon holds them.
    fn ports(&mut self) -> Result<Vec<PortInfo>, DataplaneError>;
}

/// `podswitchd` over its unix socket.
#[derive(Debug)]
pub struct SocketDataplane {
    client: Client,
}

impl SocketDataplane {
    /// A client of the socket at `path`; nothing is connected until the first request.
    pub fn new(path: &Path) -> SocketDataplane {
        SocketDataplane {
            client: Client::new("podswitchd", path, REQUEST_TIMEOUT),
        }
    }

    fn path(&self) -> String {
        self.client.socket().display().to_string()
    }

    fn call(&mut self, body: RequestBody) -> Result<Response, DataplaneError> {
        let name = body.name();
        self.send(name, &Request::new(body))
    }

    /// Sends `request` (of kind `name`), reads the response.
    fn send<Q: Serialize>(
        &mut self,
        name: &'static str,
        request: &Q,
    ) -> Result<Response, DataplaneError> {
        match self.client.call(request) {
            Ok(Response::Error { message }) => Err(DataplaneError::Refused {
                path: self.path(),
                message,
            }),
            Ok(other) => Ok(other),
            Err(ClientError::Protocol {
                err: FrameError::TooLarge(bytes),
                ..
            }) => Err(DataplaneError::TooLarge {
                path: self.path(),
                request: name,
                bytes,
                limit: MAX_FRAME_LEN,
            }),
            Err(ClientError::Protocol { err, .. }) => Err(DataplaneError::Unexpected {
                path: self.path(),
                request: name,
                answer: format!("an undecodable message ({err})"),
            }),
            Err(e) => Err(DataplaneError::Unreachable {
                path: self.path(),
                reason: reason(&e),
            }),
        }
    }

    fn unexpected(&self, request: &'static str, answer: &Response) -> DataplaneError {
        let answer = serde_json::to_value(answer)
            .ok()
            .and_then(|v| {
                v.get("response")
                    .and_then(|r| r.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| "something".into());
        DataplaneError::Unexpected {
            path: self.path(),
            request,
            answer: format!("{answer:?}"),
        }
    }
}

/// `Request::new(RequestBody::Apply(tx))` on the wire, borrowing the transaction: a whole
/// configuration is megabytes of specs, not worth a deep copy per push.
#[derive(Serialize)]
struct ApplyRequest<'a> {
    version: u32,
    #[serde(flatten)]
    body: ApplyBody<'a>,
}

/// `RequestBody`'s `apply` variant, by reference.
#[derive(Serialize)]
#[serde(tag = "request", rename_all = "snake_case")]
enum ApplyBody<'a> {
    Apply(&'a Transaction),
}

/// What failed, without repeating the socket that [`DataplaneError::Unreachable`] names.
fn reason(e: &ClientError) -> String {
    match e {
        ClientError::NotRunning { err, .. } | ClientError::Connect { err, .. } => {
            podswitch_proto::client::os_error_text(err)
        }
        ClientError::Permission { .. } => "permission denied (the socket is root-only)".into(),
        ClientError::Timeout { timeout, .. } => {
            format!("no answer within {} s", timeout.as_secs())
        }
        ClientError::Hangup { .. } => "it closed the connection".into(),
        ClientError::Io { err, .. } => podswitch_proto::client::os_error_text(err),
        ClientError::Protocol { err, .. } => err.to_string(),
    }
}

impl Dataplane for SocketDataplane {
    fn status(&mut self) -> Result<Status, DataplaneError> {
        match self.call(RequestBody::Status)? {
            Response::Status(s) => Ok(s),
            other => Err(self.unexpected("status", &other)),
        }
    }

    fn apply(&mut self, tx: &Transaction) -> Result<u64, DataplaneError> {
        let request = ApplyRequest {
            version: PROTOCOL_VERSION,
            body: ApplyBody::Apply(tx),
        };
        match self.send("apply", &request)? {
            Response::Applied { generation } => Ok(generation),
            other => Err(self.unexpected("apply", &other)),
        }
    }

    fn ports(&mut self) -> Result<Vec<PortInfo>, DataplaneError> {
        match self.call(RequestBody::Ports)? {
            Response::Ports { ports } => Ok(ports),
            other => Err(self.unexpected("ports", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::testkit;
    use podswitch_proto::{read_frame_bytes, write_frame};
    use std::os::unix::net::UnixListener;

    #[test]
    fn an_apply_is_sent_as_the_protocol_request_without_copying_the_transaction() {
        let tx = compile(
            &testkit::settings(),
            3,
            [&testkit::pod("aaa", [10, 244, 1, 2])],
            [],
            [],
            [],
        );
        let borrowed = ApplyRequest {
            version: PROTOCOL_VERSION,
            body: ApplyBody::Apply(&tx),
        };
        assert_eq!(
            serde_json::to_value(&borrowed).unwrap(),
            serde_json::to_value(Request::new(RequestBody::Apply(tx.clone()))).unwrap()
        );
    }

    #[test]
    fn missing_socket_is_unreachable_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sock");
        let err = SocketDataplane::new(&path).status().unwrap_err();
        assert!(matches!(err, DataplaneError::Unreachable { .. }));
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "podswitchd at {} is not reachable",
                path.display()
            )),
            "{msg}"
        );
    }

    /// A fake podswitchd that answers `n` connections with the given responses, one each.
    fn serve(listener: UnixListener, answers: Vec<Response>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            for answer in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let body = read_frame_bytes(&mut conn).unwrap();
                let req: Request = serde_json::from_slice(&body).unwrap();
                assert_eq!(req.version, podswitch_proto::PROTOCOL_VERSION);
                write_frame(&mut conn, &answer).unwrap();
                // Then close: the next request must reconnect.
            }
        })
    }

    #[test]
    fn a_closed_connection_is_replaced_transparently_and_errors_are_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = serve(
            listener,
            vec![
                Response::Applied { generation: 4 },
                Response::Error {
                    message: "op 2: bad".into(),
                },
                Response::Routes { routes: vec![] },
            ],
        );
        let mut dp = SocketDataplane::new(&path);
        let tx = Transaction::default();
        assert_eq!(dp.apply(&tx), Ok(4));
        // The server closed that connection; the retry reconnects.
        let refused = dp.apply(&tx).unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "podswitchd at {} refused the request: op 2: bad",
                path.display()
            )
        );
        let unexpected = dp.ports().unwrap_err().to_string();
        assert!(
            unexpected.contains("\"routes\" to a ports request"),
            "{unexpected}"
        );
        server.join().unwrap();
    }
}
