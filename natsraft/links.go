package natsraft

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/rs/zerolog"
)

// linkVerifier reads, over the monitoring endpoints, how one server is
// linked to the others: the routes and gateway connections that still tie
// it to them (a fence is done when there are none) and those it should have
// and lacks (an unfence is done when there are none). Every link is read
// from both ends: the server's own /routez and /gatewayz, and each peer's,
// so a fence is never taken for done on the fenced server's word alone.
// Both kinds of fence verify through it.
type linkVerifier struct {
	// name is the server's name (= the pod's name); when empty, the name
	// its /varz reports.
	name   string
	client *http.Client
	// local returns the monitoring URL of the server, "" while it does not
	// run: then only the peers' side is read, and nothing is missing.
	local func() string
	// peers returns the monitoring URLs of the other servers, those of
	// other clusters (gateways) included. A peer that does not answer is
	// left out: nothing can be verified from its side.
	peers func(ctx context.Context) ([]string, error)
	// gateways says whether gateway connections count (a supercluster).
	gateways bool
	// skip, when set, tells the peers that are meant to have no links
	// (fenced themselves): none is missing to them.
	skip func(ctx context.Context, peer linkedServer) bool
	log  zerolog.Logger
}

// linkedServer is one server as the verifier knows it: its identity from
// /varz and where it answers.
type linkedServer struct {
	varzDoc
	url string
}

// get decodes GET base+path into into.
func (l *linkVerifier) get(ctx context.Context, base, path string, into any) error {
	return getDoc(ctx, l.client, base, path, nil, into)
}

// self reads the local server's identity; its id changes when it restarts.
func (l *linkVerifier) self(ctx context.Context, url string) (linkedServer, error) {
	s := linkedServer{url: url}
	if err := l.get(ctx, url, "/varz", &s.varzDoc); err != nil {
		return s, fmt.Errorf("local server: %w", err)
	}
	if s.ID == "" {
		return s, errors.New("local server: /varz names no server id")
	}
	if l.name != "" && s.Name != l.name {
		return s, fmt.Errorf("local server at %s calls itself %q, not %q: its server_name must be the pod's name", url, s.Name, l.name)
	}
	return s, nil
}

