//! The traffic of `benches/e2e/kubeproxy.sh`: UDP datagrams that each open a new connection.
//!
//! `send` writes Ethernet frames on one interface through an AF_PACKET socket (qdisc bypassed,
//! `sendmmsg` in batches): every datagram from a fresh source port, so every one is a conntrack
//! miss and a new NAT binding in whatever forwards it (kernel conntrack behind kube-proxy's
//! rules, or podswitch). A frame the device refuses (a full tap queue) is sent again after
//! 50 µs, so all are delivered; `refused` counts the refusals. The destination is one address,
//! or one drawn at random per packet from a range of consecutive addresses (the Service VIPs).
//! It prints what it sent, the wall time,
//! its own thread's CPU time, and what the backends' interfaces received during that window
//! (`--rx PID:IF`: `/proc/PID/net/dev`, the view of that process's namespace). On a veth the
//! kernel forwards each frame in the sender's own softirq (the frame is processed before
//! `sendmmsg` moves on), so that CPU time covers the whole path when the forwarding is in the
//! kernel.
//!
//! With `--flows N`, source ports cycle over N ports instead: N established connections, the
//! steady flood `benches/e2e/afxdp.sh` forwards (a port-to-port packet rate, not a
//! new-connection one).
//!
//! `sink` binds UDP ports on 0.0.0.0 with the smallest receive buffer and never reads them:
//! datagrams reach a socket (no ICMP port unreachable goes back) and are dropped there.
//!
//! A bench tool, run as root inside network namespaces the script made; it checks its
//! arguments and reports failures, never panics on input.

use std::ffi::CString;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  newconn_udp send --iface IF --dst-mac MAC --src IP --dst IP [--dst-count N] --dport P
                   --packets N [--first-sport P] [--flows N] [--batch N] [--seed S]
                   [--rx PID:IF]...
  newconn_udp sink --ports P[-Q]";

/// Frame: Ethernet 14 + IPv4 20 + UDP 8 + 18 bytes of payload = 60 (the Ethernet minimum).
const FRAME_LEN: usize = 60;
const PAYLOAD_LEN: usize = FRAME_LEN - 14 - 20 - 8;
const ETH_P_IP: u16 = 0x0800;
/// `PACKET_QDISC_BYPASS` from linux/if_packet.h (libc does not export it for every target).
const PACKET_QDISC_BYPASS: libc::c_int = 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("send") => parse_send(&args[1..]).and_then(|cfg| send(&cfg)),
        Some("sink") => parse_sink(&args[1..]).and_then(sink),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("newconn_udp: {e}");
            ExitCode::from(2)
        }
    }
}

#[derive(Debug)]
struct SendConfig {
    iface: String,
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dst_count: u32,
    dport: u16,
    packets: u32,
    first_sport: u16,
    /// 0: a fresh source port per packet; N: source ports cycle over N of them.
    flows: u16,
    batch: usize,
    seed: u64,
    /// Interfaces whose received packets are counted over the sending window: (pid, name),
    /// read from /proc/PID/net/dev, the view of that process's network namespace.
    rx: Vec<(u32, String)>,
}

/// `--flag value` pairs into (flag, value).
fn pairs(args: &[String]) -> Result<Vec<(&str, &str)>, String> {
    if args.len() % 2 != 0 {
        return Err(format!("every flag takes a value\n{USAGE}"));
    }
    Ok(args
        .chunks(2)
        .map(|c| (c[0].as_str(), c[1].as_str()))
        .collect())
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag} takes a number, not '{v}'"))
}

