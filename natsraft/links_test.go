package natsraft

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// monitorDouble answers /varz and /routez for one server of a cluster, from
// a route table the test changes.
type monitorDouble struct {
	name string
	mu   sync.Mutex
	// routes counts this server's routes per peer name.
	routes map[string]int
	srv    *httptest.Server
}

func newMonitorDouble(t *testing.T, name string, routes map[string]int) *monitorDouble {
	m := &monitorDouble{name: name, routes: routes}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		switch r.URL.Path {
		case "/varz":
			var v varzDoc
			v.ID, v.Name, v.Cluster.Name = "id-"+m.name, m.name, "c"
			_ = json.NewEncoder(w).Encode(v)
		case "/routez":
			var rz routezDoc
			for peer, n := range m.routes {
				for range n {
					rz.Routes = append(rz.Routes, routeDoc{RemoteID: "id-" + peer, RemoteName: peer})
				}
			}
			_ = json.NewEncoder(w).Encode(rz)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *monitorDouble) set(peer string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.routes[peer] = n
}

func verifierOf(self *monitorDouble, peers ...*monitorDouble) *linkVerifier {
	return &linkVerifier{
		name:   self.name,
		client: http.DefaultClient,
		local:  func() string { return self.srv.URL },
		peers: func(context.Context) ([]string, error) {
			var urls []string
			for _, p := range peers {
				urls = append(urls, p.srv.URL)
			}
			return urls, nil
		},
		log: zerolog.Nop(),
	}
}

// TestLinksWantTheWholeRoutePool: a node whose route pool to a peer is
// short a slot (a duplicate race closed the same route at both ends) is
// not linked yet, though a route to that peer shows; the full pool is what
// two other servers have between them.
func TestLinksWantTheWholeRoutePool(t *testing.T) {
	a := newMonitorDouble(t, "a", map[string]int{"b": 2, "c": 3})
	b := newMonitorDouble(t, "b", map[string]int{"a": 2, "c": 3})
	c := newMonitorDouble(t, "c", map[string]int{"a": 3, "b": 3})
	l := verifierOf(a, b, c)
	ctx := context.Background()

	assert.Equal(t, []string{"route a->b (2 of 3)", "route b->a (2 of 3)"}, l.missing(ctx))

	b.set("a", 0)
	a.set("b", 0)
	assert.Equal(t, []string{"route a->b", "route b->a"}, l.missing(ctx))

	a.set("b", 3)
	b.set("a", 3)
	assert.Empty(t, l.missing(ctx))
}

// TestUnfenceRedialsAShortRoutePool: an unfence whose routes stay short
// cuts them once more so that both ends dial them again, and is done once
// they are whole.
func TestUnfenceRedialsAShortRoutePool(t *testing.T) {
	a := newMonitorDouble(t, "a", map[string]int{"b": 2, "c": 3})
	b := newMonitorDouble(t, "b", map[string]int{"a": 2, "c": 3})
	c := newMonitorDouble(t, "c", map[string]int{"a": 3, "b": 3})
	l := verifierOf(a, b, c)
	ctx, cancel := context.WithTimeout(context.Background(), 4*redialAfter)
	defer cancel()
	redials := 0
	begin := time.Now()
	missing, err := l.awaitLinks(ctx, 10*time.Millisecond, func() (int, error) {
		redials++
		a.set("b", 3)
		b.set("a", 3)
		return 5, nil
	})
	require.NoError(t, err, "still missing %v", missing)
	assert.Equal(t, 1, redials)
	assert.GreaterOrEqual(t, time.Since(begin), redialAfter, "routes get their time to come back by themselves first")
}

// TestFenceCutsAgainARouteThatSurvived: a fence whose node is still listed
// by a peer after the first cut (a route set up while the cut ran) destroys
// the node's sockets again, and is done once no peer lists it; an answer
// the deadline cut short does not hide what was still linked.
func TestFenceCutsAgainARouteThatSurvived(t *testing.T) {
	a := newMonitorDouble(t, "a", map[string]int{})
	b := newMonitorDouble(t, "b", map[string]int{"a": 1, "c": 3})
	c := newMonitorDouble(t, "c", map[string]int{"b": 3})
	l := verifierOf(a, b, c)
	ctx, cancel := context.WithTimeout(context.Background(), 4*redialAfter)
	defer cancel()
	recuts := 0
	left, err := l.awaitCut(ctx, 10*time.Millisecond, func() (int, error) {
		recuts++
		b.set("a", 0)
		return 1, nil
	})
	require.NoError(t, err, "still linked %v", left)
	assert.Equal(t, 1, recuts)
	assert.Empty(t, left)

	b.set("a", 1)
	short, cancel2 := context.WithTimeout(context.Background(), redialAfter/2)
	defer cancel2()
	left, err = l.awaitCut(short, 10*time.Millisecond, func() (int, error) { return 0, nil })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, []string{"route b->a"}, left)
}
