package app

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/filestore"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// staticViews is a ViewSource that always answers one view.
type staticViews struct{ v *natsraft.View }

func (s staticViews) View(context.Context) (*natsraft.View, error) { return s.v, nil }

// blockingMover records each move and holds it until its context ends, as
// a step down waiting for an election would.
type blockingMover struct {
	mu    sync.Mutex
	moves []natsraft.LeaderMove
}

func (b *blockingMover) MoveLeader(ctx context.Context, m natsraft.LeaderMove) error {
	b.mu.Lock()
	b.moves = append(b.moves, m)
	b.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}

func (b *blockingMover) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.moves)
}

// TestShareStopsAtPreStop checks that a pod's share-taking after its start
// stops its moves when a pre-stop begins: the pod is going away, and each
// move to it would cost an election when it stops.
func TestShareStopsAtPreStop(t *testing.T) {
	var nodes []natsraft.Node
	for _, n := range []string{"a1", "b1", "c1"} {
		nodes = append(nodes, natsraft.Node{Name: n, DC: "dc1", Reachable: true, JetStream: true})
	}
	v := &natsraft.View{At: time.Now(), Nodes: nodes}
	for i := range 6 {
		var peers []natsraft.Peer
		for _, n := range []string{"a1", "b1", "c1"} {
			peers = append(peers, natsraft.Peer{Name: n, Leader: n == "a1", Current: true, Healthy: true})
		}
		v.Groups = append(v.Groups, natsraft.Group{Kind: natsraft.KindStream, Account: "APP", Name: fmt.Sprintf("s%d", i), Leader: "a1", Peers: peers, Replicas: 3})
	}
	store, err := filestore.Open(filepath.Join(t.TempDir(), "maintenance.json"), filestore.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, store.Close()) })
	mover := &blockingMover{}
	svc := &maintenance.Service{Store: store, Views: staticViews{v}, Leaders: mover, Logger: zerolog.Nop()}

	var mu sync.Mutex
	stopping := false
	done := make(chan error, 1)
	go func() {
		_, err := balanceUnlessStopping(context.Background(), svc, maintenance.BalanceRequest{DC: "dc1", To: "c1"}, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return stopping
		})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for mover.count() == 0 {
		require.True(t, time.Now().Before(deadline), "no move began")
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	stopping = true
	mu.Unlock()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Contains(t, err.Error(), "a pre-stop began")
	case <-time.After(10 * time.Second):
		t.Fatal("the balance went on through the pre-stop")
	}
	assert.Equal(t, 1, mover.count(), "no move after the pre-stop began")
}
