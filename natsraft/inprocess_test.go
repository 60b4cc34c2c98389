package natsraft

import (
	"context"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
)

// Test helpers: an embedded server's links read in-process, from the
// server's own state, to check the fences' verdicts (read over the
// monitoring endpoints) against; and view queries only the tests need.

// routesOf returns the names of the servers s has a route to.
func routesOf(s *server.Server) []string {
	rz, err := s.Routez(&server.RoutezOptions{})
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(rz.Routes))
	for _, r := range rz.Routes {
		out = append(out, r.RemoteName)
	}
	return out
}

type gatewayConn struct {
	remote   string // the remote gateway (dc) name
	serverID string // the remote server's id
}

// gatewayConnsOf returns s's inbound and outbound gateway connections.
func gatewayConnsOf(s *server.Server) []gatewayConn {
	gz, err := s.Gatewayz(&server.GatewayzOptions{})
	if err != nil {
		return nil
	}
	var out []gatewayConn
	for dc, rg := range gz.OutboundGateways {
		if rg != nil && rg.Connection != nil {
			out = append(out, gatewayConn{remote: dc, serverID: rg.Connection.Name})
		}
	}
	for dc, list := range gz.InboundGateways {
		for _, rg := range list {
			if rg != nil && rg.Connection != nil {
				out = append(out, gatewayConn{remote: dc, serverID: rg.Connection.Name})
			}
		}
	}
	return out
}

// missingLinks lists what the node's link verifier finds missing now.
func (n *EmbeddedNode) missingLinks() []string {
	return n.links().missing(context.Background())
}

// GroupsOf returns the groups the named node is a member of.
func (v *View) GroupsOf(name string) []Group {
	var out []Group
	for _, g := range v.Groups {
		for _, p := range g.Peers {
			if p.Name == name {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// isFenced is f's Fenced, the test failing when it cannot be read.
func isFenced(tb testing.TB, f interface{ Fenced() (bool, error) }) bool {
	tb.Helper()
	fenced, err := f.Fenced()
	require.NoError(tb, err)
	return fenced
}
