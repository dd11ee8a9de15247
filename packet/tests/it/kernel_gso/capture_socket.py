# Sends 2500 bytes with UDP_SEGMENT (gso_size 1000) from a namespace through a tap with
# IFF_VNET_HDR and prints what the tap hands its reader, hex, one frame per line.
# Run as root, by hand: ip netns add g; ip netns exec g python3 capture_socket.py uso|none; ip netns del g
import os, fcntl, struct, socket, subprocess, sys, time, select
TUNSETIFF=0x400454ca; TUNSETOFFLOAD=0x400454d0
IFF_TAP=0x2; IFF_NO_PI=0x1000; IFF_VNET_HDR=0x4000
TUN_F_CSUM=1; TUN_F_TSO4=2; TUN_F_TSO6=4; TUN_F_TSO_ECN=8; TUN_F_UFO=0x10; TUN_F_USO4=0x20; TUN_F_USO6=0x40
mode=sys.argv[1]  # 'uso' or 'none'
name='psgso0'
fd=os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', name.encode(), IFF_TAP|IFF_NO_PI|IFF_VNET_HDR))
off = TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6|TUN_F_USO4|TUN_F_USO6 if mode=='uso' else 0
fcntl.ioctl(fd, TUNSETOFFLOAD, off)
def sh(c): subprocess.run(c, shell=True, check=True)
sh(f'ip link set {name} address 02:00:00:00:00:07 up')
sh(f'ip addr add 10.9.0.1/24 dev {name}')
sh(f'ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:09 dev {name}')
sh(f'sysctl -qw net.ipv6.conf.{name}.disable_ipv6=1')
time.sleep(0.3)
# drain anything (none expected with ipv6 off)
while select.select([fd],[],[],0.05)[0]: os.read(fd, 70000)
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('10.9.0.1', 12345))
s.setsockopt(socket.IPPROTO_UDP, 103, 1000)  # UDP_SEGMENT
payload=bytes((i*7+3)&0xff for i in range(2500))
s.sendto(payload, ('10.9.0.2', 4433))
out=[]
while select.select([fd],[],[],0.3)[0]:
    out.append(os.read(fd, 70000))
for o in out: print(o.hex())
