package natsraft

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// The gate fence. Every embedded node's cluster port (and gateway port) sits
// behind a gate: a TCP listener on 127.0.0.1 that forwards to the real port.
// The servers advertise the gate and the configured routes and gateways
// point at gates, so every route and gateway connection, gossiped ones too,
// crosses exactly one gate. The gate reads the dialing server's CONNECT (the
// first line a route or gateway dialer sends) to learn its server id, so it
// knows both ends of every connection. The fabric, shared by all gates of a
// cluster, knows which nodes are fenced: fencing a node closes at once every
// connection with it at either end and refuses new ones in both directions.

const (
	// gateConnectTimeout bounds the wait for the dialer's CONNECT line.
	gateConnectTimeout = 10 * time.Second
	// gateBackendWait bounds the wait for a starting server's listener.
	gateBackendWait = 10 * time.Second
	// gateMaxConnectLine bounds the CONNECT line the gate buffers.
	gateMaxConnectLine = 64 * 1024
)

// fabric is the state shared by every gate of one embedded cluster.
type fabric struct {
	mu     sync.Mutex
	fenced map[string]bool
	ids    map[string]string // server id → node name
	conns  map[*gateConn]struct{}
	closed map[*gate]bool
}

func newFabric() *fabric {
	return &fabric{
		fenced: map[string]bool{},
		ids:    map[string]string{},
		conns:  map[*gateConn]struct{}{},
		closed: map[*gate]bool{},
	}
}

// learn records that server id belongs to node name (a new id each start).
func (f *fabric) learn(id, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids[id] = name
}

func (f *fabric) nameOf(id string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name, ok := f.ids[id]
	return name, ok
}

func (f *fabric) isFenced(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fenced[name]
}

// admit registers a connection whose dialer is not known yet; false if the
// gate's node is fenced or the gate is closed.
func (f *fabric) admit(c *gateConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fenced[c.owner] || f.closed[c.gate] {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

// identify records the dialer of an admitted connection; false if either
// end is fenced (or the connection was cut meanwhile).
func (f *fabric) identify(c *gateConn, dialer string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.conns[c]; !ok || f.fenced[c.owner] || f.fenced[dialer] {
		return false
	}
	c.dialer = dialer
	return true
}

func (f *fabric) drop(c *gateConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

// fence marks name fenced and closes every connection that has it at either
// end; it returns how many it cut.
func (f *fabric) fence(name string) int {
	f.mu.Lock()
	f.fenced[name] = true
	var cut []*gateConn
	for c := range f.conns {
		if c.owner == name || c.dialer == name {
			cut = append(cut, c)
			delete(f.conns, c)
		}
	}
	f.mu.Unlock()
	for _, c := range cut {
		c.close()
	}
	return len(cut)
}

func (f *fabric) unfence(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.fenced, name)
}

// closeGate refuses further connections through g and closes its open ones.
func (f *fabric) closeGate(g *gate) {
	f.mu.Lock()
	f.closed[g] = true
	var cut []*gateConn
	for c := range f.conns {
		if c.gate == g {
			cut = append(cut, c)
			delete(f.conns, c)
		}
	}
	f.mu.Unlock()
	for _, c := range cut {
		c.close()
	}
}

// gateConn is one connection through a gate: down is the dialer's side, up
// the connection to the real port of the gate's node.
type gateConn struct {
	gate   *gate
	owner  string
	dialer string // guarded by fabric.mu; "" until the CONNECT is read
	down   net.Conn

	mu     sync.Mutex
	up     net.Conn // nil until attached
	closed bool
}

// attach sets the upstream connection; false (and up closed) if the
// connection was cut meanwhile.
func (c *gateConn) attach(up net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		up.Close()
		return false
	}
	c.up = up
	return true
}

func (c *gateConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.down.Close()
	if c.up != nil {
		c.up.Close()
	}
}

// The two kinds of gates.
const (
	gateRoute   = "route"
	gateGateway = "gateway"
)

// gate forwards one node's cluster or gateway port.
type gate struct {
	kind    string // gateRoute or gateGateway
	owner   string
	fab     *fabric
	ln      net.Listener
	backend func() (addr string, alive bool)
	log     zerolog.Logger
	wg      sync.WaitGroup
}

func newGate(kind, owner string, fab *fabric, backend func() (string, bool), log zerolog.Logger) (*gate, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s gate: %w", kind, err)
	}
	g := &gate{kind: kind, owner: owner, fab: fab, ln: ln, backend: backend,
		log: log.With().Str("gate", kind).Logger()}
	g.wg.Add(1)
	go g.serve()
	return g, nil
}