fn parse_send(args: &[String]) -> Result<SendConfig, String> {
    let mut cfg = SendConfig {
        iface: String::new(),
        dst_mac: [0; 6],
        src: Ipv4Addr::UNSPECIFIED,
        dst: Ipv4Addr::UNSPECIFIED,
        dst_count: 1,
        dport: 0,
        packets: 0,
        first_sport: 1024,
        flows: 0,
        batch: 64,
        seed: 0x9e37_79b9_7f4a_7c15,
        rx: Vec::new(),
    };
    for (flag, v) in pairs(args)? {
        match flag {
            "--iface" => cfg.iface = v.to_string(),
            "--dst-mac" => cfg.dst_mac = parse_mac(v)?,
            "--src" => cfg.src = num(flag, v)?,
            "--dst" => cfg.dst = num(flag, v)?,
            "--dst-count" => cfg.dst_count = num(flag, v)?,
            "--dport" => cfg.dport = num(flag, v)?,
            "--packets" => cfg.packets = num(flag, v)?,
            "--first-sport" => cfg.first_sport = num(flag, v)?,
            "--flows" => cfg.flows = num(flag, v)?,
            "--batch" => cfg.batch = num(flag, v)?,
            "--seed" => cfg.seed = num(flag, v)?,
            "--rx" => {
                let (pid, iface) = v
                    .split_once(':')
                    .ok_or_else(|| format!("--rx takes PID:IFACE, not '{v}'"))?;
                cfg.rx.push((num(flag, pid)?, iface.to_string()));
            }
            _ => return Err(format!("unknown flag '{flag}'\n{USAGE}")),
        }
    }
    if cfg.iface.is_empty() || cfg.src.is_unspecified() || cfg.dst.is_unspecified() {
        return Err(format!("--iface, --src and --dst are required\n{USAGE}"));
    }
    if cfg.dport == 0 || cfg.packets == 0 || cfg.dst_count == 0 || cfg.batch == 0 {
        return Err("--dport, --packets, --dst-count and --batch must be above 0".into());
    }
    if cfg.flows > 0 {
        if u32::from(cfg.first_sport) + u32::from(cfg.flows) > 65_536 || cfg.first_sport == 0 {
            return Err("--first-sport + --flows passes port 65535".into());
        }
        return Ok(cfg);
    }
    // Fresh source ports only: a port used twice would be an existing connection.
    if u32::from(cfg.first_sport) + cfg.packets > 65_536 || cfg.first_sport == 0 {
        return Err(format!(
            "--first-sport {} + --packets {} passes port 65535: each packet needs its own \
             source port; send fewer packets per run",
            cfg.first_sport, cfg.packets
        ));
    }
    Ok(cfg)
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("'{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    bytes
        .try_into()
        .map_err(|_| format!("'{s}' is not a MAC address (six bytes)"))
}

fn iface_mac(iface: &str) -> Result<[u8; 6], String> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    parse_mac(text.trim())
}

/// One's-complement sum of 16-bit words (RFC 1071), not yet folded.
fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Fills `f` (FRAME_LEN bytes) with one datagram src:sport → dst:dport, both checksums valid.
fn write_frame(f: &mut [u8], src_mac: &[u8; 6], cfg: &SendConfig, dst: Ipv4Addr, sport: u16) {
    f[0..6].copy_from_slice(&cfg.dst_mac);
    f[6..12].copy_from_slice(src_mac);
    f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&((FRAME_LEN - 14) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&[0, 0]);
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    ip[8] = 64;
    ip[9] = libc::IPPROTO_UDP as u8;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&cfg.src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let ip_sum = fold(sum16(ip));
    ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let udp_len = (8 + PAYLOAD_LEN) as u16;
    let udp = &mut f[34..];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&cfg.dport.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    for (i, b) in udp[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    // Pseudo-header: addresses, protocol, UDP length.
    let pseudo = sum16(&cfg.src.octets())
        + sum16(&dst.octets())
        + u32::from(libc::IPPROTO_UDP as u16)
        + u32::from(udp_len);
    let udp_sum = match fold(pseudo + sum16(udp)) {
        0 => 0xffff, // RFC 768: a computed 0 is sent as all ones
        s => s,
    };
    udp[6..8].copy_from_slice(&udp_sum.to_be_bytes());
}

/// CPU time of the calling thread (user + system, including softirq work the kernel ran in
/// its context), in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn last_os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// An AF_PACKET socket bound to `iface` that only sends, with the qdisc bypassed.
fn packet_socket(iface: &str) -> Result<std::os::fd::OwnedFd, String> {
    use std::os::fd::FromRawFd;
    let name = CString::new(iface).map_err(|_| format!("bad interface name '{iface}'"))?;
    // SAFETY: a plain C string the call only reads.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(last_os_error(&format!("interface '{iface}'")));
    }
    // Protocol 0: the socket receives nothing, it only sends.
    // SAFETY: no pointers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(last_os_error("socket(AF_PACKET) (run as root)"));
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll and the length says so.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        return Err(last_os_error(&format!("bind to {iface}")));
    }
    let one: libc::c_int = 1;
    // SAFETY: `one` is an int that outlives the call; the length says so.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if rc < 0 {
        return Err(last_os_error("PACKET_QDISC_BYPASS"));
    }
    Ok(fd)
}

