# Writes a crafted GSO super-frame (with a virtio-net header) into tap B of a namespace; the
# kernel forwards it out of tap C, which offers no offloads, so the kernel segments it in
# software; prints the super-frame and then every frame read from tap C, hex, one per line.
# Run as root, by hand: ip netns add g; ip netns exec g python3 capture.py tcp|udp PAYLOAD_LEN GSO_SIZE; ip netns del g
import os, fcntl, struct, subprocess, sys, time, select
TUNSETIFF=0x400454ca; TUNSETOFFLOAD=0x400454d0
IFF_TAP=0x2; IFF_NO_PI=0x1000; IFF_VNET_HDR=0x4000
def sh(c): subprocess.run(c, shell=True, check=True)
def tap(name, vnet):
    fd=os.open('/dev/net/tun', os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', name.encode(), IFF_TAP|IFF_NO_PI|(IFF_VNET_HDR if vnet else 0)))
    if vnet: fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
    return fd
kind=sys.argv[1]
b=tap('pskb', True); c=tap('pskc', True)
sh('sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0')
for n,mac,net in [('pskb','02:00:00:00:0b:01','10.9.1'),('pskc','02:00:00:00:0c:01','10.9.2')]:
    sh(f'sysctl -qw net.ipv6.conf.default.disable_ipv6=1')
    sh(f'ip link set {n} address {mac} up'); sh(f'ip addr add {net}.1/24 dev {n}')
    sh(f'sysctl -qw net.ipv4.conf.{n}.rp_filter=0')
sh('ip neigh add 10.9.2.2 lladdr 02:00:00:00:0c:02 dev pskc')
sh('ip neigh add 10.9.1.2 lladdr 02:00:00:00:0b:02 dev pskb')
time.sleep(0.3)
for fd in (b,c):
    while select.select([fd],[],[],0.05)[0]: os.read(fd, 70000)
def csum(data):
    if len(data)%2: data+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(data)//2), data))
    while s>>16: s=(s&0xffff)+(s>>16)
    return s
src=bytes([10,9,1,2]); dst=bytes([10,9,2,2])
payload=bytes((i*13+5)&0xff for i in range(int(sys.argv[2])))
gso=int(sys.argv[3])
if kind=='tcp':
    opts=bytes([1,1,8,10,0,0,0,1,0,0,0,2])
    flags=0x10|0x08|0x01|0x80  # ACK PSH FIN CWR
    l4=struct.pack('!HHIIBBHHH',40000,5201,0xfffff000,77,(32//4)<<4,flags,501,0,0)+opts
    proto=6; coff=16; gtype=1|0x80
else:
    l4=struct.pack('!HHHH',12345,4433,8+len(payload),0); proto=17; coff=6; gtype=5
seg=l4+payload
ph=csum(src+dst+struct.pack('!BBH',0,proto,len(seg)))
seg=seg[:coff]+struct.pack('!H',ph)+seg[coff+2:]
ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(seg),0xfffe,0x4000,64,proto,0,src,dst)
ip=ip[:10]+struct.pack('!H',0xffff ^ csum(ip))+ip[12:]
frame=bytes.fromhex('020000000b01')+bytes.fromhex('020000000b02')+b'\x08\x00'+ip+seg
hdr=struct.pack('<BBHHHH',1,gtype,14+20+len(l4),gso,34,coff)
os.write(b, hdr+frame)
print(frame.hex())
while select.select([c],[],[],0.3)[0]:
    print(os.read(c, 70000)[10:].hex())
