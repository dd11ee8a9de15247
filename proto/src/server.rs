//! The server side of both sockets, shared by `podswitchd` and `podswitch-control`: binding
//! (root-only, replacing a stale socket, refusing a live one), a thread per connection, one
//! response per frame, and the version check whose error comes before any decoding error.
//!
//! A malformed body gets an error response and the connection stays usable; a broken frame
//! (oversized, truncated, too slow) gets an error response and the connection is closed.
//!
//! What must stay true, whatever clients do (see [`ServerConfig`]):
//! - **The server never stops serving on a transient failure.** A failed `accept()` (out of
//!   file descriptors, memory, buffers; an aborted connection) is retried with a growing pause
//!   (10 ms to 100 ms), logged once per episode, not once per failure. Only a listener that
//!   cannot work at all (not a socket, not listening) ends [`serve`]. A connection whose
//!   thread cannot be started is closed, and the next accept waits the same way (an episode
//!   of its own, with its own pair of log lines).
//! - **Connections are bounded in number and time.** Over `max_connections`, a new connection
//!   gets a "too many connections" error frame and is closed. A connection idle between frames
//!   for `idle_timeout` is closed; a frame must arrive whole within `idle_timeout` of its start.
//! - **Memory is bounded before it is spent.** A frame's declared length is checked against
//!   `max_frame_len` before anything is read; frames over [`SMALL_FRAME_LEN`] reserve their
//!   length from one budget shared by all connections (`in_flight_budget`), or are refused as
//!   busy, and only then is their buffer allocated, exactly that long (never grown by
//!   doubling), so the budget counts every byte a frame's buffer holds.
//!
//! Every error the server answers itself comes with an [`ErrorKind`], so a service can tell
//! a request that will never work from a refusal that a retry later can get past.

use crate::framing::{write_frame, MAX_FRAME_LEN};
use crate::PROTOCOL_VERSION;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A daemon answering requests of type `Request` on a socket.
pub trait Service: Send + Sync + 'static {
    /// The request type; it carries the version field the server checks first.
    type Request: DeserializeOwned;
    /// The response type.
    type Response: Serialize;
    /// Name used in messages ("podswitchd", "podswitch-control").
    const NAME: &'static str;
    /// Answers a decoded request.
    fn handle(&self, request: Self::Request) -> Self::Response;
    /// The error response carrying `message`; `kind` says what went wrong, so the service
    /// can choose its error code (a transient refusal is not the client's fault).
    fn error(&self, kind: ErrorKind, message: String) -> Self::Response;
    /// Writes a line to the daemon's log (stderr unless the daemon says otherwise).
    fn log(&self, message: &str) {
        eprintln!("{}: {message}", Self::NAME);
    }
}

/// What kind of error the server answers with, before or instead of [`Service::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The body is not a request of this service: not JSON, not an object, no usable
    /// `"version"`, or a decoding error. Sending it again will not help.
    Malformed,
    /// The request's protocol version is not the one this daemon speaks.
    UnsupportedVersion,
    /// The frame's announced length is over `max_frame_len`.
    TooLarge,
    /// The daemon is at one of its limits right now (too many connections, the in-flight
    /// budget, memory for the frame): the same request can succeed later.
    Busy,
    /// The frame did not arrive whole (too slow, or the connection broke in the middle): the
    /// same request, sent again promptly, can succeed.
    Incomplete,
}

impl ErrorKind {
    /// Whether retrying the same request later can succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Busy | ErrorKind::Incomplete)
    }
}

/// Frames up to this size are never refused for the shared budget: `max_connections` of them
/// at once are a bounded, small amount of memory (64 × 64 KiB = 4 MiB), and every ordinary
/// request (status, dumps, a CNI call, a small apply) fits.
pub const SMALL_FRAME_LEN: u32 = 64 * 1024;

