//! Services for the integration tests: manifests applied through podswitch-control's socket
//! (as `podswitchctl apply -f` sends them), waits on podswitchd's own view of a Service, and
//! small servers and clients that say which backend answered and whom it saw.
//!
//! A backend server runs inside a pod's namespace and answers each connection (or datagram)
//! with one line, `<its name> <the peer address it sees>`; a TCP connection then echoes what it
//! is sent until the client closes, so one server serves both tallies of many short
//! connections and long-lived connections that must keep exchanging data.

mod manifest;
mod outside;

pub use manifest::{ServiceManifest, SliceEndpoint};
pub use outside::Outside;

use crate::control::ControlNode;
use crate::{Netns, Node};
use podswitch_proto::control::{ControlRequestBody, ControlResponse};
use podswitch_proto::{
    ConntrackDump, ConntrackFilter, RequestBody, Response, ServiceInfo, TracePacket, TraceResult,
};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The Service CIDR the harness starts podswitch-control with (`--service-cidr`).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The address control gives NodePort traffic inside the switch: the last host address of
/// [`SERVICE_CIDR`] (see `NodeSpec::node_port_ip`).
pub const NODE_PORT_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 255, 254);

/// How long a client waits for a connection or an answer that should come.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a wait for podswitchd to hold a Service may take.
const PROGRAMMED_TIMEOUT: Duration = Duration::from_secs(15);

impl Node {
    /// Every Service port podswitchd holds.
    pub fn services(&self) -> Vec<ServiceInfo> {
        match self.request(RequestBody::Services) {
            Response::Services { services } => services,
            other => panic!("unexpected response to services: {other:?}"),
        }
    }

    /// Conntrack entries matching `filter`.
    pub fn conntrack(&self, filter: ConntrackFilter) -> ConntrackDump {
        match self.request(RequestBody::Conntrack(filter)) {
            Response::Conntrack(dump) => dump,
            other => panic!("unexpected response to conntrack: {other:?}"),
        }
    }

