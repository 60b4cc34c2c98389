package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestCLIRolloutStop checks what `rollout stop` says for each answer of
// the DELETE: stopping (202), stopped at once by a second stop (200, the
// record kept), and a finished rollout's record deleted (200, deleted).
func TestCLIRolloutStop(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		status           int
	}{
		{"stopping", `{"name":"k","state":"Stopping","current":"nats-1","created":"2026-01-01T00:00:00Z","pods":[]}`,
			"rollout k is stopping: nats-1 comes back first\n", http.StatusAccepted},
		{"stopped at once", `{"name":"k","state":"Stopped","created":"2026-01-01T00:00:00Z","pods":[{"pod":"nats-0","step":"Done","phase":"Active"},{"pod":"nats-1","step":"Exiting","phase":"CatchingUp"}]}`,
			"rollout k is Stopped at once: nats-1 comes back by itself, not waited for; stop it again to delete its record\n", http.StatusOK},
		{"deleted", `{"name":"k","state":"Done","created":"2026-01-01T00:00:00Z","pods":[],"deleted":true}`,
			"rollout k was Done; its record is deleted\n", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				assert.Equal(t, http.MethodDelete, r.Method)
				assert.Equal(t, "/rollouts/k", r.URL.Path)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			r := run("rollout", "stop", "k", "--wait=0", "--server", srv.URL)
			assert.Equal(t, 0, r.code, r)
			assert.Equal(t, tc.want, r.stdout)
		})
	}
}