/// Limits of one server. The defaults suit both daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Most connections served at once; more are answered "too many connections" and closed.
    pub max_connections: usize,
    /// How long a connection may sit idle between frames, and how long one frame may take to
    /// arrive once it has started.
    pub idle_timeout: Duration,
    /// Largest frame body accepted (at most [`MAX_FRAME_LEN`]).
    pub max_frame_len: u32,
    /// Bytes that frames larger than [`SMALL_FRAME_LEN`] may hold at once, over all
    /// connections.
    pub in_flight_budget: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
            max_frame_len: MAX_FRAME_LEN,
            // One frame of the largest size at a time (see `MAX_FRAME_LEN`), or many smaller.
            in_flight_budget: MAX_FRAME_LEN as usize,
        }
    }
}

/// Binds `path` for `S` (0600; a stale socket file is replaced, a live one refused).
pub fn bind<S: Service>(path: &Path) -> io::Result<UnixListener> {
    let context =
        |e: io::Error| io::Error::new(e.kind(), format!("binding {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(context)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: is another {} running?",
                    path.display(),
                    S::NAME
                ),
            ));
        }
        std::fs::remove_file(path).map_err(context)?;
    }
    let listener = UnixListener::bind(path).map_err(context)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(context)?;
    Ok(listener)
}

/// Something connections are accepted from: a [`UnixListener`], or a test's stand-in.
pub trait Accept {
    /// Waits for the next connection.
    fn accept_one(&self) -> io::Result<UnixStream>;
}

impl Accept for UnixListener {
    fn accept_one(&self) -> io::Result<UnixStream> {
        self.accept().map(|(conn, _)| conn)
    }
}

/// Serves connections with the default limits, a thread each, for as long as the listener
/// works (see the module's invariants).
pub fn serve<S: Service>(service: Arc<S>, listener: UnixListener) -> io::Result<()> {
    serve_with(service, &listener, ServerConfig::default())
}

/// Linux errno values (asm-generic/errno-base.h, errno.h) that mean the listener itself is
/// unusable, so retrying would only spin. Every other accept failure is transient.
const EBADF: i32 = 9;
const EFAULT: i32 = 14;
const EINVAL: i32 = 22;
const ENOTSOCK: i32 = 88;
const EOPNOTSUPP: i32 = 95;

fn accept_error_is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(EBADF | EFAULT | EINVAL | ENOTSOCK | EOPNOTSUPP)
    )
}

/// What to do about accept failures: one log line when an episode starts, one when it ends,
/// a pause in between that grows from 10 ms to 100 ms.
#[derive(Debug, Default)]
struct Backoff {
    failures: u64,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_millis(100);

    /// Records a failure; returns the pause before the next accept and whether to log.
    fn failed(&mut self) -> (Duration, bool) {
        self.failures += 1;
        let pause = Self::FIRST
            .saturating_mul(1 << self.failures.min(8).saturating_sub(1))
            .min(Self::LONGEST);
        (pause, self.failures == 1)
    }

    /// Records a success; returns how many failures the episode it ends had.
    fn succeeded(&mut self) -> u64 {
        std::mem::take(&mut self.failures)
    }
}

/// [`serve`] with explicit limits, from any [`Accept`].
pub fn serve_with<S: Service, L: Accept>(
    service: Arc<S>,
    listener: &L,
    cfg: ServerConfig,
) -> io::Result<()> {
    serve_on(service, listener, Arc::new(Limits::new(cfg)), &spawn_thread)
}

/// A connection's work, run on a thread of its own.
type Connection = Box<dyn FnOnce() + Send + 'static>;

/// Starts a thread named `name` running `work` (tests stand in one that fails).
type Spawn = dyn Fn(String, Connection) -> io::Result<()>;

fn spawn_thread(name: String, work: Connection) -> io::Result<()> {
    std::thread::Builder::new().name(name).spawn(work).map(drop)
}