    /// Waits until drop reason `reason` has counted more than `than`; returns the count (the
    /// last one read if the deadline passed, for the caller's assertion to show).
    pub fn drops_above(&self, reason: &str, than: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = self.drops(reason);
            if n > than || Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl ControlNode {
    /// `podswitchctl apply -f`: the summary lines, or control's error message.
    pub fn apply_manifests(&self, yaml: &str) -> Result<Vec<String>, String> {
        match self.control(ControlRequestBody::Apply {
            manifests: yaml.to_string(),
        }) {
            ControlResponse::Applied { summary } => Ok(summary),
            ControlResponse::Error { message, .. } => Err(message),
            other => panic!("unexpected response to apply: {other:?}"),
        }
    }

    /// Applies `svc` with `endpoints` (panicking with control's message if it is refused) and
    /// waits until podswitchd holds exactly those endpoints, all taking new connections.
    pub fn apply_service(&self, svc: &ServiceManifest, endpoints: &[Ipv4Addr]) -> ServiceInfo {
        if let Err(e) = self.apply_manifests(&svc.yaml(endpoints)) {
            panic!(
                "apply of {} refused: {e}\n{}",
                svc.name,
                svc.yaml(endpoints)
            );
        }
        self.wait_for_service(svc, &svc.backends(endpoints))
    }

    /// Waits until podswitchd holds Service port `svc` with exactly `backends`, each selected
    /// for ClusterIP traffic; panics with what it holds and both logs after a deadline.
    pub fn wait_for_service(
        &self,
        svc: &ServiceManifest,
        backends: &[SocketAddrV4],
    ) -> ServiceInfo {
        self.wait_for_service_where(svc, backends, |info| {
            info.selected.iter().all(|s| s.internal)
        })
    }

    /// Waits until podswitchd holds Service port `svc` with exactly `backends` (whatever their
    /// conditions) and `also` holds of it; panics with what it holds and both logs after a
    /// deadline.
    pub fn wait_for_service_where(
        &self,
        svc: &ServiceManifest,
        backends: &[SocketAddrV4],
        also: impl Fn(&ServiceInfo) -> bool,
    ) -> ServiceInfo {
        let mut want: Vec<SocketAddrV4> = backends.to_vec();
        want.sort();
        let deadline = Instant::now() + PROGRAMMED_TIMEOUT;
        loop {
            let services = self.node.services();
            if let Some(info) = services.iter().find(|i| svc.is(i)) {
                let mut have: Vec<SocketAddrV4> = info
                    .spec
                    .backends
                    .iter()
                    .map(|b| SocketAddrV4::new(b.ip, b.port))
                    .collect();
                have.sort();
                if have == want && also(info) {
                    return info.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "podswitchd never held {} as wanted with endpoints {want:?}: it holds \
                 {services:#?}\ncontrol log:\n{}\npodswitchd log:\n{}",
                svc.name,
                self.control_log(),
                self.node.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Applies `yaml` (panicking with control's message if it is refused), then waits as
    /// [`Self::wait_for_service_where`] does.
    pub fn apply_and_wait(
        &self,
        yaml: &str,
        svc: &ServiceManifest,
        backends: &[SocketAddrV4],
        also: impl Fn(&ServiceInfo) -> bool,
    ) -> ServiceInfo {
        if let Err(e) = self.apply_manifests(yaml) {
            panic!("apply of {} refused: {e}\n{yaml}", svc.name);
        }
        self.wait_for_service_where(svc, backends, also)
    }

    /// The switch port of the pod attached as container `container_id`.
    pub fn port_of(&self, container_id: &str) -> String {
        let pods = self.pods();
        pods.iter()
            .find(|p| p.container_id == container_id)
            .map(|p| p.port.clone())
            .unwrap_or_else(|| panic!("no pod {container_id} in {pods:?}"))
    }
}

impl Node {
    /// `podswitchctl trace`: runs `packet` through the live pipeline without sending it.
    pub fn trace(&self, packet: TracePacket) -> TraceResult {
        match self.request(RequestBody::Trace(packet.clone())) {
            Response::Trace(result) => result,
            other => panic!("unexpected response to trace of {packet:?}: {other:?}"),
        }
    }

    /// The endpoint the service stage picks for a new connection described by `packet`, as
    /// the trace's service step names it (`DNAT to endpoint IP:PORT`), and how
    /// (`maglev`, `random`, `session affinity`); `None` when no Service port translates it.
    pub fn traced_endpoint(&self, packet: TracePacket) -> Option<(SocketAddrV4, String)> {
        let result = self.trace(packet);
        let note = result
            .steps
            .iter()
            .find(|s| s.stage == "service")
            .map(|s| s.note.as_str())?;
        let rest = note.split_once("DNAT to endpoint ")?.1;
        let (endpoint, rest) = rest.split_once(' ')?;
        let how = rest.rsplit_once("by ")?.1;
        Some((endpoint.parse().ok()?, how.to_string()))
    }
}

/// What a backend answered to one connection or datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The name the backend server was started with.
    pub backend: String,
    /// The client's address as the backend saw it.
    pub seen_peer: SocketAddr,
    /// The client socket's own address (`getsockname`).
    pub local: SocketAddr,
    /// The address the client's socket is connected to, or the datagram came from
    /// (`getpeername`, `recvfrom`).
    pub remote: SocketAddr,
}

fn parse_greeting(line: &str) -> io::Result<(String, SocketAddr)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("greeting {line:?}"));
    let (name, peer) = line.trim_end().split_once(' ').ok_or_else(bad)?;
    Ok((name.to_string(), peer.parse().map_err(|_| bad())?))
}

/// A TCP connection to a Service, with the backend's greeting read.
#[derive(Debug)]
pub struct ServiceConn {
    /// The socket (created in the client's namespace).
    pub stream: TcpStream,
    /// Who answered.
    pub answer: Answer,
}

impl ServiceConn {
    /// Sends `data` and reads its echo back.
    pub fn echo(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        self.stream.write_all(data)?;
        let mut back = vec![0; data.len()];
        self.stream.read_exact(&mut back)?;
        Ok(back)
    }

    /// Ends the connection the orderly way: FIN from us, then the backend's FIN (EOF) with
    /// nothing else before it.
    pub fn finish(mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest)?;
        if rest.is_empty() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} bytes after our FIN", rest.len()),
            ))
        }
    }
}

