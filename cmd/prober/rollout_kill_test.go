package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// proberProcess is the prober binary running "embedded" as a child process.
type proberProcess struct {
	cmd  *exec.Cmd
	base string
	done chan error
}

// startProber runs bin embedded over dataDir on free loopback ports and
// returns once its API answers.
func startProber(t *testing.T, bin, dataDir string) *proberProcess {
	t.Helper()
	cmd := exec.Command(bin, "embedded", "--data-dir", dataDir, "--listen", "127.0.0.1:0",
		"--client-port", "0", "--monitor-port", "0", "--resync", "2s", "--log-format", "json", "--log-level", "info")
	// The embedded cluster's config files go to a temp folder that a
	// killed process cannot remove: keep it inside the test's.
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	logFile, err := os.CreateTemp(t.TempDir(), "prober-*.log")
	require.NoError(t, err)
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &proberProcess{cmd: cmd, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, url, ok := strings.Cut(sc.Text(), "maintenance API on "); ok {
				addr <- strings.TrimSpace(url)
			}
		}
		p.done <- cmd.Wait()
	}()
	select {
	case p.base = <-addr:
	case err := <-p.done:
		t.Fatalf("prober exited while starting: %v", err)
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("prober did not serve within 2m")
	}
	t.Cleanup(func() {
		p.kill(t)
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("log of the prober on %s:\n%s", p.base, b)
		}
	})
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proberProcess) kill(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("prober did not die within 30s of SIGKILL")
	}
}