fn serve_on<S: Service, L: Accept>(
    service: Arc<S>,
    listener: &L,
    limits: Arc<Limits>,
    spawn: &Spawn,
) -> io::Result<()> {
    let mut backoff = Backoff::default();
    // Thread starts fail for other reasons than accepts (thread limits, memory): an episode
    // of their own, so neither ends the other's.
    let mut spawn_backoff = Backoff::default();
    loop {
        let conn = match listener.accept_one() {
            Ok(conn) => conn,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if accept_error_is_fatal(&e) => return Err(e),
            Err(e) => {
                let (pause, first) = backoff.failed();
                if first {
                    service.log(&format!(
                        "accepting a connection failed: {e}; retrying every {} ms until it \
                         works ({}); forwarding is not affected",
                        Backoff::LONGEST.as_millis(),
                        accept_hint(&e)
                    ));
                }
                std::thread::sleep(pause);
                continue;
            }
        };
        let failures = backoff.succeeded();
        if failures > 0 {
            service.log(&format!(
                "accepting connections again after {failures} failed attempts"
            ));
        }
        let Some(slot) = limits.open_connection() else {
            refuse(&*service, conn, ErrorKind::Busy, &too_many(&limits.cfg));
            continue;
        };
        let service_for_thread = service.clone();
        let limits_for_thread = limits.clone();
        let spawned = spawn(
            format!("{}-api", S::NAME),
            Box::new(move || {
                let _slot = slot;
                serve_connection(&*service_for_thread, conn, &limits_for_thread)
            }),
        );
        match spawned {
            Ok(()) => {
                let failures = spawn_backoff.succeeded();
                if failures > 0 {
                    service.log(&format!(
                        "starting connection threads again after {failures} failed attempts"
                    ));
                }
            }
            Err(e) => {
                // The closure (and with it the connection and its slot) is dropped: the
                // client sees its connection closed and can retry. Pausing before the next
                // accept keeps the loop from spinning on accept-and-drop meanwhile.
                let (pause, first) = spawn_backoff.failed();
                if first {
                    service.log(&format!(
                        "starting a thread for a connection failed: {e}; dropping it"
                    ));
                }
                std::thread::sleep(pause);
            }
        }
    }
}

fn accept_hint(e: &io::Error) -> &'static str {
    // EMFILE 24, ENFILE 23: the descriptor limits.
    match e.raw_os_error() {
        Some(24) => "the process's open-file limit is reached: raise LimitNOFILE / ulimit -n, or find who holds idle connections",
        Some(23) => "the system-wide open-file limit is reached (fs.file-max)",
        _ => "the cause is usually temporary: memory or socket buffers",
    }
}

fn too_many(cfg: &ServerConfig) -> String {
    format!(
        "too many connections: {} are open, the limit is {}; close idle connections or retry later",
        cfg.max_connections, cfg.max_connections
    )
}

/// Answers `message` on a connection that will not be served, without waiting on the peer.
fn refuse<S: Service>(service: &S, mut conn: UnixStream, kind: ErrorKind, message: &str) {
    let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = write_frame(&mut conn, &service.error(kind, message.to_string()));
}

/// The shared counts behind the limits.
#[derive(Debug)]
struct Limits {
    cfg: ServerConfig,
    open: AtomicUsize,
    in_flight: Arc<AtomicUsize>,
}

