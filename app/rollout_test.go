package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// rolloutTimeout bounds one rollout over the embedded cluster.
const rolloutTimeout = 3 * time.Minute

// rollout is GET /rollouts/{name}.
func (a *liveApp) rollout(name string) maintenance.RolloutView {
	a.tb.Helper()
	var v maintenance.RolloutView
	a.call(http.MethodGet, "/rollouts/"+name, "", http.StatusOK, &v)
	return v
}

// requireQuorum polls /raft until every Raft group has a leader and its
// quorum, as after every step of a rollout it must.
func (a *liveApp) requireQuorum(after string) {
	a.tb.Helper()
	waitFor(a.tb, 15*time.Second, "every group led and with quorum after "+after, func() (bool, string) {
		var v natsraft.View
		a.call(http.MethodGet, "/raft", "", http.StatusOK, &v)
		for _, g := range v.Groups {
			if g.Leader == "" || g.QuorumLostSince != nil {
				return false, fmt.Sprintf("group %s: leader %q, quorum lost since %v", g.Name, g.Leader, g.QuorumLostSince)
			}
		}
		return len(v.Groups) > 0, "no group in view"
	})
}

// followRollout polls the rollout until cond holds, checking the quorum
// after every step any pod takes; it returns the last view.
func (a *liveApp) followRollout(name string, cond func(maintenance.RolloutView) bool) maintenance.RolloutView {
	a.tb.Helper()
	steps := map[string]maintenance.RolloutStep{}
	var last maintenance.RolloutView
	waitFor(a.tb, rolloutTimeout, "rollout "+name, func() (bool, string) {
		last = a.rollout(name)
		for _, p := range last.Pods {
			if steps[p.Pod] != p.Step {
				steps[p.Pod] = p.Step
				a.requireQuorum(p.Pod + " " + string(p.Step))
			}
		}
		return cond(last), fmt.Sprintf("%s %s %v", last.State, last.PauseReason, steps)
	})
	return last
}

func stateIs(s maintenance.RolloutState) func(maintenance.RolloutView) bool {
	return func(v maintenance.RolloutView) bool { return v.State == s }
}

// requireOneAtATime requires that every pod had its whole turn, and that
// each turn began after the one before had ended, the pod ready again.
func requireOneAtATime(t *testing.T, v maintenance.RolloutView) {
	t.Helper()
	var prevReady *time.Time
	for _, p := range v.Pods {
		require.Equal(t, maintenance.StepDone, p.Step, p.Pod)
		require.NotNil(t, p.Entered, p.Pod)
		require.NotNil(t, p.InMaintenance, p.Pod)
		require.NotNil(t, p.Exited, p.Pod)
		require.NotNil(t, p.Ready, p.Pod)
		assert.False(t, p.InMaintenance.Before(*p.Entered), "%s in maintenance before entered", p.Pod)
		assert.False(t, p.Exited.Before(*p.InMaintenance), "%s exited before in maintenance", p.Pod)
		assert.False(t, p.Ready.Before(*p.Exited), "%s ready before exited", p.Pod)
		if prevReady != nil {
			assert.False(t, p.Entered.Before(*prevReady), "%s entered before the pod before was ready", p.Pod)
		}
		prevReady = p.Ready
		assert.Equal(t, maintenance.PhaseActive, p.Phase, p.Pod)
	}
}

