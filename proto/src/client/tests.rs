use super::*;
use crate::framing::read_frame_bytes;
use serde_json::{json, Value};
use std::os::unix::net::UnixListener;
use std::time::Instant;

fn short() -> Duration {
    Duration::from_millis(200)
}

fn ask(socket: &Path, timeout: Duration) -> Result<Value, ClientError> {
    request("testd", socket, timeout, &json!({"version": 1}))
}

#[test]
fn a_missing_socket_is_not_running_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.sock");
    let err = ask(&path, short()).unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    assert!(err.before_request());
    assert_eq!(
        err.to_string(),
        format!(
            "testd is not running: there is no socket at {}",
            path.display()
        )
    );
}

#[test]
fn a_stale_socket_without_listener_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).unwrap());
    let err = ask(&path, short()).unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    assert!(err.to_string().contains("nothing accepts"), "{err}");
}

#[test]
fn a_silent_daemon_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let holder = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(600));
        drop(conn);
    });
    let err = ask(&path, short()).unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string().contains("did not answer within 0.2 s"),
        "{err}"
    );
    holder.join().unwrap();
}

#[test]
fn connecting_to_a_daemon_whose_backlog_is_full_times_out_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    // A listener that never accepts, with the smallest backlog: one connection waits in it,
    // the next connect() blocks in the kernel (as when the daemon is out of descriptors).
    let listener =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&socket2::SockAddr::unix(&path).unwrap())
        .unwrap();
    listener.listen(0).unwrap();
    let mut waiting = Vec::new();
    let started = Instant::now();
    let err = loop {
        match connect("testd", &path, short()) {
            Ok(conn) => waiting.push(conn),
            Err(e) => break e,
        }
        assert!(waiting.len() < 16, "the backlog never filled");
    };
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_hangup_before_the_answer_and_a_garbage_answer_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hangup.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let _ = read_frame_bytes(&mut conn).unwrap();
        drop(conn);
        let (mut conn, _) = listener.accept().unwrap();
        let _ = read_frame_bytes(&mut conn).unwrap();
        write_frame(&mut conn, &json!({"response": "no_such_thing"})).unwrap();
    });
    let err = ask(&path, Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, ClientError::Hangup { .. }), "{err:?}");
    let err = request::<_, u32>("testd", &path, Duration::from_secs(5), &json!({})).unwrap_err();
    assert!(matches!(err, ClientError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("same release"), "{err}");
    server.join().unwrap();
}

#[test]
fn a_kept_connection_closed_by_the_daemon_is_replaced_once_transparently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reuse.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // Answers one request per connection, then closes it (as an idle timeout would).
    let server = std::thread::spawn(move || {
        for n in 0..3u32 {
            let (mut conn, _) = listener.accept().unwrap();
            let _ = read_frame_bytes(&mut conn).unwrap();
            write_frame(&mut conn, &n).unwrap();
        }
    });
    let mut client = Client::new("testd", &path, Duration::from_secs(5));
    let answers: Vec<u32> = (0..3).map(|_| client.call(&json!({})).unwrap()).collect();
    assert_eq!(answers, vec![0, 1, 2]);
    server.join().unwrap();
}

#[test]
fn os_error_text_drops_the_os_error_suffix() {
    let e = io::Error::from_raw_os_error(2);
    assert_eq!(os_error_text(&e), "No such file or directory");
}
