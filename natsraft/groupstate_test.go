package natsraft

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGroupState(t *testing.T) {
	all := []string{"n0", "n1", "n2"}
	tests := []struct {
		name   string
		mutate func(g *Group)
		want   GroupState
	}{
		{"healthy", nil, StateHealthy},
		{"a lag within HealthyLag", func(g *Group) { setPeer(g, "n1", func(p *Peer) { p.Current, p.Lag = false, 5 }) }, StateHealthy},
		{"one not healthy", func(g *Group) { setPeer(g, "n1", notHealthy) }, StateDegraded},
		{"two not healthy", func(g *Group) {
			setPeer(g, "n1", notHealthy)
			setPeer(g, "n2", notHealthy)
		}, StateQuorumLost},
		{"no leader", func(g *Group) { g.Leader = "" }, StateLeaderless},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := diagGroup(KindStream, "s", "n0", all...)
			if tt.mutate != nil {
				tt.mutate(&g)
			}
			assert.Equal(t, tt.want, g.State())
		})
	}
}