// others reads the identity of every peer that answers.
func (l *linkVerifier) others(ctx context.Context) ([]linkedServer, error) {
	if l.peers == nil {
		return nil, nil
	}
	urls, err := l.peers(ctx)
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	var out []linkedServer
	for _, u := range urls {
		s := linkedServer{url: u}
		if err := l.get(ctx, u, "/varz", &s.varzDoc); err != nil {
			l.log.Debug().Err(err).Str("peer", u).Msg("peer does not answer")
			continue
		}
		if l.name != "" && s.Name == l.name {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// linked lists what still connects the server to the others: "route a->b"
// and "gateway a->b" entries, or what could not be read; empty once the
// server is isolated.
func (l *linkVerifier) linked(ctx context.Context) []string {
	var out []string
	var selfID string
	name := l.name
	if u := l.local(); u != "" {
		self, err := l.self(ctx, u)
		if err != nil {
			return []string{err.Error()}
		}
		selfID = self.ID
		if name == "" {
			name = self.Name
		}
		var rz routezDoc
		if err := l.get(ctx, u, "/routez", &rz); err != nil {
			return []string{"local server: " + err.Error()}
		}
		for _, r := range rz.Routes {
			out = append(out, "route "+name+"->"+r.RemoteName)
		}
		if l.gateways {
			var gz gatewayzDoc
			if err := l.get(ctx, u, "/gatewayz", &gz); err != nil {
				return append(out, "local server: "+err.Error())
			}
			for dc, g := range gz.Outbound {
				if g.connected("") {
					out = append(out, "gateway "+name+"->"+dc)
				}
			}
			for dc, list := range gz.Inbound {
				for _, g := range list {
					if g.connected("") {
						out = append(out, "gateway "+dc+"->"+name)
					}
				}
			}
		}
	}
	peers, err := l.others(ctx)
	if err != nil {
		return append(out, err.Error())
	}
	for _, p := range peers {
		var prz routezDoc
		switch err := l.get(ctx, p.url, "/routez", &prz); {
		case err != nil:
			out = append(out, "route "+p.Name+"->"+name+" (unread: "+err.Error()+")")
		case prz.has(selfID, name):
			out = append(out, "route "+p.Name+"->"+name)
		}
		if !l.gateways || selfID == "" {
			continue
		}
		var pgz gatewayzDoc
		if err := l.get(ctx, p.url, "/gatewayz", &pgz); err != nil {
			out = append(out, "gateway "+p.Name+"<->"+name+" (unread: "+err.Error()+")")
			continue
		}
		for _, g := range pgz.Outbound {
			if g.connected(selfID) {
				out = append(out, "gateway "+p.Name+"->"+name)
			}
		}
		for _, list := range pgz.Inbound {
			for _, g := range list {
				if g.connected(selfID) {
					out = append(out, "gateway "+name+"->"+p.Name)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// missing lists the routes and gateways the server should have and has not
// (yet), or what could not be read: every route both ways to every peer of
// its own cluster that answers, and an outbound gateway to every other
// cluster with a peer that answers. Peers that skip names are left out.
//
// "Every route": NATS links two servers by a pool of routes (plus one per
// pinned account) and sends each account's traffic over one of them. Two
// servers that dial each other at once after a partition can both close
// the same duplicate and leave a slot empty, which neither dials again;
// the accounts of that slot then lose every message between the two while
// one route still shows. So a peer counts as linked only with as many
// routes both ways as any two other servers of the cluster have between
// them (the full pool, as both read it).
func (l *linkVerifier) missing(ctx context.Context) []string {
	u := l.local()
	if u == "" {
		return nil
	}
	self, err := l.self(ctx, u)
	if err != nil {
		return []string{err.Error()}
	}
	name := self.Name
	peers, err := l.others(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	var rz routezDoc
	if err := l.get(ctx, u, "/routez", &rz); err != nil {
		return []string{"local server: " + err.Error()}
	}
	var gz gatewayzDoc
	var gzErr error
	var out []string
	type linked struct {
		p   linkedServer
		prz routezDoc
	}
	var local []linked
	pool := 1
	for _, p := range peers {
		if l.skip != nil && l.skip(ctx, p) {
			continue
		}
		if p.Cluster.Name != self.Cluster.Name {
			if !l.gateways {
				continue
			}
			if gz.Outbound == nil && gzErr == nil {
				gzErr = l.get(ctx, u, "/gatewayz", &gz)
			}
			if gzErr != nil || !gz.Outbound[p.Cluster.Name].connected("") {
				out = append(out, "gateway "+name+"->"+p.Cluster.Name)
			}
			continue
		}
		var prz routezDoc
		if err := l.get(ctx, p.url, "/routez", &prz); err != nil {
			if !rz.has(p.ID, p.Name) {
				out = append(out, "route "+name+"->"+p.Name)
			}
			out = append(out, "route "+p.Name+"->"+name+" (unread: "+err.Error()+")")
			continue
		}
		pool = max(pool, prz.most(self.ID, name))
		local = append(local, linked{p: p, prz: prz})
	}
	for _, lp := range local {
		if n := rz.count(lp.p.ID, lp.p.Name); n < pool {
			out = append(out, routeShort(name, lp.p.Name, n, pool))
		}
		if n := lp.prz.count(self.ID, name); n < pool {
			out = append(out, routeShort(lp.p.Name, name, n, pool))
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// routeShort names the routes from one server to another that are missing:
// "route a->b", or with how many of the pool are up when some are.
func routeShort(from, to string, have, want int) string {
	if have == 0 {
		return "route " + from + "->" + to
	}
	return fmt.Sprintf("route %s->%s (%d of %d)", from, to, have, want)
}

// cutOff reports whether peer is cut off from every server and has its
// JetStream off: fenced and quiesced for maintenance, or booted so (a pod
// recreated in maintenance). A server that is only waiting for its routes
// has JetStream on, and is waited for.
func (l *linkVerifier) cutOff(ctx context.Context, peer linkedServer) bool {
	var rz routezDoc
	if err := l.get(ctx, peer.url, "/routez", &rz); err != nil || len(rz.Routes) > 0 {
		return false
	}
	var jsz struct {
		Disabled bool `json:"disabled"`
	}
	return l.get(ctx, peer.url, "/jsz", &jsz) == nil && jsz.Disabled
}

// redialAfter is how long an unfence waits for missing routes before it
// cuts the node's routes once more so that both ends dial them again (a
// route slot that a duplicate race left empty stays empty otherwise), and
// how long a fence waits for links to go before it cuts them again.
const redialAfter = 3 * time.Second

// awaitCut polls until the node has no link left (linked), each time the
// links have stayed for recutAfter calling recut, which destroys the
// node's sockets again: a route that was being set up while the first cut
// ran can survive it, and its peer keeps listing the node until it next
// writes on it. It returns what was still linked when ctx ended.
func (l *linkVerifier) awaitCut(ctx context.Context, interval time.Duration, recut func() (int, error)) ([]string, error) {
	var left []string
	since := time.Now()
	err := pollUntil(ctx, interval, func() bool {
		now := l.linked(ctx)
		if ctx.Err() != nil && left != nil {
			return false // cut short by the deadline: keep the last real answer
		}
		left = now
		if len(left) == 0 {
			return true
		}
		if time.Since(since) >= redialAfter {
			n, err := recut()
			l.log.Warn().Err(err).Strs("linked", left).Int("cut", n).Msg("still linked: destroying the node's route sockets again")
			since = time.Now()
		}
		return false
	})
	return left, err
}

// awaitLinks polls until nothing is missing to the server, cutting its
// routes again (redial) each time they have stayed short for redialAfter,
// and returns what is still missing when ctx ends.
func (l *linkVerifier) awaitLinks(ctx context.Context, interval time.Duration, redial func() (int, error)) ([]string, error) {
	var missing []string
	since := time.Now()
	err := pollUntil(ctx, interval, func() bool {
		now := l.missing(ctx)
		if ctx.Err() != nil && missing != nil {
			// An answer cut short by the deadline says nothing: keep the
			// last real one for the error.
			return false
		}
		missing = now
		if len(missing) == 0 {
			return true
		}
		if time.Since(since) >= redialAfter {
			cut, err := redial()
			l.log.Warn().Err(err).Strs("missing", missing).Int("cut", cut).Msg("routes still missing: cut the node's routes so that both ends dial them again")
			since = time.Now()
		}
		return false
	})
	return missing, err
}