// addr returns the gate's address, which the node advertises.
func (g *gate) addr() string { return g.ln.Addr().String() }

func (g *gate) serve() {
	defer g.wg.Done()
	for {
		down, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.handle(down)
		}()
	}
}

// resolve waits (bounded) for the node's real port while the server starts.
func (g *gate) resolve() (string, error) {
	deadline := time.Now().Add(gateBackendWait)
	for {
		addr, alive := g.backend()
		switch {
		case !alive:
			return "", errors.New("node is stopped")
		case addr != "":
			return addr, nil
		case time.Now().After(deadline):
			return "", errors.New("node's listener did not come up")
		}
		if g.fab.isFenced(g.owner) {
			return "", errors.New("node is fenced")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (g *gate) handle(down net.Conn) {
	if g.fab.isFenced(g.owner) {
		down.Close()
		return
	}
	c := &gateConn{gate: g, owner: g.owner, down: down}
	if !g.fab.admit(c) {
		down.Close()
		return
	}
	upDone := make(chan struct{})
	pumping := false
	// Either direction ending ends the connection.
	defer func() {
		c.close()
		if pumping {
			<-upDone
		}
		g.fab.drop(c)
	}()
	pump := func() bool {
		up, err := g.dialUp()
		if err != nil {
			g.log.Debug().Err(err).Msg("gate refused connection")
			return false
		}
		if !c.attach(up) {
			return false
		}
		pumping = true
		go func() {
			defer close(upDone)
			_, _ = io.Copy(down, up)
			c.close()
		}()
		return true
	}

	// A route dialer sends its CONNECT at once, so the gate learns who
	// dials before its node says a word. A gateway dialer waits for the
	// node's INFO first: a fenced dialer gets that INFO, but nothing it
	// sends reaches the node and the gate closes it on its CONNECT.
	if g.kind == gateGateway && !pump() {
		return
	}
	br := bufio.NewReaderSize(down, gateMaxConnectLine)
	_ = down.SetReadDeadline(time.Now().Add(gateConnectTimeout))
	line, err := br.ReadSlice('\n')
	if err != nil {
		return
	}
	_ = down.SetReadDeadline(time.Time{})
	id, err := connectServerID(line)
	if err != nil {
		g.log.Warn().Err(err).Msg("gate refused connection")
		return
	}
	dialer, ok := g.fab.nameOf(id)
	if !ok {
		g.log.Warn().Str("server_id", id).Msg("gate refused connection from an unknown server")
		return
	}
	if !g.fab.identify(c, dialer) {
		g.log.Debug().Str("dialer", dialer).Msg("gate refused fenced connection")
		return
	}
	if g.kind == gateRoute && !pump() {
		return
	}
	if _, err := c.up.Write(line); err != nil {
		return
	}
	_, _ = br.WriteTo(c.up)
}

// dialUp connects to the real port of the gate's node.
func (g *gate) dialUp() (net.Conn, error) {
	addr, err := g.resolve()
	if err != nil {
		return nil, err
	}
	up, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("reach %s: %w", g.owner, err)
	}
	return up, nil
}

// close stops accepting, cuts the gate's connections and waits for its
// goroutines.
func (g *gate) close() error {
	err := g.ln.Close()
	g.fab.closeGate(g)
	g.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%s gate of %s: %w", g.kind, g.owner, err)
	}
	return nil
}

// connectServerID extracts the server id from a route or gateway CONNECT
// line: `CONNECT {"name":"<server id>",…}`.
func connectServerID(line []byte) (string, error) {
	rest, ok := bytes.CutPrefix(line, []byte("CONNECT "))
	if !ok {
		return "", fmt.Errorf("first line is not a CONNECT: %.20q", line)
	}
	var ci struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(rest), &ci); err != nil {
		return "", fmt.Errorf("parse CONNECT: %w", err)
	}
	if ci.Name == "" {
		return "", errors.New("CONNECT carries no server id")
	}
	return ci.Name, nil
}
