package natsraft

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// monitor serves an embedded node's monitoring endpoints on a port of its
// own, kept across restarts of the node, instead of the server's built-in
// HTTP listener. The built-in listener answers before the server has
// finished starting, and nats-server's /raftz reads the server's Raft node
// table without a lock while the starting server creates it; in one
// process, under the race detector, a sweep during a restart is then a data
// race in the server. Here a request reaches the server only once Start has
// returned (the node is running), and gets 503 before.
type monitor struct {
	ln  net.Listener
	srv *http.Server
}

// monitorPaths are the endpoints served, by the server's own handlers.
var monitorPaths = map[string]func(*server.Server) http.HandlerFunc{
	"/varz":     func(s *server.Server) http.HandlerFunc { return s.HandleVarz },
	"/jsz":      func(s *server.Server) http.HandlerFunc { return s.HandleJsz },
	"/raftz":    func(s *server.Server) http.HandlerFunc { return s.HandleRaftz },
	"/routez":   func(s *server.Server) http.HandlerFunc { return s.HandleRoutez },
	"/gatewayz": func(s *server.Server) http.HandlerFunc { return s.HandleGatewayz },
	"/healthz":  func(s *server.Server) http.HandlerFunc { return s.HandleHealthz },
	"/connz":    func(s *server.Server) http.HandlerFunc { return s.HandleConnz },
	"/subsz":    func(s *server.Server) http.HandlerFunc { return s.HandleSubsz },
	"/accountz": func(s *server.Server) http.HandlerFunc { return s.HandleAccountz },
	"/leafz":    func(s *server.Server) http.HandlerFunc { return s.HandleLeafz },
}

// newMonitor listens on 127.0.0.1:port (0: a free port) for node n.
func newMonitor(n *EmbeddedNode, port int) (*monitor, error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", max(port, 0)))
	if err != nil {
		return nil, fmt.Errorf("monitoring port: %w", err)
	}
	mux := http.NewServeMux()
	for path, handler := range monitorPaths {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			s := n.serving()
			if s == nil {
				http.Error(w, n.name+" is not running", http.StatusServiceUnavailable)
				return
			}
			handler(s)(w, r)
		})
	}
	m := &monitor{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn().Err(err).Msg("monitoring port stopped")
		}
	}()
	return m, nil
}

func (m *monitor) port() int { return m.ln.Addr().(*net.TCPAddr).Port }

func (m *monitor) close() error { return m.srv.Close() }

// serving returns the node's server once it has started, nil otherwise.
func (n *EmbeddedNode) serving() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != nodeRunning {
		return nil
	}
	return n.srv
}
