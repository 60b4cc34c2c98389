package app_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/prober-dev/prober/natsraft"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadyzEmbeddedCatchUp restarts a node of the embedded default after
// it missed writes: /readyz?pod= answers 503 while it is down and turns 200
// only once an independent sweep finds it caught up; /livez stays 200.
func TestReadyzEmbeddedCatchUp(t *testing.T) {
	running := startApp(t, t.TempDir(), nil)
	c := running.Cluster()
	waitFor(t, 30*time.Second, "/readyz 200", func() (bool, string) {
		code, body := running.readyz()
		return code == http.StatusOK, body
	})
	pod := c.Nodes()[2].Name()
	ready := func() (int, string) {
		code, _, b := running.do(http.MethodGet, "/readyz?pod="+pod, "")
		return code, string(b)
	}
	live := func() int {
		code, _, _ := running.do(http.MethodGet, "/livez", "")
		return code
	}

	require.NoError(t, c.StopNode(pod))
	waitFor(t, 10*time.Second, pod+" not ready while stopped", func() (bool, string) {
		code, body := ready()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "unreachable"), body
	})
	assert.Equal(t, http.StatusOK, live())
	code, body := running.readyz()
	assert.Equal(t, http.StatusServiceUnavailable, code, body)

	// Writes it misses. The stopped node may have led the stream, which
	// then elects a new leader: found down within the collector's watch
	// (0.25 s), the node can be gone before the election is over, and a
	// write meanwhile finds no responder, as any client would; it is
	// tried again.
	nc, err := c.Dial(natsraft.AppAccount, pod)
	require.NoError(t, err)
	defer nc.Close()
	for i := range 200 {
		waitFor(t, 10*time.Second, "write "+strconv.Itoa(i), func() (bool, string) {
			_, err := nc.Request("demo.catchup", []byte{byte(i)}, 5*time.Second)
			if errors.Is(err, nats.ErrNoResponders) {
				return false, err.Error()
			}
			require.NoError(t, err)
			return true, ""
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.RestartNode(ctx, pod))
	check := natsraft.NewCollector(natsraft.CollectorOptions{Endpoints: c.Endpoints(), Logger: zerolog.Nop()})
	waitFor(t, 60*time.Second, pod+" ready again", func() (bool, string) {
		require.Equal(t, http.StatusOK, live(), "/livez through the catch-up")
		code, body := ready()
		require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, code, body)
		return code == http.StatusOK, body
	})
	v, err := check.Sweep(t.Context())
	require.NoError(t, err)
	ok, why := v.NodeReady(pod)
	assert.True(t, ok, "readyz said ready, an independent sweep says: %s", why)
	assert.Equal(t, http.StatusOK, live())
}
