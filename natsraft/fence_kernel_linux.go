//go:build linux

package natsraft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The kernel side of the fence: the nftables table, the destruction of
// established sockets over sock_diag netlink, and entering the network
// namespace to fence.

// Bits of the TCP flags byte (offset 13 of the header).
const (
	tcpFlagSYN = 0x02
	tcpFlagRST = 0x04
	tcpFlagACK = 0x10
)

// table returns the fence's nftables table.
func (f *KernelFence) table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: f.o.Table}
}

// nft opens an nftables connection to the fence's network namespace; done
// releases the namespace handle.
func (f *KernelFence) nft() (c *nftables.Conn, done func(), err error) {
	if f.o.NetNS == "" {
		c, err = nftables.New()
		return c, func() {}, err
	}
	ns, err := os.Open(f.o.NetNS)
	if err != nil {
		return nil, nil, fmt.Errorf("network namespace: %w", err)
	}
	c, err = nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		ns.Close()
		return nil, nil, err
	}
	return c, func() { ns.Close() }, nil
}

// applyTable replaces the fence's table in one transaction with this one:
//
//	table inet <name> {
//	  chain input {
//	    type filter hook input priority filter
//	    tcp flags & rst != 0 accept
//	    tcp sport|dport <port> reject with tcp reset         (every fenced port)
//	  }
//	  chain output {
//	    type filter hook output priority filter
//	    tcp flags & rst != 0 accept
//	    tcp flags & (syn|ack) == syn tcp sport|dport <port> reject with tcp reset
//	    tcp sport|dport <port> drop
//	  }
//	}
//
// The rst rules come first: without them the resets that the reject rules
// and the destroyed sockets send would themselves be rejected (a reset is
// never answered, so they would be dropped), and the other end would
// learn of the cut only when it next sends and times out.
//
// Outbound, only a new connection (a bare SYN) is rejected, so that the
// local server's dials fail at once; anything else is dropped. A reset
// made by the output hook goes to the local socket, which then closes
// without a word to its peer: a route the local server wrote on between
// the table and killSockets (a quiesce just before the fence sends a burst
// of unsubscriptions) would die here and stay open at the peer, which
// lists it until its next ping, minutes later. Dropped, the write stays
// queued on a live socket, and killSockets destroys it with a reset that
// reaches the peer (and should that reset fall behind the dropped bytes,
// the peer's challenge ACK meets the input chain's reset, which does).
func (f *KernelFence) applyTable() error {
	c, done, err := f.nft()
	if err != nil {
		return err
	}
	defer done()
	t := f.table()
	// Add (a no-op if it exists), delete, add: the batch replaces any
	// earlier version of the table atomically.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"input", nftables.ChainHookInput}, {"output", nftables.ChainHookOutput}} {
		ch := c.AddChain(&nftables.Chain{
			Name:     h.name,
			Table:    t,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  h.hook,
			Priority: nftables.ChainPriorityFilter,
		})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: acceptRSTExprs()})
		out := h.hook == nftables.ChainHookOutput
		for _, port := range f.ports() {
			for _, offset := range []uint32{0, 2} { // source port, destination port
				if out {
					c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: rejectSYNExprs(offset, port)})
					c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: dropPortExprs(offset, port)})
					continue
				}
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: rejectPortExprs(offset, port)})
			}
		}
	}
	if err := c.Flush(); err != nil {
		return err
	}
	return nil
}

// isTCP loads the layer-4 protocol and compares it with TCP.
func isTCP() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
}

// acceptRSTExprs: tcp flags & rst != 0 accept.
func acceptRSTExprs() []expr.Any {
	return append(isTCP(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFlagRST}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0}},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictAccept},
	)
}

// portIs matches tcp sport|dport <port>: offset 0 is the source port, 2
// the destination port.
func portIs(offset uint32, port uint16) []expr.Any {
	return append(isTCP(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	)
}

// rejectTCP: counter reject with tcp reset.
func rejectTCP() []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST, Code: unix.NFT_REJECT_TCP_RST}}
}

// rejectPortExprs: tcp sport|dport <port> counter reject with tcp reset.
func rejectPortExprs(offset uint32, port uint16) []expr.Any {
	return append(portIs(offset, port), rejectTCP()...)
}

// rejectSYNExprs: tcp flags & (syn|ack) == syn tcp sport|dport <port>
// counter reject with tcp reset: a new connection, refused at once.
func rejectSYNExprs(offset uint32, port uint16) []expr.Any {
	e := append(portIs(offset, port),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFlagSYN | tcpFlagACK}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpFlagSYN}},
	)
	return append(e, rejectTCP()...)
}