/// One open connection's place under `max_connections`; freed on drop.
#[derive(Debug)]
struct Slot(Arc<Limits>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes reserved from the in-flight budget for one frame; returned on drop.
#[derive(Debug)]
struct Reservation {
    budget: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Limits {
    fn new(cfg: ServerConfig) -> Self {
        Self {
            cfg: ServerConfig {
                max_frame_len: cfg.max_frame_len.min(MAX_FRAME_LEN),
                ..cfg
            },
            open: AtomicUsize::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn open_connection(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cfg.max_connections).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Reserves `len` bytes for a frame; small frames need no reservation.
    fn reserve(&self, len: u32) -> Result<Option<Reservation>, ReadError> {
        if len <= SMALL_FRAME_LEN {
            return Ok(None);
        }
        let bytes = len as usize;
        let budget = self.cfg.in_flight_budget;
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&n| n <= budget)
            })
            .map(|_| {
                Some(Reservation {
                    budget: self.in_flight.clone(),
                    bytes,
                })
            })
            .map_err(|held| ReadError::Busy { len, held, budget })
    }
}

/// Why a request frame was not read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// The peer closed the connection between frames, or was idle too long: close quietly.
    #[error("closed")]
    Closed,
    #[error("frame of {0} bytes exceeds the limit of {1} bytes")]
    TooLarge(u32, u32),
    #[error(
        "busy: a {len}-byte request does not fit beside the {held} bytes of large requests \
         already being read (limit {budget}); retry later"
    )]
    Busy {
        len: u32,
        held: usize,
        budget: usize,
    },
    #[error(
        "busy: memory for a {len}-byte request could not be allocated; retry later, or send \
         smaller requests"
    )]
    NoMemory { len: u32 },
    #[error("the request did not arrive within {} s; closing the connection", .0.as_secs())]
    TimedOut(Duration),
    #[error("the connection broke in the middle of a request: {0}")]
    Io(io::Error),
}

impl ReadError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReadError::TooLarge(..) => ErrorKind::TooLarge,
            ReadError::Busy { .. } | ReadError::NoMemory { .. } => ErrorKind::Busy,
            ReadError::Closed | ReadError::TimedOut(_) | ReadError::Io(_) => ErrorKind::Incomplete,
        }
    }
}

fn serve_connection<S: Service>(service: &S, mut conn: UnixStream, limits: &Limits) {
    if conn
        .set_write_timeout(Some(limits.cfg.idle_timeout))
        .is_err()
    {
        return;
    }
    loop {
        let response = match read_request(&mut conn, limits) {
            Ok((body, _reservation)) => respond(service, &body),
            Err(ReadError::Closed) => return,
            Err(e) => {
                let _ = write_frame(&mut conn, &service.error(e.kind(), e.to_string()));
                return;
            }
        };
        if write_frame(&mut conn, &response).is_err() {
            return;
        }
    }
}

/// Reads one request frame under the limits: length checked first, budget reserved for large
/// frames, body read as it arrives, the whole frame within the idle timeout.
fn read_request(
    conn: &mut UnixStream,
    limits: &Limits,
) -> Result<(Vec<u8>, Option<Reservation>), ReadError> {
    let timeout = limits.cfg.idle_timeout;
    let mut len_buf = [0u8; 4];
    let deadline = Instant::now() + timeout;
    match read_until(conn, &mut len_buf, deadline, timeout)? {
        0 => return Err(ReadError::Closed),
        4 => {}
        _ => return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
    }
    let len = u32::from_be_bytes(len_buf);
    if len > limits.cfg.max_frame_len {
        return Err(ReadError::TooLarge(len, limits.cfg.max_frame_len));
    }
    let reservation = limits.reserve(len)?;
    // Exactly `len` once the budget has it: growing by doubling would hold up to twice the
    // reserved bytes (and old and new buffers at once while reallocating). Pages the peer
    // never sends are never touched, so announcing the largest frame and sending nothing costs address
    // space only, and only within the budget.
    let mut body = Vec::new();
    body.try_reserve_exact(len as usize)
        .map_err(|_| ReadError::NoMemory { len })?;
    let mut chunk = [0u8; 16 * 1024];
    let deadline = Instant::now() + timeout;
    while body.len() < len as usize {
        let want = (len as usize - body.len()).min(chunk.len());
        match read_until(conn, &mut chunk[..want], deadline, timeout)? {
            0 => return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
            n => body.extend_from_slice(&chunk[..n]),
        }
    }
    Ok((body, reservation))
}