/// Connects from `ns` to `to` (a connect timeout of `timeout`) and reads the greeting.
pub fn connect_with(ns: &Netns, to: SocketAddr, timeout: Duration) -> io::Result<ServiceConn> {
    ns.enter(|| connect_here(to, timeout))
}

/// [`connect_with`] with the harness's answer timeout (5 s).
pub fn connect(ns: &Netns, to: SocketAddr) -> io::Result<ServiceConn> {
    connect_with(ns, to, ANSWER_TIMEOUT)
}

/// Connects from the calling thread's namespace.
fn connect_here(to: SocketAddr, timeout: Duration) -> io::Result<ServiceConn> {
    let mut stream = TcpStream::connect_timeout(&to, timeout)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    // Byte by byte: the greeting is short, and nothing past its newline may be consumed.
    let mut line = Vec::new();
    let mut byte = [0u8];
    while line.last() != Some(&b'\n') {
        if stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed after {:?}", String::from_utf8_lossy(&line)),
            ));
        }
        line.push(byte[0]);
    }
    let (backend, seen_peer) = parse_greeting(&String::from_utf8_lossy(&line))?;
    let answer = Answer {
        backend,
        seen_peer,
        local: stream.local_addr()?,
        remote: stream.peer_addr()?,
    };
    Ok(ServiceConn { stream, answer })
}

/// `n` connections from `ns` to `to`, one after the other, each closed once answered.
pub fn connect_many(ns: &Netns, to: SocketAddr, n: usize) -> Vec<io::Result<Answer>> {
    ns.enter(|| {
        (0..n)
            .map(|_| connect_here(to, ANSWER_TIMEOUT).map(|c| c.answer))
            .collect()
    })
}

/// How many answers each backend gave.
pub fn by_backend<'a>(answers: impl IntoIterator<Item = &'a Answer>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in answers {
        *counts.entry(a.backend.clone()).or_insert(0) += 1;
    }
    counts
}

/// The errors among `results`, summarised (how many, the first few).
pub fn failures<T>(results: &[io::Result<T>]) -> (usize, Vec<String>) {
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| format!("{:?}: {e}", e.kind())))
        .collect();
    (errors.len(), errors.into_iter().take(5).collect())
}

/// One UDP question from `ns` to `to` on a fresh unconnected socket: the answer, with
/// `remote` the address the reply came from. Asks up to `tries` times (UDP is allowed to
/// lose a datagram; a timeout per try makes a dead path fail).
pub fn udp_ask(ns: &Netns, to: SocketAddr, tries: usize) -> io::Result<Answer> {
    udp_ask_with(ns, to, tries, Duration::from_secs(2))
}

/// [`udp_ask`] waiting `per_try` for each answer (short, where silence is the expected
/// outcome: a datagram a policy drops).
pub fn udp_ask_with(
    ns: &Netns,
    to: SocketAddr,
    tries: usize,
    per_try: Duration,
) -> io::Result<Answer> {
    udp_ask_from(ns, 0, to, tries, per_try)
}