// dropPortExprs: tcp sport|dport <port> counter drop.
func dropPortExprs(offset uint32, port uint16) []expr.Any {
	return append(portIs(offset, port), &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
}

// removeTable deletes the fence's table; a missing table is no error.
func (f *KernelFence) removeTable() error {
	c, done, err := f.nft()
	if err != nil {
		return err
	}
	defer done()
	c.DelTable(f.table())
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// tableExists reports whether the fence's table is in the kernel.
func (f *KernelFence) tableExists() (bool, error) {
	c, done, err := f.nft()
	if err != nil {
		return false, err
	}
	defer done()
	switch _, err := c.ListTableOfFamily(f.o.Table, nftables.TableFamilyINet); {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	default:
		return false, fmt.Errorf("list nftables table %s: %w", f.o.Table, err)
	}
}

// TCP states as the kernel numbers them (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpSynSent     = 2
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpClosing     = 11
)

// killStates are the states of the sockets killSockets destroys: every
// connection that is or may still become a route, never a listener.
const killStates = 1<<tcpEstablished | 1<<tcpSynSent | 1<<tcpFinWait1 | 1<<tcpFinWait2 |
	1<<tcpCloseWait | 1<<tcpLastAck | 1<<tcpClosing

// Sizes of the sock_diag structures (include/uapi/linux/inet_diag.h).
const (
	inetDiagSockIDLen = 48 // struct inet_diag_sockid
	inetDiagReqLen    = 8 + inetDiagSockIDLen
	inetDiagMsgMinLen = 4 + inetDiagSockIDLen
	sockDiagRecvBuf   = 64 << 10
)

// diagSocket is one socket of a sock_diag dump.
type diagSocket struct {
	family uint8
	state  uint8
	id     [inetDiagSockIDLen]byte // struct inet_diag_sockid, as the kernel sent it
}

// ports returns the local and the remote port of the socket.
func (s diagSocket) ports() (local, remote uint16) {
	return binary.BigEndian.Uint16(s.id[0:2]), binary.BigEndian.Uint16(s.id[2:4])
}

// killSockets destroys every TCP connection in the fence's namespace whose
// local or remote port is a fenced port (SOCK_DESTROY over sock_diag,
// which needs CAP_NET_ADMIN and CONFIG_INET_DIAG_DESTROY). The kernel
// aborts each one and sends a reset to the other end, so both servers drop
// the route at once instead of after the next ping goes unanswered. It
// returns how many it destroyed.
func (f *KernelFence) killSockets() (int, error) {
	fd, err := sockDiagSocket(f.o.NetNS)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ports := f.ports()
	killed := 0
	seq := uint32(0)
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		seq++
		socks, err := diagDump(fd, seq, family)
		if err != nil {
			return killed, fmt.Errorf("list sockets: %w", err)
		}
		for _, s := range socks {
			local, remote := s.ports()
			if !slices.Contains(ports, local) && !slices.Contains(ports, remote) {
				continue
			}
			seq++
			switch err := diagDestroy(fd, seq, s); {
			case err == nil:
				killed++
			case errors.Is(err, unix.ENOENT):
				// Closed meanwhile.
			case errors.Is(err, unix.EOPNOTSUPP):
				return killed, errSockDestroyUnsupported
			default:
				return killed, fmt.Errorf("destroy socket %d->%d: %w", local, remote, err)
			}
		}
	}
	return killed, nil
}

// sockDiagSocket opens a sock_diag netlink socket in the network namespace
// at path ("" for the current one). A socket belongs to the namespace it
// was created in, wherever it is used afterwards.
func sockDiagSocket(path string) (int, error) {
	fd := -1
	err := inNetNS(path, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("sock_diag socket: %w", err)
	}
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sock_diag socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sock_diag socket: %w", err)
	}
	return fd, nil
}

// diagRequest builds a netlink message carrying a struct inet_diag_req_v2
// for TCP sockets of family in states, naming the socket id.
func diagRequest(typ, flags uint16, seq uint32, family uint8, states uint32, id []byte) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN+inetDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	r := b[unix.NLMSG_HDRLEN:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], states)
	copy(r[8:], id)
	return b
}

// diagDump lists the TCP sockets of family in killStates.
func diagDump(fd int, seq uint32, family uint8) ([]diagSocket, error) {
	req := diagRequest(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq, family, killStates, nil)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []diagSocket
	err := diagReceive(fd, seq, func(typ uint16, data []byte) (bool, error) {
		if typ != unix.SOCK_DIAG_BY_FAMILY {
			return false, nil
		}
		if len(data) < inetDiagMsgMinLen {
			return false, fmt.Errorf("short inet_diag_msg (%d bytes)", len(data))
		}
		s := diagSocket{family: data[0], state: data[1]}
		copy(s.id[:], data[4:4+inetDiagSockIDLen])
		out = append(out, s)
		return false, nil
	})
	return out, err
}

// diagDestroy asks the kernel to destroy one socket of a dump.
func diagDestroy(fd int, seq uint32, s diagSocket) error {
	req := diagRequest(unix.SOCK_DESTROY, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, s.family, 1<<s.state, s.id[:])
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	return diagReceive(fd, seq, func(uint16, []byte) (bool, error) { return false, nil })
}

// diagReceive reads the answers to request seq, hands every message but
// the control ones to handle (which returns true to stop), and returns at
// NLMSG_DONE or at the acknowledgement, with the error the kernel sent.
func diagReceive(fd int, seq uint32, handle func(typ uint16, data []byte) (bool, error)) error {
	buf := make([]byte, sockDiagRecvBuf)
	ne := binary.NativeEndian
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		b := buf[:n]
		for len(b) >= unix.NLMSG_HDRLEN {
			l := int(ne.Uint32(b[0:]))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return fmt.Errorf("malformed netlink message (length %d of %d)", l, len(b))
			}
			typ, mseq := ne.Uint16(b[4:]), ne.Uint32(b[8:])
			data := b[unix.NLMSG_HDRLEN:l]
			if next := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1); next < len(b) {
				b = b[next:]
			} else {
				b = nil
			}
			if mseq != seq {
				continue
			}
			switch typ {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(data) < 4 {
					return errors.New("short netlink error message")
				}
				if code := int32(ne.Uint32(data)); code != 0 {
					return unix.Errno(-code)
				}
				return nil
			}
			stop, err := handle(typ, data)
			if err != nil || stop {
				return err
			}
		}
	}
}

// inNetNS runs fn on an OS thread that has entered the network namespace
// at path, and returns its error; with an empty path it just runs fn. Only
// what fn creates on that thread (sockets) belongs to the namespace. The
// thread leaves the namespace before it runs anything else; if it cannot,
// it is discarded.
func inNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Without UnlockOSThread the runtime ends the thread with this
		// goroutine: the fallback whenever it is left in the namespace.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leave network namespace %s: %w", path, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
