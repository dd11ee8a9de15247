use super::*;
use crate::framing::read_frame;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Mutex;

/// A service that echoes `text` and keeps its log lines.
#[derive(Default)]
struct Echo {
    log: Mutex<Vec<String>>,
}

#[derive(Deserialize)]
struct EchoRequest {
    #[allow(dead_code)]
    version: u32,
    text: String,
}

impl Service for Echo {
    type Request = EchoRequest;
    type Response = Value;
    const NAME: &'static str = "echo";
    fn handle(&self, request: EchoRequest) -> Value {
        json!({ "echo": request.text })
    }
    fn error(&self, kind: ErrorKind, message: String) -> Value {
        json!({ "error": message, "kind": format!("{kind:?}") })
    }
    fn log(&self, message: &str) {
        self.log.lock().unwrap().push(message.to_string());
    }
}

/// A listener whose first accepts fail with the given errors.
struct Flaky {
    errors: Mutex<Vec<io::Error>>,
    inner: UnixListener,
}

impl Accept for Flaky {
    fn accept_one(&self) -> io::Result<UnixStream> {
        if let Some(e) = self.errors.lock().unwrap().pop() {
            return Err(e);
        }
        self.inner.accept_one()
    }
}

struct Server {
    path: std::path::PathBuf,
    echo: Arc<Echo>,
    limits: Arc<Limits>,
    _dir: tempfile::TempDir,
}

fn start(cfg: ServerConfig, errors: Vec<io::Error>) -> Server {
    start_spawning(cfg, errors, spawn_thread)
}

/// [`start`], with connection threads started by `spawn`.
fn start_spawning(
    cfg: ServerConfig,
    errors: Vec<io::Error>,
    spawn: impl Fn(String, Connection) -> io::Result<()> + Send + 'static,
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = Flaky {
        errors: Mutex::new(errors),
        inner: bind::<Echo>(&path).unwrap(),
    };
    let echo = Arc::new(Echo::default());
    let service = echo.clone();
    let limits = Arc::new(Limits::new(cfg));
    let limits_for_server = limits.clone();
    std::thread::spawn(move || serve_on(service, &listener, limits_for_server, &spawn));
    Server {
        path,
        echo,
        limits,
        _dir: dir,
    }
}

/// Polls `done` every 10 ms until it holds, failing with `what` after 10 s.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ask(conn: &mut UnixStream, text: &str) -> Value {
    write_frame(conn, &json!({"version": PROTOCOL_VERSION, "text": text})).unwrap();
    read_frame(conn).unwrap()
}

/// [`ask`] on a connection the server may refuse and close before the request is even
/// written (then writing fails with EPIPE): the answer, or what went wrong.
fn try_ask(conn: &mut UnixStream, text: &str) -> Result<Value, String> {
    write_frame(conn, &json!({"version": PROTOCOL_VERSION, "text": text}))
        .map_err(|e| e.to_string())?;
    read_frame(conn).map_err(|e| e.to_string())
}

fn connect(s: &Server) -> UnixStream {
    let conn = UnixStream::connect(&s.path).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn
}

fn emfile() -> io::Error {
    io::Error::from_raw_os_error(24)
}

#[test]
fn transient_accept_failures_are_retried_logged_once_and_serving_goes_on() {
    let errors = (0..20)
        .map(|i| match i % 3 {
            0 => emfile(),
            1 => io::Error::from_raw_os_error(105), // ENOBUFS
            _ => io::Error::from(io::ErrorKind::ConnectionAborted),
        })
        .collect();
    let s = start(ServerConfig::default(), errors);
    // The 20 failures are all spent on this connection's accept, then it is served.
    let mut conn = connect(&s);
    assert_eq!(ask(&mut conn, "hi"), json!({"echo": "hi"}));
    let log = s.echo.log.lock().unwrap().clone();
    assert_eq!(
        log.len(),
        2,
        "one line per episode, not per failure: {log:?}"
    );
    assert!(log[0].contains("accepting a connection failed"), "{log:?}");
    assert!(log[1].contains("again after 20 failed attempts"), "{log:?}");
}

