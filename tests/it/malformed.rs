//! Malformed frames sent from inside a pod (an AF_PACKET socket on its `eth0`, so the pod's
//! kernel does not tidy them up): the switch must deliver none of them to the other pod and
//! count each under its own drop reason. A well-formed frame sent the same way must arrive, so
//! the test can tell "dropped" from "the receiver saw nothing".

use podswitch_tests::*;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A raw AF_PACKET socket bound to one interface, all protocols.
struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens it on `ifname`; call inside the namespace that holds the interface.
    fn open(ifname: &str) -> PacketSocket {
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
        assert!(
            fd >= 0,
            "socket(AF_PACKET): {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: name is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(index != 0, "no interface {ifname}");
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all;
        addr.sll_ifindex = index as i32;
        // SAFETY: addr is a valid sockaddr_ll and the length says so.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: timeout is a valid timeval and the length says so.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        PacketSocket { fd }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: frame is a valid buffer of frame.len() bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// One frame, or None after the receive timeout.
    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        // SAFETY: buf is a valid writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = usize::try_from(n).ok()?;
        buf.truncate(n);
        Some(buf)
    }
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(mac.split(':')) {
        *o = u8::from_str_radix(part, 16).unwrap();
    }
    out
}

/// The MAC the calling thread's namespace has resolved for `ip` (`/proc/thread-self/net/arp`,
/// which shows the namespace of the thread that reads it).
fn resolved_mac(ip: Ipv4Addr) -> [u8; 6] {
    let table = std::fs::read_to_string("/proc/thread-self/net/arp").unwrap();
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&ip.to_string()))
        .unwrap_or_else(|| panic!("{ip} not resolved:\n{table}"));
    mac_bytes(line.split_whitespace().nth(3).unwrap())
}

/// RFC 1071 checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 frame from A to B through the gateway: IP identification `ident`,
/// header options `options` (a multiple of 4), flags/fragment word `frag`, protocol `proto`,
/// payload `l4`. Lengths and the header checksum are right; the rest is the caller's.
struct Frame {
    src_mac: [u8; 6],
    gw_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
}

impl Frame {
    fn build(&self, ident: u16, options: &[u8], frag: u16, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.gw_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        let header_len = 20 + options.len();
        let total = (header_len + l4.len()) as u16;
        f.push(0x40 | (header_len / 4) as u8);
        f.push(0);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&ident.to_be_bytes());
        f.extend_from_slice(&frag.to_be_bytes());
        f.extend_from_slice(&[64, proto, 0, 0]);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        f.extend_from_slice(options);
        let c = checksum(&f[14..14 + header_len]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(l4);
        f
    }
}

/// A UDP header 4000 → 5000 with length `len` (checksum 0: none), then `payload`.
fn udp(len: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0x0f, 0xa0, 0x13, 0x88];
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

#[test]
fn malformed_frames_from_a_pod_are_not_delivered_and_are_counted_by_reason() {
    if !root_or_skip("malformed_frames_from_a_pod_are_not_delivered_and_are_counted_by_reason") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    let (ok, out) = a.ns.ping(b.ip, &[]);
    assert!(ok, "baseline (and A resolves the gateway): {out}");
    let gw_mac = a.ns.enter(|| resolved_mac(GATEWAY));
    let tx = a.ns.enter(|| PacketSocket::open("eth0"));
    let rx = b.ns.enter(|| PacketSocket::open("eth0"));
    let f = Frame {
        src_mac: mac_bytes(&a.mac),
        gw_mac,
        src: a.ip,
        dst: b.ip,
    };
    const DF: u16 = 0x4000;
    const MF: u16 = 0x2000;
    let payload = udp(16, b"podswitch");
    let good = (0x1000, f.build(0x1000, &[], DF, 17, &payload[..16]));
    let bad: Vec<(u16, &str, Vec<u8>)> = vec![
        (
            0x2001,
            "ipv4_bad_option",
            f.build(0x2001, &[0x88, 0x00, 0x00, 0x00], DF, 17, &payload[..16]),
        ),
        (
            0x2002,
            "ipv4_source_route",
            f.build(
                0x2002,
                &[0x01, 0x83, 0x07, 0x04, 10, 244, 1, 3],
                DF,
                17,
                &payload[..16],
            ),
        ),
        (
            0x2003,
            "ipv4_tiny_fragment",
            // A first TCP fragment of 16 bytes: no flags, no data offset.
            f.build(
                0x2003,
                &[],
                MF,
                6,
                &[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 2, 1, 0],
            ),
        ),
        (
            0x2004,
            "tcp_bad_data_offset",
            f.build(0x2004, &[], DF, 6, &{
                let mut t = [0u8; 20];
                t[..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
                t[12] = 0x40; // 4 words: inside the fixed header
                t[13] = 0x02;
                t
            }),
        ),
        (
            0x2005,
            "udp_bad_length",
            f.build(0x2005, &[], DF, 17, &udp(200, b"short")),
        ),
        (0x2006, "udp_truncated", f.build(0x2006, &[], DF, 17, &[])),
        (
            0x2007,
            "icmp_bad_quote",
            // Time exceeded quoting 28 bytes that are no IPv4 header.
            f.build(0x2007, &[], DF, 1, &{
                let mut m = vec![11u8, 0, 0, 0, 0, 0, 0, 0];
                m.extend_from_slice(&[0xde; 28]);
                let c = checksum(&m);
                m[2..4].copy_from_slice(&c.to_be_bytes());
                m
            }),
        ),
    ];
    let before: Vec<u64> = bad.iter().map(|(_, r, _)| node.drops(r)).collect();
    for (_, _, frame) in &bad {
        tx.send(frame);
    }
    tx.send(&good.1);

    // Collect what reaches B until the good frame has arrived (plus a little longer, so a bad
    // frame sent before it but queued behind it is still seen).
    let mut idents = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut good_seen_at = None;
    while Instant::now() < deadline {
        if good_seen_at.is_some_and(|t: Instant| t.elapsed() > Duration::from_millis(300)) {
            break;
        }
        let Some(frame) = rx.recv() else { continue };
        let is_ipv4_from_a =
            frame.len() >= 34 && frame[12..14] == [0x08, 0x00] && frame[26..30] == a.ip.octets();
        if !is_ipv4_from_a {
            continue;
        }
        let ident = u16::from_be_bytes([frame[18], frame[19]]);
        if ident == good.0 && good_seen_at.is_none() {
            good_seen_at = Some(Instant::now());
        }
        idents.push(ident);
    }
    assert!(
        good_seen_at.is_some(),
        "the well-formed frame must reach pod B (else this test proves nothing); saw {idents:x?}"
    );
    for (ident, reason, _) in &bad {
        assert!(
            !idents.contains(ident),
            "frame {ident:#x} ({reason}) was delivered to pod B"
        );
    }
    for ((_, reason, _), before) in bad.iter().zip(before) {
        let after = node.drops(reason);
        assert_eq!(after, before + 1, "{reason}: {:?}", node.counters().drops);
    }
}