/// Packets received so far by the `--rx` interfaces, summed.
fn rx_packets(rx: &[(u32, String)]) -> Result<u64, String> {
    let mut total = 0;
    for (pid, iface) in rx {
        let path = format!("/proc/{pid}/net/dev");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
        // "  eth0: rx_bytes rx_packets ..."
        let packets = text
            .lines()
            .filter_map(|l| l.trim_start().split_once(':'))
            .find(|(name, _)| name == iface)
            .and_then(|(_, fields)| fields.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u64>().ok())
            .ok_or_else(|| format!("{path} has no interface '{iface}'"))?;
        total += packets;
    }
    Ok(total)
}

fn send(cfg: &SendConfig) -> Result<(), String> {
    let src_mac = iface_mac(&cfg.iface)?;
    let fd = packet_socket(&cfg.iface)?;
    let batch = cfg.batch;
    let mut frames = vec![[0u8; FRAME_LEN]; batch];
    // SAFETY: iovec and mmsghdr are plain data; zeroed is a valid value, and the pointers are
    // set below to `frames`, which lives until the end of the function and is not moved.
    let mut iovs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; batch];
    // SAFETY: as above.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; batch];
    for i in 0..batch {
        iovs[i].iov_base = frames[i].as_mut_ptr().cast();
        iovs[i].iov_len = FRAME_LEN;
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    let mut rng = cfg.seed | 1;
    let base = u32::from(cfg.dst);
    let mut sport = cfg.first_sport;
    let mut prepared = false;
    let (mut sent, mut refused) = (0u32, 0u32);
    let rx0 = rx_packets(&cfg.rx)?;
    let cpu0 = thread_cpu_ns();
    let t0 = Instant::now();
    while sent < cfg.packets {
        let n = batch.min((cfg.packets - sent) as usize);
        // With flows that divide the batch, every batch is the same: written once.
        let same = cfg.flows > 0 && batch % usize::from(cfg.flows) == 0;
        for f in frames.iter_mut().take(if same && prepared { 0 } else { n }) {
            let dst = if cfg.dst_count == 1 {
                cfg.dst
            } else {
                // xorshift64: cheap, and the same sequence for the same seed.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                Ipv4Addr::from(base + (rng % u64::from(cfg.dst_count)) as u32)
            };
            write_frame(f, &src_mac, cfg, dst, sport);
            sport = sport.wrapping_add(1);
            if cfg.flows > 0 && sport >= cfg.first_sport + cfg.flows {
                sport = cfg.first_sport;
            }
        }
        prepared = true;
        let mut off = 0;
        while off < n {
            // SAFETY: `msgs[off..n]` point at live iovecs and frames (set up above).
            let rc = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    msgs[off..].as_mut_ptr(),
                    (n - off) as u32,
                    0,
                )
            };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    // The device's queue is full (a tap whose reader, the switch, is behind):
                    // wait a little and send the same frame again, so that every datagram
                    // is delivered and the reader stays saturated without the sender spinning.
                    Some(libc::ENOBUFS) | Some(libc::EAGAIN) => {
                        refused += 1;
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    _ => return Err(format!("sendmmsg on {}: {err}", cfg.iface)),
                }
            } else {
                sent += rc as u32;
                off += rc as usize;
            }
        }
    }
    let wall = t0.elapsed();
    let cpu = thread_cpu_ns() - cpu0;
    let rx = rx_packets(&cfg.rx)? - rx0;
    println!(
        "sent={sent} refused={refused} wall_ns={} cpu_ns={cpu} rx_in_window={rx}",
        wall.as_nanos()
    );
    Ok(())
}

fn parse_sink(args: &[String]) -> Result<(u16, u16), String> {
    let mut ports = None;
    for (flag, v) in pairs(args)? {
        match flag {
            "--ports" => {
                let (a, b) = v.split_once('-').unwrap_or((v, v));
                ports = Some((num::<u16>(flag, a)?, num::<u16>(flag, b)?));
            }
            _ => return Err(format!("unknown flag '{flag}'\n{USAGE}")),
        }
    }
    match ports {
        Some((a, b)) if a > 0 && a <= b => Ok((a, b)),
        _ => Err(format!(
            "--ports P or P-Q (P ≤ Q, above 0) is required\n{USAGE}"
        )),
    }
}

fn sink((first, last): (u16, u16)) -> Result<(), String> {
    let mut sockets = Vec::new();
    for port in first..=last {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
            .map_err(|e| format!("binding udp port {port}: {e}"))?;
        let small: libc::c_int = 0; // the kernel rounds it up to its minimum
                                    // SAFETY: `small` is an int that outlives the call; the length says so.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&small as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        sockets.push(s);
    }
    println!("sink: udp ports {first}-{last} bound");
    // Until the script kills it.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