// TestRollout runs rolling maintenances on one embedded cluster of three:
// every pod in turn, a pause on an unsafe turn that ends by itself, a stop,
// a restart, and the API's refusals.
func TestRollout(t *testing.T) {
	a := startApp(t, t.TempDir(), nil)
	a.requireClean()
	pods := []string{"nats-0", "nats-1", "nats-2"}

	t.Run("every pod in turn, one at a time", func(t *testing.T) {
		begin := time.Now()
		body := `{"reason":"kernel upgrade","hold":"1s"}`
		code, hdr, b := a.do(http.MethodPut, "/rollouts/kernel", body)
		require.Equal(t, http.StatusCreated, code, "%s", b)
		assert.Equal(t, "/rollouts/kernel", hdr.Get("Location"))
		a.call(http.MethodPut, "/rollouts/kernel", body, http.StatusOK, nil)
		b = a.call(http.MethodPut, "/rollouts/other", body, http.StatusConflict, nil)
		assert.Contains(t, string(b), "rollout kernel is")
		b = a.call(http.MethodPut, "/rollouts/kernel", `{"hold":"2s"}`, http.StatusConflict, nil)
		assert.Contains(t, string(b), "another spec")

		var sawEntry bool
		v := a.followRollout("kernel", func(v maintenance.RolloutView) bool {
			if v.Current != "" {
				if e, ok := a.config().Pods[v.Current]; ok {
					sawEntry = sawEntry || (e.RequestedBy == "rollout kernel" && e.Reason == "rollout kernel: kernel upgrade")
				}
			}
			return v.State == maintenance.RolloutDone
		})
		t.Logf("rollout of 3 pods (hold 1s) took %.1fs", time.Since(begin).Seconds())
		assert.True(t, sawEntry, "the entries are marked as the rollout's")
		got := make([]string, len(v.Pods))
		for i, p := range v.Pods {
			got[i] = p.Pod
		}
		assert.Equal(t, pods, got)
		requireOneAtATime(t, v)
		assert.NotNil(t, v.Finished)
		assert.Equal(t, "embedded", v.Driver)
		a.requireClean()

		var list struct {
			Rollouts []maintenance.RolloutView `json:"rollouts"`
		}
		a.call(http.MethodGet, "/rollouts", "", http.StatusOK, &list)
		require.Len(t, list.Rollouts, 1)
		assert.Equal(t, "kernel", list.Rollouts[0].Name)
		a.call(http.MethodPut, "/rollouts/kernel", body, http.StatusOK, nil)
		a.call(http.MethodDelete, "/rollouts/kernel", "", http.StatusOK, nil)
		a.call(http.MethodGet, "/rollouts/kernel", "", http.StatusNotFound, nil)
	})

	t.Run("an unsafe turn pauses the rollout until it is safe", func(t *testing.T) {
		a.call(http.MethodPut, "/pods/nats-1?wait=60s", `{"reason":"disk check"}`, http.StatusOK, nil)
		a.call(http.MethodPut, "/rollouts/paused", `{"pods":["nats-0","nats-2"],"hold":"1s"}`, http.StatusCreated, nil)
		v := a.followRollout("paused", stateIs(maintenance.RolloutPaused))
		assert.Contains(t, v.PauseReason, "unsafe: the turn of nats-0")
		assert.Equal(t, "nats-0", v.Current)
		assert.Equal(t, maintenance.StepPending, v.Pods[0].Step)
		assert.NotContains(t, a.config().Pods, "nats-0", "a paused turn writes no entry")

		a.call(http.MethodDelete, "/pods/nats-1?wait=60s", "", http.StatusOK, nil)
		v = a.followRollout("paused", stateIs(maintenance.RolloutDone))
		assert.Empty(t, v.PauseReason)
		requireOneAtATime(t, v)
		a.requireClean()
		a.call(http.MethodDelete, "/rollouts/paused", "", http.StatusOK, nil)
	})

	t.Run("a stop brings the pod in its turn back and ends", func(t *testing.T) {
		a.call(http.MethodPut, "/rollouts/long", `{"dc":"dc1","hold":"1h"}`, http.StatusCreated, nil)
		a.followRollout("long", func(v maintenance.RolloutView) bool {
			return v.Pods[0].Step == maintenance.StepHolding
		})
		require.Equal(t, maintenance.PhaseInMaintenance, a.pod("nats-0").Phase)
		code, hdr, b := a.do(http.MethodDelete, "/rollouts/long", "")
		require.Equal(t, http.StatusAccepted, code, "%s", b)
		assert.Equal(t, "/rollouts/long", hdr.Get("Location"))
		assert.Contains(t, string(b), `"state": "Stopping"`)
		v := a.followRollout("long", stateIs(maintenance.RolloutStopped))
		assert.Equal(t, maintenance.StepDone, v.Pods[0].Step)
		assert.NotNil(t, v.Pods[0].Ready)
		for _, p := range v.Pods[1:] {
			assert.Equal(t, maintenance.StepPending, p.Step, p.Pod)
			assert.Nil(t, p.Entered, p.Pod)
		}
		a.requireClean()
		a.call(http.MethodDelete, "/rollouts/long", "", http.StatusOK, nil)
	})

	t.Run("a restart stops and starts the embedded server", func(t *testing.T) {
		before := a.Cluster().Node("nats-2").Server()
		a.call(http.MethodPut, "/rollouts/restart", `{"pods":["nats-2"],"restart":true}`, http.StatusCreated, nil)
		v := a.followRollout("restart", stateIs(maintenance.RolloutDone))
		requireOneAtATime(t, v)
		require.NotNil(t, v.Pods[0].Restarted)
		assert.NotSame(t, before, a.Cluster().Node("nats-2").Server(), "a new server runs")
		a.requireClean()
		a.call(http.MethodDelete, "/rollouts/restart", "", http.StatusOK, nil)
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, c := range []struct {
			name, path, body string
			want             int
			says             string
		}{
			{"no body", "/rollouts/x", "", http.StatusBadRequest, "hold"},
			{"unknown field", "/rollouts/x", `{"hold":"1s","hlod":1}`, http.StatusBadRequest, "unknown field"},
			{"hold and restart", "/rollouts/x", `{"hold":"1s","restart":true}`, http.StatusBadRequest, "exclude"},
			{"bad hold", "/rollouts/x", `{"hold":"soon"}`, http.StatusBadRequest, "hold"},
			{"dc and pods", "/rollouts/x", `{"dc":"dc1","pods":["nats-0"],"hold":"1s"}`, http.StatusBadRequest, "exclude"},
			{"a mode the entries do not have", "/rollouts/x", `{"mode":"sideways","hold":"1s"}`, http.StatusBadRequest, "mode"},
			{"bad name", "/rollouts/No_Good", `{"hold":"1s"}`, http.StatusBadRequest, "DNS-1123"},
			{"unknown pod", "/rollouts/x", `{"pods":["nats-9"],"hold":"1s"}`, http.StatusNotFound, "nats-9"},
			{"unknown dc", "/rollouts/x", `{"dc":"dc9","hold":"1s"}`, http.StatusNotFound, "dc9"},
		} {
			t.Run(c.name, func(t *testing.T) {
				b := a.call(http.MethodPut, c.path, c.body, c.want, nil)
				assert.Contains(t, string(b), c.says)
			})
		}
		a.call(http.MethodGet, "/rollouts/nope", "", http.StatusNotFound, nil)
		a.call(http.MethodDelete, "/rollouts/nope", "", http.StatusNotFound, nil)
		code, hdr, _ := a.do(http.MethodPost, "/rollouts/x", "{}")
		assert.Equal(t, http.StatusMethodNotAllowed, code)
		assert.Equal(t, "DELETE, GET, HEAD, PUT", hdr.Get("Allow"))
		code, _, _ = a.do(http.MethodPut, "/rollouts", "{}")
		assert.Equal(t, http.StatusMethodNotAllowed, code)
		assert.Empty(t, a.config().Rollouts, "nothing was stored")
	})
	require.False(t, strings.Contains(fmt.Sprint(a.config().Pods), "rollout"), "no entry of a rollout is left")
	a.Stop()
}