// get calls GET base+path and decodes a 200 answer into out.
func (p *proberProcess) get(t *testing.T, path string, out any) int {
	t.Helper()
	resp, err := http.Get(p.base + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK && out != nil {
		require.NoError(t, json.Unmarshal(b, out), "%s", b)
	}
	return resp.StatusCode
}

// quorum reports whether every Raft group has a leader and its quorum in
// the view of /raft, and if not which group lacks it.
func (p *proberProcess) quorum(t *testing.T) (bool, string, natsraft.View) {
	t.Helper()
	var v natsraft.View
	if code := p.get(t, "/raft", &v); code != http.StatusOK {
		return false, fmt.Sprintf("/raft %d", code), v
	}
	for _, g := range v.Groups {
		if g.Leader == "" || g.QuorumLostSince != nil {
			return false, fmt.Sprintf("group %s: leader %q, quorum lost since %v", g.Name, g.Leader, g.QuorumLostSince), v
		}
	}
	return len(v.Groups) > 0, "no group yet", v
}

// quorumEverywhere polls /raft until every group has a leader and its
// quorum.
func (p *proberProcess) quorumEverywhere(t *testing.T, after string, timeout time.Duration) natsraft.View {
	t.Helper()
	var v natsraft.View
	poll(t, timeout, "every Raft group led with quorum after "+after, func() (bool, string) {
		ok, detail, view := p.quorum(t)
		v = view
		return ok, detail
	})
	return v
}

// quorumGrace is how long after a step of the rollout /raft may show a
// group without leader or quorum: an election after the hand-off or the
// fence, seen through the 1 s sweep.
const quorumGrace = 15 * time.Second

// follow polls the rollout until cond holds, checking the quorum after
// every step any pod takes.
func (p *proberProcess) follow(t *testing.T, name string, seen map[string]maintenance.RolloutStep,
	cond func(maintenance.RolloutView) bool,
) maintenance.RolloutView {
	t.Helper()
	var v maintenance.RolloutView
	poll(t, 3*time.Minute, "rollout "+name, func() (bool, string) {
		if code := p.get(t, "/rollouts/"+name, &v); code != http.StatusOK {
			return false, fmt.Sprintf("GET %d", code)
		}
		for _, pod := range v.Pods {
			if seen[pod.Pod] != pod.Step {
				seen[pod.Pod] = pod.Step
				if ok, detail, _ := p.quorum(t); !ok {
					t.Logf("/raft after %s %s: %s", pod.Pod, pod.Step, detail)
					// One pod at a time is out: every group keeps its
					// quorum, give or take an election (a hand-off, the
					// fence) and the 1 s sweep behind /raft.
					p.quorumEverywhere(t, fmt.Sprintf("%s %s", pod.Pod, pod.Step), quorumGrace)
				}
			}
		}
		return cond(v), fmt.Sprintf("%s %q %v", v.State, v.PauseReason, seen)
	})
	return v
}

// TestRolloutSurvivesKill runs the prober binary, starts a rollout of the
// three embedded pods, kills the prober with SIGKILL while the second pod
// has its turn, starts it again on the same data dir and requires the
// rollout to go on from the stored progress and finish, every pod Active,
// with every Raft group keeping its quorum after each step.
func TestRolloutSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the prober binary")
	}
	bin := filepath.Join(t.TempDir(), "prober")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	dataDir := t.TempDir()

	first := startProber(t, bin, dataDir)
	before := first.quorumEverywhere(t, "boot", 2*time.Minute)
	resp, err := http.DefaultClient.Do(mustRequest(t, http.MethodPut, first.base+"/rollouts/kill",
		`{"reason":"survives a kill","hold":"3s"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	seen := map[string]maintenance.RolloutStep{}
	mid := first.follow(t, "kill", seen, func(v maintenance.RolloutView) bool {
		return v.Pods[1].Step == maintenance.StepHolding
	})
	begin := time.Now()
	first.kill(t)
	t.Logf("killed while %s was %s", mid.Pods[1].Pod, mid.Pods[1].Step)

	second := startProber(t, bin, dataDir)
	after := second.quorumEverywhere(t, "the restart", 2*time.Minute)
	t.Logf("cluster back with every group led %.1fs after the kill", time.Since(begin).Seconds())
	assert.Equal(t, raftGroupIDs(before), raftGroupIDs(after),
		"JetStream state survives a restart under --data-dir: the same Raft groups")

	done := second.follow(t, "kill", seen, func(v maintenance.RolloutView) bool {
		return v.State == maintenance.RolloutDone
	})
	t.Logf("rollout done %.1fs after the kill", time.Since(begin).Seconds())
	require.Len(t, done.Pods, 3)
	first0, done0 := mid.Pods[0], done.Pods[0]
	require.NotNil(t, first0.Ready)
	assert.True(t, first0.Ready.Equal(*done0.Ready), "the first pod's turn is not done again")
	assert.True(t, mid.Pods[1].Entered.Equal(*done.Pods[1].Entered), "the second pod's turn goes on, not over")
	for i, pod := range done.Pods {
		assert.Equal(t, maintenance.StepDone, pod.Step, pod.Pod)
		assert.Equal(t, maintenance.PhaseActive, pod.Phase, pod.Pod)
		if i > 0 {
			assert.False(t, pod.Entered.Before(*done.Pods[i-1].Ready), "%s entered before the pod before was ready", pod.Pod)
		}
	}
	second.quorumEverywhere(t, "the rollout", time.Minute)
	var doc maintenance.Document
	require.Equal(t, http.StatusOK, second.get(t, "/config", &doc))
	assert.Empty(t, doc.Pods, "no entry is left")
	poll(t, time.Minute, "/readyz 200", func() (bool, string) {
		code := second.get(t, "/readyz", nil)
		return code == http.StatusOK, fmt.Sprint(code)
	})

	require.NoError(t, second.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-second.done:
		assert.NoError(t, err, "a clean exit on SIGTERM")
	case <-time.After(time.Minute):
		t.Fatal("prober did not exit within 1m of SIGTERM")
	}
}

func mustRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	return req
}

// raftGroupIDs maps each stream and consumer group to its Raft group id,
// which a stream made again would not keep.
func raftGroupIDs(v natsraft.View) map[string]string {
	out := map[string]string{}
	for _, g := range v.Groups {
		if g.Kind != natsraft.KindMeta {
			out[g.Name] = g.RaftGroup
		}
	}
	return out
}