/// [`udp_ask_with`] from source port `src_port` (0: any): a chosen 5-tuple, for a test that
/// must know which flow the switch sees.
pub fn udp_ask_from(
    ns: &Netns,
    src_port: u16,
    to: SocketAddr,
    tries: usize,
    per_try: Duration,
) -> io::Result<Answer> {
    ns.enter(|| {
        // Bound to the source address the kernel would pick, so that `local` is a whole
        // address; unconnected, so that a reply from anywhere (not only `to`) is received.
        let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        probe.connect(to)?;
        let socket = UdpSocket::bind((probe.local_addr()?.ip(), src_port))?;
        socket.set_read_timeout(Some(per_try))?;
        let mut last = io::Error::new(io::ErrorKind::TimedOut, "no try");
        for _ in 0..tries {
            socket.send_to(b"who", to)?;
            let mut buf = [0u8; 256];
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let (backend, seen_peer) = parse_greeting(&String::from_utf8_lossy(&buf[..n]))?;
                    return Ok(Answer {
                        backend,
                        seen_peer,
                        local: socket.local_addr()?,
                        remote: from,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    })
}

/// A TCP backend in a pod's namespace, listening on every address of it at `port`; stopped
/// (its accept loop joined) on drop. It borrows the namespace, so the namespace outlives it.
#[derive(Debug)]
pub struct TcpServer<'a> {
    ns: &'a Netns,
    port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl<'a> TcpServer<'a> {
    /// Starts the server; it is listening when this returns.
    pub fn start(ns: &'a Netns, port: u16, name: &str) -> TcpServer<'a> {
        let listener = ns
            .enter(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
            .unwrap_or_else(|e| panic!("{name}: bind :{port} in {}: {e}", ns.name));
        let stop = Arc::new(AtomicBool::new(false));
        let (name, stopping) = (name.to_string(), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let name = name.clone();
                std::thread::spawn(move || serve_tcp(conn, &name));
            }
        });
        TcpServer {
            ns,
            port,
            stop,
            accept: Some(accept),
        }
    }
}

/// Greets, then echoes until the client closes (or a minute of silence).
fn serve_tcp(mut conn: TcpStream, name: &str) {
    let Ok(peer) = conn.peer_addr() else { return };
    if conn
        .write_all(format!("{name} {peer}\n").as_bytes())
        .is_err()
    {
        return;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        if conn.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

impl Drop for TcpServer<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept with a connection of our own.
        let port = self.port;
        let woken = self.ns.enter(|| {
            TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Duration::from_secs(1),
            )
            .is_ok()
        });
        if let (true, Some(accept)) = (woken, self.accept.take()) {
            let _ = accept.join();
        }
    }
}

/// A UDP backend in a pod's namespace on every address at `port`: answers each datagram
/// with its greeting, to the datagram's source. Stopped on drop.
#[derive(Debug)]
pub struct UdpServer<'a> {
    ns: &'a Netns,
    port: u16,
    stop: Arc<AtomicBool>,
    serve: Option<JoinHandle<()>>,
}

impl<'a> UdpServer<'a> {
    /// Starts the server; it is bound when this returns.
    pub fn start(ns: &'a Netns, port: u16, name: &str) -> UdpServer<'a> {
        let socket = ns
            .enter(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
            .unwrap_or_else(|e| panic!("{name}: bind udp :{port} in {}: {e}", ns.name));
        let stop = Arc::new(AtomicBool::new(false));
        let (name, stopping) = (name.to_string(), Arc::clone(&stop));
        let serve = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stopping.load(Ordering::SeqCst) {
                let Ok((_, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if !stopping.load(Ordering::SeqCst) {
                    let _ = socket.send_to(format!("{name} {from}\n").as_bytes(), from);
                }
            }
        });
        UdpServer {
            ns,
            port,
            stop,
            serve: Some(serve),
        }
    }
}

impl Drop for UdpServer<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let port = self.port;
        let woken = self.ns.enter(|| {
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|s| s.send_to(b"stop", (Ipv4Addr::LOCALHOST, port)))
                .is_ok()
        });
        if let (true, Some(serve)) = (woken, self.serve.take()) {
            let _ = serve.join();
        }
    }
}