/// Fills `buf` (or stops at end of stream), giving up at `deadline`. Returns the bytes read.
/// Hitting the deadline with nothing read is an idle connection ([`ReadError::Closed`]); with
/// part of `buf` read, a frame that is too slow.
fn read_until(
    conn: &mut UnixStream,
    buf: &mut [u8],
    deadline: Instant,
    timeout: Duration,
) -> Result<usize, ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(filled, timeout));
        }
        conn.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
        match conn.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out(filled, timeout))
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(filled)
}

fn timed_out(filled: usize, timeout: Duration) -> ReadError {
    if filled == 0 {
        ReadError::Closed
    } else {
        ReadError::TimedOut(timeout)
    }
}

/// The one field the server reads before decoding a request. Every other field is skipped
/// without being built, so checking the version costs no allocation per field.
#[derive(Deserialize)]
struct VersionOnly {
    version: Option<serde_json::Value>,
}

/// Decodes and answers one request body. The version is checked before the body is decoded,
/// so an old client gets a version error rather than a confusing decode error; a body that is
/// not JSON at all is told so, with serde's position.
pub fn respond<S: Service>(service: &S, body: &[u8]) -> S::Response {
    // What every client sends: `"version"` first, ours. Then the body is decoded at once,
    // without the pass over all of it that finding the version anywhere takes (~11 ms for a
    // 14 MB configuration). A body that does not decode gets the checks below, so the answer
    // is the one it always was (a request type refuses a second `"version"`, as derived
    // structs do, so the one seen here is the one the checks would find).
    if leading_version(body) == Some(u64::from(PROTOCOL_VERSION)) {
        if let Ok(req) = serde_json::from_slice::<S::Request>(body) {
            return service.handle(req);
        }
    }
    // A derived struct would also accept a JSON array (fields by position): look first.
    let is_object = body.trim_ascii_start().starts_with(b"{");
    let parsed = if is_object {
        serde_json::from_slice::<VersionOnly>(body).map(|v| v.version)
    } else {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map(|_| None)
    };
    let version = match parsed {
        Ok(version) if is_object => version,
        Err(e) if e.is_syntax() || e.is_eof() => {
            return service.error(
                ErrorKind::Malformed,
                format!("malformed request: invalid JSON: {e}"),
            )
        }
        Ok(_) | Err(_) => {
            return service.error(
                ErrorKind::Malformed,
                "malformed request: expected a JSON object with \"version\" and \"request\"".into(),
            )
        }
    };
    match version.as_ref().map(|v| v.as_u64()) {
        Some(Some(v)) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(Some(v)) => {
            return service.error(
                ErrorKind::UnsupportedVersion,
                format!(
                    "protocol version {v} is not supported; this {} speaks {PROTOCOL_VERSION}",
                    S::NAME
                ),
            )
        }
        Some(None) => {
            return service.error(
                ErrorKind::Malformed,
                format!(
                    "malformed request: \"version\" must be a number (this {} speaks \
                     {PROTOCOL_VERSION})",
                    S::NAME
                ),
            )
        }
        None => {
            return service.error(
                ErrorKind::Malformed,
                "malformed request: missing \"version\"".into(),
            )
        }
    }
    match serde_json::from_slice::<S::Request>(body) {
        Ok(req) => service.handle(req),
        Err(e) => service.error(ErrorKind::Malformed, format!("malformed request: {e}")),
    }
}

/// The version when it is the body's first key, written as a plain integer; `None` when
/// finding it would take more than a look at the first bytes.
fn leading_version(body: &[u8]) -> Option<u64> {
    let value = (body
        .trim_ascii_start()
        .strip_prefix(b"{")?
        .trim_ascii_start())
    .strip_prefix(b"\"version\"")?
    .trim_ascii_start()
    .strip_prefix(b":")?
    .trim_ascii_start();
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, after) = value.split_at(digits);
    let plain = (1..=19).contains(&digits) && (digits == 1 || number[0] != b'0');
    if !plain || !matches!(after.trim_ascii_start().first(), Some(b',' | b'}')) {
        return None;
    }
    std::str::from_utf8(number).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