#[test]
fn a_listener_that_cannot_work_ends_serve_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Flaky {
        errors: Mutex::new(vec![io::Error::from_raw_os_error(EINVAL)]),
        inner: bind::<Echo>(&dir.path().join("s.sock")).unwrap(),
    };
    let err = serve_with(
        Arc::new(Echo::default()),
        &listener,
        ServerConfig::default(),
    )
    .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(EINVAL));
}

#[test]
fn backoff_grows_from_10_to_100_ms_and_logs_only_the_first_failure() {
    let mut b = Backoff::default();
    let pauses: Vec<_> = (0..6).map(|_| b.failed()).collect();
    let ms: Vec<u128> = pauses.iter().map(|(p, _)| p.as_millis()).collect();
    assert_eq!(ms, vec![10, 20, 40, 80, 100, 100]);
    assert_eq!(pauses.iter().filter(|(_, log)| *log).count(), 1);
    assert_eq!(b.succeeded(), 6);
    assert!(b.failed().1, "a new episode logs again");
}

#[test]
fn connections_over_the_cap_are_told_so_and_closed_and_a_freed_slot_is_reused() {
    let cfg = ServerConfig {
        max_connections: 2,
        ..Default::default()
    };
    let s = start(cfg, vec![]);
    let mut a = connect(&s);
    let mut b = connect(&s);
    // Both are served (so both hold a slot before the third arrives).
    assert_eq!(ask(&mut a, "a"), json!({"echo": "a"}));
    assert_eq!(ask(&mut b, "b"), json!({"echo": "b"}));
    let mut c = connect(&s);
    let refusal: Value = read_frame(&mut c).unwrap();
    let msg = refusal["error"].as_str().unwrap();
    assert!(
        msg.starts_with("too many connections") && msg.contains("limit is 2"),
        "{msg}"
    );
    assert_eq!(
        refusal["kind"], "Busy",
        "a full server is a transient refusal"
    );
    let mut rest = Vec::new();
    assert_eq!(
        c.read_to_end(&mut rest).unwrap(),
        0,
        "closed after the refusal"
    );
    drop(a);
    // The slot is freed when the server notices the close; retry until then. A refused
    // connection may be closed before the request is even written (EPIPE): not yet, too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = try_ask(&mut connect(&s), "d");
        if answer.as_ref() == Ok(&json!({"echo": "d"})) {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {answer:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let cfg = ServerConfig {
        idle_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let s = start(cfg, vec![]);
    let mut conn = connect(&s);
    assert_eq!(ask(&mut conn, "x"), json!({"echo": "x"}));
    let started = Instant::now();
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0, "closed quietly");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[test]
fn a_frame_trickling_in_is_cut_off_at_the_timeout() {
    let cfg = ServerConfig {
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let s = start(cfg, vec![]);
    let mut conn = connect(&s);
    conn.write_all(&100u32.to_be_bytes()).unwrap();
    // One byte every 100 ms: each read succeeds within the timeout, the frame never does.
    let mut writer = conn.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..20 {
            if writer.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let started = Instant::now();
    let answer: Value = read_frame(&mut conn).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let msg = answer["error"].as_str().unwrap();
    assert!(msg.contains("did not arrive within"), "{msg}");
    assert_eq!(
        answer["kind"], "Incomplete",
        "a slow frame is worth sending again"
    );
    trickle.join().unwrap();
}

#[test]
fn large_frames_beyond_the_budget_are_refused_before_their_body_is_read() {
    let cfg = ServerConfig {
        in_flight_budget: 1024 * 1024,
        ..Default::default()
    };
    let s = start(cfg, vec![]);
    // A announces 900 KiB and sends none of it: its reservation is held.
    let mut a = connect(&s);
    a.write_all(&(900u32 * 1024).to_be_bytes()).unwrap();
    wait_for("A's reservation", || {
        s.limits.in_flight.load(Ordering::Acquire) == 900 * 1024
    });
    // B's 900 KiB does not fit beside it and is refused at once.
    let mut b = connect(&s);
    b.write_all(&(900u32 * 1024).to_be_bytes()).unwrap();
    let refusal: Value = read_frame(&mut b).unwrap();
    let msg = refusal["error"].as_str().unwrap();
    assert!(
        msg.starts_with("busy:") && msg.contains("retry later"),
        "{msg}"
    );
    assert_eq!(refusal["kind"], "Busy");
    // Small requests are never refused for the budget.
    let mut c = connect(&s);
    assert_eq!(ask(&mut c, "small"), json!({"echo": "small"}));
    // Once A's frame is done, its bytes go back to the budget and B's size fits again.
    let text = "y".repeat(900 * 1024 - 40);
    write_frame(&mut c, &json!({"version": PROTOCOL_VERSION, "text": ""})).unwrap();
    let _: Value = read_frame(&mut c).unwrap();
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = try_ask(&mut connect(&s), &text);
        if answer
            .as_ref()
            .is_ok_and(|a| a["echo"].as_str().is_some_and(|t| t.len() == text.len()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "budget never returned: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_oversized_length_is_refused_and_the_connection_closed() {
    let cfg = ServerConfig {
        max_frame_len: 1000,
        ..Default::default()
    };
    let s = start(cfg, vec![]);
    let mut conn = connect(&s);
    conn.write_all(&1001u32.to_be_bytes()).unwrap();
    let answer: Value = read_frame(&mut conn).unwrap();
    assert_eq!(
        answer["error"],
        "frame of 1001 bytes exceeds the limit of 1000 bytes"
    );
    assert_eq!(answer["kind"], "TooLarge");
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn invalid_json_is_called_invalid_json_with_its_position() {
    let echo = Echo::default();
    let msg = |body: &str| {
        respond(&echo, body.as_bytes())["error"]
            .as_str()
            .map(str::to_string)
    };
    let invalid = msg("{not json").unwrap();
    assert_eq!(
        invalid,
        "malformed request: invalid JSON: key must be a string at line 1 column 2"
    );
    assert!(msg("{\"version\": 1,").unwrap().contains("invalid JSON"));
    assert_eq!(
        msg(r#"{"request":"status"}"#).unwrap(),
        "malformed request: missing \"version\""
    );
    assert!(msg("[1, 2]").unwrap().contains("expected a JSON object"));
    assert!(msg(r#"{"version":"1"}"#)
        .unwrap()
        .contains("\"version\" must be a number"));
    assert_eq!(
        msg(r#"{"version":7}"#).unwrap(),
        "protocol version 7 is not supported; this echo speaks 1"
    );
    let kind = |body: &str| respond(&echo, body.as_bytes())["kind"].clone();
    assert_eq!(kind("{not json"), "Malformed");
    assert_eq!(kind(r#"{"version":1,"txt":"typo"}"#), "Malformed");
    assert_eq!(kind(r#"{"version":7}"#), "UnsupportedVersion");
    assert_eq!(
        respond(&echo, br#"{"version":1,"text":"ok"}"#),
        json!({"echo": "ok"})
    );
}

#[test]
fn only_busy_and_incomplete_refusals_are_transient() {
    let transient: Vec<_> = [
        ErrorKind::Malformed,
        ErrorKind::UnsupportedVersion,
        ErrorKind::TooLarge,
        ErrorKind::Busy,
        ErrorKind::Incomplete,
    ]
    .into_iter()
    .filter(|k| k.is_transient())
    .collect();
    assert_eq!(transient, vec![ErrorKind::Busy, ErrorKind::Incomplete]);
}

#[test]
fn failed_thread_starts_pause_the_accept_loop_in_an_episode_of_their_own() {
    let failures = Arc::new(AtomicUsize::new(0));
    let failures_in_spawn = failures.clone();
    let s = start_spawning(ServerConfig::default(), vec![], move |name, work| {
        if failures_in_spawn.fetch_add(1, Ordering::SeqCst) < 3 {
            return Err(io::Error::from_raw_os_error(11)); // EAGAIN, as at the thread limit
        }
        spawn_thread(name, work)
    });
    let started = Instant::now();
    // The first three connections are closed unanswered; the fourth is served.
    for _ in 0..3 {
        let mut conn = connect(&s);
        let mut rest = Vec::new();
        assert_eq!(
            conn.read_to_end(&mut rest).unwrap(),
            0,
            "closed, not served"
        );
    }
    let mut conn = connect(&s);
    assert_eq!(ask(&mut conn, "hi"), json!({"echo": "hi"}));
    // The loop paused 10 + 20 + 40 ms before the accepts after the failures.
    assert!(
        started.elapsed() >= Duration::from_millis(70),
        "{:?}",
        started.elapsed()
    );
    let log = s.echo.log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            "starting a thread for a connection failed: Resource temporarily unavailable \
             (os error 11); dropping it"
                .to_string(),
            "starting connection threads again after 3 failed attempts".to_string(),
        ],
        "no accept failed, so no accept episode is logged"
    );
}

#[test]
fn a_large_frame_is_read_into_a_buffer_no_bigger_than_its_reservation() {
    let limits = Limits::new(ServerConfig::default());
    let (mut client, mut server) = UnixStream::pair().unwrap();
    let len: u32 = 900 * 1024;
    // A length just past a power of two is where growing by doubling overshoots most.
    let writer = std::thread::spawn(move || {
        client.write_all(&len.to_be_bytes()).unwrap();
        client.write_all(&vec![b' '; len as usize]).unwrap();
    });
    let (body, reservation) = read_request(&mut server, &limits).unwrap();
    writer.join().unwrap();
    let reserved = reservation.expect("a large frame reserves").bytes;
    assert_eq!(body.len(), len as usize);
    assert!(
        body.capacity() <= reserved,
        "buffer of {} bytes for a reservation of {reserved}",
        body.capacity()
    );
}

#[test]
fn the_version_is_read_from_the_first_bytes_only_when_it_is_plainly_there() {
    assert_eq!(leading_version(br#"{"version":1,"text":"x"}"#), Some(1));
    assert_eq!(leading_version(b" {\n \"version\" : 12 }"), Some(12));
    for body in [
        &br#"{"text":"x","version":1}"#[..],
        br#"{"version":1.0}"#,
        br#"{"version":01}"#,
        br#"{"version":-1}"#,
        br#"{"version":"1"}"#,
        br#"{"version":1"#,
        br#"{"version":99999999999999999999}"#,
        br#"["version",1]"#,
        b"",
    ] {
        assert_eq!(
            leading_version(body),
            None,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn a_body_with_the_version_first_gets_the_answers_any_body_gets() {
    let echo = Echo::default();
    let answer = |body: &str| respond(&echo, body.as_bytes());
    assert_eq!(
        answer(r#"{"version":1,"text":"ok"}"#),
        json!({"echo": "ok"})
    );
    // A decoding error before a syntax error: still "invalid JSON", as the pass over the
    // whole body finds.
    let invalid = answer(r#"{"version":1,"text":5,"#);
    assert!(
        invalid["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed request: invalid JSON: EOF while parsing"),
        "{invalid}"
    );
    // A second version: refused as a malformed object, whatever it says.
    let twice = answer(r#"{"version":1,"text":"x","version":1}"#);
    assert_eq!(
        twice["error"],
        "malformed request: expected a JSON object with \"version\" and \"request\""
    );
    assert_eq!(
        answer(r#"{"version":1,"txt":"typo"}"#)["error"],
        "malformed request: missing field `text` at line 1 column 26"
    );
}
